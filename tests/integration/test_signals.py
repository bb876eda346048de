"""Process lifecycle: SIGHUP reload (good and broken files), SIGTERM drain,
SIGINT, and --check-config's file:line:column errors."""
import os
import re
import signal
import socket
import subprocess
import threading
import time
import unittest

import psycopg

from pgtest import VECGATE_BIN, PgCluster, Vecgate


class Lifecycle(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.add_app()
        cls.pg.psql("CREATE ROLE newbie LOGIN PASSWORD 'newbie-pw'")
        cls.pg.psql("GRANT CONNECT ON DATABASE app TO newbie")

    def proxy(self, **kw):
        vg = Vecgate(self.pg, **kw)
        self.addCleanup(vg.stop)
        return vg

    def wait_log(self, vg, text, timeout=5):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in vg.log():
                return
            time.sleep(0.05)
        self.fail("log never said %r:\n%s" % (text, vg.log()[-2000:]))

    def test_sighup_reload(self):
        vg = self.proxy()
        with self.assertRaises(psycopg.OperationalError):
            psycopg.connect(vg.dsn(user="newbie", password="newbie-pw"))
        held = psycopg.connect(vg.dsn(), autocommit=True)
        self.addCleanup(held.close)
        vg.cfg["auth"]["users"].append({"name": "newbie", "password": "newbie-pw"})
        vg.write_config()
        vg.proc.send_signal(signal.SIGHUP)
        self.wait_log(vg, "configuration reloaded")
        with psycopg.connect(vg.dsn(user="newbie", password="newbie-pw")) as c:
            self.assertEqual(c.execute("SELECT current_user").fetchone()[0], "newbie")
        # a broken file is reported with its position and the old config stays
        with open(vg.path, "a") as f:
            f.write("limits:\n  max_client_conn: lots\n")
        vg.proc.send_signal(signal.SIGHUP)
        self.wait_log(vg, "reload failed")
        self.assertRegex(vg.log(), r"vecgate\.yaml:\d+:\d+: max_client_conn must be an integer, got 'lots'")
        with psycopg.connect(vg.dsn(user="newbie", password="newbie-pw")) as c:
            self.assertEqual(c.execute("SELECT 1").fetchone()[0], 1)
        self.assertEqual(held.execute("SELECT 2").fetchone()[0], 2)
        self.assertIsNone(vg.proc.poll())

    def test_sigterm_drains(self):
        vg = self.proxy(databases=[{"name": "app", "pool_mode": "transaction", "pool_size": 2}])
        idle = psycopg.connect(vg.dsn(), autocommit=True)
        self.addCleanup(idle.close)
        result = {}

        def long_query():
            try:
                with psycopg.connect(vg.dsn(), autocommit=True) as c:
                    result["value"] = c.execute("SELECT pg_sleep(2)::text || 'done'").fetchone()[0]
            except Exception as e:
                result["error"] = repr(e)

        t = threading.Thread(target=long_query)
        t.start()
        time.sleep(0.5)
        vg.proc.send_signal(signal.SIGTERM)
        self.wait_log(vg, "SIGTERM: draining")
        # no new connections
        time.sleep(0.2)
        with self.assertRaises(OSError):
            socket.create_connection(("127.0.0.1", vg.port), timeout=1).close()
        t.join(10)
        self.assertEqual(result.get("value"), "done", result)
        self.assertEqual(vg.proc.wait(10), 0)
        # the idle client was told why it was disconnected
        with self.assertRaises(psycopg.OperationalError) as cm:
            idle.execute("SELECT 1")
        self.assertIn("shutting down", str(cm.exception))

    def test_sigint_stops_now(self):
        vg = self.proxy()
        c = psycopg.connect(vg.dsn(), autocommit=True)
        self.addCleanup(c.close)
        vg.proc.send_signal(signal.SIGINT)
        self.assertEqual(vg.proc.wait(5), 0)
        with self.assertRaises(psycopg.OperationalError):
            c.execute("SELECT 1")

    def test_unix_socket_listener(self):
        import tempfile
        sockdir = tempfile.mkdtemp(prefix="vg-sock-")
        port = __import__("pgtest").free_port()
        vg = self.proxy(port=port, extra={"listen": [{"host": "127.0.0.1", "port": port},
                                                     {"unix_socket_dir": sockdir, "port": port}]})
        self.assertTrue(os.path.exists(os.path.join(sockdir, ".s.PGSQL.%d" % port)))
        with psycopg.connect("host=%s port=%d user=app password=app-pw dbname=app" % (sockdir, port)) as c:
            self.assertEqual(c.execute("SELECT 7").fetchone()[0], 7)
        vg.stop()
        self.assertFalse(os.path.exists(os.path.join(sockdir, ".s.PGSQL.%d" % port)))
        os.rmdir(sockdir)

    def backends_of(self):
        return int(self.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' "
                                "AND backend_type = 'client backend'"))

    def test_idle_timeouts(self):
        vg = self.proxy(databases=[{"name": "app", "pool_mode": "transaction", "pool_size": 3}],
                        extra={"timeouts": {"server_idle": 1, "client_idle": 1.5}})
        conns = [psycopg.connect(vg.dsn(), autocommit=True) for _ in range(3)]
        try:
            # hold three servers at once so the pool grows to three
            for c in conns:
                c.execute("BEGIN")
                c.execute("SELECT 1")
            self.assertEqual(self.backends_of(), 3)
            for c in conns:
                c.execute("COMMIT")
            deadline = time.time() + 5
            while self.backends_of() > 0 and time.time() < deadline:
                time.sleep(0.2)
            self.assertEqual(self.backends_of(), 0, "idle servers were not closed after server_idle")
            # the clients themselves were idle for client_idle: disconnected with 08P01
            time.sleep(1)
            with self.assertRaises(psycopg.OperationalError) as cm:
                conns[0].execute("SELECT 1")
            self.assertIn("client_idle_timeout", str(cm.exception))
        finally:
            for c in conns:
                c.close()
        # and new clients are served by fresh servers
        with psycopg.connect(vg.dsn(), autocommit=True) as c:
            self.assertEqual(c.execute("SELECT 1").fetchone()[0], 1)

    def test_check_config(self):
        vg = self.proxy()
        r = subprocess.run([VECGATE_BIN, "--check-config", vg.path], capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        bad = os.path.join(vg.dir, "bad.yaml")
        with open(bad, "w") as f:
            f.write("backends:\n  primary: {host: h}\ndatabases:\n  - name: app\n    pool_mode: tx\n")
        r = subprocess.run([VECGATE_BIN, "--check-config", bad], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertEqual(r.stderr.strip(),
                         "%s:5:16: pool_mode must be one of 'session', 'transaction', got 'tx'" % bad)
        r = subprocess.run([VECGATE_BIN, "-c", bad], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertTrue(re.match(r".*bad\.yaml:5:16: ", r.stderr), r.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
