"""Nothing is written to a read-only server, and replica routing follows a
promotion, on real PostgreSQL 15 servers (no mocks):

(a) vecgate's primary backend is a hot standby: a client's write waits and
    gets vecgate's clear error once timeouts.query_wait has passed; the
    standby's own log shows that no statement reached it; pgbench started
    while it is still a standby (its first login waiting) runs without a
    failure once `pg_ctl promote` made it writable, without restarting
    vecgate.
(b) a pooled primary: a client's own read-only transaction (25006) leaves
    the pool alone; a reload to default_transaction_read_only = on hands the
    one write that raced it the server's 25006 unchanged, closes the idle
    server connections, lets a transaction begun before finish, and holds
    later writes (no error) until a reload makes it writable again; a restart
    as a read-only server gives the client mid-transaction the server's own
    error and the idle client's next write waits for the writable restart,
    while no write reaches the read-only server.
(c) a replica taking vector reads is promoted: reads leave it for the
    primary within about a health check, the admin API and /metrics show it
    promoted, one log line says so; rebuilt as a replica it takes reads again.
(e) a server that logs in as PostgreSQL 13 and older do (neither parameter
    reported): the standby of (a) behind a relay that removes the two
    ParameterStatus messages from each login; a second vecgate asks with its
    role check query and refuses the standby all the same, then takes it once
    promoted.
"""
import os
import re
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import psycopg

from pgtest import (PGBIN, SUPERPW, LoopbackServer, PgCluster, Vecgate, _cleanups, admin_get, cube_table,
                    eval_file, free_port, read_message, wait_for)

TOKEN = "readonly-token-0123456789"
# what PostgreSQL logs when a write reaches a read-only session
RO_ERROR = "in a read-only transaction"
QUERY_WAIT = 3


def app_table(cluster):
    cluster.add_app()
    cluster.psql("CREATE TABLE t (id bigserial PRIMARY KEY, src text NOT NULL)", db="app")
    cluster.psql("ALTER TABLE t OWNER TO app", db="app")


def start_vecgate(cluster, admin, pool_size=3, **extra):
    return Vecgate(cluster, databases=[{"name": "app", "pool_mode": "transaction", "pool_size": pool_size}],
                   extra=dict({"timeouts": {"query_wait": QUERY_WAIT, "server_login_retry": 0.2},
                               "admin": {"port": admin, "token": TOKEN}}, **extra))


def backend(admin, name):
    return next(b for b in admin_get(admin, TOKEN, "/v1/backends")["backends"] if b["name"] == name)


def metric(admin, name, **labels):
    """The value of one /metrics sample (None when absent)."""
    text = admin_get(admin, TOKEN, "/metrics", raw=True)
    want = ",".join('%s="%s"' % kv for kv in labels.items())
    m = re.search(r"^%s%s (\S+)$" % (re.escape(name), re.escape("{%s}" % want) if want else ""), text, re.M)
    return float(m.group(1)) if m else None


class Writer(threading.Thread):
    """One write on its own thread: its outcome and how long it took."""

    def __init__(self, conn, src):
        super().__init__(daemon=True)
        self.conn, self.src = conn, src
        self.error, self.elapsed = None, None
        self.start()

    def run(self):
        t0 = time.time()
        try:
            self.conn.execute("INSERT INTO t (src) VALUES (%s)", (self.src,))
        except Exception as e:  # recorded for the test to judge
            self.error = e
        self.elapsed = time.time() - t0


class OldLoginRelay(LoopbackServer):
    """A TCP relay to a real server that removes in_hot_standby and
    default_transaction_read_only from each login's ParameterStatus, as a
    PostgreSQL 13 server logs in, and counts the statements that ask
    pg_is_in_recovery() (vecgate's role check)."""

    HIDDEN = (b"in_hot_standby\0", b"default_transaction_read_only\0")

    def __init__(self, upstream_port):
        super().__init__()
        self.upstream = upstream_port
        self.role_checks = 0
        self.start()

    def handle(self, c):
        try:
            u = socket.create_connection(("127.0.0.1", self.upstream))
        except OSError:
            c.close()
            return
        threading.Thread(target=self.to_server, args=(c, u), daemon=True).start()
        threading.Thread(target=self.to_client, args=(u, c), daemon=True).start()

    def to_server(self, c, u):
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                self.role_checks += data.count(b"pg_is_in_recovery()")
                u.sendall(data)
        except OSError:
            pass
        for s in (c, u):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def to_client(self, u, c):
        try:
            logged_in = False
            while not logged_in:  # the login: message by message
                typ, body = read_message(u)
                logged_in = typ == b"Z"
                if typ == b"S" and body.startswith(self.HIDDEN):
                    continue
                c.sendall(typ + struct.pack("!I", len(body) + 4) + body)
            while True:
                data = u.recv(65536)
                if not data:
                    break
                c.sendall(data)
        except (OSError, EOFError):
            pass
        for s in (c, u):
            try:
                s.close()
            except OSError:
                pass


