"""Online rebuild on PostgreSQL 15 with the cube + GiST stand-in, driven
through vecgatectl and the admin API while traffic flows through vecgate:
KNN reads (one session caches a generic plan before the swap), INSERTs.
Covers a full rebuild to done, a build whose backend is killed (clean retry),
an operator rollback that moves every session back with no lost rows, and
preflight refusals."""
import json
import os
import random
import re
import subprocess
import tempfile
import threading
import time
import unittest

import psycopg

from pgtest import SUPERPW, PgCluster, SRC, Vecgate, _cleanups, cube_table

CTL = os.environ.get("VECGATECTL_BIN", os.path.join(SRC, "build", "vecgatectl"))
TOKEN = "test-token-0123456789"
KNN = "SELECT id FROM emb ORDER BY v <-> cube(array[0.5, 0.5, 0.5]) LIMIT 5"


class Rebuild(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cube_table(cls.pg, "emb", 60000, "emb_live")
        cls.pg.psql("ANALYZE emb")
        # a second table owned by a role without superuser: rename mode
        cls.pg.psql("CREATE ROLE vecowner LOGIN PASSWORD 'owner-pw'")
        cube_table(cls.pg, "docs", 20000, "docs_live")
        # the usual reason to rebuild: a bloated index.  Without superuser
        # vecgate cannot hide the live index while verifying, so the planner
        # must prefer the new one on its own: the compact rebuild is cheaper.
        cls.pg.psql("ALTER TABLE docs SET (autovacuum_enabled = false)")
        for _ in range(3):
            cls.pg.psql("UPDATE docs SET v = cube(array[random(), random(), random()])")
        cls.pg.psql("ALTER TABLE docs OWNER TO vecowner")
        cls.pg.psql("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
        cls.pg.psql("ANALYZE docs")
        d = tempfile.mkdtemp(prefix="vg-eval-")
        _cleanups.append(lambda: subprocess.run(["rm", "-rf", d]))
        cls.eval_file = os.path.join(d, "eval.txt")
        rnd = random.Random(7)
        with open(cls.eval_file, "w") as f:
            for _ in range(40):
                f.write("(%f, %f, %f)\n" % (rnd.random(), rnd.random(), rnd.random()))
        # the drift monitor's table: its eval file carries ground truth, which
        # rows ingested later at the query points make stale (recall drops)
        cube_table(cls.pg, "drift_t", 5000, "drift_live")
        cls.drift_points = [(rnd.random(), rnd.random(), rnd.random()) for _ in range(10)]
        cls.drift_file = os.path.join(d, "drift.txt")
        with open(cls.drift_file, "w") as f:
            for p in cls.drift_points:
                ids = cls.pg.psql("SELECT string_agg(id::text, ',') FROM (SELECT id FROM drift_t ORDER BY v <-> "
                                  "cube(array[%f, %f, %f]) LIMIT 10) s" % p)
                f.write("(%f, %f, %f) | %s\n" % (p + (ids,)))
        cls.admin_port = __import__("pgtest").free_port()
        index = {"name": "emb", "database": "postgres", "table": "public.emb", "index": "emb_live",
                 "user": "postgres", "password": SUPERPW, "k": 10, "eval_file": cls.eval_file,
                 "eval_query": "SELECT id FROM public.emb ORDER BY v <-> $1::cube LIMIT $2",
                 "watch_seconds": 1, "retention_seconds": 3, "latency_tolerance": 5, "latency_budget_ms": 250, "backoff_seconds": 1,
                 "max_attempts": 4}
        slow = dict(index, name="emb_slow", retention_seconds=600)
        gated = dict(index, name="emb_gated", approve_swap=True, lock_timeout_ms=50, swap_attempts=30,
                     backoff_seconds=0.2, retention_seconds=1)
        watched = dict(index, name="emb_watch", watch_seconds=4, retention_seconds=600)
        again = dict(index, name="emb_again", approve_swap=True, retention_seconds=1)
        unprivileged = dict(index, name="docs", table="public.docs", index="docs_live", user="vecowner",
                            password="owner-pw", retention_seconds=1,
                            eval_query="SELECT id FROM public.docs ORDER BY v <-> $1::cube LIMIT $2")
        drift = dict(index, name="drift", table="public.drift_t", index="drift_live", eval_file=cls.drift_file,
                     eval_query="SELECT id FROM public.drift_t ORDER BY v <-> $1::cube LIMIT $2",
                     drift_check_seconds=0.5, drift_tolerance=0.1)
        cls.vg = Vecgate(cls.pg, auth_type="trust", users=[], databases=[
            {"name": "postgres", "pool_mode": "transaction", "pool_size": 4, "user": "postgres", "password": SUPERPW},
            {"name": "pinned", "dbname": "postgres", "pool_mode": "session", "pool_size": 2, "user": "postgres",
             "password": SUPERPW},
        ], extra={"admin": {"port": cls.admin_port, "token": TOKEN}, "managed_indexes": [index, slow, gated, unprivileged, watched, drift, again]})

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def ctl(self, *args, check=True):
        env = dict(os.environ, VECGATE_TOKEN=TOKEN, VECGATE_ADMIN_URL="http://127.0.0.1:%d" % self.admin_port)
        r = subprocess.run([CTL] + list(args), capture_output=True, text=True, env=env, timeout=120)
        if check:
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr + "\n" + self.vg.log()[-3000:])
        return r

    def job(self, job_id):
        return json.loads(self.ctl("--json", "job", str(job_id)).stdout)

    def wait_state(self, job_id, states, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            j = self.job(job_id)
            if j["state"] in states:
                return j
            time.sleep(0.2)
        self.fail("job %d never reached %s: %s" % (job_id, states, j))

    def plan_index(self, conn):
        plan = conn.execute("EXPLAIN (FORMAT JSON) EXECUTE knn").fetchone()[0]
        return plan[0]["Plan"]["Plans"][0].get("Index Name") if "Plans" in plan[0]["Plan"] else None

    def pinned_session(self):
        c = psycopg.connect(self.vg.dsn(db="pinned", user="postgres", password=""), autocommit=True)
        c.execute("SET plan_cache_mode = force_generic_plan")
        c.execute("PREPARE knn AS " + KNN)
        c.execute("EXECUTE knn")
        return c

    def traffic(self, stop, stats):
        """KNN reads and INSERTs through vecgate until stop is set."""
        try:
            with psycopg.connect(self.vg.dsn(db="postgres", user="postgres", password=""), autocommit=True,
                                 prepare_threshold=0) as c:
                while not stop.is_set():
                    try:
                        n = len(c.execute("SELECT id FROM emb ORDER BY v <-> cube(array[%s, 0.5, 0.5]) LIMIT 10",
                                          (random.random(),)).fetchall())
                        stats["reads"] += 1
                        stats["short"] += n != 10
                        c.execute("INSERT INTO emb (v) VALUES (cube(array[random(), random(), random()]))")
                        stats["writes"] += 1
                        if stats["reads"] % 20 == 0:
                            # an ingestion batch by COPY
                            with c.cursor().copy("COPY emb (v) FROM STDIN") as cp:
                                for _ in range(50):
                                    cp.write_row(("(%f, %f, %f)" % (random.random(), random.random(),
                                                                     random.random()),))
                            stats["writes"] += 50
                            stats["copies"] += 1
                    except psycopg.Error as e:
                        stats["errors"].append(str(e))
        except Exception as e:
            stats["errors"].append(repr(e))

    def test_1_full_rebuild_under_traffic(self):
        before = int(self.pg.psql("SELECT count(*) FROM emb"))
        pinned = self.pinned_session()
        self.assertEqual(self.plan_index(pinned), "emb_live")
        old_oid = self.pg.psql("SELECT 'emb_live'::regclass::oid")
        stop, stats = threading.Event(), {"reads": 0, "writes": 0, "copies": 0, "short": 0, "errors": []}
        t = threading.Thread(target=self.traffic, args=(stop, stats))
        t.start()
        try:
            # --watch returns once the new index is swapped in and watched,
            # not after the retention window (600 s here)
            r = self.ctl("rebuild", "start", "emb_slow", "--watch")
            m = re.search(r"instant rollback for (\d+) s more \(vecgatectl rollback (\d+)\)", r.stdout)
            self.assertIsNotNone(m, r.stdout[-2000:])
            self.assertGreater(int(m.group(1)), 500)
            job_id = int(m.group(2))
            j = self.wait_state(job_id, ("retain", "failed", "done"))
            self.assertEqual(j["state"], "retain", j)
            new_oid = self.pg.psql("SELECT 'emb_live'::regclass::oid")
            self.assertNotEqual(new_oid, old_oid)
            self.assertEqual(self.pg.psql("SELECT 'emb_live_vgold%d'::regclass::oid" % job_id), old_oid)
            # the session that cached its plan before the swap now scans the new index
            self.assertEqual(self.plan_index(pinned), "emb_live")
            with psycopg.connect(self.vg.dsn(db="pinned", user="postgres", password=""), autocommit=True) as fresh:
                fresh.execute("PREPARE knn AS " + KNN)
                self.assertEqual(self.plan_index(fresh), "emb_live")
            self.assertGreaterEqual(j["baseline"]["recall"], 0.99)
            self.assertGreaterEqual(j["candidate"]["recall"], 0.99)
            self.assertIsNotNone(j["swap_lock_ms"])
            # the watch looked at what the applications saw through vecgate
            self.assertGreater(j["watch"]["requests"], 0, j)
            self.assertEqual(j["watch"]["error_rate"], 0)
            self.assertLess(j["swap_lock_ms"], 1000)
            self.assertIn("plan used emb_live_vg%d" % job_id, " ".join(h["message"] for h in j["history"]))
            # preflight planned the build without being asked to (plan: auto is the default), under the
            # traffic, and left no scratch table behind
            self.assertIsNotNone(j["plan"], j)
            self.assertGreater(j["plan"]["build"]["predicted_seconds"], 0)
            self.assertIn("; build plan: ", j["history"][0]["message"])
            self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = "
                                          "c.relnamespace WHERE n.nspname = 'vecgate' AND c.relname LIKE 'plan%'"), "0")

            # operator rollback: every session back on the old index, no row lost
            self.ctl("rollback", str(job_id))
            j = self.wait_state(job_id, ("rolled_back",))
            time.sleep(0.5)
            self.assertEqual(self.pg.psql("SELECT 'emb_live'::regclass::oid"), old_oid)
            self.assertEqual(self.plan_index(pinned), "emb_live")
        finally:
            stop.set()
            t.join(30)
            pinned.close()
        self.assertEqual(stats["errors"], [])
        self.assertGreater(stats["reads"], 10)
        self.assertGreater(stats["copies"], 0)
        self.assertEqual(stats["short"], 0)
        after = int(self.pg.psql("SELECT count(*) FROM emb"))
        self.assertEqual(after, before + stats["writes"])
        # rows written while the new index served are found through the old one
        with psycopg.connect(self.vg.dsn(db="postgres", user="postgres", password=""), autocommit=True) as c:
            c.execute("SET enable_seqscan = off")
            self.assertEqual(c.execute("SELECT count(*) FROM (SELECT id FROM emb ORDER BY v <-> cube(array[0.1,0.1,0.1]) "
                                       "LIMIT 100000) s").fetchone()[0], min(after, 100000))
        # the rolled-back candidate is dropped afterwards
        deadline = time.time() + 10
        while time.time() < deadline and self.pg.psql("SELECT to_regclass('emb_live_vg%d') IS NOT NULL" % job_id) == "t":
            time.sleep(0.2)
        self.assertEqual(self.pg.psql("SELECT to_regclass('emb_live_vg%d') IS NULL" % job_id), "t")

    def test_2_killed_build_retries_cleanly(self):
        # an open writing transaction makes the build wait, so there is time to kill it
        blocker = psycopg.connect("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres"
                                  % (self.pg.port, SUPERPW))
        blocker.execute("INSERT INTO emb (v) VALUES (cube(array[0.1, 0.2, 0.3]))")
        out = {}
        watcher = threading.Thread(target=lambda: out.update(r=self.ctl("rebuild", "start", "emb", "--until-done",
                                                                        check=False)))
        watcher.start()
        deadline = time.time() + 20
        pid = None
        while time.time() < deadline and not pid:
            pid = self.pg.psql("SELECT pid FROM pg_stat_progress_create_index WHERE relid = 'emb'::regclass")
            time.sleep(0.1)
        self.assertTrue(pid, "the build never started")
        self.pg.psql("SELECT pg_terminate_backend(%s)" % pid)
        time.sleep(1.5)
        blocker.commit()
        blocker.close()
        watcher.join(90)
        r = out["r"]
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.vg.log()[-3000:])
        self.assertIn("done", r.stdout)
        # the kill is a transient failure: same step again, then on to verify
        self.assertIn("build     -> build", r.stdout)
        self.assertIn("terminating connection due to administrator command", r.stdout)
        self.assertIn("build     -> verify", r.stdout)
        # no invalid leftovers of the killed attempt, one valid index under the live name
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_index WHERE indrelid = 'emb'::regclass "
                                      "AND NOT indisvalid"), "0")
        self.assertEqual(self.pg.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'emb_live'::regclass"), "t")

    def test_3_preflight_refusals_and_api_errors(self):
        # an old open transaction is named with its pid
        old = psycopg.connect("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres"
                              % (self.pg.port, SUPERPW))
        old.execute("SELECT 1")
        pid = old.execute("SELECT pg_backend_pid()").fetchone()[0]
        try:
            time.sleep(1.2)
            self.vg.cfg["managed_indexes"][0]["max_transaction_age"] = 1
            self.vg.write_config()
            self.vg.proc.send_signal(1)
            time.sleep(0.5)
            r = self.ctl("rebuild", "start", "emb", "--watch", check=False)
            self.assertEqual(r.returncode, 1)
            self.assertIn("pid %d" % pid, r.stdout)
            self.assertIn("would stall CREATE INDEX CONCURRENTLY", r.stdout)
        finally:
            old.close()
            self.vg.cfg["managed_indexes"][0]["max_transaction_age"] = 300
            self.vg.write_config()
            self.vg.proc.send_signal(1)
            time.sleep(0.5)
        r = self.ctl("rebuild", "start", "nope", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no managed index named 'nope'", r.stderr)
        r = self.ctl("cancel", "999", check=False)
        self.assertIn("no such job", r.stderr)
        env = dict(os.environ, VECGATE_TOKEN="wrong-token", VECGATE_ADMIN_URL="http://127.0.0.1:%d" % self.admin_port)
        r = subprocess.run([CTL, "status"], capture_output=True, text=True, env=env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("HTTP 401", r.stderr)


    def test_4_swap_retries_under_lock_without_queueing_traffic(self):
        r = self.ctl("rebuild", "start", "emb_gated")
        job_id = int(r.stdout.split("job ")[1].split()[0])
        j = self.wait_state(job_id, ("swap", "failed"))
        self.assertEqual(j["state"], "swap", j)
        deadline = time.time() + 10
        while not j["awaiting_approval"] and time.time() < deadline:
            time.sleep(0.1)
            j = self.job(job_id)
        self.assertTrue(j["awaiting_approval"], j)
        # an operator's uncommitted ALTER TABLE holds the table's catalog row
        blocker = psycopg.connect("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres"
                                  % (self.pg.port, SUPERPW))
        blocker.execute("ALTER TABLE emb SET (autovacuum_enabled = true)")
        try:
            self.ctl("approve", str(job_id))
            time.sleep(1.5)
            j = self.job(job_id)
            self.assertEqual(j["state"], "swap", j)
            self.assertGreater(j["swap_attempts"], 1, j)
            # the job names who holds the table, and how to let the swap through
            b = j["progress"]["blocked_by"]
            self.assertEqual(b["pid"], blocker.info.backend_pid, j)
            self.assertEqual(b["cancel"], "SELECT pg_cancel_backend(%d)" % blocker.info.backend_pid)
            self.assertIn("ALTER TABLE emb", b["query"])
            # traffic is not queued behind the waiting swap: it completes while the blocker still holds
            with psycopg.connect(self.vg.dsn(db="postgres", user="postgres", password=""), autocommit=True) as c:
                c.execute("SET statement_timeout = '5s'")
                self.assertEqual(len(c.execute(KNN).fetchall()), 5)
                c.execute("INSERT INTO emb (v) VALUES (cube(array[0.9, 0.9, 0.9]))")
        finally:
            blocker.commit()
            blocker.close()
        j = self.wait_state(job_id, ("done", "failed"))
        self.assertEqual(j["state"], "done", j)
        retries = [h for h in j["history"] if h["from"] == "swap" and h["to"] == "swap"]
        self.assertGreaterEqual(len(retries), 1)
        self.assertIn("did not get its locks in time", retries[0]["message"])
        self.assertLess(j["swap_lock_ms"], 1000)


    def test_5_rename_mode_without_superuser(self):
        # preflight names the missing privilege instead of failing mid-build
        r = self.ctl("rebuild", "start", "docs", "--watch", check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("may not create in schema public (GRANT CREATE ON SCHEMA public TO vecowner)", r.stdout)
        self.pg.psql("GRANT CREATE ON SCHEMA public TO vecowner")
        old_oid = self.pg.psql("SELECT 'docs_live'::regclass::oid")
        r = self.ctl("rebuild", "start", "docs", "--watch", check=False)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.vg.log()[-2000:])
        self.assertIn("preflight passed (swap mode rename)", r.stdout)
        self.assertIn("old index dropped, no rollback", r.stdout)
        new_oid = self.pg.psql("SELECT 'docs_live'::regclass::oid")
        self.assertNotEqual(new_oid, old_oid)
        # one index serves under the live name; the old one is gone
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_index WHERE indrelid = 'docs'::regclass "
                                      "AND indexrelid <> 'docs_pkey'::regclass"), "1")
        job_id = json.loads(self.ctl("--json", "jobs", "docs").stdout)["jobs"][0]["id"]
        self.assertEqual(json.loads(self.ctl("--json", "job", str(job_id)).stdout)["state"], "done")
        r = self.ctl("rollback", str(job_id), check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("no instant rollback", r.stderr)


    def test_6_restart_mid_build_resumes(self):
        blocker = psycopg.connect("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres"
                                  % (self.pg.port, SUPERPW))
        blocker.execute("INSERT INTO emb (v) VALUES (cube(array[0.3, 0.2, 0.1]))")
        try:
            r = self.ctl("rebuild", "start", "emb")
            job_id = int(r.stdout.split("job ")[1].split()[0])
            self.wait_state(job_id, ("build",))
            db_id = self.job(job_id)["db_id"]
            self.assertIsNotNone(db_id)
            deadline = time.time() + 10
            while time.time() < deadline and not self.pg.psql(
                    "SELECT pid FROM pg_stat_progress_create_index WHERE relid = 'emb'::regclass"):
                time.sleep(0.1)
            # vecgate dies mid-build, leaving its CREATE INDEX CONCURRENTLY waiting
            self.vg.proc.kill()
            self.vg.proc.wait()
            self.assertEqual(self.pg.psql("SELECT state FROM vecgate.jobs WHERE id = %d" % db_id), "build")
            self.vg.start()
            time.sleep(1.5)
        finally:
            blocker.commit()
            blocker.close()
        jobs = json.loads(self.ctl("--json", "jobs", "emb").stdout)["jobs"]
        resumed = [j for j in jobs if j.get("db_id") == db_id]
        self.assertEqual(len(resumed), 1, jobs)
        j = self.wait_state(resumed[0]["id"], ("done", "failed"), timeout=90)
        self.assertEqual(j["state"], "done", j)
        self.assertIn("resumed after a restart", " ".join(h["message"] for h in j["history"]))
        self.assertEqual(self.pg.psql("SELECT state FROM vecgate.jobs WHERE id = %d" % db_id), "done")
        self.assertGreater(int(self.pg.psql("SELECT count(*) FROM vecgate.job_steps WHERE job_id = %d "
                                            "AND event = 'resumed'" % db_id)), 0)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_index WHERE indrelid = 'emb'::regclass "
                                      "AND NOT indisvalid"), "0")


    def test_7_errors_after_swap_roll_back_automatically(self):
        old_oid = self.pg.psql("SELECT 'emb_live'::regclass::oid")
        r = self.ctl("rebuild", "start", "emb_watch")
        job_id = int(r.stdout.split("job ")[1].split()[0])
        self.wait_state(job_id, ("watch", "failed"))
        self.assertEqual(self.pg.psql("SELECT 'emb_live'::regclass::oid") == old_oid, False)
        # applications start failing right after the swap
        with psycopg.connect(self.vg.dsn(db="postgres", user="postgres", password=""), autocommit=True) as c:
            for _ in range(30):
                with self.assertRaises(psycopg.errors.DivisionByZero):
                    c.execute("SELECT 1 / 0")
        j = self.wait_state(job_id, ("rolled_back", "retain", "done"), timeout=30)
        self.assertEqual(j["state"], "rolled_back", j)
        self.assertIn("degraded after the swap", j["message"])
        self.assertGreaterEqual(j["watch"]["error_rate"], 0.5)
        time.sleep(0.5)
        self.assertEqual(self.pg.psql("SELECT 'emb_live'::regclass::oid"), old_oid)


    def test_8_cancel_mid_build(self):
        blocker = psycopg.connect("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres"
                                  % (self.pg.port, SUPERPW))
        blocker.execute("INSERT INTO emb (v) VALUES (cube(array[0.4, 0.4, 0.4]))")
        try:
            r = self.ctl("rebuild", "start", "emb")
            job_id = int(r.stdout.split("job ")[1].split()[0])
            j = self.wait_state(job_id, ("build",))
            deadline = time.time() + 10
            while time.time() < deadline and not self.pg.psql(
                    "SELECT pid FROM pg_stat_progress_create_index WHERE relid = 'emb'::regclass"):
                time.sleep(0.1)
            r = self.ctl("cancel", str(job_id))
            self.assertIn("cancelled", r.stdout)
        finally:
            blocker.commit()
            blocker.close()
        fresh = j["new_index"]
        deadline = time.time() + 20
        while time.time() < deadline and self.pg.psql("SELECT to_regclass('%s') IS NULL" % fresh) != "t":
            time.sleep(0.2)
        self.assertEqual(self.pg.psql("SELECT to_regclass('%s') IS NULL" % fresh), "t")
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_stat_progress_create_index"), "0")
        self.assertEqual(self.pg.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'emb_live'::regclass"), "t")
        # cancelling again is refused with the reason
        r = self.ctl("cancel", str(job_id), check=False)
        self.assertEqual(r.returncode, 1)
        self.assertIn("in state cancelled", r.stderr)

    def test_8b_start_again_right_after_cancel(self):
        """Cancel, then start again at once: the cancelled job still holds the
        rebuild lock while its cleanup (dropping its candidate) waits on an
        open transaction; the new job waits for it instead of being told
        that another vecgate instance is rebuilding."""
        blocker = psycopg.connect("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres"
                                  % (self.pg.port, SUPERPW))
        blocker.execute("INSERT INTO emb (v) VALUES (cube(array[0.4, 0.4, 0.4]))")
        try:
            first = int(self.ctl("rebuild", "start", "emb_again").stdout.split("job ")[1].split()[0])
            j = self.wait_state(first, ("build",))
            deadline = time.time() + 10
            while time.time() < deadline and not self.pg.psql(
                    "SELECT pid FROM pg_stat_progress_create_index WHERE relid = 'emb'::regclass"):
                time.sleep(0.1)
            self.ctl("cancel", str(first))
            fresh = j["new_index"]
            second = int(self.ctl("rebuild", "start", "emb_again").stdout.split("job ")[1].split()[0])
            time.sleep(1.5)
            # the candidate's drop waits on the blocker, and so does the new job
            self.assertEqual(self.pg.psql("SELECT to_regclass('%s') IS NOT NULL" % fresh), "t")
            j2 = self.job(second)
            self.assertEqual(j2["state"], "preflight", j2)
            self.assertIn("waiting for job %d to let go of the rebuild lock" % first, j2["message"])
            self.assertIn("job %d still holds the rebuild lock while it finishes" % first, self.vg.log())
        finally:
            blocker.commit()
            blocker.close()
        j2 = self.wait_state(second, ("build", "verify", "swap", "failed", "cancelled"), timeout=60)
        self.assertIn(j2["state"], ("build", "verify", "swap"), j2)
        self.assertFalse([h for h in j2["history"] if "another vecgate instance" in h["message"]], j2)
        self.assertEqual(self.pg.psql("SELECT to_regclass('%s') IS NULL" % fresh), "t")
        self.ctl("cancel", str(second))
        j2 = self.wait_state(second, ("cancelled",))
        deadline = time.time() + 20
        while time.time() < deadline and self.pg.psql("SELECT to_regclass('%s') IS NULL" % j2["new_index"]) != "t":
            time.sleep(0.2)
        self.assertEqual(self.pg.psql("SELECT to_regclass('%s') IS NULL" % j2["new_index"]), "t")


    def test_9_ddl_guard(self):
        dsn = self.vg.dsn(db="postgres", user="postgres", password="")
        with psycopg.connect(dsn, autocommit=True) as c:
            for sql, fragment in (
                    ("REINDEX INDEX emb_live", "ACCESS EXCLUSIVE lock on public.emb_live"),
                    ("/* maintenance */ reindex table public.emb", "REINDEX table public.emb"),
                    ("DROP INDEX emb_live", "remove the live vector index"),
                    ("CREATE INDEX emb_extra ON emb (id)", "SHARE lock on emb")):
                with self.assertRaises(psycopg.Error) as cm:
                    c.execute(sql)
                self.assertEqual(cm.exception.sqlstate, "VG002", sql)
                self.assertIn(fragment, str(cm.exception))
                # the connection stays usable and the index is untouched
                self.assertEqual(c.execute("SELECT 1").fetchone()[0], 1)
            with self.assertRaises(psycopg.Error) as cm:
                c.execute("REINDEX INDEX emb_live")
            self.assertIn("REINDEX INDEX CONCURRENTLY public.emb_live", cm.exception.diag.message_hint)
            # inside a transaction the refusal keeps the transaction status
            with c.transaction():
                c.execute("SELECT 1")
                with self.assertRaises(psycopg.Error):
                    c.execute("REINDEX INDEX emb_live")
            # safe forms and unmanaged objects pass
            c.execute("CREATE INDEX CONCURRENTLY emb_extra ON emb (id)")
            c.execute("DROP INDEX CONCURRENTLY emb_extra")
            c.execute("SELECT 'REINDEX INDEX emb_live'")
            # extended protocol in a pipeline: the refusal arrives in order, the rest is unaffected
            results = []
            with self.assertRaises(psycopg.Error) as cm:
                with c.pipeline():
                    results.append(c.execute("SELECT 41 + 1"))
                    c.execute("DROP INDEX emb_live", prepare=False)
            self.assertEqual(cm.exception.sqlstate, "VG002")
            self.assertEqual(results[0].fetchone()[0], 42)
            self.assertEqual(c.execute("SELECT 2").fetchone()[0], 2)

        # asyncpg sends Parse/Bind/Execute/Sync: refused at Parse, skipped to Sync
        import asyncio
        import asyncpg

        async def extended():
            conn = await asyncpg.connect(host="127.0.0.1", port=self.vg.port, user="postgres", database="postgres")
            try:
                try:
                    await conn.fetch("REINDEX INDEX emb_live")
                    return "not refused"
                except asyncpg.PostgresError as e:
                    state = e.sqlstate
                return state, await conn.fetchval("SELECT $1::int * 2", 21)
            finally:
                await conn.close()
        self.assertEqual(asyncio.run(extended()), ("VG002", 42))
        self.assertEqual(self.pg.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'emb_live'::regclass"), "t")
        # warn mode logs and lets it run; allow mode lets it run
        for mode in ("warn", "allow"):
            self.vg.cfg["ddl_guard"] = mode
            self.vg.write_config()
            self.vg.proc.send_signal(1)
            time.sleep(0.5)
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("CREATE INDEX emb_extra ON emb (id)")
                c.execute("DROP INDEX emb_extra")
        self.assertIn("allowed DDL", self.vg.log())
        self.vg.cfg["ddl_guard"] = "block"
        self.vg.write_config()
        self.vg.proc.send_signal(1)
        time.sleep(0.5)


    def scrape(self):
        import urllib.request
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.admin_port,
                                     headers={"Authorization": "Bearer " + TOKEN})
        text = urllib.request.urlopen(req, timeout=5).read().decode()
        types, samples = {}, {}
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                types[name] = kind
            elif line and not line.startswith("#"):
                key, value = line.rsplit(" ", 1)
                samples[key] = float(value)
        return types, samples

    def drift(self):
        return [i for i in json.loads(self.ctl("--json", "status").stdout)["indexes"] if i["name"] == "drift"][0]

    def test_y_recall_drift_monitor(self):
        deadline = time.time() + 20
        while time.time() < deadline and self.drift()["drift"]["checks"] < 1:
            time.sleep(0.1)
        d = self.drift()["drift"]
        self.assertEqual((d["enabled"], d["recall"], d["baseline"], d["alert"]), (True, 1.0, 1.0, False), d)
        # new rows land exactly on the eval points: the recorded neighbours are no longer the nearest
        for p in self.drift_points:
            self.pg.psql("INSERT INTO drift_t (v) SELECT cube(array[%f, %f, %f]) FROM generate_series(1, 10)" % p)
        # (a check may run while the rows are going in: wait for one after all of them)
        while time.time() < deadline + 20 and not (self.drift()["drift"]["alert"] and
                                                   self.drift()["drift"]["recall"] < 0.5):
            time.sleep(0.1)
        d = self.drift()["drift"]
        self.assertTrue(d["alert"], d)
        self.assertLess(d["recall"], 0.5)
        self.assertIn("vecgatectl rebuild start drift", d["proposed_rebuild"])
        self.assertIn("drift: drift recall@10", self.vg.log())
        # proposed, never started without an operator
        self.assertEqual(json.loads(self.ctl("--json", "jobs", "drift").stdout)["jobs"], [])
        _, m = self.scrape()
        self.assertEqual(m['vecgate_drift_alert{index="drift"}'], 1)
        self.assertEqual(m['vecgate_drift_baseline{index="drift"}'], 1)
        self.assertLess(m['vecgate_drift_recall{index="drift"}'], 0.5)

    def test_z_metrics_and_probes(self):
        import urllib.error
        import urllib.request
        # the probes need no token; /metrics does (admin.metrics_without_token is off by default)
        self.assertEqual(json.loads(urllib.request.urlopen("http://127.0.0.1:%d/readyz" % self.admin_port,
                                                           timeout=5).read())["ready"], True)
        self.assertEqual(json.loads(urllib.request.urlopen("http://127.0.0.1:%d/healthz" % self.admin_port,
                                                           timeout=5).read())["status"], "ok")
        for headers in ({}, {"Authorization": "Bearer wrong-token-0123456789"}):
            with self.assertRaises(urllib.error.HTTPError) as cm:
                urllib.request.urlopen(urllib.request.Request("http://127.0.0.1:%d/metrics" % self.admin_port,
                                                              headers=headers), timeout=5)
            self.assertEqual(cm.exception.code, 401)
            self.assertEqual(cm.exception.headers["WWW-Authenticate"], "Bearer")
        types, before = self.scrape()
        for name, kind in (("vecgate_clients", "gauge"), ("vecgate_requests_total", "counter"),
                           ("vecgate_errors_total", "counter"), ("vecgate_server_connections", "gauge"),
                           ("vecgate_rebuild_state", "gauge"), ("vecgate_recall", "gauge"),
                           ("vecgate_swap_lock_milliseconds", "gauge")):
            self.assertEqual(types.get(name), kind, name)
        with psycopg.connect(self.vg.dsn(db="postgres", user="postgres", password=""), autocommit=True) as c:
            for _ in range(25):
                c.execute(KNN)
            with self.assertRaises(psycopg.Error):
                c.execute("SELECT 1/0")
            _, during = self.scrape()
            self.assertGreaterEqual(during["vecgate_clients"], 1)
        _, after = self.scrape()
        key = 'vecgate_requests_total{database="postgres",user="postgres",backend="primary"}'
        self.assertGreaterEqual(after[key] - before.get(key, 0), 26)
        ekey = 'vecgate_errors_total{database="postgres",user="postgres",backend="primary"}'
        self.assertGreaterEqual(after[ekey] - before.get(ekey, 0), 1)
        # exactly one state per managed index, and the finished jobs' numbers are there
        for idx in ("emb", "emb_slow", "emb_gated", "docs", "emb_watch"):
            states = [v for k, v in after.items() if k.startswith('vecgate_rebuild_state{index="%s",' % idx)]
            self.assertEqual(len(states), 11)
            self.assertLessEqual(sum(states), 1)
        self.assertEqual(after['vecgate_rebuild_state{index="emb",state="cancelled"}'], 1)  # test 8
        self.assertEqual(after['vecgate_rebuild_state{index="emb_watch",state="rolled_back"}'], 1)  # test 7
        # jobs that finished before test 6's restart come back from vecgate.jobs as records
        # (docs' role cannot use the vecgate schema a superuser created: its jobs were not recorded)
        for idx in ("emb_gated",):
            self.assertEqual(sum(v for k, v in after.items() if k.startswith('vecgate_rebuild_state{index="%s",' % idx)),
                             1, idx)
        gated = [i for i in json.loads(self.ctl("--json", "status").stdout)["indexes"] if i["name"] == "emb_gated"][0]
        self.assertIn("recorded in vecgate.jobs", gated["latest_job"]["message"])
        self.assertIsNotNone(gated["latest_job"]["db_id"])
        self.assertGreaterEqual(after['vecgate_recall{index="emb_watch",which="candidate"}'], 0.99)
        self.assertGreaterEqual(after['vecgate_recall{index="emb_watch",which="baseline"}'], 0.99)
        self.assertGreater(after['vecgate_swap_lock_milliseconds{index="emb_watch"}'], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
