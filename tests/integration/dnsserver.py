"""A DNS responder for tests: UDP on 127.0.0.1, a free port, answers from a
table the test changes while it runs.

Debian's python3 has no dnspython, and the part of the wire format a
resolver's A and AAAA questions need is small, so it is written out here
(RFC 1035 section 4): a 12-byte header, the question echoed back as it came
(a resolver may mix the case of the name and check it comes back the same),
then one answer record per address, named by a pointer to the question.

    dns = DnsServer()                       # stopped at exit
    dns.set("db.vg.test", ["127.0.0.1"])    # TTL 1 s unless ttl= says otherwise
    dns.set("db.vg.test", ["127.0.0.2"])    # answers change at once
    dns.delay = 0.3                         # every answer 300 ms late (none blocks another)
    dns.nxdomain("gone.vg.test")            # names not in the table are NXDOMAIN anyway
    dns.count("db.vg.test")                 # A questions asked for that name so far
    dns.asked_at("db.vg.test")              # time.monotonic() of each of them
    "127.0.0.1:%d" % dns.port               # for vecgate's dns.nameservers

A name with IPv4 addresses only answers AAAA questions with no record
(NOERROR, an empty answer), as a real zone does.  DnsServer(host=, port=53)
binds elsewhere (a resolv.conf nameserver line takes no port; binding 53
needs root).
"""
import collections
import socket
import struct
import threading
import time

from pgtest import _cleanups

TYPE_A, TYPE_AAAA, CLASS_IN = 1, 28, 1
RCODE_OK, RCODE_FORMERR, RCODE_NXDOMAIN = 0, 1, 3


def parse_question(packet):
    """(id, flags, name, qtype, the question's bytes) of a query; ValueError if malformed."""
    if len(packet) < 12:
        raise ValueError("short header")
    qid, flags, qdcount = struct.unpack("!HHH", packet[:6])
    if qdcount != 1:
        raise ValueError("%d questions" % qdcount)
    i, labels = 12, []
    while True:
        if i >= len(packet):
            raise ValueError("name runs past the packet")
        n = packet[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0:
            raise ValueError("compressed name in a question")
        labels.append(packet[i:i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(packet):
        raise ValueError("no type and class")
    qtype, _qclass = struct.unpack("!HH", packet[i:i + 4])
    return qid, flags, ".".join(labels), qtype, packet[12:i + 4]


def build_response(qid, qflags, question, rcode, records=()):
    """A response to a query: `records` are (type, ttl, rdata) answers."""
    flags = 0x8000 | (qflags & 0x7900) | 0x0400 | 0x0080 | rcode  # QR, opcode+RD echoed, AA, RA
    out = struct.pack("!HHHHHH", qid, flags, 1, len(records), 0, 0) + question
    for rtype, ttl, rdata in records:
        out += struct.pack("!HHHIH", 0xC00C, rtype, CLASS_IN, ttl, len(rdata)) + rdata
    return out


class DnsServer:
    def __init__(self, ttl=1, delay=0.0, host="127.0.0.1", port=0):
        self.ttl = ttl
        self.delay = delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.host, self.port = self.sock.getsockname()
        self._lock = threading.Lock()
        self._names = {}  # lower-case name -> (addresses, ttl); absent = NXDOMAIN
        self._counts = collections.Counter()  # (name, "A"/"AAAA") -> questions
        self._asked = collections.defaultdict(list)  # name -> time.monotonic() of each A question
        self._stopped = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        _cleanups.append(self.stop)

    @property
    def address(self):
        return "%s:%d" % (self.host, self.port)

    def set(self, name, addresses, ttl=None):
        with self._lock:
            self._names[name.lower()] = (list(addresses), self.ttl if ttl is None else ttl)

    def nxdomain(self, name):
        with self._lock:
            self._names.pop(name.lower(), None)

    def count(self, name, qtype="A"):
        with self._lock:
            return self._counts[(name.lower(), qtype)]

    def last_asked(self, name):
        """time.monotonic() of the last A question for `name`, or None."""
        with self._lock:
            times = self._asked.get(name.lower())
            return times[-1] if times else None

    def asked_at(self, name):
        """time.monotonic() of every A question for `name` so far."""
        with self._lock:
            return list(self._asked.get(name.lower(), ()))

    def stop(self):
        if not self._stopped:
            self._stopped = True
            self.sock.close()

    def answer(self, packet):
        """The response to one query (what the serving thread sends)."""
        try:
            qid, qflags, name, qtype, question = parse_question(packet)
        except ValueError:
            qid = struct.unpack("!H", packet[:2])[0] if len(packet) >= 2 else 0
            return struct.pack("!HHHHHH", qid, 0x8000 | RCODE_FORMERR, 0, 0, 0, 0)
        key = name.lower()
        kind = {TYPE_A: "A", TYPE_AAAA: "AAAA"}.get(qtype, str(qtype))
        with self._lock:
            self._counts[(key, kind)] += 1
            if kind == "A":
                self._asked[key].append(time.monotonic())
            entry = self._names.get(key)
        if entry is None:
            return build_response(qid, qflags, question, RCODE_NXDOMAIN)
        addresses, ttl = entry
        records = []
        for a in addresses:
            family = socket.AF_INET6 if ":" in a else socket.AF_INET
            if (family == socket.AF_INET and qtype == TYPE_A) or (family == socket.AF_INET6 and qtype == TYPE_AAAA):
                records.append((qtype, ttl, socket.inet_pton(family, a)))
        return build_response(qid, qflags, question, RCODE_OK, records)

    def _send(self, response, peer):
        try:
            self.sock.sendto(response, peer)
        except OSError:
            pass  # stopped meanwhile

    def _serve(self):
        while not self._stopped:
            try:
                packet, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            response = self.answer(packet)
            delay = self.delay
            if delay > 0:
                # each late answer on its own timer: a slow name never holds up another
                t = threading.Timer(delay, self._send, (response, peer))
                t.daemon = True
                t.start()
            else:
                self._send(response, peer)
