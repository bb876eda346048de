"""One broken or hostile client never hurts another, and memory stays
bounded.  Against a real PostgreSQL 15 primary with a streaming replica and a
managed index (cube + GiST stand-in), through transaction pooling:

- a message type a client may not send is answered by vecgate (08P01, close)
  and never reaches a server, even on a one-server pool whose server just ran
  vecgate's own SET for that client; the next client on that server works;
- a client flooding while its routed vector read runs is paused, not buffered
  (vecgate's RSS is read from /proc);
- a 1 MB Query or Parse while a managed index is configured and no server is
  linked is answered (it used to hang);
- 150 distinct 400 kB named statements leave no more than the statement cache
  behind once the client leaves;
- SSLRequest/GSSENCRequest may be sent once each, not in a loop;
- a backend that skips SCRAM's server-final is not trusted (a fake server);
- refused connections are logged, at most LOG_LIMIT_PER_SECOND lines a second.
"""
import base64
import os
import random
import socket
import struct
import subprocess
import time
import unittest

import psycopg

from pgtest import (SUPERPW, LoopbackServer, PgCluster, Vecgate, _cleanups, cube_table, error_fields, eval_file,
                    is_closed, read_message, read_until_error_or_close, startup_packet)

VREAD = "SELECT pg_sleep(%s), id FROM items ORDER BY v <-> cube(array[0.5, 0.5, 0.5]) LIMIT 1"


def sanitized():
    """An ASan build keeps freed memory in quarantine: RSS says nothing there."""
    out = subprocess.run(["ldd", os.environ.get("VECGATE_BIN", "")], capture_output=True, text=True).stdout
    return "libasan" in out


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def msg(typ, body):
    return typ + struct.pack("!I", len(body) + 4) + body


def query(sql):
    return msg(b"Q", sql.encode() + b"\0")


def read_until_ready(s):
    """All messages up to ReadyForQuery: (types, rows, errors)."""
    types, rows, errors = [], [], []
    while True:
        typ, body = read_message(s)
        types.append(typ)
        if typ == b"D":
            rows.append(body)
        elif typ == b"E":
            errors.append(error_fields(body))
        elif typ == b"Z":
            return types, rows, errors


