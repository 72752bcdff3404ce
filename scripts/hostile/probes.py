#!/usr/bin/python3
"""Hostile-input probes for a running Conclave node (issue 13), from outside.

Not part of the product: a measuring tool. Each probe reproduces one numbered finding
of issue 13 with raw sockets and ordinary accounts while a separate, logged-in client
pings the server (XEP-0199) every 50 ms, and the node's RSS is sampled from
/proc/PID/status. Per probe it reports the RSS growth and peak, the ping round trips
(p50/p99/max), how the probe's connections ended (and with which stream error), and
PASS/FAIL against --rss-limit-mib and --ping-limit-ms plus the probe's own check.

Python 3 standard library only. Example:

    .build/debug/conclave user add probe@localhost --password probe
    .build/debug/conclave user add probe2@localhost --password probe
    /usr/bin/python3 scripts/hostile/probes.py --port 5222 --user probe@localhost \\
        --password probe --probe all

`--probe` takes names or numbers, comma-separated (`--probe 2,utf16`); `all` runs every
probe in an order where the destructive ones come last (3 may wedge the node's room
writer, 7 may trigger account and address throttles). `--list` lists them.
"""

import argparse
import base64
import json
import math
import os
import random
import re
import select
import socket
import ssl
import string
import subprocess
import sys
import threading
import time
import xml.parsers.expat

NS_STREAM = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_PING = "urn:xmpp:ping"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = NS_MUC + "#user"
NS_MUC_ADMIN = NS_MUC + "#admin"
NS_MUC_OWNER = NS_MUC + "#owner"
NS_DATA = "jabber:x:data"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"


class ProbeError(Exception):
    """A step of a probe could not be done (not a verdict about the server)."""


def rand_token(length=8):
    return "".join(random.choice(string.ascii_lowercase + string.digits) for _ in range(length))


def xml_escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))


def stream_header(domain):
    return ("<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
            "xmlns:stream='http://etherx.jabber.org/streams' to='%s' version='1.0'>" % domain)


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    index = max(0, math.ceil(fraction * len(sorted_values)) - 1)
    return sorted_values[index]


def median(values):
    return percentile(sorted(values), 0.5)


STREAM_ERROR_RE = re.compile(rb"<(?:[A-Za-z0-9]+:)?error[^>]*>\s*<([a-z-]+)[\s/>]")


def stream_error_in(raw):
    """The stream error condition found in raw received bytes (regex fallback)."""
    if b"streams" not in raw:
        return None
    match = STREAM_ERROR_RE.search(raw)
    return match.group(1).decode() if match else None


# ---------------------------------------------------------------------------------------
# A tiny streaming XML reader (expat) that yields top-level stanzas.


class El:
    """A parsed element: `ns`, `name`, `attrs` ({'name' or 'ns name': value}), children, text."""

    __slots__ = ("ns", "name", "attrs", "children", "text")

    def __init__(self, qname, attrs):
        if " " in qname:
            self.ns, self.name = qname.split(" ", 1)
        else:
            self.ns, self.name = "", qname
        self.attrs = attrs
        self.children = []
        self.text = ""

    def get(self, name, default=None):
        return self.attrs.get(name, default)

    def child(self, name, ns=None):
        for element in self.children:
            if element.name == name and (ns is None or element.ns == ns):
                return element
        return None

    def all(self, name, ns=None):
        return [e for e in self.children if e.name == name and (ns is None or e.ns == ns)]

    def find(self, path):
        """`child/child/...` by local names."""
        element = self
        for part in path.split("/"):
            element = element.child(part) if element is not None else None
        return element

    def iter(self):
        yield self
        for element in self.children:
            yield from element.iter()

    def __repr__(self):
        return "<%s xmlns=%r %r>" % (self.name, self.ns, self.attrs)


class StreamReader:
    """Feeds bytes to expat; collects the stream header and complete depth-1 elements."""

    def __init__(self):
        self.parser = xml.parsers.expat.ParserCreate(namespace_separator=" ")
        self.parser.buffer_text = True
        self.parser.StartElementHandler = self._start
        self.parser.EndElementHandler = self._end
        self.parser.CharacterDataHandler = self._text
        self.stack = []
        self.header = None
        self.stanzas = []
        self.closed = False
        self.error = None

    def feed(self, data):
        if self.error is not None:
            return
        try:
            self.parser.Parse(data, False)
        except xml.parsers.expat.ExpatError as error:
            self.error = str(error)

    def _start(self, name, attrs):
        element = El(name, attrs)
        if self.header is None:
            self.header = element
            return
        if self.stack:
            self.stack[-1].children.append(element)
        self.stack.append(element)

    def _end(self, name):
        if not self.stack:
            self.closed = True
            return
        element = self.stack.pop()
        if not self.stack:
            self.stanzas.append(element)

    def _text(self, data):
        if self.stack:
            self.stack[-1].text += data

    def pop(self):
        stanzas, self.stanzas = self.stanzas, []
        return stanzas


def stream_error_condition(element):
    if element.ns == NS_STREAM and element.name == "error":
        for child in element.children:
            if child.ns == NS_STREAM_ERRORS and child.name != "text":
                return child.name
        return "(no condition)"
    return None


def stanza_error_condition(element):
    error = element.child("error")
    if error is None:
        return None
    for child in error.children:
        if child.ns == NS_STANZAS and child.name != "text":
            return child.name
    return "(unknown)"


# ---------------------------------------------------------------------------------------
# A client connection.


