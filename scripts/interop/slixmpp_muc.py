#!/usr/bin/python3
"""Two slixmpp clients (a library Conclave did not write) use a Conclave room: the
first creates it, fetches and submits the configuration form, the second joins, and
they chat both ways.

    /usr/bin/python3 scripts/interop/slixmpp_muc.py romeo@localhost secret juliet@localhost secret2 \
        [--room test@conference.localhost] [--port 5222] [--ca .conclave/tls/localhost.crt]

Needs Debian's python3-slixmpp. Prints each step; exit status 0 when all worked.
"""
import argparse
import asyncio
import ssl
import sys

import slixmpp


def client(jid, password, ca):
    xmpp = slixmpp.ClientXMPP(jid, password)
    xmpp.register_plugin("xep_0030")
    xmpp.register_plugin("xep_0045")
    xmpp.register_plugin("xep_0004")
    if ca:
        xmpp.ca_certs = ca
    else:
        xmpp.ssl_context.check_hostname = False
        xmpp.ssl_context.verify_mode = ssl.CERT_NONE
    return xmpp


async def run(args):
    steps = []

    def step(text):
        steps.append(text)
        print("OK  ", text, flush=True)

    owner = client(args.owner, args.owner_password, args.ca)
    guest = client(args.guest, args.guest_password, args.ca)
    sessions = {}
    for name, xmpp in (("owner", owner), ("guest", guest)):
        started = asyncio.get_running_loop().create_future()
        xmpp.add_event_handler("session_start", lambda _e, f=started: f.done() or f.set_result(True))
        xmpp.add_event_handler("failed_auth", lambda _e, f=started: f.done() or f.set_exception(RuntimeError("auth failed")))
        xmpp.connect((args.host, args.port))
        await asyncio.wait_for(started, 20)
        sessions[name] = xmpp
        step(f"{name} logged in as {xmpp.boundjid.full}")

    room = args.room
    muc_owner = owner.plugin["xep_0045"]
    muc_guest = guest.plugin["xep_0045"]
    presence, subject, occupants, history = await muc_owner.join_muc_wait(room, "Romeo", maxstanzas=0, timeout=10)
    step(f"owner joined {room}: affiliation={presence['muc']['affiliation']} role={presence['muc']['role']} "
         f"status codes={sorted(presence['muc']['status_codes'])}")

    form = await muc_owner.get_room_config(room, timeout=10)
    fields = form.get_fields()
    step(f"owner got the configuration form ({len(fields)} fields, e.g. {', '.join(list(fields)[:3])})")
    submit = form.__class__()
    submit["type"] = "submit"
    submit.add_field(var="FORM_TYPE", value="http://jabber.org/protocol/muc#roomconfig")
    submit.add_field(var="muc#roomconfig_roomname", value="Slixmpp test room")
    submit.add_field(var="muc#roomconfig_persistentroom", value="0")
    await muc_owner.set_room_config(room, submit, timeout=10)
    step("owner submitted the configuration (room unlocked)")

    presence, subject, occupants, history = await muc_guest.join_muc_wait(room, "Juliet", maxstanzas=0, timeout=10)
    step(f"guest joined: role={presence['muc']['role']}, occupants seen={sorted(p['from'].resource for p in occupants)}")

    async def exchange(sender, sender_nick, receiver, text):
        got = asyncio.get_running_loop().create_future()

        def on_message(msg):
            if msg["body"] == text and not got.done():
                got.set_result(msg)

        receiver.add_event_handler("groupchat_message", on_message)
        sender.send_message(mto=room, mbody=text, mtype="groupchat")
        msg = await asyncio.wait_for(got, 10)
        receiver.del_event_handler("groupchat_message", on_message)
        step(f"{msg['from']} -> everyone: {text!r} (received by {receiver.boundjid.bare})")
        if msg["from"].resource != sender_nick:
            raise RuntimeError("wrong sender nick")

    await exchange(owner, "Romeo", guest, "Hello from slixmpp, Juliet")
    await exchange(guest, "Juliet", owner, "Hello back, Romeo")
    for xmpp in sessions.values():
        xmpp.disconnect()
    return steps


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("owner")
    parser.add_argument("owner_password")
    parser.add_argument("guest")
    parser.add_argument("guest_password")
    parser.add_argument("--room", default="slixmpp-test@conference.localhost")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5222)
    parser.add_argument("--ca")
    args = parser.parse_args()
    try:
        asyncio.get_event_loop().run_until_complete(asyncio.wait_for(run(args), 60))
    except Exception as error:  # noqa: BLE001
        print("FAIL", repr(error))
        sys.exit(1)
    print("all steps passed")


if __name__ == "__main__":
    main()