class StandbyAsPrimary(unittest.TestCase):
    """(a), (d) and (e): the primary backend is a hot standby until promoted;
    a second vecgate reaches it through OldLoginRelay."""

    @classmethod
    def setUpClass(cls):
        cls.origin = PgCluster()
        app_table(cls.origin)
        cls.standby = cls.origin.replica()
        cls.admin = free_port()
        cls.vg = start_vecgate(cls.standby, cls.admin)
        cls.relay = OldLoginRelay(cls.standby.port)
        cls.old_admin = free_port()
        cls.old_vg = start_vecgate(cls.standby, cls.old_admin, backends={
            "primary": {"host": "127.0.0.1", "port": cls.relay.port}})

    def test_a_old_style_login(self):
        """(e) No parameter at login: the role check query finds the standby."""
        with self.assertRaises(psycopg.OperationalError) as cm:
            with psycopg.connect(self.old_vg.dsn(), autocommit=True) as c:
                c.execute("INSERT INTO t (src) VALUES ('old-standby')")
        self.assertIn("is read-only (a hot standby, in recovery)", str(cm.exception))
        self.assertGreaterEqual(self.relay.role_checks, 1)
        self.assertEqual(backend(self.old_admin, "primary")["current_role"], "standby")
        self.assertNotIn(RO_ERROR, self.standby.server_log())

    def test_standby_then_promoted(self):
        # a write waits out query_wait, then gets vecgate's clear error
        t0 = time.time()
        with self.assertRaises(psycopg.OperationalError) as cm:
            with psycopg.connect(self.vg.dsn(), autocommit=True) as c:
                c.execute("INSERT INTO t (src) VALUES ('psycopg')")
        elapsed = time.time() - t0
        self.assertGreaterEqual(elapsed, QUERY_WAIT - 0.3)
        self.assertLess(elapsed, QUERY_WAIT + 2.5)
        msg = str(cm.exception)
        self.assertIn("is read-only (a hot standby, in recovery)", msg)
        self.assertIn("timeouts.query_wait", msg)
        b = backend(self.admin, "primary")
        self.assertEqual(b["current_role"], "standby")
        self.assertGreaterEqual(b["readonly_refused"], 1)
        self.assertGreater(b["unwritable_seconds"], QUERY_WAIT - 0.5)
        self.assertEqual(metric(self.admin, "vecgate_backend_current_role", backend="primary",
                                current_role="standby"), 1)

        # pgbench starts while it is still a standby; it is promoted under it
        script = os.path.join(tempfile.mkdtemp(prefix="vg-pgbench-"), "w.sql")
        _cleanups.append(lambda: subprocess.run(["rm", "-rf", os.path.dirname(script)]))
        with open(script, "w") as f:
            f.write("INSERT INTO t (src) VALUES ('pgbench');\n")
        bench = subprocess.Popen([PGBIN + "/pgbench", "-n", "-c", "4", "-j", "2", "-T", "3", "-f", script,
                                  "-h", "127.0.0.1", "-p", str(self.vg.port), "-U", "app", "app"],
                                 env=dict(os.environ, PGPASSWORD="app-pw"), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        # pgbench's first connection (it opens one before its clients) waits in its login
        wait_for(lambda: metric(self.admin, "vecgate_clients") >= 1, 2, "pgbench waiting")
        t_promote = time.time()
        self.standby.promote()
        out, _ = bench.communicate(timeout=30)
        self.assertEqual(bench.returncode, 0, out)
        done = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
        self.assertGreater(done, 0, out)
        self.assertRegex(out, r"number of failed transactions: 0 ", out)

        # every write that succeeded is on the promoted server; none reached it as a standby
        counts = dict(tuple(r.split("|")) for r in self.standby.psql(
            "SELECT src, count(*) FROM t GROUP BY src", db="app").splitlines())
        self.assertEqual(counts, {"pgbench": str(done)})
        self.assertNotIn(RO_ERROR, self.standby.server_log())
        self.assertNotIn(RO_ERROR, self.origin.server_log())

        b = backend(self.admin, "primary")
        self.assertEqual(b["current_role"], "primary")
        self.assertIsNone(b["unwritable_seconds"])
        self.assertGreater(b["last_unwritable_seconds"], time.time() - t_promote - 30)
        log = self.vg.log()
        self.assertEqual(log.count("is not writable: standby"), 1, log)
        self.assertEqual(len(re.findall(r"primary writable again after [0-9.]+ s \(was standby\)", log)), 1, log)

        # (e) promoted, the role check query finds it writable
        checks = self.relay.role_checks
        with psycopg.connect(self.old_vg.dsn(), autocommit=True) as c:
            c.execute("INSERT INTO t (src) VALUES ('old-promoted')")
        self.assertGreater(self.relay.role_checks, checks)
        self.assertEqual(backend(self.old_admin, "primary")["current_role"], "primary")
        self.assertEqual(self.standby.psql("SELECT count(*) FROM t WHERE src = 'old-promoted'", db="app"), "1")


class ReadOnlyPrimary(unittest.TestCase):
    """(b): a pooled primary turns read-only by reload, then by restart."""

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        app_table(cls.pg)
        cls.admin = free_port()
        cls.vg = start_vecgate(cls.pg, cls.admin)

    def conn(self):
        c = psycopg.connect(self.vg.dsn(), autocommit=True)
        self.addCleanup(c.close)
        return c

    def idle_servers(self):
        return metric(self.admin, "vecgate_server_connections", database="app", user="app", backend="primary",
                      state="idle")

    def warm(self):
        """Three clients at once: three pooled server connections, idle after."""
        conns = [self.conn() for _ in range(3)]
        ts = [threading.Thread(target=c.execute, args=("SELECT pg_sleep(0.2)",)) for c in conns]
        for th in ts:
            th.start()
        for th in ts:
            th.join()
        wait_for(lambda: self.idle_servers() == 3, 3, "three idle server connections")

    def rows(self, src):
        return int(self.pg.psql("SELECT count(*) FROM t WHERE src = '%s'" % src, db="app"))

    def set_read_only(self, on):
        # the session doing it must be writable itself to run ALTER SYSTEM
        self.pg.psql("ALTER SYSTEM %s" % ("SET default_transaction_read_only = on" if on else
                                          "RESET default_transaction_read_only"),
                     options="-c default_transaction_read_only=off")
        self.pg.psql("SELECT pg_reload_conf()", options="-c default_transaction_read_only=off")
        # pg_reload_conf() only signals the postmaster: once a new session has
        # the new value, the postmaster has reloaded and signalled every backend
        wait_for(lambda: self.pg.psql("SHOW default_transaction_read_only") == ("on" if on else "off"), 5,
                 "the reload in force")

    def test_b1_clients_own_read_only_transaction(self):
        """A 25006 of the client's own making: checked, found writable, pooled on."""
        self.warm()
        refused = backend(self.admin, "primary")["readonly_refused"]
        c = self.conn()
        c.execute("BEGIN READ ONLY")
        with self.assertRaises(psycopg.errors.ReadOnlySqlTransaction):
            c.execute("INSERT INTO t (src) VALUES ('read-only-txn')")
        c.execute("ROLLBACK")
        c.execute("INSERT INTO t (src) VALUES ('b1')")
        wait_for(lambda: self.idle_servers() == 3, 3, "the session checked and pooled again")
        b = backend(self.admin, "primary")
        self.assertEqual(b["current_role"], "primary")
        self.assertEqual(b["readonly_refused"], refused)
        self.assertNotIn("is not writable", self.vg.log())

    def test_b2_reload_read_only(self):
        self.warm()
        ro_before = self.pg.server_log().count(RO_ERROR)
        idle = self.conn()
        idle.execute("SELECT 1")
        in_txn = self.conn()
        in_txn.execute("BEGIN")
        in_txn.execute("INSERT INTO t (src) VALUES ('b2-txn')")
        self.set_read_only(True)
        self.addCleanup(self.set_read_only, False)
        # the write that races the change gets the server's error, unchanged
        # (a session that had not taken the reload yet still writes)
        probe, probed = self.conn(), 0
        with self.assertRaises(psycopg.errors.ReadOnlySqlTransaction) as cm:
            for probed in range(20):
                probe.execute("INSERT INTO t (src) VALUES ('b2-probe')")
        self.assertEqual(cm.exception.sqlstate, "25006")
        self.assertIn("cannot execute INSERT in a read-only transaction", str(cm.exception))
        # ... and vecgate learns from it: idle server connections are closed
        wait_for(lambda: backend(self.admin, "primary")["current_role"] == "read-only", 3, "read-only seen")
        wait_for(lambda: self.idle_servers() == 0, 3, "idle server connections closed")
        self.assertGreaterEqual(backend(self.admin, "primary")["readonly_refused"], 1)
        # a transaction begun while it was writable is the server's to finish
        in_txn.execute("INSERT INTO t (src) VALUES ('b2-txn')")
        in_txn.execute("COMMIT")
        # the idle client's next write waits, with no error, for a writable server
        w = Writer(idle, "b2-idle")
        time.sleep(1.0)
        self.assertIsNone(w.elapsed, "the write did not wait")
        self.set_read_only(False)
        w.join(QUERY_WAIT + 2)
        self.assertIsNone(w.error)
        self.assertLess(w.elapsed, QUERY_WAIT)
        self.assertEqual(self.rows("b2-idle"), 1)
        self.assertEqual(self.rows("b2-probe"), probed)
        self.assertEqual(self.rows("b2-txn"), 2)
        # the probe is the only write the read-only server ever saw
        self.assertEqual(self.pg.server_log().count(RO_ERROR) - ro_before, 1)
        self.assertEqual(backend(self.admin, "primary")["current_role"], "primary")
        log = self.vg.log()
        self.assertEqual(log.count("is not writable: read-only"), 1, log)
        self.assertEqual(len(re.findall(r"primary writable again after [0-9.]+ s \(was read-only\)", log)), 1, log)

    def test_b3_restart_read_only(self):
        self.warm()
        ro_before = self.pg.server_log().count(RO_ERROR)
        refused_before = backend(self.admin, "primary")["readonly_refused"]
        idle = self.conn()
        idle.execute("INSERT INTO t (src) VALUES ('b3-idle')")
        in_txn = self.conn()
        in_txn.execute("BEGIN")
        in_txn.execute("INSERT INTO t (src) VALUES ('b3-txn')")
        self.pg.restart("default_transaction_read_only=on")
        # mid-transaction: the server's own error (its shutdown), not a write on the read-only server
        with self.assertRaises(psycopg.OperationalError) as cm:
            in_txn.execute("INSERT INTO t (src) VALUES ('b3-txn')")
        self.assertIn("terminating connection due to administrator command", str(cm.exception))
        # the idle client noticed nothing; its next write waits for a writable server
        w = Writer(idle, "b3-idle")
        wait_for(lambda: backend(self.admin, "primary")["current_role"] == "read-only", 3, "read-only seen")
        self.assertGreater(backend(self.admin, "primary")["readonly_refused"], refused_before)
        self.assertIsNone(w.elapsed, "the write did not wait")
        self.pg.restart()
        w.join(QUERY_WAIT + 2)
        self.assertIsNone(w.error)
        self.assertEqual(self.rows("b3-idle"), 2)
        self.assertEqual(self.rows("b3-txn"), 0)
        self.assertEqual(self.pg.server_log().count(RO_ERROR), ro_before)
        # and the pool is whole again
        self.warm()

    def test_b4_any_then_read_write_by_reload(self):
        """target_session_attrs any takes a read-only server; a reload to read-write closes what it pooled."""
        self.vg.cfg["backends"]["primary"]["target_session_attrs"] = "any"
        self.vg.write_config()
        self.vg.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        self.set_read_only(True)
        self.addCleanup(self.set_read_only, False)
        self.pg.restart()  # no session survives from before: every one is read-only
        self.warm()
        with self.assertRaises(psycopg.errors.ReadOnlySqlTransaction):
            self.conn().execute("INSERT INTO t (src) VALUES ('b4-any')")
        self.assertEqual(self.idle_servers(), 3)  # any: the server's 25006 is the client's business
        self.vg.cfg["backends"]["primary"]["target_session_attrs"] = "read-write"
        self.vg.write_config()
        self.vg.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: self.idle_servers() == 0, 3, "sessions pooled under any closed")
        w = Writer(self.conn(), "b4-rw")
        wait_for(lambda: backend(self.admin, "primary")["current_role"] == "read-only", 3, "read-only seen")
        self.assertIsNone(w.elapsed, "the write did not wait")
        self.set_read_only(False)
        w.join(QUERY_WAIT + 2)
        self.assertIsNone(w.error)
        self.assertEqual(self.rows("b4-rw"), 1)
        self.assertEqual(self.rows("b4-any"), 0)


