#!/usr/bin/python3
"""Log in to a Conclave node with slixmpp (a client Conclave did not write), bind,
ping the server, and report what was negotiated.

    /usr/bin/python3 scripts/interop/slixmpp_ping.py romeo@localhost secret \
        --mechanism SCRAM-SHA-256 [--direct-tls] [--port 5222] [--ca .conclave/tls/localhost.crt]

Needs Debian's python3-slixmpp. Exit status 0 when the ping was answered.
"""
import argparse
import asyncio
import ssl
import sys

import slixmpp


class Pinger(slixmpp.ClientXMPP):
    def __init__(self, jid, password, mechanism, ca):
        super().__init__(jid, password, sasl_mech=mechanism)
        self.register_plugin("xep_0199")
        if ca:
            self.ca_certs = ca
        else:
            self.ssl_context.check_hostname = False
            self.ssl_context.verify_mode = ssl.CERT_NONE
        self.result = None
        self.add_event_handler("session_start", self.on_session)
        self.add_event_handler("failed_auth", self.on_failed)

    async def on_session(self, _event):
        try:
            rtt = await self["xep_0199"].ping(jid=self.boundjid.domain, timeout=5)
            tls = "TLS" if self.socket and isinstance(self.socket, ssl.SSLSocket) or self.is_secure() else "plain"
            self.result = f"OK bound={self.boundjid.full} mechanism={self.mechanism_used} ping_rtt={rtt:.4f}s tls={tls}"
        except Exception as error:  # noqa: BLE001
            self.result = f"FAIL ping: {error!r}"
        self.disconnect()

    def on_failed(self, _event):
        self.result = "FAIL authentication"
        self.disconnect()

    @property
    def mechanism_used(self):
        return getattr(self.plugin["feature_mechanisms"], "mech", None) and self.plugin["feature_mechanisms"].mech.name

    def is_secure(self):
        transport = getattr(self, "transport", None)
        return transport is not None and transport.get_extra_info("sslcontext") is not None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("jid")
    parser.add_argument("password")
    parser.add_argument("--mechanism", default="SCRAM-SHA-256")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int)
    parser.add_argument("--direct-tls", action="store_true")
    parser.add_argument("--ca")
    args = parser.parse_args()
    client = Pinger(args.jid, args.password, args.mechanism, args.ca)
    port = args.port or (5223 if args.direct_tls else 5222)
    client.connect((args.host, port), use_ssl=args.direct_tls, force_starttls=not args.direct_tls)
    loop = asyncio.get_event_loop()
    loop.run_until_complete(asyncio.wait_for(client.disconnected, 20))
    print(client.result or "FAIL no session")
    sys.exit(0 if client.result and client.result.startswith("OK") else 1)


if __name__ == "__main__":
    main()
