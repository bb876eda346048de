"""Backend faults: vecgate serves again the moment PostgreSQL does, never
storms it with logins, and tells clients at once only what will not heal.

Real PostgreSQL 15 behind vecgate (transaction pooling).  Clients that were
idle before the fault and clients that connect during it must see no error
across a fast restart and across an immediate stop followed by a start
(they wait, within timeouts.query_wait); with max_connections below the
pool, the backend's "too many clients" refusals stay a handful a second
while every client is served by the connections PostgreSQL does give; a
wrong backend password reaches the client at once.  Recovery times are
printed, not asserted.
"""
import re
import threading
import time
import unittest

import psycopg

from pgtest import SUPERPW, PgCluster, Vecgate


def pg_accepts(pg):
    try:
        with psycopg.connect(host="127.0.0.1", port=pg.port, user="postgres", password=SUPERPW, dbname="postgres",
                             connect_timeout=1) as c:
            c.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


class Faults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.add_app()
        cls.vg = Vecgate(cls.pg, databases=[{"name": "app", "pool_mode": "transaction", "pool_size": 4}],
                         extra={"timeouts": {"query_wait": 20, "server_login_retry": 1}})

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def clients_across(self, fault):
        """Idle clients (connected before) and new clients (every 0.1 s)
        through a fault; returns (errors, seconds from PostgreSQL accepting
        again to the first success of a fresh client)."""
        idle = [psycopg.connect(self.vg.dsn(), autocommit=True) for _ in range(4)]
        for c in idle:
            self.assertEqual(c.execute("SELECT 1").fetchone()[0], 1)
        errors, stop = [], threading.Event()
        first_ok_after = []
        fault_at = [float("inf")]

        def newcomers():
            while not stop.is_set():
                t0 = time.time()
                try:
                    with psycopg.connect(self.vg.dsn(), autocommit=True, connect_timeout=30) as c:
                        c.execute("SELECT 1")
                    first_ok_after.append(time.time())
                except psycopg.Error as e:
                    # a query already running when the fault hit gets the server's
                    # error, as it should; clients arriving later must not
                    if t0 >= fault_at[0]:
                        errors.append("new client: %s" % e)
                time.sleep(max(0, 0.1 - (time.time() - t0)))

        t = threading.Thread(target=newcomers)
        t.start()
        time.sleep(0.3)
        fault_at[0] = time.time() + 0.05  # a new client's whole round trip takes less than this here
        fault()
        while not pg_accepts(self.pg):
            time.sleep(0.02)
        back = time.time()
        for c in idle:
            try:
                self.assertEqual(c.execute("SELECT 2").fetchone()[0], 2)
            except psycopg.Error as e:
                errors.append("idle client: %s" % e)
        time.sleep(1.5)
        stop.set()
        t.join(60)
        for c in idle:
            c.close()
        later = [x for x in first_ok_after if x >= back]
        return errors, (later[0] - back) if later else None

    def test_fast_restart(self):
        errors, recovery = self.clients_across(lambda: self.pg.pg_ctl("restart", "-m", "fast"))
        print("fast restart: recovery %.3f s after PostgreSQL accepted again" % recovery)
        self.assertEqual(errors, [])
        self.assertIsNotNone(recovery)

    def test_immediate_stop_then_start(self):
        def fault():
            self.pg.pg_ctl("stop", "-m", "immediate")
            time.sleep(2)
            self.pg.pg_ctl("start")
        errors, recovery = self.clients_across(fault)
        print("immediate stop + start: recovery %.3f s" % recovery)
        self.assertEqual(errors, [])
        self.assertIsNotNone(recovery)
        self.assertIn("logins work again after", self.vg.log())


class NoLoginStorm(unittest.TestCase):
    def test_too_many_clients(self):
        pg = PgCluster(extra_conf="max_connections=6\nsuperuser_reserved_connections=2\nlog_connections=on")
        pg.add_app()
        hog = [psycopg.connect(host="127.0.0.1", port=pg.port, user="app", password="app-pw", dbname="app")
               for _ in range(2)]  # leaves 2 slots for vecgate's pool of 10
        vg = Vecgate(pg, databases=[{"name": "app", "pool_mode": "transaction", "pool_size": 10}],
                     extra={"timeouts": {"query_wait": 30}})
        try:
            done, errors = [], []

            def worker():
                try:
                    with psycopg.connect(vg.dsn(), autocommit=True) as c:
                        for _ in range(40):
                            c.execute("SELECT pg_sleep(0.02)")
                    done.append(1)
                except psycopg.Error as e:
                    errors.append(str(e))

            t0 = time.time()
            threads = [threading.Thread(target=worker) for _ in range(8)]
            [t.start() for t in threads]
            [t.join(120) for t in threads]
            elapsed = time.time() - t0
            self.assertEqual(errors, [])
            self.assertEqual(len(done), 8)
            with open(pg.dir + "/log", errors="replace") as f:
                refused = len(re.findall(r"sorry, too many clients already|remaining connection slots are reserved",
                                         f.read()))
            print("max_connections below the pool: %d refused logins in %.1f s (%.1f/s)"
                  % (refused, elapsed, refused / elapsed))
            # without backoff every queued client relaunched a login at once: hundreds a second
            self.assertLess(refused / elapsed, 8)
        finally:
            for c in hog:
                c.close()
            vg.stop()


class PermanentRefusal(unittest.TestCase):
    def test_wrong_backend_password_is_told_at_once(self):
        pg = PgCluster()
        pg.add_app()
        vg = Vecgate(pg, auth_type="trust", users=[], databases=[
            {"name": "app", "pool_mode": "transaction", "pool_size": 2, "user": "app", "password": "wrong"}],
            extra={"timeouts": {"query_wait": 30}})
        try:
            for _ in range(2):
                t0 = time.time()
                with self.assertRaises(psycopg.OperationalError) as cm:
                    with psycopg.connect(vg.dsn(user="app", password="x"), connect_timeout=20) as c:
                        c.execute("SELECT 1")
                self.assertIn("password authentication failed", str(cm.exception))
                self.assertLess(time.time() - t0, 10)  # not held for query_wait (30 s)
        finally:
            vg.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
