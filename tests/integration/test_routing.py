"""Vector-aware routing with a real primary and two streaming replicas
(pg_basebackup -R) on PostgreSQL 15 with pgvector HNSW at 128 dimensions
(the cube + GiST stand-in where pgvector is not installed).  Where a query
ran is proven by the server itself (pg_is_in_recovery(), inet_server_port()),
never by trusting vecgate: replica mode sends vector reads to the replica
while writes, transactions and locking reads stay on the primary; refuse
answers VG001 at once; fallback uses the fallback backend; a replica whose
replay is paused falls out of rotation and comes back; stopping the replica
mid-load moves reads to the primary with zero client errors; a route flipped
through one vecgate instance is in force on a second within a second; a
rebuild step's route policy moves reads and hands them back."""
import asyncio
import json
import os
import random
import signal
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request

import asyncpg
import psycopg

from pgtest import SUPERPW, SRC, PgCluster, Vecgate, _cleanups, cube_table, free_port, has_pgvector

CTL = os.environ.get("VECGATECTL_BIN", os.path.join(SRC, "build", "vecgatectl"))
TOKEN = "routing-token-0123456789"
# real pgvector HNSW at 128 dimensions where installed, else the cube stand-in
PGVECTOR = has_pgvector()
DIMS = 128


def point(first):
    """A query point whose first coordinate is the SQL expression `first`."""
    if PGVECTOR:
        return "('[' || %s || repeat(',0.5', %d) || ']')::vector" % (first, DIMS - 1)
    return "cube(array[%s, 0.5, 0.5])" % first


def point_text(first):
    """The same point as a text literal (COPY, eval files)."""
    if PGVECTOR:
        return "[%s%s]" % (first, ",0.5" * (DIMS - 1))
    return "(%s, 0.5, 0.5)" % first


VREAD = ("SELECT pg_is_in_recovery(), inet_server_port(), id FROM items "
         "ORDER BY v <-> " + point("%s") + " LIMIT 5")
# the same vector read, always one row: on a hot standby pgvector's HNSW scan
# can come back empty for a point next to freshly inserted near-duplicates
# (seen on both replicas at once while the primary returned 5 rows), and
# where a read ran is what these tests ask
VREAD_ROW = ("SELECT pg_is_in_recovery(), inet_server_port(), count(k.id) FROM (SELECT id FROM items "
             "ORDER BY v <-> " + point("%s") + " LIMIT 5) k")


def api(port, path, method="GET", body=None):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