class Isolation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cube_table(cls.pg, "items", 2000, "items_v")
        cls.pg.psql("ANALYZE items")
        cls.replica = cls.pg.replica()
        rnd = random.Random(1)
        evalf = eval_file("(%f, %f, %f)" % (rnd.random(), rnd.random(), rnd.random()) for _ in range(5))
        cls.vg = Vecgate(cls.pg, auth_type="trust", users=[], databases=[
            {"name": "postgres", "pool_mode": "transaction", "pool_size": 3, "user": "postgres", "password": SUPERPW},
            {"name": "one", "dbname": "postgres", "pool_mode": "transaction", "pool_size": 1, "user": "postgres",
             "password": SUPERPW},
        ], extra={
            "backends": {
                "primary": {"host": "127.0.0.1", "port": cls.pg.port},
                "r1": {"host": "127.0.0.1", "port": cls.replica.port, "role": "replica", "max_lag_seconds": 60},
            },
            "health_check": {"user": "postgres", "password": SUPERPW, "interval": 0.2, "timeout": 2},
            "managed_indexes": [{"name": "items", "database": "postgres", "table": "public.items", "index": "items_v",
                                 "user": "postgres", "password": SUPERPW, "eval_file": evalf,
                                 "eval_query": "SELECT id FROM public.items ORDER BY v <-> $1::cube LIMIT $2",
                                 "route": "replica"}],
        })
        cls.witness = psycopg.connect(cls.vg.dsn(user="postgres", password=SUPERPW, db="postgres"), autocommit=True)
        # wait for the replica to be in rotation: routed reads need it
        deadline = time.time() + 20
        while time.time() < deadline:
            if cls.witness.execute(VREAD % 0).fetchone() is not None and cls.replica_served():
                break
            time.sleep(0.2)

    @classmethod
    def replica_served(cls):
        with psycopg.connect(cls.vg.dsn(user="postgres", password=SUPERPW, db="postgres"), autocommit=True) as c:
            return c.execute("SELECT pg_is_in_recovery() FROM items ORDER BY v <-> cube(array[0.1,0.1,0.1]) "
                             "LIMIT 1").fetchone()[0]

    @classmethod
    def tearDownClass(cls):
        cls.witness.close()
        cls.vg.stop()

    def tearDown(self):
        self.assertEqual(self.witness.execute("SELECT 41 + 1").fetchone()[0], 42)
        self.assertIsNone(self.vg.proc.poll())

    def login_raw(self, db="postgres", **params):
        s = socket.create_connection(("127.0.0.1", self.vg.port), timeout=10)
        self.addCleanup(s.close)
        p = {"user": "postgres", "database": db}
        p.update(params)
        s.sendall(startup_packet(p))
        while True:
            typ, body = read_message(s)
            self.assertNotEqual(typ, b"E", error_fields(body) if typ == b"E" else "")
            if typ == b"Z":
                return s

    def test_invalid_message_type_never_reaches_a_server(self):
        # pool "one" has a single server; each client's application_name makes
        # vecgate send a SET before the client's first statement
        s = self.login_raw(db="one", application_name="abuser")
        s.sendall(query("SELECT pg_backend_pid()"))
        _, rows, errors = read_until_ready(s)
        self.assertEqual(errors, [])
        pid = rows[0][6:]
        s.sendall(msg(b"y", b"") + query("SELECT 1"))
        err = read_until_error_or_close(s)
        self.assertEqual(err["C"], "08P01")
        self.assertIn("invalid frontend message type 121", err["M"])
        self.assertTrue(is_closed(s))
        # the one server is fine and serves the next client, with its own SET
        with psycopg.connect(self.vg.dsn(user="postgres", password=SUPERPW, db="one",
                                         application_name="victim"), autocommit=True) as c:
            for _ in range(20):
                got = c.execute("SELECT pg_backend_pid(), current_setting('application_name')").fetchone()
                self.assertEqual(got, (int(pid), "victim"))
        self.assertIn("refused postgres@", self.vg.log())

    def test_flood_during_routed_read_is_paused(self):
        s = self.login_raw()
        before = rss_kb(self.vg.proc.pid)
        s.sendall(query(VREAD % 2))
        s.setblocking(False)
        flood = query("SELECT 1") * 4096  # 61 kB of whole messages
        buf, sent, peak = b"", 0, before
        end = time.time() + 3
        while time.time() < end:
            if not buf:
                buf = flood
            try:
                n = s.send(buf)
                buf = buf[n:]  # a partial write continues where it stopped
                sent += n
            except BlockingIOError:
                time.sleep(0.01)
            peak = max(peak, rss_kb(self.vg.proc.pid))
        s.setblocking(True)
        s.close()
        # the kernel's socket buffers take some; vecgate keeps at most a window
        print("flood: %d bytes pushed, RSS +%d kB" % (sent, peak - before))
        if not sanitized():
            self.assertLess(peak - before, 16 * 1024, "RSS grew %d kB while %d bytes were pushed" % (peak - before, sent))
        time.sleep(2.5)  # the routed read ends; the pool is usable again

    def test_large_messages_with_a_managed_index(self):
        s = self.login_raw()
        big = "x" * (1 << 20)
        s.sendall(query("SELECT length('%s')" % big))
        s.settimeout(20)
        _, rows, errors = read_until_ready(s)
        self.assertEqual(errors, [])
        self.assertTrue(rows[0].endswith(b"1048576"))
        # a 1 MB named Parse (and Bind/Execute) in transaction mode
        text = ("SELECT length('%s')" % big).encode()
        s.sendall(msg(b"P", b"big\0" + text + b"\0\0\0") + msg(b"B", b"\0big\0\0\0\0\0\0\0")
                  + msg(b"E", b"\0\0\0\0\0") + msg(b"S", b""))
        types, rows, errors = read_until_ready(s)
        self.assertEqual(errors, [])
        self.assertTrue(rows[0].endswith(b"1048576"), types)
        # a 1 MB DDL-looking statement is inspected by its beginning only and runs
        with psycopg.connect(self.vg.dsn(user="postgres", password=SUPERPW, db="postgres"), autocommit=True) as c:
            self.assertEqual(c.execute("SELECT length(%s) /* index */", (big,)).fetchone()[0], 1 << 20)

    def test_statement_texts_do_not_outlive_their_clients(self):
        before = rss_kb(self.vg.proc.pid)
        s = self.login_raw()
        pad = "y" * (400 * 1024)
        for i in range(150):
            text = ("SELECT %d, '%s'::text" % (i, pad)).encode()
            s.sendall(msg(b"P", b"s%d\0" % i + text + b"\0\0\0") + msg(b"C", b"Ss%d\0" % i) + msg(b"S", b""))
            _, _, errors = read_until_ready(s)
            self.assertEqual(errors, [])
        during = rss_kb(self.vg.proc.pid)
        s.sendall(msg(b"X", b""))
        s.close()
        time.sleep(1)
        after = rss_kb(self.vg.proc.pid)
        # 60 MB of texts went through; the pool keeps at most pool.statement_cache (4 MB)
        print("150 x 400 kB statements: RSS before %d kB, during %d kB, after %d kB" % (before, during, after))
        if not sanitized():
            self.assertLess(after - before, 12 * 1024, "before %d kB, during %d kB, after %d kB" % (before, during, after))

    def test_negotiation_once(self):
        s = socket.create_connection(("127.0.0.1", self.vg.port), timeout=5)
        self.addCleanup(s.close)
        ssl_request = struct.pack("!II", 8, 80877103)
        s.sendall(ssl_request * 1000)  # replies never read
        self.assertEqual(s.recv(1), b"N")
        err = read_until_error_or_close(s)
        self.assertEqual(err["C"], "08P01")
        self.assertIn("duplicate SSLRequest", err["M"])
        self.assertTrue(is_closed(s))
        g = socket.create_connection(("127.0.0.1", self.vg.port), timeout=5)
        self.addCleanup(g.close)
        gss = struct.pack("!II", 8, 80877104)
        g.sendall(gss + gss)
        self.assertEqual(g.recv(1), b"N")
        err = read_until_error_or_close(g)
        self.assertEqual(err["C"], "08P01")
        self.assertTrue(is_closed(g))

    def test_refused_connections_are_logged_with_a_limit(self):
        for i in range(60):
            with socket.create_connection(("127.0.0.1", self.vg.port), timeout=5) as s:
                s.sendall(b"GET /%d HTTP/1.1\r\n\r\n" % i)
                read_until_error_or_close(s)
        time.sleep(1.1)  # the next line after the burst reports what was suppressed
        with socket.create_connection(("127.0.0.1", self.vg.port), timeout=5) as s:
            s.sendall(b"HELLO\r\n\r\n\r\n")
            read_until_error_or_close(s)
        log = self.vg.log()
        lines = [l for l in log.splitlines() if "refused ?@127.0.0.1" in l]
        self.assertGreater(len(lines), 5)
        self.assertLess(len(lines), 40)
        self.assertIn("similar lines suppressed", log)