class PromotedReplica(unittest.TestCase):
    """(c): a replica taking vector reads is promoted, then rebuilt."""

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cube_table(cls.pg, "items", 300, "items_v")  # where a read ran matters here, not its plan
        cls.r1 = cls.pg.replica()
        cls.admin = free_port()
        index = {"name": "items", "database": "postgres", "table": "public.items", "index": "items_v",
                 "user": "postgres", "password": SUPERPW, "eval_file": eval_file(["(0.5, 0.5, 0.5)"]),
                 "eval_query": "SELECT id FROM public.items ORDER BY v <-> $1::cube LIMIT $2", "route": "replica"}
        cls.vg = Vecgate(cls.pg, auth_type="trust", users=[], databases=[
            {"name": "postgres", "pool_mode": "transaction", "pool_size": 2, "user": "postgres", "password": SUPERPW},
        ], extra={
            "backends": {"primary": {"host": "127.0.0.1", "port": cls.pg.port},
                         "r1": {"host": "127.0.0.1", "port": cls.r1.port, "role": "replica"}},
            "health_check": {"user": "postgres", "password": SUPERPW, "interval": 0.2, "timeout": 2},
            "admin": {"port": cls.admin, "token": TOKEN},
            "managed_indexes": [index],
        })

    def where(self, c):
        """The port of the server that answered one vector read."""
        return c.execute("SELECT inet_server_port() FROM items ORDER BY v <-> cube(array[0.5, 0.5, 0.5]) "
                         "LIMIT 1").fetchone()[0]

    def test_promoted_replica_leaves_the_rotation(self):
        c = psycopg.connect(self.vg.dsn(db="postgres", user="postgres", password=""), autocommit=True)
        self.addCleanup(c.close)
        wait_for(lambda: self.where(c) == self.r1.port, 10, "vector reads on the replica")
        self.assertEqual(backend(self.admin, "r1")["current_role"], "standby")

        self.r1.promote()
        t0 = time.time()
        wait_for(lambda: self.where(c) == self.pg.port, 3, "vector reads back on the primary")
        self.assertLess(time.time() - t0, 3)
        self.assertEqual({self.where(c) for _ in range(20)}, {self.pg.port})
        b = backend(self.admin, "r1")
        self.assertTrue(b["promoted"])
        self.assertFalse(b["in_rotation"])
        self.assertEqual(b["status"], "promoted")
        self.assertEqual(b["current_role"], "primary")
        self.assertEqual(metric(self.admin, "vecgate_backend_current_role", backend="r1", current_role="primary"), 1)
        self.assertEqual(metric(self.admin, "vecgate_backend_in_rotation", backend="r1", role="replica"), 0)
        time.sleep(1)  # five more health rounds: still one line
        self.assertEqual(self.vg.log().count("is out of recovery (promoted)"), 1)

        # a replica again (a fresh base backup on the same port): back in rotation
        self.r1.rebuild()
        wait_for(lambda: self.where(c) == self.r1.port, 10, "vector reads on the rebuilt replica")
        b = backend(self.admin, "r1")
        self.assertFalse(b["promoted"])
        self.assertTrue(b["in_rotation"])
        self.assertEqual(b["current_role"], "standby")
        log = self.vg.log()
        self.assertEqual(log.count("is out of recovery (promoted)"), 1, log)
        self.assertEqual(log.count("is in recovery again: a replica"), 1, log)


if __name__ == "__main__":
    unittest.main(verbosity=2)