class Conn:
    """One XMPP client connection: raw or negotiated (STARTTLS, SASL PLAIN, bind)."""

    def __init__(self, opts, label, rcvbuf=None, timeout=10.0):
        self.opts = opts
        self.label = label
        self.sock = None
        self.reader = StreamReader()
        self.pending = []
        self.eof = False
        self.reset = None
        self.stream_error = None
        self.received = 0
        self.tail = b""
        self.jid = None
        self.tls = False
        self.features = None
        self.ids = 0
        self.parse_errors = []
        self.raw = False  # True: count and keep the tail only, do not parse (fast draining)
        sock = socket.socket(socket.AF_INET6 if ":" in opts.host else socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        try:
            sock.connect((opts.host, opts.port))
        except OSError as error:
            sock.close()
            raise ProbeError("%s: cannot connect to %s:%d: %s" % (label, opts.host, opts.port, error))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock

    # -- bytes ------------------------------------------------------------------------

    def send(self, data, timeout=10.0):
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.sock.settimeout(timeout)
        try:
            self.sock.sendall(data)
        except (socket.timeout, TimeoutError):
            raise
        except OSError as error:
            self.reset = self.reset or str(error)
            self.eof = True
            raise ProbeError("%s: send failed: %s" % (self.label, error))

    def pump(self, timeout):
        """Reads once (waiting up to `timeout`); False once the connection has ended."""
        if self.eof:
            return False
        self.sock.settimeout(max(timeout, 0.0005))
        try:
            data = self.sock.recv(262144)
        except (socket.timeout, TimeoutError, ssl.SSLWantReadError):
            return True
        except OSError as error:
            self.reset = str(error)
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self._ingest(data)
        return True

    def _ingest(self, data):
        self.received += len(data)
        self.tail = (self.tail + data)[-65536:]
        if self.raw:
            return
        self.reader.feed(data)
        if self.reader.error and not self.parse_errors:
            self.parse_errors.append(self.reader.error)
        for stanza in self.reader.pop():
            condition = stream_error_condition(stanza)
            if condition:
                self.stream_error = condition
            else:
                self.pending.append(stanza)

    def drain(self, seconds):
        """Reads whatever arrives for `seconds` (or until the connection ends)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and self.pump(min(0.2, deadline - time.monotonic())):
            pass

    def wait_for(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        while True:
            for index, stanza in enumerate(self.pending):
                if predicate(stanza):
                    del self.pending[index]
                    return stanza
            if self.reader.error:
                raise ProbeError("%s: received XML is not well-formed while waiting for %s: %s"
                                 % (self.label, what, self.reader.error))
            if self.eof:
                raise ProbeError("%s: stream ended while waiting for %s (%s)" % (self.label, what, self.ended()))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ProbeError("%s: no %s within %.1f s" % (self.label, what, timeout))
            self.pump(min(remaining, 0.25))

    def ended(self):
        """'open', or how the server ended the connection."""
        if not self.eof and self.stream_error is None:
            return "open"
        if self.stream_error is None:
            self.stream_error = stream_error_in(self.tail)
        if self.stream_error:
            return "ended <%s/>" % self.stream_error
        if self.reset:
            return "ended (%s)" % self.reset
        return "ended (no stream error)"

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass

    def next_id(self, prefix="q"):
        self.ids += 1
        return "%s%d" % (prefix, self.ids)

    # -- negotiation ------------------------------------------------------------------

    def open_stream(self, timeout=10.0):
        self.reader = StreamReader()
        self.send(stream_header(self.opts.domain))
        self.features = self.wait_for(lambda e: e.ns == NS_STREAM and e.name == "features", timeout,
                                      "stream features")
        return self.features

    def mechanisms(self):
        element = self.features.child("mechanisms", NS_SASL) if self.features is not None else None
        return [m.text.strip() for m in element.all("mechanism")] if element is not None else []

    def prepare_sasl(self, timeout=10.0):
        """Opens the stream and does STARTTLS when offered (unless --plaintext)."""
        self.open_stream(timeout)
        offers_tls = self.features.child("starttls", NS_TLS) is not None
        if offers_tls and not (self.opts.plaintext and self.mechanisms()):
            self.send("<starttls xmlns='%s'/>" % NS_TLS)
            answer = self.wait_for(lambda e: e.ns == NS_TLS, timeout, "<proceed/>")
            if answer.name != "proceed":
                raise ProbeError("%s: STARTTLS refused (%s)" % (self.label, answer.name))
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.sock.settimeout(timeout)
            try:
                self.sock = context.wrap_socket(self.sock, server_hostname=self.opts.domain)
            except (OSError, ssl.SSLError) as error:
                self.eof = True
                raise ProbeError("%s: TLS handshake failed: %s" % (self.label, error))
            self.tls = True
            self.open_stream(timeout)
        if not self.mechanisms():
            raise ProbeError("%s: no SASL mechanisms offered (TLS %s)" % (self.label, "on" if self.tls else "off"))
        return self.mechanisms()

    def auth_plain(self, user, password, timeout=10.0):
        """Sends SASL PLAIN; returns (success, condition, seconds to the answer)."""
        local = user.split("@", 1)[0]
        blob = base64.b64encode(b"\0" + local.encode() + b"\0" + password.encode()).decode()
        self.send("<auth xmlns='%s' mechanism='PLAIN'>%s</auth>" % (NS_SASL, blob))
        started = time.monotonic()
        answer = self.wait_for(lambda e: e.ns == NS_SASL and e.name in ("success", "failure"), timeout,
                               "SASL answer")
        elapsed = time.monotonic() - started
        if answer.name == "success":
            return True, None, elapsed
        condition = answer.children[0].name if answer.children else "(none)"
        return False, condition, elapsed

    def login(self, user, password, resource, timeout=30.0):
        self.prepare_sasl(timeout)
        ok, condition, _ = self.auth_plain(user, password, timeout)
        if not ok:
            raise ProbeError("%s: authentication of %s failed: %s" % (self.label, user, condition))
        self.open_stream(timeout)
        ident = self.next_id("bind")
        self.send("<iq type='set' id='%s'><bind xmlns='%s'><resource>%s</resource></bind></iq>"
                  % (ident, NS_BIND, xml_escape(resource)))
        answer = self.wait_for(lambda e: e.name == "iq" and e.get("id") == ident, timeout, "bind result")
        jid = answer.find("bind/jid")
        if answer.get("type") != "result" or jid is None:
            raise ProbeError("%s: bind failed: %s" % (self.label, stanza_error_condition(answer)))
        self.jid = jid.text.strip()
        return self.jid

    def iq(self, kind, to, payload, timeout=10.0):
        """Sends an iq and returns (answer, seconds)."""
        ident = self.next_id()
        target = " to='%s'" % xml_escape(to) if to else ""
        self.send("<iq type='%s' id='%s'%s>%s</iq>" % (kind, ident, target, payload))
        started = time.monotonic()
        answer = self.wait_for(lambda e: e.name == "iq" and e.get("id") == ident, timeout, "iq answer")
        return answer, time.monotonic() - started


def login(opts, label, resource=None, user=None, password=None, timeout=30.0):
    conn = Conn(opts, label)
    try:
        conn.login(user or opts.user, password if password is not None else opts.password,
                   resource or "%s-%s" % (label, rand_token(4)), timeout)
    except BaseException:
        conn.close()
        raise
    return conn


# -- MUC helpers ----------------------------------------------------------------------


def join_room(conn, room, nick, timeout=10.0, config=None):
    """Joins (creating and configuring when new). Returns (seconds, created, error condition)."""
    occupant = "%s/%s" % (room, nick)
    conn.send("<presence to='%s'><x xmlns='%s'/></presence>" % (xml_escape(occupant), NS_MUC))
    started = time.monotonic()

    def is_answer(element):
        if element.name != "presence" or (element.get("from") or "").lower() != occupant.lower():
            return False
        if element.get("type") == "error":
            return True
        x = element.child("x", NS_MUC_USER)
        return x is not None and any(s.get("code") == "110" for s in x.all("status"))

    answer = conn.wait_for(is_answer, timeout, "self-presence from %s" % occupant[:60])
    elapsed = time.monotonic() - started
    if answer.get("type") == "error":
        return elapsed, False, stanza_error_condition(answer)
    codes = [s.get("code") for s in answer.child("x", NS_MUC_USER).all("status")]
    created = "201" in codes
    if created or config:
        configure_room(conn, room, config or {}, timeout)
    return elapsed, created, None


def configure_room(conn, room, fields, timeout=10.0):
    parts = ["<field var='FORM_TYPE'><value>http://jabber.org/protocol/muc#roomconfig</value></field>"]
    for var, value in fields.items():
        parts.append("<field var='%s'><value>%s</value></field>" % (var, xml_escape(value)))
    form = "<query xmlns='%s'><x xmlns='%s' type='submit'>%s</x></query>" % (NS_MUC_OWNER, NS_DATA, "".join(parts))
    answer, _ = conn.iq("set", room, form, timeout)
    if answer.get("type") != "result":
        raise ProbeError("%s: configuring %s failed: %s" % (conn.label, room[:60], stanza_error_condition(answer)))


def affiliation_list(conn, room, affiliation, timeout=10.0):
    answer, _ = conn.iq("get", room, "<query xmlns='%s'><item affiliation='%s'/></query>"
                        % (NS_MUC_ADMIN, affiliation), timeout)
    if answer.get("type") != "result":
        raise ProbeError("%s list of %s refused: %s" % (affiliation, room, stanza_error_condition(answer)))
    query = answer.child("query", NS_MUC_ADMIN)
    return [(item.get("jid") or "").lower() for item in (query.all("item") if query is not None else [])]


# ---------------------------------------------------------------------------------------
# Measurement: the pinger and the RSS sampler.


def pinger_child(opts):
    """The measuring client, run as its own process (`--pinger-child`) so that the probes'
    threads cannot delay it through the interpreter lock. Writes one line per event on
    stdout: `READY`, `FAIL text`, `P id sent`, `R id rtt`, `E text` (times: CLOCK_MONOTONIC,
    which is system-wide). Ends when its standard input closes."""
    interval = opts.ping_interval_ms / 1000.0
    stop = threading.Event()

    def watch_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    out = sys.stdout
    announced = False
    while not stop.is_set():
        try:
            conn = login(opts, "pinger", "pinger-" + rand_token(4))
        except Exception as error:  # noqa: BLE001 - reported to the parent
            out.write(("FAIL %s\n" if not announced else "E login: %s\n") % str(error).replace("\n", " "))
            out.flush()
            if not announced:
                return 1
            stop.wait(1.0)
            continue
        if not announced:
            out.write("READY\n")
            announced = True
        counter = 0
        next_send = time.monotonic()
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_send:
                    counter += 1
                    conn.send("<iq type='get' id='ping%d' to='%s'><ping xmlns='%s'/></iq>"
                              % (counter, opts.domain, NS_PING), timeout=5.0)
                    out.write("P ping%d %.6f\n" % (counter, now))
                    out.flush()
                    next_send += interval
                    if next_send < now:
                        next_send = now + interval
                if not conn.pump(max(0.0005, next_send - time.monotonic())):
                    raise ProbeError("pinger connection %s" % conn.ended())
                arrived = time.monotonic()
                for stanza in conn.pending:
                    if stanza.name == "iq" and (stanza.get("id") or "").startswith("ping"):
                        out.write("R %s %.6f\n" % (stanza.get("id"), arrived))
                conn.pending = []
                out.flush()
        except Exception as error:  # noqa: BLE001 - reported, then reconnect
            out.write("E %s\n" % str(error).replace("\n", " "))
            out.flush()
            stop.wait(1.0)
        finally:
            conn.close()
    return 0


class Pinger(threading.Thread):
    """Runs the measuring client (`pinger_child`) as a child process and collects its round trips."""

    def __init__(self, opts, argv):
        super().__init__(daemon=True, name="pinger")
        self.lock = threading.Lock()
        self.samples = []        # (monotonic sent, rtt seconds)
        self.outstanding = {}    # id -> monotonic sent
        self.events = []         # (monotonic, text)
        self.ready = threading.Event()
        self.failure = None
        self.process = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--pinger-child"] + argv,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def run(self):
        for line in self.process.stdout:
            kind, _, rest = line.rstrip("\n").partition(" ")
            with self.lock:
                if kind == "P":
                    ident, sent = rest.split()
                    self.outstanding[ident] = float(sent)
                elif kind == "R":
                    ident, arrived = rest.split()
                    sent = self.outstanding.pop(ident, None)
                    if sent is not None:
                        self.samples.append((sent, float(arrived) - sent))
                elif kind == "E":
                    self.events.append((time.monotonic(), "pinger: " + rest))
                elif kind == "FAIL":
                    self.failure = rest
                    self.ready.set()
                elif kind == "READY":
                    self.ready.set()
        if not self.ready.is_set():
            self.failure = self.failure or "the pinger process ended"
            self.ready.set()

    def stop(self):
        try:
            self.process.stdin.close()
            self.process.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            self.process.terminate()

    def window(self, start, end):
        """Round trips of pings sent in [start, end]; unanswered ones count as end - sent."""
        with self.lock:
            rtts = [rtt for sent, rtt in self.samples if start <= sent <= end]
            # Not yet answered: counted (as end - sent) once older than the limit could excuse.
            lost = [end - sent for sent in self.outstanding.values() if start <= sent <= end - 0.25]
            events = [text for at, text in self.events if start <= at <= end]
        values = sorted(rtts + lost)
        ms = lambda v: None if v is None else round(v * 1000.0, 1)  # noqa: E731
        return {
            "count": len(values), "unanswered": len(lost),
            "p50_ms": ms(percentile(values, 0.5)), "p99_ms": ms(percentile(values, 0.99)),
            "max_ms": ms(values[-1] if values else None), "events": events,
        }


class RSSSampler(threading.Thread):
    """Samples VmRSS/VmHWM of the node every 50 ms."""

    def __init__(self, pid, abort_mib):
        super().__init__(daemon=True, name="rss")
        self.pid = pid
        self.abort_kib = abort_mib * 1024
        self.stop_event = threading.Event()
        self.lock = threading.Lock()
        self.samples = []  # (monotonic, rss KiB, hwm KiB)
        self.dead = False
        self.over_abort = threading.Event()

    def read(self):
        try:
            with open("/proc/%d/status" % self.pid) as handle:
                text = handle.read()
        except OSError:
            self.dead = True
            return None
        values = {}
        for line in text.splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
        if "VmRSS" not in values:  # a zombie
            self.dead = True
            return None
        return values["VmRSS"], values.get("VmHWM", 0)

    def run(self):
        while not self.stop_event.is_set():
            sample = self.read()
            if sample is not None:
                with self.lock:
                    self.samples.append((time.monotonic(), sample[0], sample[1]))
                if sample[0] > self.abort_kib:
                    self.over_abort.set()
            self.stop_event.wait(0.05)

    def window(self, start, end, baseline):
        with self.lock:
            values = [rss for at, rss, _ in self.samples if start <= at <= end]
            hwm = max([h for at, _, h in self.samples if start <= at <= end] or [0])
            last = self.samples[-1][1] if self.samples else None
        peak = max(values) if values else baseline
        mib = lambda kib: None if kib is None else round(kib / 1024.0, 1)  # noqa: E731
        return {"baseline_mib": mib(baseline), "peak_mib": mib(peak), "growth_mib": mib(max(0, peak - baseline))
                if baseline is not None and peak is not None else None, "end_mib": mib(last), "hwm_mib": mib(hwm)}


def cpu_seconds(pid):
    """User + system CPU time of a process so far (seconds), or None."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / float(os.sysconf("SC_CLK_TCK"))
    except (OSError, IndexError, ValueError):
        return None


def machine_cpu():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    try:
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


def find_pid_by_port(port):
    """The pid of the process listening on TCP `port` (via /proc/net/tcp*), or None."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as handle:
                next(handle)
                for line in handle:
                    fields = line.split()
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        inodes.add(fields[9])
        except OSError:
            continue
    if not inodes:
        return None
    wanted = {"socket:[%s]" % inode for inode in inodes}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            for fd in os.listdir("/proc/%s/fd" % entry):
                if os.readlink("/proc/%s/fd/%s" % (entry, fd)) in wanted:
                    return int(entry)
        except OSError:
            continue
    return None


# ---------------------------------------------------------------------------------------
# The probes. Each returns a dict: ok (bool or None for "not judged"), summary (str),
# ended (str), details (dict).


class Context:
    def __init__(self, opts, rss):
        self.opts = opts
        self.rss = rss

    def aborting(self):
        return self.rss.over_abort.is_set() or self.rss.dead


def send_bulk(conn, ctx, chunk, total, stall_seconds):
    """Sends `chunk` repeatedly up to `total` bytes; stops when the server stops reading for
    `stall_seconds`, closes, or the node's RSS passes --abort-rss-mib. Returns (sent, why)."""
    sent = 0
    conn.sock.settimeout(stall_seconds)
    view = chunk if isinstance(chunk, bytes) else chunk.encode()
    while sent < total:
        if ctx.aborting():
            return sent, "stopped: node RSS above --abort-rss-mib"
        piece = view[: total - sent]
        try:
            conn.sock.sendall(piece)
        except (socket.timeout, TimeoutError):
            return sent, "server stopped reading (send blocked %.0f s)" % stall_seconds
        except OSError as error:
            conn.eof = True
            conn.reset = str(error)
            return sent, "connection ended while sending (%s)" % error
        sent += len(piece)
    return sent, "all sent"


def probe_namespace(ctx):
    """1: a 128 KiB namespace URI, then thousands of children, before STARTTLS."""
    opts = ctx.opts
    conn = Conn(opts, "namespace")
    try:
        conn.send(stream_header(opts.domain))
        uri = "urn:" + "n" * (opts.ns_kib * 1024)
        conn.send("<x xmlns='%s'>" % uri, timeout=30)
        children = "<y/>" * opts.ns_children
        sent, why = send_bulk(conn, ctx, children, len(children), 30.0)
        if not conn.eof:
            try:
                conn.send("</x>", timeout=5)
            except (ProbeError, OSError):
                pass
        conn.drain(opts.answer_seconds)
        stanza = len(uri) + 10 + sent
        return {"ok": None, "ended": conn.ended(),
                "summary": "%d KiB stanza (%d KiB namespace, %d of %d children sent: %s)"
                           % (stanza // 1024, opts.ns_kib, sent // 4, opts.ns_children, why),
                "details": {"children_sent": sent // 4, "send": why}}
    finally:
        conn.close()


def probe_prefixed_attr(ctx):
    """2: a groupchat message with `p:flag='1'` (xmlns:p on the element) must reach the
    other occupants (and later joiners, as history) as well-formed XML."""
    opts = ctx.opts
    room = "probe-prefix-%s@%s" % (rand_token(), opts.muc)
    conns = []
    try:
        sender = login(opts, "sender")
        conns.append(sender)
        join_room(sender, room, "sender")
        receiver = login(opts, "receiver")
        conns.append(receiver)
        join_room(receiver, room, "receiver")
        marker = "prefixed-" + rand_token()
        sender.send("<message to='%s' type='groupchat' id='m1' xmlns:p='urn:p' p:flag='1'><body>%s</body></message>"
                    % (room, marker))
        problems = []
        delivered = None
        try:
            delivered = receiver.wait_for(lambda e: e.name == "message" and e.find("body") is not None
                                          and e.find("body").text == marker, 5.0, "the groupchat message")
        except ProbeError as error:
            problems.append(str(error))
        if delivered is not None and delivered.get("urn:p flag") != "1":
            problems.append("receiver: message arrived without p:flag in urn:p (attrs %s)" % sorted(delivered.attrs))
        # The receiver's stream must still work: a ping must be answered.
        if not receiver.eof and not receiver.reader.error:
            try:
                receiver.iq("get", opts.domain, "<ping xmlns='%s'/>" % NS_PING, 5.0)
            except ProbeError as error:
                problems.append("after the message, %s" % error)
        late = login(opts, "late")
        conns.append(late)
        try:
            join_room(late, room, "late")
            late.wait_for(lambda e: e.name == "message" and e.find("body") is not None
                          and e.find("body").text == marker, 5.0, "the message as history")
        except ProbeError as error:
            problems.append(str(error))
        sender.drain(0.3)
        # One line per connection whose stream broke (the sender gets its own echo).
        broken = ["%s (%s)" % (c.label, c.parse_errors[0]) for c in conns if c.parse_errors]
        if broken:
            problems = ["not well-formed XML received by " + ", ".join(broken)] + [
                p for p in problems if "not well-formed" not in p]
        snippet = receiver.tail[receiver.tail.find(b"<message"):][:240].decode("utf-8", "replace") \
            if b"<message" in receiver.tail else ""
        ended = ", ".join("%s %s" % (c.label, c.ended()) for c in conns)
        unique = []
        for problem in problems:
            if problem not in unique:
                unique.append(problem)
        return {"ok": not unique, "ended": ended,
                "summary": "delivered well-formed to the occupant and the late joiner" if not unique
                           else "; ".join(unique),
                "details": {"room": room, "as_received": snippet, "problems": unique}}
    finally:
        for conn in conns:
            conn.close()


def long_domain(total):
    """A DNS name of `total` random bytes made of labels of at most 63 bytes."""
    labels = []
    remaining = total
    while True:
        size = min(63, remaining)
        if remaining - size == 1:
            size -= 1
        labels.append(rand_token(size))
        remaining -= size
        if remaining <= 0:
            break
        remaining -= 1
    return ".".join(labels)


def probe_writer(ctx):
    """3: a room with a very long name, an affiliation for a 2047-byte JID, then a fresh
    room's join must be answered within --join-limit-s."""
    opts = ctx.opts
    conns = []
    try:
        owner = login(opts, "owner")
        conns.append(owner)
        suffix = "@" + opts.muc
        tried = []

        def accepted(length, config=None):
            # Random, so that PostgreSQL cannot compress the index entry below its limit.
            candidate = rand_token(length) + suffix
            try:
                _, _, error = join_room(owner, candidate, "owner", timeout=opts.answer_seconds, config=config)
            except ProbeError as failure:
                error = str(failure)
            tried.append((length, error))
            if error is None and config is None:
                owner.send("<presence to='%s/owner' type='unavailable'/>" % candidate)
            return candidate if error is None else None

        persistent = {"muc#roomconfig_persistentroom": "1"}
        room = accepted(opts.room_name_bytes, persistent)
        if room is None:
            # The longest localpart the node accepts: binary search between 1 and the refused length.
            low, high = 0, opts.room_name_bytes
            while high - low > 1:
                middle = (low + high) // 2
                if accepted(middle):
                    low = middle
                else:
                    high = middle
            room = accepted(low, persistent) if low > 0 else None
        if room is None:
            return {"ok": None, "ended": owner.ended(), "summary": "no room name accepted: %s" % tried[:3],
                    "details": {"tried": tried}}
        local_bytes = max(1, min(1023, opts.affiliation_jid_bytes // 2))
        domain_bytes = max(1, opts.affiliation_jid_bytes - local_bytes - 1)
        target = rand_token(local_bytes) + "@" + long_domain(domain_bytes)
        answer_text = None
        affiliation_ms = None
        try:
            answer, seconds = owner.iq("set", room, "<query xmlns='%s'><item affiliation='member' jid='%s'/></query>"
                                       % (NS_MUC_ADMIN, target), opts.answer_seconds)
            affiliation_ms = round(seconds * 1000, 1)
            answer_text = "result" if answer.get("type") == "result" else "error <%s/>" % stanza_error_condition(answer)
        except ProbeError as error:
            answer_text = "no answer (%s)" % error
        fresh = login(opts, "fresh")
        conns.append(fresh)
        fresh_room = "probe-fresh-%s@%s" % (rand_token(), opts.muc)
        join_ms = None
        join_problem = None
        try:
            seconds, _, error = join_room(fresh, fresh_room, "fresh", timeout=opts.join_limit_s * 3)
            join_ms = round(seconds * 1000, 1)
            if error:
                join_problem = "join refused <%s/>" % error
        except ProbeError as error:
            join_problem = str(error)
        ok = join_problem is None and join_ms is not None and join_ms <= opts.join_limit_s * 1000
        room_bytes = len(room.encode())
        refused = [length for length, error in tried if error]
        summary = ("room JID %d bytes%s, affiliation for a %d-byte JID: %s%s; fresh room join %s"
                   % (room_bytes, " (longest accepted; %d refused with %s)" % (max(refused), tried[0][1])
                                  if refused else "", len(target), answer_text,
                      "" if affiliation_ms is None else " in %.0f ms" % affiliation_ms,
                      join_problem or "answered in %.0f ms" % join_ms))
        return {"ok": ok, "ended": ", ".join("%s %s" % (c.label, c.ended()) for c in conns), "summary": summary,
                "details": {"room_jid_bytes": room_bytes, "tried": tried, "target_jid_bytes": len(target),
                            "affiliation_answer": answer_text, "affiliation_ms": affiliation_ms,
                            "fresh_join_ms": join_ms, "fresh_join_problem": join_problem}}
    finally:
        for conn in conns:
            conn.close()


def probe_never_read(ctx):
    """4: before authentication, 64 MiB of SASL <abort/> with a small receive buffer, never read."""
    opts = ctx.opts
    conn = Conn(opts, "never-read", rcvbuf=opts.rcvbuf)
    try:
        conn.send(stream_header(opts.domain))
        total = opts.never_read_mib * 1024 * 1024
        # In the SASL namespace: answered with <failure><aborted/></failure> each.
        chunk = ("<abort xmlns='%s'/>" % NS_SASL) * 2048
        started = time.monotonic()
        sent, why = send_bulk(conn, ctx, chunk, total, opts.never_read_stall)
        send_seconds = time.monotonic() - started
        # Still not reading: give the server time to act on the backlog.
        if not conn.eof:
            time.sleep(opts.never_read_settle)
        # Now read: how much output was queued, and how did the stream end?
        drained_from = conn.received
        conn.raw = True
        conn.drain(opts.never_read_drain)
        return {"ok": None, "ended": conn.ended(),
                "summary": "%.1f of %d MiB sent in %.1f s (%s); %.1f MiB of replies read afterwards"
                           % (sent / 1048576.0, opts.never_read_mib, send_seconds, why,
                              (conn.received - drained_from) / 1048576.0),
                "details": {"sent_bytes": sent, "send_seconds": round(send_seconds, 2), "send": why,
                            "replies_bytes": conn.received}}
    finally:
        conn.close()


def short_names(count):
    """`count` distinct XML names, shortest first (so ~35,700 fit in under 256 KiB)."""
    first = string.ascii_letters
    rest = string.ascii_letters + string.digits
    names = list(first)
    width = 1
    while len(names) < count + 5:
        names = names + [n + c for n in names if len(n) == width for c in rest]
        width += 1
    taken = {"to", "id", "from", "version", "xml"}  # on the stream header already, or reserved
    return [n for n in names if n not in taken][:count]


def probe_attributes(ctx):
    """5: a stream header with ~35,700 attributes (time to the answer), and a message whose
    text is 50,000 character references (time to its delivery)."""
    opts = ctx.opts
    conn = Conn(opts, "attributes", timeout=30)
    parts = []
    try:
        attributes = "".join(" %s=''" % name for name in short_names(opts.header_attributes))
        header = stream_header(opts.domain)[:-1] + attributes + ">"
        sent, why = send_bulk(conn, ctx, header, len(header), 30.0)
        done = time.monotonic()
        early = conn.eof or sent < len(header)
        first = None
        deadline = done + opts.answer_seconds
        while time.monotonic() < deadline and first is None:
            before = conn.received
            if not conn.pump(0.05) and conn.received == before:
                first = time.monotonic()
                break
            if conn.received > before:
                first = time.monotonic()
        conn.drain(0.3)
        header_ms = 0.0 if early else None if first is None else round((first - done) * 1000, 1)
        header_answer = ("stream error <%s/>" % conn.stream_error if conn.stream_error else
                         "stream features" if any(s.name == "features" for s in conn.pending) else
                         "stream header" if conn.reader.header is not None else
                         "connection closed" if conn.eof else "nothing")
        if early:
            parts.append("header with %d attributes (%d KiB): %s before it was complete (%d KiB sent: %s)"
                         % (opts.header_attributes, len(header) // 1024, header_answer, sent // 1024, why))
        else:
            parts.append("header with %d attributes (%d KiB): %s after %s"
                         % (opts.header_attributes, len(header) // 1024, header_answer,
                            "no answer" if header_ms is None else "%.0f ms" % header_ms))
        ended = "header conn %s" % conn.ended()
    finally:
        conn.close()
    client = login(opts, "charrefs")
    try:
        body = "&#65;" * opts.charrefs
        client.send("<message to='%s' type='chat' id='cr1'><body>%s</body></message>" % (client.jid, body), timeout=30)
        sent = time.monotonic()
        message_ms = None
        outcome = None
        try:
            echo = client.wait_for(lambda e: e.name == "message" and e.get("id") == "cr1", opts.answer_seconds,
                                   "the message back")
            message_ms = round((time.monotonic() - sent) * 1000, 1)
            if echo.get("type") == "error":
                outcome = "error <%s/>" % stanza_error_condition(echo)
            else:
                length = len(echo.find("body").text) if echo.find("body") is not None else 0
                outcome = "delivered (%d characters)" % length
        except ProbeError as error:
            outcome = str(error)
            if client.eof:
                message_ms = round((time.monotonic() - sent) * 1000, 1)
        parts.append("message of %d character references: %s%s"
                     % (opts.charrefs, outcome, "" if message_ms is None else " after %.0f ms" % message_ms))
        ended += ", message conn %s" % client.ended()
    finally:
        client.close()
    slow = [v for v in (header_ms, message_ms) if v is None or v > opts.parse_limit_ms]
    return {"ok": not slow, "ended": ended, "summary": "; ".join(parts),
            "details": {"header_answer": header_answer, "header_ms": header_ms, "message_ms": message_ms,
                        "message_outcome": outcome}}


def probe_slowloris(ctx):
    """6: many unauthenticated connections sending one byte every interval."""
    opts = ctx.opts
    header = stream_header(opts.domain).encode()
    conns = []
    refused = 0
    for index in range(opts.slowloris_connections):
        try:
            conns.append(Conn(opts, "slow%d" % index, timeout=5))
        except ProbeError:
            refused += 1
    started = time.monotonic()
    end = started + opts.slowloris_seconds
    position = 0
    closed_at = {}
    next_byte = started
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now >= next_byte:
            byte = header[position % len(header): position % len(header) + 1]
            position += 1
            for conn in conns:
                if not conn.eof:
                    try:
                        conn.send(byte, timeout=2)
                    except (ProbeError, socket.timeout, TimeoutError):
                        pass
                    if conn.eof and conn.label not in closed_at:
                        closed_at[conn.label] = now - started
            next_byte += opts.slowloris_interval
        live = [c.sock for c in conns if not c.eof]
        if not live:
            break
        readable, _, _ = select.select(live, [], [], max(0.01, min(next_byte, end) - time.monotonic()))
        for conn in conns:
            if conn.sock in readable:
                conn.pump(0.01)
                if conn.eof and conn.label not in closed_at:
                    closed_at[conn.label] = time.monotonic() - started
    for conn in conns:
        if not conn.eof:
            conn.pump(0.01)
    still_open = sum(1 for c in conns if not c.eof)
    errors = {}
    for conn in conns:
        if conn.eof:
            key = conn.ended()
            errors[key] = errors.get(key, 0) + 1
        conn.close()
    times = sorted(closed_at.values())
    summary = ("%d of %d still open after %.0f s (%d refused at connect; one byte every %.0f s)"
               % (still_open, opts.slowloris_connections, opts.slowloris_seconds, refused, opts.slowloris_interval))
    if times:
        summary += "; closed after %.0f-%.0f s" % (times[0], times[-1])
    return {"ok": still_open == 0, "ended": ", ".join("%d %s" % (n, k) for k, n in errors.items()) or "none ended",
            "summary": summary,
            "details": {"still_open": still_open, "refused": refused, "closed_after_s": [round(t, 1) for t in times],
                        "endings": errors}}


def probe_auth_throttle(ctx):
    """7: parallel password guessing that abandons slow attempts, plus an observer that
    compares how fast correct and wrong passwords are answered."""
    opts = ctx.opts
    user = opts.auth_user or opts.user2
    password = opts.auth_password if opts.auth_password is not None else opts.password2
    stop = threading.Event()
    lock = threading.Lock()
    stats = {"attempts": 0, "answered": 0, "abandoned": 0, "refused": 0, "wrong_ms": [], "connect_errors": 0,
             "successes_with_wrong": 0, "endings": {}, "conditions": {}}
    observer = {"correct_ms": [], "wrong_ms": [], "errors": []}

    def attempt(secret, patience):
        conn = None
        try:
            conn = Conn(opts, "guess", timeout=5)
            conn.prepare_sasl(timeout=10)
            try:
                ok, condition, seconds = conn.auth_plain(user, secret, timeout=patience)
            except ProbeError as error:
                if conn.eof:
                    return ("ended", conn.ended())
                return ("abandoned", str(error))
            return ("answered", (ok, condition, seconds))
        except (ProbeError, OSError) as error:
            return ("refused", str(error))
        finally:
            if conn is not None:
                conn.close()

    def guesser():
        while not stop.is_set():
            kind, value = attempt("wrong-" + rand_token(), opts.auth_abandon_ms / 1000.0)
            with lock:
                stats["attempts"] += 1
                if kind == "answered":
                    stats["answered"] += 1
                    stats["wrong_ms"].append(value[2] * 1000)
                    condition = "success" if value[0] else value[1]
                    stats["conditions"][condition] = stats["conditions"].get(condition, 0) + 1
                    if value[0]:
                        stats["successes_with_wrong"] += 1
                elif kind == "abandoned":
                    stats["abandoned"] += 1
                else:
                    stats["refused"] += 1
                    stats["endings"][value[:80]] = stats["endings"].get(value[:80], 0) + 1
            if kind == "refused":
                stop.wait(0.05)

    def watcher():
        correct = True
        while not stop.is_set():
            secret = password if correct else "wrong-" + rand_token()
            kind, value = attempt(secret, 15.0)
            if kind == "answered":
                if value[0] == correct:
                    observer["correct_ms" if correct else "wrong_ms"].append(value[2] * 1000)
                else:
                    observer["errors"].append("%s password answered %s" % ("correct" if correct else "wrong",
                                                                           value[1] or "success"))
            else:
                observer["errors"].append("%s: %s" % (kind, value))
            correct = not correct
            stop.wait(0.5)

    threads = [threading.Thread(target=guesser, daemon=True) for _ in range(opts.auth_workers)]
    threads.append(threading.Thread(target=watcher, daemon=True))
    started = time.monotonic()
    for thread in threads:
        thread.start()
    stop.wait(opts.auth_seconds)
    stop.set()
    for thread in threads:
        thread.join(20)
    seconds = time.monotonic() - started
    rate = stats["answered"] / seconds
    correct_p50 = median(observer["correct_ms"])
    wrong_p50 = median(observer["wrong_ms"])
    # The timing tells the outcome when a correct password is answered much sooner.
    reveals = (correct_p50 is not None and wrong_p50 is not None and wrong_p50 > 100
               and correct_p50 < wrong_p50 / 2)
    # Guesses whose outcome the guesser learns: <not-authorized/> answers, and, when the
    # timing tells, every abandoned attempt as well (slow means wrong).
    decided = stats["conditions"].get("not-authorized", 0) + stats["successes_with_wrong"]
    if reveals:
        decided += stats["abandoned"]
    guess_rate = decided / seconds
    problems = []
    if guess_rate > opts.auth_rate_limit:
        problems.append("over the limit of %.1f guesses/s" % opts.auth_rate_limit)
    if reveals:
        problems.append("correct password answered faster (p50 %.0f ms vs %.0f ms): abandoning slow attempts "
                        "loses nothing" % (correct_p50, wrong_p50))
    if stats["successes_with_wrong"]:
        problems.append("a wrong password succeeded")
    fmt = lambda v: "-" if v is None else "%.0f" % v  # noqa: E731
    answers = ", ".join("%d %s" % (n, c) for c, n in sorted(stats["conditions"].items())) or "none"
    summary = ("%d workers, %.0f s: %d attempts (%.1f/s), answered %s, %d abandoned after %d ms, "
               "%d refused/ended; %.1f guesses/s decided; observer p50 correct %s ms vs wrong %s ms"
               % (opts.auth_workers, seconds, stats["attempts"], stats["attempts"] / seconds, answers,
                  stats["abandoned"], opts.auth_abandon_ms, stats["refused"], guess_rate, fmt(correct_p50),
                  fmt(wrong_p50)))
    if observer["errors"]:
        summary += " (observer: %s)" % observer["errors"][0][:120]
    ended = ", ".join("%d %s" % (n, k) for k, n in stats["endings"].items()) or "guesses answered in-stream"
    return {"ok": not problems, "ended": ended, "summary": summary + ("; " + "; ".join(problems) if problems else ""),
            "details": {"target": user, "attempts": stats["attempts"], "answered": stats["answered"],
                        "answered_per_s": round(rate, 2), "decided_guesses_per_s": round(guess_rate, 2),
                        "answers": stats["conditions"], "abandoned": stats["abandoned"],
                        "refused": stats["refused"], "guess_p50_ms": median(stats["wrong_ms"]),
                        "observer_correct_ms": [round(v) for v in observer["correct_ms"]],
                        "observer_wrong_ms": [round(v) for v in observer["wrong_ms"]],
                        "observer_errors": observer["errors"][:10], "problems": problems}}


def scram_first(opts, username, mechanism_wanted):
    """Sends a SCRAM client-first message; returns (mechanism, salt b64, iterations, other answer)."""
    conn = Conn(opts, "scram")
    try:
        mechanisms = conn.prepare_sasl()
        mechanism = mechanism_wanted if mechanism_wanted in mechanisms else next(
            (m for m in ("SCRAM-SHA-256", "SCRAM-SHA-1") if m in mechanisms), None)
        if mechanism is None:
            raise ProbeError("no SCRAM mechanism offered: %s" % mechanisms)
        nonce = base64.b64encode(os.urandom(18)).decode()
        first = "n,,n=%s,r=%s" % (username.replace("=", "=3D").replace(",", "=2C"), nonce)
        conn.send("<auth xmlns='%s' mechanism='%s'>%s</auth>"
                  % (NS_SASL, mechanism, base64.b64encode(first.encode()).decode()))
        answer = conn.wait_for(lambda e: e.ns == NS_SASL, 10.0, "SCRAM challenge")
        if answer.name != "challenge":
            condition = answer.children[0].name if answer.children else answer.name
            return mechanism, None, None, "%s <%s/>" % (answer.name, condition)
        fields = dict(part.split("=", 1) for part in base64.b64decode(answer.text.strip()).decode().split(",")
                      if "=" in part)
        conn.send("<abort xmlns='%s'/>" % NS_SASL)
        return mechanism, fields.get("s"), fields.get("i"), None
    finally:
        conn.close()


def probe_scram_enum(ctx):
    """8: SCRAM server-first for an unknown account twice and a real one twice."""
    opts = ctx.opts
    unknown = "nobody-" + rand_token(10)
    real = opts.user.split("@", 1)[0]
    rows = []
    for name in (unknown, unknown, real, real):
        rows.append((name,) + scram_first(opts, name, "SCRAM-SHA-256"))
    mechanism = rows[0][1]
    (_, _, u1s, u1i, u1x), (_, _, u2s, u2i, u2x), (_, _, r1s, r1i, r1x), (_, _, r2s, r2i, r2x) = rows
    problems = []
    if u1x or u2x:
        problems.append("unknown account refused at once (%s)" % (u1x or u2x))
    if r1x or r2x:
        problems.append("real account refused (%s)" % (r1x or r2x))
    if not problems:
        if u1s != u2s:
            problems.append("unknown account's salt changes between connections")
        if u1i != u2i:
            problems.append("unknown account's iteration count changes")
        if r1s != r2s:
            problems.append("real account's salt changes (did its password change?)")
        if {u1i} != {r1i}:
            problems.append("iteration counts differ: unknown %s, real %s" % (u1i, r1i))
        if len(base64.b64decode(u1s or "")) != len(base64.b64decode(r1s or "")):
            problems.append("salt lengths differ")
    summary = ("%s: unknown salt %s/%s i=%s/%s, real salt %s/%s i=%s/%s"
               % (mechanism, (u1s or "-")[:8], (u2s or "-")[:8], u1i, u2i,
                  (r1s or "-")[:8], (r2s or "-")[:8], r1i, r2i))
    return {"ok": not problems, "ended": "aborted by the probe",
            "summary": summary + ("; " + "; ".join(problems) if problems else "; indistinguishable"),
            "details": {"mechanism": mechanism, "unknown": [u1s, u1i, u2s, u2i], "real": [r1s, r1i, r2s, r2i],
                        "problems": problems}}


def probe_invite_outcast(ctx):
    """9: owner bans C in a members-only room that allows invites; member B invites C."""
    opts = ctx.opts
    room = "probe-invite-%s@%s" % (rand_token(), opts.muc)
    outcast = "outcast-%s@%s" % (rand_token(), opts.domain)
    conns = []
    try:
        owner = login(opts, "owner")
        conns.append(owner)
        try:
            member = login(opts, "member", user=opts.user2, password=opts.password2)
        except ProbeError as error:
            return {"ok": None, "ended": "-", "summary": "needs a second account (--user2): %s" % error,
                    "details": {}}
        conns.append(member)
        if member.jid.split("/")[0].lower() == owner.jid.split("/")[0].lower():
            return {"ok": None, "ended": "-", "summary": "--user2 must be another account than --user", "details": {}}
        join_room(owner, room, "owner", config={"muc#roomconfig_membersonly": "1",
                                                "muc#roomconfig_allowinvites": "1"})
        member_bare = member.jid.split("/")[0]
        answer, _ = owner.iq("set", room, "<query xmlns='%s'><item affiliation='member' jid='%s'/>"
                             "<item affiliation='outcast' jid='%s'/></query>" % (NS_MUC_ADMIN, member_bare, outcast))
        if answer.get("type") != "result":
            raise ProbeError("setting affiliations failed: %s" % stanza_error_condition(answer))
        _, _, error = join_room(member, room, "member")
        if error:
            raise ProbeError("member could not join: %s" % error)
        member.send("<message to='%s' id='inv1'><x xmlns='%s'><invite to='%s'><reason>probe</reason></invite></x>"
                    "</message>" % (room, NS_MUC_USER, outcast))
        # An iq to the same room after the invitation: answered once the invitation was handled.
        member.iq("get", room, "<query xmlns='%s'/>" % NS_DISCO_INFO)
        invite_error = None
        for stanza in member.pending:
            if stanza.name == "message" and stanza.get("id") == "inv1" and stanza.get("type") == "error":
                invite_error = stanza_error_condition(stanza)
        outcasts = affiliation_list(owner, room, "outcast")
        members = affiliation_list(owner, room, "member")
        still_outcast = outcast.lower() in outcasts
        became_member = outcast.lower() in members
        ok = still_outcast and not became_member
        summary = ("after the invitation (%s) C is %s" % (
            "refused <%s/>" % invite_error if invite_error else "accepted",
            "still an outcast" if ok else "a member" if became_member else "no longer an outcast"))
        return {"ok": ok, "ended": ", ".join("%s %s" % (c.label, c.ended()) for c in conns), "summary": summary,
                "details": {"room": room, "outcast": outcast, "outcasts": outcasts, "members": members,
                            "invite_error": invite_error}}
    finally:
        for conn in conns:
            conn.close()


def probe_utf16(ctx):
    """10: a UTF-16 stream header must get <unsupported-encoding/>."""
    opts = ctx.opts
    conn = Conn(opts, "utf16")
    try:
        header = ("<?xml version='1.0' encoding='UTF-16'?>" + stream_header(opts.domain)[len("<?xml version='1.0'?>"):])
        conn.send(header.encode("utf-16"))
        conn.drain(opts.answer_seconds if not conn.eof else 0)
        deadline = time.monotonic() + opts.answer_seconds
        while not conn.eof and conn.stream_error is None and time.monotonic() < deadline:
            conn.pump(0.2)
        condition = conn.stream_error or stream_error_in(conn.tail)
        return {"ok": condition == "unsupported-encoding", "ended": conn.ended(),
                "summary": "answered %s" % ("<%s/>" % condition if condition else
                                            "without a stream error (%d bytes, %s)" % (conn.received, conn.ended())),
                "details": {"condition": condition, "received": conn.tail[:400].decode("utf-8", "replace")}}
    finally:
        conn.close()


PROBES = [
    (1, "namespace", probe_namespace),
    (2, "prefixed-attr", probe_prefixed_attr),
    (3, "writer", probe_writer),
    (4, "never-read", probe_never_read),
    (5, "attributes", probe_attributes),
    (6, "slowloris", probe_slowloris),
    (7, "auth-throttle", probe_auth_throttle),
    (8, "scram-enum", probe_scram_enum),
    (9, "invite-outcast", probe_invite_outcast),
    (10, "utf16", probe_utf16),
]
# `all`: cheap and non-destructive first; 3 may wedge room activation, 7 trips throttles.
ALL_ORDER = [10, 8, 9, 2, 5, 1, 4, 6, 3, 7]


def select_probes(text):
    by_key = {}
    for number, name, function in PROBES:
        by_key[str(number)] = by_key[name] = (number, name, function)
    chosen = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        if part == "all":
            chosen.extend(by_key[str(n)] for n in ALL_ORDER)
        elif part in by_key:
            chosen.append(by_key[part])
        else:
            raise SystemExit("unknown probe %r; --list shows them" % part)
    return chosen


# ---------------------------------------------------------------------------------------
# Running and reporting.


def run_one(ctx, pinger, number, name, function):
    opts = ctx.opts
    if ctx.rss.dead:
        return {"number": number, "probe": name, "verdict": "SKIP", "summary": "the node is not running",
                "ended": "-", "rss": {}, "ping": {}, "cpu": {}, "details": {}}
    ctx.rss.over_abort.clear()
    baseline = ctx.rss.read()
    baseline_kib = baseline[0] if baseline else None
    node_cpu_start = cpu_seconds(ctx.rss.pid)
    own_cpu_start = sum(os.times()[:2])
    machine_start = machine_cpu()
    start = time.monotonic()
    try:
        outcome = function(ctx)
    except Exception as error:  # noqa: BLE001 - reported as the probe's outcome
        outcome = {"ok": None, "ended": "-", "summary": "probe could not run: %s" % error, "details": {},
                   "crashed": True}
    if ctx.opts.settle > 0:
        time.sleep(ctx.opts.settle)
    end = time.monotonic()
    node_cpu_end = cpu_seconds(ctx.rss.pid)
    machine_end = machine_cpu()
    cpu = {"node_percent": None if node_cpu_start is None or node_cpu_end is None
           else round(100.0 * (node_cpu_end - node_cpu_start) / (end - start)),
           "probe_percent": round(100.0 * (sum(os.times()[:2]) - own_cpu_start) / (end - start)),
           # All cores together (100% = every core busy): others' work distorts the pings.
           "machine_percent": None if not machine_start or not machine_end or machine_end[1] == machine_start[1]
           else round(100.0 * (machine_end[0] - machine_start[0]) / (machine_end[1] - machine_start[1]))}
    rss = ctx.rss.window(start, end, baseline_kib)
    ping = pinger.window(start, end)
    reasons = []
    if outcome.get("ok") is False:
        reasons.append("check")
    if ctx.rss.dead:
        reasons.append("node died")
    if rss.get("growth_mib") is not None and rss["growth_mib"] > opts.rss_limit_mib:
        reasons.append("rss")
    ping_value = ping.get("max_ms") if opts.ping_stat == "max" else ping.get("p99_ms")
    if ping_value is None or ping_value > opts.ping_limit_ms:
        reasons.append("ping")
    busy = cpu.get("machine_percent")
    if "ping" in reasons and busy is not None and busy >= opts.busy_percent:
        # Other processes had the cores: the node may not be the one to blame.
        reasons[reasons.index("ping")] = "ping?"
    if outcome.get("crashed") and not reasons:
        verdict = "ERROR"
    else:
        verdict = "FAIL" if reasons else "PASS"
    return {"number": number, "probe": name, "verdict": verdict, "failed_on": reasons,
            "summary": outcome.get("summary", ""), "ended": outcome.get("ended", "-"), "rss": rss, "ping": ping,
            "cpu": cpu,
            "seconds": round(end - start, 1), "details": outcome.get("details", {})}


def fmt_num(value, digits=1):
    return "-" if value is None else ("%.*f" % (digits, value))


def line_for(result):
    rss = result["rss"]
    ping = result["ping"]
    cpu = result.get("cpu", {})
    return ("[%2d %-14s] %-5s %s | rss +%s MiB (peak %s) | ping p50/p99/max %s/%s/%s ms%s | cpu node %s%% "
            "probe %s%% machine %s%% | %s"
            % (result["number"], result["probe"], result["verdict"],
               ("(" + ",".join(result.get("failed_on", [])) + ")") if result.get("failed_on") else "",
               fmt_num(rss.get("growth_mib")), fmt_num(rss.get("peak_mib")),
               fmt_num(ping.get("p50_ms")), fmt_num(ping.get("p99_ms")), fmt_num(ping.get("max_ms")),
               (" (%d unanswered)" % ping["unanswered"]) if ping.get("unanswered") else "",
               fmt_num(cpu.get("node_percent"), 0), fmt_num(cpu.get("probe_percent"), 0),
               fmt_num(cpu.get("machine_percent"), 0), result["summary"]))


def table(results, out):
    header = ("#", "probe", "verdict", "RSS +MiB", "peak MiB", "ping p50", "p99", "max ms", "node CPU",
              "connection(s)")
    rows = [header]
    for r in sorted(results, key=lambda r: r["number"]):
        rows.append((str(r["number"]), r["probe"], r["verdict"] + ("(" + ",".join(r.get("failed_on", [])) + ")"
                                                                    if r.get("failed_on") else ""),
                     fmt_num(r["rss"].get("growth_mib")), fmt_num(r["rss"].get("peak_mib")),
                     fmt_num(r["ping"].get("p50_ms")), fmt_num(r["ping"].get("p99_ms")),
                     fmt_num(r["ping"].get("max_ms")),
                     fmt_num(r.get("cpu", {}).get("node_percent"), 0) + "%", (r["ended"] or "")[:70]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for index, row in enumerate(rows):
        out.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() + "\n")
        if index == 0:
            out.write("  ".join("-" * w for w in widths) + "\n")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=5222, help="the c2s STARTTLS port")
    p.add_argument("--domain", default="localhost")
    p.add_argument("--muc", default=None, help="MUC domain (default conference.<domain>)")
    p.add_argument("--pid", type=int, default=None, help="the node's pid (default: whoever listens on --port)")
    p.add_argument("--user", default="probe@localhost")
    p.add_argument("--password", default="probe")
    p.add_argument("--user2", default=None, help="a second account (probes 7 and 9; default <user>2@<domain>)")
    p.add_argument("--password2", default=None, help="its password (default --password)")
    p.add_argument("--probe", default="all", help="names or numbers, comma-separated, or all")
    p.add_argument("--list", action="store_true", help="list the probes and exit")
    p.add_argument("--pinger-child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--json", action="store_true", help="print the results as JSON on stdout (progress to stderr)")
    p.add_argument("--plaintext", action="store_true", help="skip STARTTLS when SASL is offered without it")
    p.add_argument("--rss-limit-mib", type=float, default=150.0, help="max RSS growth per probe")
    p.add_argument("--ping-limit-ms", type=float, default=100.0)
    p.add_argument("--ping-stat", choices=("max", "p99"), default="max", help="what --ping-limit-ms applies to")
    p.add_argument("--ping-interval-ms", type=float, default=50.0)
    p.add_argument("--nice", type=int, default=10,
                   help="lower the probes' CPU priority by this much (not the pinger's)")
    p.add_argument("--busy-percent", type=float, default=85.0,
                   help="a ping failure while the whole machine is this busy is marked ping? (unreliable)")
    p.add_argument("--settle", type=float, default=2.0, help="seconds measured after each probe")
    p.add_argument("--answer-seconds", type=float, default=10.0, help="how long to wait for an answer")
    p.add_argument("--abort-rss-mib", type=float, default=4096.0,
                   help="safety: stop sending when the node's RSS passes this")
    g = p.add_argument_group("1 namespace")
    g.add_argument("--ns-kib", type=int, default=128, help="namespace URI size")
    g.add_argument("--ns-children", type=int, default=2000, help="<y/> children sent inside it")
    g = p.add_argument_group("3 writer")
    g.add_argument("--room-name-bytes", type=int, default=1023, help="room localpart (1023: a 1,044-byte JID)")
    g.add_argument("--affiliation-jid-bytes", type=int, default=2047)
    g.add_argument("--join-limit-s", type=float, default=5.0, help="a fresh room's join must be answered within")
    g = p.add_argument_group("4 never-read")
    g.add_argument("--never-read-mib", type=int, default=64)
    g.add_argument("--rcvbuf", type=int, default=4096, help="SO_RCVBUF of the probe socket")
    g.add_argument("--never-read-stall", type=float, default=15.0,
                   help="stop sending when a send blocks this long")
    g.add_argument("--never-read-settle", type=float, default=5.0, help="seconds not reading after sending")
    g.add_argument("--never-read-drain", type=float, default=30.0, help="seconds of reading at the end")
    g = p.add_argument_group("5 attributes")
    g.add_argument("--header-attributes", type=int, default=35700)
    g.add_argument("--charrefs", type=int, default=50000)
    g.add_argument("--parse-limit-ms", type=float, default=100.0, help="max time to each answer")
    g = p.add_argument_group("6 slowloris")
    g.add_argument("--slowloris-connections", type=int, default=50)
    g.add_argument("--slowloris-interval", type=float, default=10.0)
    g.add_argument("--slowloris-seconds", type=float, default=90.0)
    g = p.add_argument_group("7 auth-throttle")
    g.add_argument("--auth-user", default=None, help="the account guessed at (default --user2)")
    g.add_argument("--auth-password", default=None, help="its real password (default --password2)")
    g.add_argument("--auth-workers", type=int, default=16)
    g.add_argument("--auth-seconds", type=float, default=20.0)
    g.add_argument("--auth-abandon-ms", type=float, default=500.0, help="guessers give up on slower answers")
    g.add_argument("--auth-rate-limit", type=float, default=5.0,
                   help="max guesses per second whose outcome the guesser learns")
    opts = p.parse_args(argv)
    opts.muc = opts.muc or "conference." + opts.domain
    if opts.user2 is None:
        local, _, domain = opts.user.partition("@")
        opts.user2 = "%s2@%s" % (local, domain or opts.domain)
    if opts.password2 is None:
        opts.password2 = opts.password
    return opts


def main(argv):
    opts = parse_args(argv)
    if opts.pinger_child:
        return pinger_child(opts)
    if opts.list:
        for number, name, function in PROBES:
            print("%2d %-15s %s" % (number, name, " ".join(function.__doc__.split()[1:])))
        return 0
    chosen = select_probes(opts.probe)
    out = sys.stderr if opts.json else sys.stdout
    pid = opts.pid or find_pid_by_port(opts.port)
    if pid is None:
        raise SystemExit("no --pid, and no process of ours listens on port %d" % opts.port)
    rss = RSSSampler(pid, opts.abort_rss_mib)
    if rss.read() is None:
        raise SystemExit("cannot read /proc/%d/status" % pid)
    rss.start()
    pinger = Pinger(opts, [a for a in argv if a != "--json"])
    pinger.start()
    # The probes yield the CPU to the pinger (started before) and to the node.
    if opts.nice:
        os.nice(opts.nice)
    pinger.ready.wait(60)
    if pinger.failure or not pinger.ready.is_set():
        pinger.stop()
        raise SystemExit("the measuring client could not log in: %s" % (pinger.failure or "timeout"))
    time.sleep(0.5)
    out.write("node pid %d on %s:%d, RSS %.1f MiB; limits: RSS growth %.0f MiB, ping %s %.0f ms\n"
              % (pid, opts.host, opts.port, rss.read()[0] / 1024.0, opts.rss_limit_mib, opts.ping_stat,
                 opts.ping_limit_ms))
    out.flush()
    results = []
    for number, name, function in chosen:
        result = run_one(Context(opts, rss), pinger, number, name, function)
        results.append(result)
        out.write(line_for(result) + "\n")
        for event in result["ping"].get("events", [])[:3]:
            out.write("    %s\n" % event)
        out.flush()
    pinger.stop()
    rss.stop_event.set()
    out.write("\n")
    table(results, out)
    failed = sum(1 for r in results if r["verdict"] != "PASS")
    out.write("\n%d of %d probes passed\n" % (len(results) - failed, len(results)))
    if opts.json:
        json.dump({"node_pid": pid, "host": opts.host, "port": opts.port,
                   "limits": {"rss_growth_mib": opts.rss_limit_mib, "ping_ms": opts.ping_limit_ms,
                              "ping_stat": opts.ping_stat},
                   "results": results}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