class FakeScramServer(LoopbackServer):
    """Speaks just enough of a backend to start SCRAM and then claim success
    without the server-final message (a rogue or man-in-the-middle server)."""

    def __init__(self):
        super().__init__()
        self.logins = 0

    def handle(self, c):
        try:
            self.serve(c)
        except (OSError, EOFError):
            pass
        finally:
            c.close()

    def serve(self, c):
        from pgtest import recv_exact
        n = struct.unpack("!I", recv_exact(c, 4))[0]
        recv_exact(c, n - 4)
        c.sendall(msg(b"R", struct.pack("!I", 10) + b"SCRAM-SHA-256\0\0"))
        typ, body = read_message(c)  # SASLInitialResponse
        first = body[body.index(b"\0") + 5:].decode()
        nonce = dict(kv.split("=", 1) for kv in first.split(",")[2:])["r"]
        server_first = "r=%sFAKE,s=%s,i=4096" % (nonce, base64.b64encode(b"saltsaltsalt").decode())
        c.sendall(msg(b"R", struct.pack("!I", 11) + server_first.encode()))
        read_message(c)  # SASLResponse with the proof, not checked
        self.logins += 1
        # AuthenticationOk without AuthenticationSASLFinal
        c.sendall(msg(b"R", struct.pack("!I", 0)) + msg(b"K", struct.pack("!II", 1, 2)) + msg(b"Z", b"I"))
        c.settimeout(5)
        while c.recv(4096):
            pass


class RogueBackend(unittest.TestCase):
    def test_scram_server_final_is_required(self):
        fake = FakeScramServer()
        fake.start()
        _cleanups.append(fake.sock.close)
        pg = PgCluster()  # only for the harness's defaults; the backend below is the fake
        vg = Vecgate(pg, auth_type="trust", users=[], databases=[
            {"name": "app", "pool_mode": "transaction", "pool_size": 1, "user": "app", "password": "secret"}],
            extra={"backends": {"primary": {"host": "127.0.0.1", "port": fake.port}},
                   "timeouts": {"query_wait": 3}})
        try:
            with self.assertRaises(psycopg.OperationalError):
                with psycopg.connect(vg.dsn(user="app", password="x", db="app"), connect_timeout=10) as c:
                    c.execute("SELECT 1")
            self.assertGreaterEqual(fake.logins, 1)
            self.assertIn("AuthenticationOk before completing SCRAM", vg.log())
        finally:
            vg.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