class Routing(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        if PGVECTOR:
            cls.pg.psql("CREATE EXTENSION vector")
            cls.pg.psql("CREATE TABLE items (id bigserial PRIMARY KEY, v vector(%d), note text)" % DIMS)
            cls.pg.psql("INSERT INTO items (v) SELECT (SELECT array_agg(random())::vector FROM generate_series(1, %d) "
                        "WHERE g > 0) FROM generate_series(1, 5000) g" % DIMS)
            cls.pg.psql("CREATE INDEX items_v ON items USING hnsw (v vector_l2_ops) WITH (m = 8, ef_construction = 16)")
            # the COPY and INSERTs below put near-duplicates next to the query points; without
            # iterative scans an HNSW scan whose ef_search candidates are not visible returns nothing
            cls.pg.psql("ALTER DATABASE postgres SET hnsw.iterative_scan = 'relaxed_order'")
        else:
            cube_table(cls.pg, "items", 5000, "items_v", extra_columns=", note text")
        cls.pg.psql("ANALYZE items")
        cls.r1 = cls.pg.replica()
        cls.r2 = cls.pg.replica()
        d = tempfile.mkdtemp(prefix="vg-eval-")
        _cleanups.append(lambda: subprocess.run(["rm", "-rf", d]))
        eval_file = os.path.join(d, "eval.txt")
        rnd = random.Random(3)
        with open(eval_file, "w") as f:
            for _ in range(20):
                f.write(point_text("%f" % rnd.random()) + "\n")
        cls.index = {"name": "items", "database": "postgres", "table": "public.items", "index": "items_v",
                     "user": "postgres", "password": SUPERPW, "eval_file": eval_file,
                     "eval_query": "SELECT id FROM public.items ORDER BY v <-> $1::%s LIMIT $2"
                     % ("vector" if PGVECTOR else "cube"),
                     "route": "replica", "approve_swap": True, "watch_seconds": 0.5, "retention_seconds": 1,
                     "latency_tolerance": 10, "latency_budget_ms": 250,
                     "route_policy": {"build": "replica", "verify": "replica", "swap": "fallback"}}
        cls.admin_port = free_port()
        cls.vg = cls.start_vecgate(cls.admin_port)

    @classmethod
    def start_vecgate(cls, admin_port):
        return Vecgate(cls.pg, auth_type="trust", users=[], databases=[
            {"name": "postgres", "pool_mode": "transaction", "pool_size": 4, "user": "postgres", "password": SUPERPW},
        ], extra={
            "backends": {
                "primary": {"host": "127.0.0.1", "port": cls.pg.port},
                "r1": {"host": "127.0.0.1", "port": cls.r1.port, "role": "replica", "max_lag_bytes": 65536,
                       "max_lag_seconds": 30},
                "r2": {"host": "127.0.0.1", "port": cls.r2.port, "role": "fallback"},
            },
            "health_check": {"user": "postgres", "password": SUPERPW, "interval": 0.2, "timeout": 2},
            "routing": {"refresh_seconds": 2},
            "admin": {"port": admin_port, "token": TOKEN},
            "managed_indexes": [cls.index],
        })

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def setUp(self):
        self.set_mode("replica")
        self.wait_backend("r1", lambda b: b["in_rotation"])

    # ---- helpers ----

    def set_mode(self, mode, port=None):
        r = api(port or self.admin_port, "/v1/routes/items", "POST", {"mode": mode})
        self.assertEqual(r["mode"], mode)

    def route(self, port=None):
        return [r for r in api(port or self.admin_port, "/v1/routes")["routes"] if r["name"] == "items"][0]

    def backend(self, name):
        found = [b for b in api(self.admin_port, "/v1/backends")["backends"] if b["name"] == name]
        return found[0] if found else None

    def wait_backend(self, name, pred, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            b = self.backend(name)
            if b and pred(b):
                return b
            time.sleep(0.05)
        self.fail("backend %s never got there: %s\n%s" % (name, b, self.vg.log()[-3000:]))

    def conn(self, vg=None, **kw):
        return psycopg.connect((vg or self.vg).dsn(db="postgres", user="postgres", password=""), autocommit=True, **kw)

    def where(self, conn, sql=VREAD_ROW, params=None):
        params = params if params is not None else (random.random(),)
        rows = conn.execute(sql, params).fetchall()
        if not rows:  # what each server answers to the same query, directly
            direct = {}
            for name, port in (("primary", self.pg.port), ("r1", self.r1.port), ("r2", self.r2.port)):
                with psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=SUPERPW,
                                     dbname="postgres", autocommit=True) as d:
                    direct[name] = len(d.execute(sql, params).fetchall())
            self.fail("no rows through vecgate for %s; directly: %s" % (params, direct))
        return rows[0][0], rows[0][1]

    def ctl(self, *args):
        env = dict(os.environ, VECGATE_TOKEN=TOKEN)
        r = subprocess.run([CTL, "--url", "http://127.0.0.1:%d" % self.admin_port] + list(args),
                           capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    # ---- tests ----

    def test_a_replica_mode(self):
        """Vector reads on the replica; writes, transactions, locking reads and plain reads on the primary."""
        with self.conn(prepare_threshold=None) as c:  # extended protocol, unnamed statements
            self.assertEqual(self.where(c), (True, self.r1.port))
            # not a vector read: primary
            self.assertEqual(self.where(c, "SELECT pg_is_in_recovery(), inet_server_port() FROM items LIMIT 1", ()),
                             (False, self.pg.port))
            # a write with a distance operator in it: primary
            c.execute("INSERT INTO items (v, note) SELECT v, 'copied' FROM items "
                      "ORDER BY v <-> " + point("0.1") + " LIMIT 1")
            self.assertEqual(self.where(c, VREAD + " FOR UPDATE"), (False, self.pg.port))
            # a writable CTE that orders by distance: primary
            self.assertEqual(self.where(c, "WITH w AS (UPDATE items SET note = 'x' WHERE id = 1 RETURNING id) "
                                           "SELECT pg_is_in_recovery(), inet_server_port(), id FROM items "
                                           "ORDER BY v <-> " + point("%s") + " LIMIT 5"),
                             (False, self.pg.port))
            # inside an explicit transaction everything stays on the primary
            with c.transaction():
                c.execute("INSERT INTO items (v, note) VALUES (" + point("0.5") + ", 'in-txn')")
                self.assertEqual(self.where(c), (False, self.pg.port))
                self.assertEqual(self.where(c), (False, self.pg.port))
            # ingestion: COPY FROM passes through to the primary unchanged
            with c.cursor().copy("COPY items (v, note) FROM STDIN") as cp:
                for i in range(100):
                    cp.write_row((point_text("%f" % (i / 100.0)), "copied-in"))
            # operator text inside a string or comment is not a vector read
            self.assertEqual(self.where(c, "SELECT pg_is_in_recovery(), inet_server_port(), '<->' FROM items "
                                           "/* ORDER BY v <-> x */ LIMIT 1", ()), (False, self.pg.port))
        with self.conn(prepare_threshold=0) as c:  # named prepared statements, classified once
            for _ in range(5):
                self.assertEqual(self.where(c), (True, self.r1.port))
        # simple protocol (psql) through vecgate
        out = subprocess.run(["psql", "-XAtq", "-h", "127.0.0.1", "-p", str(self.vg.port), "-U", "postgres",
                              "-d", "postgres", "-c", VREAD % "0.3"], capture_output=True, text=True, timeout=30)
        self.assertTrue(out.stdout.strip(), "psql: exit %d, stderr %r\n%s" % (out.returncode, out.stderr,
                                                                            self.vg.log()[-3000:]))
        self.assertEqual(out.stdout.splitlines()[0].split("|")[:2], ["t", str(self.r1.port)], out.stderr)

        async def via_asyncpg():  # Parse/Describe/Sync, then Bind/Execute/Sync of a named statement
            c = await asyncpg.connect(host="127.0.0.1", port=self.vg.port, user="postgres", database="postgres",
                                      statement_cache_size=100)
            try:
                st = await c.prepare("SELECT pg_is_in_recovery() AS rec, inet_server_port() AS port, id FROM items "
                                     "ORDER BY v <-> " + point("$1::float8") + " LIMIT 5")
                got = [tuple((await st.fetch(random.random()))[0][:2]) for _ in range(5)]
                async with c.transaction():
                    got_txn = tuple((await st.fetch(0.5))[0][:2])
                return got, got_txn
            finally:
                await c.close()
        got, got_txn = asyncio.run(via_asyncpg())
        self.assertEqual(set(got), {(True, self.r1.port)})
        self.assertEqual(got_txn, (False, self.pg.port))
        # writes landed on the primary and replicated
        self.assertGreaterEqual(int(self.pg.psql("SELECT count(*) FROM items WHERE note = 'in-txn'")), 1)
        self.assertEqual(int(self.pg.psql("SELECT count(*) FROM items WHERE note = 'copied-in'")), 100)
        r = self.route()
        self.assertGreater(r["queries"]["replica"], 10)
        self.assertGreater(self.backend("r1")["routed_reads"], 10)

    def test_b_refuse_mode(self):
        self.ctl("route", "items", "refuse")
        with self.conn(prepare_threshold=None) as c:
            t0 = time.monotonic()
            with self.assertRaises(psycopg.Error) as e:
                c.execute(VREAD, (0.5,))
            self.assertEqual(e.exception.sqlstate, "VG001")
            self.assertIn("refuse", str(e.exception))
            refused_in = time.monotonic() - t0
            # the connection stays usable; non-vector work is not refused
            self.assertEqual(c.execute("SELECT count(*) > 0 FROM items").fetchone()[0], True)
        with self.conn(prepare_threshold=0) as c:
            for _ in range(2):
                with self.assertRaises(psycopg.Error) as e:
                    c.execute(VREAD, (0.5,))
                self.assertEqual(e.exception.sqlstate, "VG001")
            self.assertEqual(c.execute("SELECT 41 + 1").fetchone()[0], 42)
        out = subprocess.run(["psql", "-XAtq", "-h", "127.0.0.1", "-p", str(self.vg.port), "-U", "postgres",
                              "-d", "postgres", "-c", VREAD % "0.3"], capture_output=True, text=True, timeout=30)
        self.assertIn("VG001", subprocess.run(
            ["psql", "-XAtq", "-v", "VERBOSITY=verbose", "-h", "127.0.0.1", "-p", str(self.vg.port), "-U", "postgres",
             "-d", "postgres", "-c", VREAD % "0.3"], capture_output=True, text=True, timeout=30).stderr)
        self.assertNotEqual(out.returncode, 0)
        self.assertGreaterEqual(self.route()["queries"]["refused"], 4)
        print("refused in %.1f ms" % (refused_in * 1000))

    def test_c_fallback_mode(self):
        self.wait_backend("r2", lambda b: b["in_rotation"])
        self.ctl("route", "items", "fallback")
        with self.conn(prepare_threshold=0) as c:
            for _ in range(3):
                self.assertEqual(self.where(c), (True, self.r2.port))
        self.ctl("route", "items", "primary")
        with self.conn() as c:
            self.assertEqual(self.where(c), (False, self.pg.port))
        self.assertIn("items", self.ctl("routes"))
        self.assertIn("r2", self.ctl("backends"))

    def test_d_lagging_replica_is_skipped(self):
        self.r1.psql("SELECT pg_wal_replay_pause()")
        try:
            self.pg.psql("INSERT INTO items (v, note) SELECT " + point("random()") + ", "
                         "repeat('w', 200) FROM generate_series(1, 3000)")
            b = self.wait_backend("r1", lambda b: not b["in_rotation"])
            self.assertGreater(b["lag_bytes"], 65536)
            self.assertTrue(b["replay_paused"])
            with self.conn() as c:
                for _ in range(3):
                    self.assertEqual(self.where(c), (False, self.pg.port))
        finally:
            self.r1.psql("SELECT pg_wal_replay_resume()")
        self.wait_backend("r1", lambda b: b["in_rotation"])
        with self.conn() as c:
            self.assertEqual(self.where(c), (True, self.r1.port))

    def test_e_replica_stopped_mid_load(self):
        stop = threading.Event()
        stats = {"errors": [], "replica": 0, "primary": 0, "reads": 0}
        lock = threading.Lock()

        def reader(prepare):
            with self.conn(prepare_threshold=prepare) as c:
                while not stop.is_set():
                    try:
                        rec, port = self.where(c)
                        with lock:
                            stats["reads"] += 1
                            stats["replica" if rec else "primary"] += 1
                    except Exception as e:  # every error counts against vecgate
                        with lock:
                            stats["errors"].append(repr(e))

        threads = [threading.Thread(target=reader, args=(p,)) for p in (None, 0, None, 0)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.5)
            on_replica_before = stats["replica"]
            self.r1.pg_ctl("-m", "fast", "stop")
            stopped_at = stats["reads"]
            time.sleep(2.0)
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        try:
            self.assertEqual(stats["errors"], [], self.vg.log()[-3000:])
            self.assertGreater(on_replica_before, 20)
            self.assertGreater(stats["reads"] - stopped_at, 20)
            self.assertGreater(stats["primary"], 20)
            self.assertEqual(self.backend("r1")["status"], "down")
            print("reads %d (replica %d, primary %d), errors 0, replayed %d" %
                  (stats["reads"], stats["replica"], stats["primary"], self.route()["queries"]["replayed"]))
        finally:
            self.r1.pg_ctl("start")
        self.wait_backend("r1", lambda b: b["in_rotation"])

    def test_f_two_instances_share_routes(self):
        admin2 = free_port()
        vg2 = self.start_vecgate(admin2)
        try:
            deadline = time.time() + 10
            while not self.route(admin2)["synced"] and time.time() < deadline:
                time.sleep(0.05)
            self.assertEqual(self.route(admin2)["effective"], "replica")
            for mode, via, other in (("refuse", self.admin_port, admin2), ("fallback", admin2, self.admin_port),
                                     ("replica", self.admin_port, admin2)):
                t0 = time.monotonic()
                self.set_mode(mode, via)
                while self.route(other)["effective"] != mode and time.monotonic() - t0 < 5:
                    time.sleep(0.01)
                took = time.monotonic() - t0
                self.assertEqual(self.route(other)["effective"], mode)
                self.assertLess(took, 1.0, "route %s reached the other instance after %.3fs" % (mode, took))
                print("route %s in force on the other instance after %.0f ms" % (mode, took * 1000))
                if mode == "refuse":
                    with self.conn(vg2) as c, self.assertRaises(psycopg.Error) as e:
                        c.execute(VREAD, (0.5,))
                    self.assertEqual(e.exception.sqlstate, "VG001")
                if mode == "fallback":
                    with self.conn(self.vg) as c:
                        self.assertEqual(self.where(c), (True, self.r2.port))
        finally:
            vg2.stop()
        self.assertEqual(self.pg.psql("SELECT mode FROM vecgate.routes WHERE index_name = 'items'"), "replica")

    def test_g_rebuild_step_policy(self):
        out = json.loads(self.ctl("--json", "rebuild", "start", "items"))
        job = out["id"]
        deadline = time.time() + 60
        while time.time() < deadline:
            j = json.loads(self.ctl("--json", "job", str(job)))
            if j.get("awaiting_approval") or j["state"] in ("failed", "cancelled", "done"):
                break
            time.sleep(0.1)
        self.assertTrue(j.get("awaiting_approval"), j)
        r = self.route()
        self.assertEqual((r["mode"], r["step"], r["step_mode"], r["effective"]), ("replica", "swap", "fallback",
                                                                                 "fallback"))
        self.assertEqual(self.pg.psql("SELECT step_mode FROM vecgate.routes WHERE index_name = 'items'"), "fallback")
        with self.conn() as c:
            self.assertEqual(self.where(c), (True, self.r2.port))
        self.ctl("approve", str(job))
        while time.time() < deadline:
            j = json.loads(self.ctl("--json", "job", str(job)))
            if j["state"] in ("done", "failed", "rolled_back"):
                break
            time.sleep(0.1)
        self.assertEqual(j["state"], "done", j)
        r = self.route()
        self.assertEqual((r["step"], r["effective"]), (None, "replica"))
        self.wait_backend("r1", lambda b: b["in_rotation"])  # the new index's WAL may still be replaying
        with self.conn() as c:
            self.assertEqual(self.where(c), (True, self.r1.port), self.vg.log()[-2500:])

    def test_i_reload_under_load(self):
        """SIGHUP rebuilds the route and backend tables while routed reads are in flight."""
        import signal
        stop = threading.Event()
        errors, reads = [], [0]

        def reader():
            with self.conn(prepare_threshold=0) as c:
                while not stop.is_set():
                    try:
                        self.where(c)
                        reads[0] += 1
                    except Exception as e:
                        errors.append(repr(e))
        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            cfg = self.vg.cfg
            for bound in (1 << 20, 65536, 1 << 21):
                cfg["backends"]["r1"]["max_lag_bytes"] = bound
                self.vg.write_config(cfg)
                self.vg.proc.send_signal(signal.SIGHUP)
                deadline = time.time() + 10
                while self.backend("r1")["max_lag_bytes"] != bound and time.time() < deadline:
                    time.sleep(0.05)
                self.assertEqual(self.backend("r1")["max_lag_bytes"], bound)
                time.sleep(0.3)
            # a changed backend set restarts the health checks; modes survive
            cfg["backends"]["r1"]["max_lag_seconds"] = 20
            cfg["backends"]["r3"] = {"host": "127.0.0.1", "port": self.r2.port, "role": "fallback"}
            self.vg.write_config(cfg)
            self.vg.proc.send_signal(signal.SIGHUP)
            self.wait_backend("r3", lambda b: b["up"])
            self.assertEqual(self.route()["effective"], "replica")
        finally:
            stop.set()
            for t in threads:
                t.join(30)
        self.assertEqual(errors, [], self.vg.log()[-3000:])
        self.assertGreater(reads[0], 30)
        self.wait_backend("r1", lambda b: b["in_rotation"])
        with self.conn() as c:
            self.assertEqual(self.where(c), (True, self.r1.port))

    def test_j_quiet_health_pace(self):
        """Health checks slow to quiet_interval (default 10 s) while no client
        talks and reads stay on the primary; client traffic or a route mode
        that reads elsewhere brings back the 0.2 s interval."""
        def checks_during(seconds, work=None):
            before = {n: self.backend(n)["checks"] for n in ("primary", "r1", "r2")}
            deadline = time.time() + seconds
            while time.time() < deadline:
                if work:
                    work()
                else:
                    time.sleep(0.05)
            return {n: self.backend(n)["checks"] - before[n] for n in before}

        self.set_mode("primary")
        time.sleep(0.5)  # the first tick after the last client bytes still sees them
        quiet = checks_during(2.5)
        with self.conn() as c:
            busy = checks_during(3, lambda: c.execute("SELECT 1").fetchall())
        self.set_mode("replica")  # no client traffic, but reads now depend on r1's view
        routed = checks_during(3)
        # 0.2 s apart: 15 in 3 s; at least 5 leaves room for a loaded
        # machine (ASan, another test beside it), while quiet pacing (10 s)
        # would give at most one
        for n in ("primary", "r1", "r2"):
            self.assertLessEqual(quiet[n], 1, "quiet: %s" % quiet)
            self.assertGreaterEqual(busy[n], 5, "clients talking: %s" % busy)
            self.assertGreaterEqual(routed[n], 5, "replica mode: %s" % routed)

    def test_h_metrics(self):
        # /metrics needs the token by default
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen("http://127.0.0.1:%d/metrics" % self.admin_port, timeout=5)
        self.assertEqual(cm.exception.code, 401)
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.admin_port,
                                     headers={"Authorization": "Bearer " + TOKEN})
        text = urllib.request.urlopen(req, timeout=5).read().decode()
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                k, v = line.rsplit(" ", 1)
                samples[k] = float(v)
        self.assertEqual(samples['vecgate_backend_up{backend="r1",role="replica"}'], 1)
        self.assertEqual(samples['vecgate_route_mode{index="items",mode="replica"}'], 1)
        self.assertEqual(samples['vecgate_route_mode{index="items",mode="refuse"}'], 0)
        self.assertGreater(samples['vecgate_route_queries_total{index="items",target="replica"}'], 0)
        self.assertGreater(samples['vecgate_backend_reads_total{backend="r1"}'], 0)
        self.assertIn('vecgate_replica_lag_bytes{backend="r1"}', samples)
        self.assertIn('vecgate_requests_total{database="postgres",user="postgres",backend="r1"}', samples)
        # errors by SQLSTATE include vecgate's own refusals (test b)
        self.assertGreaterEqual(samples['vecgate_client_errors_total{sqlstate="VG001"}'], 4)
        # the vector-read latency histogram is cumulative and counts every classified read
        buckets = [(k, v) for k, v in samples.items() if k.startswith('vecgate_vector_query_seconds_bucket{index="items"')]
        self.assertEqual(len(buckets), 13)
        values = [v for _, v in buckets]
        self.assertEqual(values, sorted(values))
        self.assertEqual(values[-1], samples['vecgate_vector_query_seconds_count{index="items"}'])
        self.assertGreater(values[-1], 50)
        self.assertGreater(samples['vecgate_vector_query_seconds_sum{index="items"}'], 0)
        self.assertIn("# TYPE vecgate_vector_query_seconds histogram", text)

    def test_i_metrics_without_token_and_label_escaping(self):
        """admin.metrics_without_token: true opens /metrics (and only it) again, and follows SIGHUP; label
        values are escaped: a managed index named with a quote, a backslash and a newline."""
        admin = free_port()
        weird = 'we"ird\\na\nme'  # we"ird\na<newline>me
        index = dict(self.index, name="PLACEHOLDER", route="primary", approve_swap=False)
        vg = Vecgate(self.pg, auth_type="trust", users=[], databases=[
            {"name": "postgres", "pool_mode": "transaction", "pool_size": 2, "user": "postgres", "password": SUPERPW},
        ], extra={"admin": {"port": admin, "token": TOKEN, "metrics_without_token": True},
                  "managed_indexes": [index]})
        self.addCleanup(vg.stop)

        def restart_with(open_metrics):
            vg.cfg["admin"]["metrics_without_token"] = open_metrics
            vg.write_config()
            with open(vg.path) as f:
                text = f.read()
            # a YAML double-quoted scalar: the emitter's single quotes cannot hold a newline
            with open(vg.path, "w") as f:
                f.write(text.replace("'PLACEHOLDER'", '"we\\"ird\\\\na\\nme"'))

        restart_with(True)
        vg.stop()
        vg.start()
        wait_admin = time.time() + 10
        while True:
            try:
                text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5).read().decode()
                break
            except OSError:
                if time.time() > wait_admin:
                    raise
                time.sleep(0.05)
        lines = text.splitlines()
        esc = 'we\\"ird\\\\na\\nme'  # the exposition format's escapes: \" \\ \n
        self.assertIn('vecgate_route_mode{index="%s",mode="primary"} 1' % esc, lines)
        self.assertIn('vecgate_rebuild_state{index="%s",state="done"} 0' % esc, lines)
        self.assertIn('vecgate_vector_query_seconds_bucket{index="%s",le="+Inf"} 0' % esc, lines)
        # every sample line still parses: name{labels} value, quotes balanced
        for line in lines:
            if line and not line.startswith("#"):
                self.assertRegex(line, r'^[a-z_]+(\{([a-z_]+="([^"\\\n]|\\[\\"n])*",?)*\})? \S+$')
        # the API's JSON carries the raw name
        self.assertIn(weird, [r["name"] for r in api(admin, "/v1/routes")["routes"]])
        # still only /metrics: the rest keeps needing the token
        with self.assertRaises(urllib.error.HTTPError) as cm:
            urllib.request.urlopen("http://127.0.0.1:%d/v1/routes" % admin, timeout=5)
        self.assertEqual(cm.exception.code, 401)
        # back to the default on SIGHUP: 401 without, 200 with the token
        restart_with(False)
        vg.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 10
        while True:
            try:
                urllib.request.urlopen("http://127.0.0.1:%d/metrics" % admin, timeout=5)
            except urllib.error.HTTPError as e:
                self.assertEqual(e.code, 401)
                break
            self.assertLess(time.time(), deadline, vg.log()[-2000:])
            time.sleep(0.05)
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % admin, headers={"Authorization": "Bearer " + TOKEN})
        self.assertIn('vecgate_route_mode{index="%s",mode="primary"} 1' % esc,
                      urllib.request.urlopen(req, timeout=5).read().decode().splitlines())
        vg.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
