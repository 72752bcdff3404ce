#!/usr/bin/env python3
"""Send a running node garbage, a DOCTYPE and a 10 MB stanza on separate
connections, print the stream error each gets, and check that a second client,
logged in the whole time, still gets ping answers.

    python3 scripts/interop/bad_input.py romeo@localhost secret [--host 127.0.0.1]

Uses only Python's standard library (raw sockets and ssl), so nothing here shares
code with Conclave. Exit status 0 when every case behaved.
"""
import argparse
import base64
import re
import socket
import ssl
import sys

HEADER = ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
          "xmlns:stream='http://etherx.jabber.org/streams' to='{domain}' version='1.0'>")


def read_until(sock, pattern, limit=1 << 20):
    data = b""
    while not re.search(pattern, data):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        if len(data) > limit:
            break
    return data


def read_all(sock):
    data = b""
    sock.settimeout(15)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (ConnectionResetError, socket.timeout):
        pass
    return data


def logged_in(host, domain, user, password):
    """A Direct TLS session authenticated with PLAIN and bound."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    sock = context.wrap_socket(socket.create_connection((host, 5223)), server_hostname=domain)
    sock.sendall(HEADER.format(domain=domain).encode())
    read_until(sock, rb"</stream:features>")
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    sock.sendall(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode())
    answer = read_until(sock, rb"<success|<failure")
    if b"<success" not in answer:
        raise SystemExit(f"login failed: {answer!r}")
    sock.sendall(HEADER.format(domain=domain).encode())
    read_until(sock, rb"</stream:features>")
    sock.sendall(b"<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    read_until(sock, rb"</iq>")
    return sock


def ping(sock, domain, n):
    sock.sendall(f"<iq type='get' id='p{n}' to='{domain}'><ping xmlns='urn:xmpp:ping'/></iq>".encode())
    answer = read_until(sock, rb"id=.p%d." % n)
    return b"type=\"result\"" in answer or b"type='result'" in answer


def bad_connection(host, domain, payload, after_header=True):
    sock = socket.create_connection((host, 5222))
    if after_header:
        sock.sendall(HEADER.format(domain=domain).encode())
        read_until(sock, rb"</stream:features>")
    try:
        sock.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
    answer = read_all(sock)
    match = re.search(rb"<stream:error><([a-z-]+)", answer)
    return match.group(1).decode() if match else None, answer.endswith(b"</stream:stream>")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("jid")
    parser.add_argument("password")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args()
    user, domain = args.jid.split("@")
    bystander = logged_in(args.host, domain, user, args.password)
    cases = [
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", False, "not-well-formed"),
        ("garbage in the stream", b"<<<>>>", True, "not-well-formed"),
        ("DOCTYPE", b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>" + HEADER.format(domain=domain).encode(),
         False, "restricted-xml"),
        ("10 MB stanza", b"<message><body>" + b"a" * (10 * 1024 * 1024) + b"</body></message>", True,
         "policy-violation"),
    ]
    ok = True
    for n, (name, payload, after_header, expected) in enumerate(cases):
        condition, closed = bad_connection(args.host, domain, payload, after_header)
        alive = ping(bystander, domain, n)
        good = condition == expected and closed and alive
        ok &= good
        print(f"{'OK  ' if good else 'FAIL'} {name}: <{condition}/> stream closed={closed}; "
              f"other client's ping answered={alive}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
