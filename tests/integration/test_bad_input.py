"""Malformed, oversized, slow and excessive clients: each gets a clear
ErrorResponse with the right SQLSTATE (or is closed), and a client that was
already connected keeps working throughout."""
import socket
import struct
import threading
import time
import unittest

import psycopg

from pgtest import (PgCluster, Vecgate, error_fields, is_closed, read_message, read_until_error_or_close,
                    startup_packet)


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.add_app()
        cls.vg = Vecgate(cls.pg, databases=[
            {"name": "app", "pool_mode": "transaction", "pool_size": 2},
            {"name": "tiny", "dbname": "app", "pool_mode": "transaction", "pool_size": 1},
        ], auth_type="trust", extra={
            "timeouts": {"client_login": 2, "query_wait": 1},
            "limits": {"max_client_conn": 30, "max_message_size": "64kB"},
            "pool": {"max_prepared_statements": 3},
        })
        # a client connected before any of the abuse, checked after each case
        cls.witness = psycopg.connect(cls.vg.dsn(), autocommit=True)

    @classmethod
    def tearDownClass(cls):
        cls.witness.close()
        cls.vg.stop()

    def tearDown(self):
        self.assertEqual(self.witness.execute("SELECT 41 + 1").fetchone()[0], 42)

    def connect_raw(self):
        s = socket.create_connection(("127.0.0.1", self.vg.port), timeout=5)
        self.addCleanup(s.close)
        return s

    def login_raw(self, db="app"):
        s = self.connect_raw()
        s.sendall(startup_packet({"user": "app", "database": db}))
        while True:
            typ, body = read_message(s)
            if typ == b"Z":
                return s
            self.assertNotEqual(typ, b"E", error_fields(body) if typ == b"E" else "")

    def test_http_garbage_before_startup(self):
        s = self.connect_raw()
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        err = read_until_error_or_close(s)
        self.assertEqual(err["C"], "08P01")
        self.assertIn("startup packet", err["M"])
        self.assertTrue(is_closed(s))

    def test_bad_startup_length(self):
        s = self.connect_raw()
        s.sendall(struct.pack("!I", 3) + b"\0\0\0\0")
        err = read_until_error_or_close(s)
        self.assertEqual(err["C"], "08P01")
        self.assertTrue(is_closed(s))

    def test_protocol_version_2(self):
        s = self.connect_raw()
        s.sendall(startup_packet({"user": "app"}, version=2 << 16))
        err = read_until_error_or_close(s)
        self.assertEqual(err["C"], "08P01")
        self.assertIn("unsupported frontend protocol 2.0", err["M"])

    def test_unknown_startup_parameter(self):
        s = self.connect_raw()
        s.sendall(startup_packet({"user": "app", "database": "app", "foo": "bar"}))
        err = read_until_error_or_close(s)
        self.assertEqual(err["C"], "08P01")
        self.assertIn("unsupported startup parameter: foo", err["M"])

    def test_startup_without_user(self):
        s = self.connect_raw()
        s.sendall(startup_packet({"database": "app"}))
        err = read_until_error_or_close(s)
        self.assertEqual(err["C"], "08P01")

    def test_unknown_database(self):
        s = self.connect_raw()
        s.sendall(startup_packet({"user": "app", "database": "nope"}))
        err = read_until_error_or_close(s)
        self.assertEqual((err["C"], err["M"]), ("3D000", "no such database: nope"))

    def test_gssenc_then_normal_startup(self):
        s = self.connect_raw()
        s.sendall(struct.pack("!II", 8, 80877104))
        self.assertEqual(s.recv(1), b"N")
        s.sendall(struct.pack("!II", 8, 80877103))  # SSLRequest: TLS is off here
        self.assertEqual(s.recv(1), b"N")
        s.sendall(startup_packet({"user": "app", "database": "app"}))
        types = []
        while True:
            typ, _ = read_message(s)
            types.append(typ)
            if typ == b"Z":
                break
        self.assertEqual(types[0], b"R")
        self.assertIn(b"K", types)

    def test_oversized_message(self):
        s = self.login_raw()
        sql = b"SELECT '" + b"x" * 70000 + b"'\0"
        s.sendall(b"Q" + struct.pack("!I", len(sql) + 4) + sql)
        err = read_until_error_or_close(s)
        self.assertEqual(err["C"], "08P01")
        self.assertIn("max_message_size", err["M"])
        self.assertTrue(is_closed(s))
        # a large message under the limit passes
        s2 = self.login_raw()
        sql = b"SELECT length('" + b"y" * 60000 + b"')\0"
        s2.sendall(b"Q" + struct.pack("!I", len(sql) + 4) + sql)
        rows = []
        while True:
            typ, body = read_message(s2)
            if typ == b"D":
                rows.append(body)
            if typ == b"Z":
                break
        self.assertEqual(len(rows), 1)
        self.assertTrue(rows[0].endswith(b"60000"))

    def test_bad_message_length_after_login(self):
        s = self.login_raw()
        s.sendall(b"Q\0\0\0\x02")
        err = read_until_error_or_close(s)
        self.assertEqual(err["C"], "08P01")
        self.assertTrue(is_closed(s))

    def test_unknown_message_type(self):
        # passed to the server, which answers as PostgreSQL does
        s = self.login_raw()
        s.sendall(b"y\0\0\0\x04")
        err = read_until_error_or_close(s)
        self.assertEqual(err["C"], "08P01")

    def test_duplicate_prepared_statement_name(self):
        # transaction pooling keeps named statements per client: re-using a
        # name without Close is 42P05, as on PostgreSQL, and the batch is skipped to Sync
        import struct

        def msg(t, body):
            return t + struct.pack("!I", len(body) + 4) + body
        parse = lambda name, sql: msg(b"P", name + b"\0" + sql + b"\0" + b"\0\0")
        bind = lambda name: msg(b"B", b"\0" + name + b"\0" + b"\0\0" + b"\0\0" + b"\0\0")
        execute, sync = msg(b"E", b"\0" + b"\0\0\0\0"), msg(b"S", b"")

        def until_ready(s):
            seen = []
            while True:
                typ, body = read_message(s)
                seen.append((typ, error_fields(body) if typ == b"E" else body))
                if typ == b"Z":
                    return seen
        s = self.login_raw()
        s.sendall(parse(b"s1", b"SELECT 1") + sync)
        self.assertEqual([t for t, _ in until_ready(s)], [b"1", b"Z"])
        s.sendall(parse(b"s1", b"SELECT 2") + bind(b"s1") + execute + sync)
        seen = until_ready(s)
        self.assertEqual([t for t, _ in seen], [b"E", b"Z"])
        self.assertEqual(seen[0][1]["C"], "42P05")
        self.assertIn('"s1" already exists', seen[0][1]["M"])
        # the first definition still stands
        s.sendall(bind(b"s1") + execute + sync)
        seen = until_ready(s)
        self.assertEqual([t for t, _ in seen], [b"2", b"D", b"C", b"Z"])
        self.assertEqual(seen[1][1][-1:], b"1")
        # after Close the name is free again
        s.sendall(msg(b"C", b"Ss1\0") + parse(b"s1", b"SELECT 3") + bind(b"s1") + execute + sync)
        seen = until_ready(s)
        self.assertEqual([t for t, _ in seen], [b"3", b"1", b"2", b"D", b"C", b"Z"])
        self.assertEqual(seen[3][1][-1:], b"3")

    def test_prepared_statement_cap(self):
        # one server (tiny), at most 3 statements prepared on it: the least
        # recently used is closed and prepared again when needed
        with psycopg.connect(self.vg.dsn(db="tiny"), autocommit=True, prepare_threshold=0) as c:
            for rnd in range(3):
                for i in range(8):
                    self.assertEqual(c.execute("SELECT %%s::int + %d" % i, (rnd,)).fetchone()[0], rnd + i)
            held = c.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0]
            self.assertLessEqual(held, 3)
            self.assertGreaterEqual(held, 1)

    def test_slowloris(self):
        socks = []
        for _ in range(5):
            s = self.connect_raw()
            s.sendall(startup_packet({"user": "app", "database": "app"})[:3])
            socks.append(s)
        t0 = time.time()
        # meanwhile normal clients are served
        with psycopg.connect(self.vg.dsn(), autocommit=True) as c:
            self.assertEqual(c.execute("SELECT 1").fetchone()[0], 1)
        for s in socks:
            self.assertTrue(is_closed(s, timeout=6))
        self.assertLess(time.time() - t0, 6)
        self.assertGreater(time.time() - t0, 1.5)

    def test_max_client_conn(self):
        conns = []
        try:
            # the witness is one client already; fill up to the limit of 30
            for _ in range(29):
                conns.append(psycopg.connect(self.vg.dsn(), autocommit=True))
            s = self.connect_raw()
            err = read_until_error_or_close(s)
            self.assertEqual(err["C"], "53300")
        finally:
            for c in conns:
                c.close()
        time.sleep(0.2)
        with psycopg.connect(self.vg.dsn(), autocommit=True) as c:
            self.assertEqual(c.execute("SELECT 1").fetchone()[0], 1)

    def test_query_wait_timeout(self):
        holder = psycopg.connect(self.vg.dsn(db="tiny"))
        holder.execute("SELECT 1")  # opens a transaction: holds the only server
        try:
            s = self.login_raw(db="tiny")
            q = b"SELECT 1\0"
            t0 = time.time()
            s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
            err = read_until_error_or_close(s)
            self.assertEqual((err["S"], err["C"], err["M"]), ("FATAL", "08P01", "query_wait_timeout"))
            self.assertGreater(time.time() - t0, 0.9)
            self.assertLess(time.time() - t0, 4)
            self.assertTrue(is_closed(s))
        finally:
            holder.rollback()
            holder.close()
        # once the server is free again, the pool serves normally
        with psycopg.connect(self.vg.dsn(db="tiny"), autocommit=True) as c:
            self.assertEqual(c.execute("SELECT 2").fetchone()[0], 2)

    def test_many_parallel_bad_clients(self):
        def abuse(i):
            try:
                s = socket.create_connection(("127.0.0.1", self.vg.port), timeout=5)
                s.sendall(bytes([(i * 37 + k) % 256 for k in range(200)]))
                s.settimeout(3)
                try:
                    while s.recv(4096):
                        pass
                except OSError:
                    pass
                s.close()
            except OSError:
                pass
        threads = [threading.Thread(target=abuse, args=(i,)) for i in range(20)]
        [t.start() for t in threads]
        [t.join(10) for t in threads]
        self.assertEqual(self.vg.proc.poll(), None)


if __name__ == "__main__":
    unittest.main(verbosity=2)
