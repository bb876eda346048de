"""Real clients through vecgate in session and transaction pooling:
psql, pgbench (simple/extended/prepared), psycopg 3 (incl. pipeline mode and
server-side prepared statements), asyncpg prepared statements, COPY both ways,
cancel, session variables following a client, and server hygiene."""
import asyncio
import hashlib
import re
import threading
import time
import unittest

import asyncpg
import psycopg

from pgtest import PgCluster, Vecgate, run


class Pooling(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.add_app()
        r = run(["pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", str(cls.pg.port), "-U", "app", "app"],
                env={"PGPASSWORD": "app-pw"})
        assert r.returncode == 0, r.stderr
        cls.vg = Vecgate(cls.pg, databases=[
            {"name": "app", "pool_mode": "transaction", "pool_size": 2},
            {"name": "sess", "dbname": "app", "pool_mode": "session", "pool_size": 4},
            {"name": "solo", "dbname": "app", "pool_mode": "transaction", "pool_size": 1},
            {"name": "*", "pool_mode": "session", "pool_size": 2},
        ])

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def tearDown(self):
        failed = any(err for _, err in getattr(self._outcome, "errors", []) if err) if hasattr(self, "_outcome") else False
        if failed:
            print("\n--- vecgate log (tail) ---\n" + "\n".join(self.vg.log().splitlines()[-80:]))

    def psql(self, sql, db="app"):
        return run(["psql", "-XAtq", "-h", "127.0.0.1", "-p", str(self.vg.port), "-U", "app", "-d", db, "-c", sql],
                   env={"PGPASSWORD": "app-pw"})

    def test_psql(self):
        r = self.psql("SELECT current_user, current_database(), 6*7")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "app|app|42")
        # the backend really is PostgreSQL 15 behind the proxy
        r = self.psql("SHOW server_version_num", db="sess")
        self.assertTrue(r.stdout.startswith("15"), r.stdout)

    def pgbench(self, db, mode, extra):
        args = ["pgbench", "-n", "-M", mode, "-h", "127.0.0.1", "-p", str(self.vg.port), "-U", "app"] + extra + [db]
        r = run(args, env={"PGPASSWORD": "app-pw"}, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("number of failed transactions: 0", r.stdout)
        return int(re.search(r"number of transactions actually processed: (\d+)", r.stdout).group(1))

    def test_pgbench_transaction_mode(self):
        # 8 clients share 2 server connections
        for mode in ("simple", "extended"):
            self.assertEqual(self.pgbench("app", mode, ["-c", "8", "-j", "2", "-t", "100"]), 800)
        # pgbench -M prepared prepares synchronously per thread; with fewer
        # threads than clients the TPC-B script deadlocks in any transaction
        # pooler smaller than the client count, so: select-only here ...
        self.assertEqual(self.pgbench("app", "prepared", ["-S", "-c", "8", "-j", "2", "-t", "200"]), 1600)
        # ... and TPC-B with one thread per client
        self.assertEqual(self.pgbench("app", "prepared", ["-c", "4", "-j", "4", "-t", "100"]), 400)

    def test_pgbench_session_mode(self):
        for mode in ("simple", "extended", "prepared"):
            self.assertEqual(self.pgbench("sess", mode, ["-c", "4", "-j", "2", "-t", "100"]), 400)

    def test_psycopg_transaction_mode(self):
        with psycopg.connect(self.vg.dsn(), prepare_threshold=0) as c:
            self.assertEqual(c.execute("SELECT %s::int + %s::int", (2, 3)).fetchone()[0], 5)
            c.execute("DROP TABLE IF EXISTS ps_t")
            c.execute("CREATE TABLE ps_t(a int, b text)")
            c.commit()
            with c.cursor() as cur:
                cur.executemany("INSERT INTO ps_t VALUES (%s, %s)", [(i, "v%d" % i) for i in range(200)])
            c.commit()
            self.assertEqual(c.execute("SELECT count(*), sum(a) FROM ps_t").fetchone(), (200, 19900))
            # pipeline mode: many statements in flight, results in order
            with c.pipeline():
                curs = [c.execute("SELECT %s::text || '-' || %s::text", (i, i * i)) for i in range(50)]
            self.assertEqual([x.fetchone()[0] for x in curs], ["%d-%d" % (i, i * i) for i in range(50)])
            c.commit()

        # server-side prepared statements from 8 connections over 2 servers
        errors = []

        def worker(n):
            try:
                with psycopg.connect(self.vg.dsn(), prepare_threshold=0, autocommit=True) as c:
                    for i in range(30):
                        got = c.execute("SELECT %s::int * 10 + %s::int", (i, n)).fetchone()[0]
                        if got != i * 10 + n:
                            errors.append((n, i, got))
                        got = c.execute("SELECT count(*) FROM ps_t WHERE a < %s", (i,)).fetchone()[0]
                        if got != i:
                            errors.append((n, i, got))
            except Exception as e:
                errors.append(repr(e))

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        [t.start() for t in threads]
        [t.join(60) for t in threads]
        self.assertEqual(errors, [])

    def test_asyncpg_prepared(self):
        async def worker(n):
            conn = await asyncpg.connect(host="127.0.0.1", port=self.vg.port, user="app", password="app-pw",
                                         database="app")
            st = await conn.prepare("SELECT $1::int * 2 + $2::int")
            out = []
            for i in range(25):
                out.append(await st.fetchval(i, n))
                async with conn.transaction():
                    out.append(await conn.fetchval("SELECT $1::int + 1000", i))  # statement cache
            await conn.close()
            return out

        async def main():
            return await asyncio.gather(*[worker(n) for n in range(10)])

        results = asyncio.run(main())
        for n, out in enumerate(results):
            self.assertEqual(out[0::2], [i * 2 + n for i in range(25)])
            self.assertEqual(out[1::2], [i + 1000 for i in range(25)])

    def test_copy_roundtrip_100k(self):
        data = "".join("%d\trow %d with tab\\t and unicode \u00e9\n" % (i, i) for i in range(100000)).encode()
        with psycopg.connect(self.vg.dsn()) as c:
            c.execute("DROP TABLE IF EXISTS copy_t")
            c.execute("CREATE TABLE copy_t(id int, t text)")
            with c.cursor().copy("COPY copy_t FROM STDIN") as cp:
                for off in range(0, len(data), 65536):
                    cp.write(data[off:off + 65536])
            c.commit()
            out = bytearray()
            with c.cursor().copy("COPY copy_t TO STDOUT") as cp:
                for chunk in cp:
                    out += chunk
        self.assertEqual(len(out), len(data))
        self.assertEqual(hashlib.sha256(out).hexdigest(), hashlib.sha256(data).hexdigest())

    def test_cancel(self):
        for db in ("app", "sess"):
            with psycopg.connect(self.vg.dsn(db=db), autocommit=True) as c:
                threading.Timer(0.5, c.cancel).start()
                t0 = time.time()
                with self.assertRaises(psycopg.errors.QueryCanceled) as cm:
                    c.execute("SELECT pg_sleep(20)")
                self.assertEqual(cm.exception.sqlstate, "57014")
                self.assertLess(time.time() - t0, 5)
                # the connection is usable afterwards
                self.assertEqual(c.execute("SELECT 1").fetchone()[0], 1)

    def test_session_variables_follow_client(self):
        # two clients with different settings alternate over one server
        a = psycopg.connect(self.vg.dsn(db="solo", application_name="alpha", options=""), autocommit=True)
        b = psycopg.connect(self.vg.dsn(db="solo", application_name="beta"), autocommit=True)
        try:
            for _ in range(3):
                self.assertEqual(a.execute("SELECT current_setting('application_name')").fetchone()[0], "alpha")
                self.assertEqual(b.execute("SELECT current_setting('application_name')").fetchone()[0], "beta")
        finally:
            a.close()
            b.close()

    def test_disconnect_mid_transaction(self):
        self.pg.psql("CREATE TABLE IF NOT EXISTS dirty_t(a int)", db="app", user="app", password="app-pw")
        c = psycopg.connect(self.vg.dsn(db="solo"))
        c.execute("INSERT INTO dirty_t VALUES (1)")
        pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        c.pgconn.finish()  # drop the socket inside the transaction
        with psycopg.connect(self.vg.dsn(db="solo"), autocommit=True) as d:
            # same single server connection, and no transaction left on it
            self.assertEqual(d.execute("SELECT pg_backend_pid()").fetchone()[0], pid)
            self.assertEqual(d.execute("SELECT count(*) FROM dirty_t").fetchone()[0], 0)
            self.assertEqual(d.execute("SELECT now() = statement_timestamp()").fetchone()[0], True)

    def test_session_reset_between_clients(self):
        with psycopg.connect(self.vg.dsn(db="sess"), autocommit=True) as c:
            c.execute("SET work_mem = '7MB'")
            c.execute("PREPARE leftover AS SELECT 1")
            pid = c.execute("SELECT pg_backend_pid()").fetchone()[0]
        seen_reset = False
        for _ in range(4):
            with psycopg.connect(self.vg.dsn(db="sess"), autocommit=True) as d:
                if d.execute("SELECT pg_backend_pid()").fetchone()[0] == pid:
                    self.assertNotEqual(d.execute("SHOW work_mem").fetchone()[0], "7MB")
                    self.assertEqual(d.execute("SELECT count(*) FROM pg_prepared_statements").fetchone()[0], 0)
                    seen_reset = True
        self.assertTrue(seen_reset, "the reused server was never handed out again")

    def test_notice_and_notify(self):
        with psycopg.connect(self.vg.dsn(db="sess"), autocommit=True) as c:
            notices = []
            c.add_notice_handler(lambda d: notices.append(d.message_primary))
            c.execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; END $$")
            self.assertEqual(notices, ["hello 42"])
            got = []
            c.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
            c.execute("LISTEN chan")
            with psycopg.connect(self.vg.dsn(db="sess"), autocommit=True) as other:
                other.execute("NOTIFY chan, 'payload-1'")
            deadline = time.time() + 5
            while not got and time.time() < deadline:
                c.execute("SELECT 1")  # notifications arrive with the next result
                time.sleep(0.05)
            self.assertEqual(got, [("chan", "payload-1")])

    def test_wildcard_database_and_backend_errors(self):
        r = self.psql("SELECT current_database()", db="postgres")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "postgres")
        # the backend's own error (and SQLSTATE) reaches the client
        async def connect():
            return await asyncpg.connect(host="127.0.0.1", port=self.vg.port, user="app", password="app-pw",
                                         database="no_such_db")
        with self.assertRaises(asyncpg.exceptions.InvalidCatalogNameError) as cm:
            asyncio.run(connect())
        self.assertEqual(cm.exception.sqlstate, "3D000")
        self.assertIn('database "no_such_db" does not exist', str(cm.exception))


if __name__ == "__main__":
    unittest.main(verbosity=2)
