"""Operators see what blocks a rebuild.  CREATE INDEX CONCURRENTLY waits for
writers before the build and for transactions older than its snapshot; the
job, its JSON, vecgatectl's bar and /metrics name the backend it waits for
(pid, user, application, client, transaction age, query) with the command
that would unblock it, and the build goes on when that backend ends.

Real PostgreSQL 15, cube + GiST stand-in (the waits are PostgreSQL's, not
the access method's).
"""
import json
import os
import subprocess
import threading
import time
import unittest

import psycopg

from pgtest import AdminCase, SRC, SUPERPW, PgCluster, managed_vecgate, cube_table, eval_file, free_port

CTL = os.environ.get("VECGATECTL_BIN", os.path.join(SRC, "build", "vecgatectl"))
TOKEN = "blockers-token-0123456789"


class Blockers(AdminCase, unittest.TestCase):
    token = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cube_table(cls.pg, "emb", 20000, "emb_live")
        cls.pg.psql("ANALYZE emb")
        evalf = eval_file("(0.%d, 0.5, 0.5)" % i for i in range(10))
        cls.admin = free_port()
        cls.vg = managed_vecgate(cls.pg, cls.admin, TOKEN, [{
                "name": "emb", "database": "postgres", "table": "public.emb", "index": "emb_live",
                "user": "postgres", "password": SUPERPW, "eval_file": evalf,
                "eval_query": "SELECT id FROM public.emb ORDER BY v <-> $1::cube LIMIT $2",
                "latency_budget_ms": 250, "watch_seconds": 0.5, "retention_seconds": 0.5,
                "max_transaction_age": 3600}, {
                # an eval slow enough to watch: 40 queries, 30 ms each, twice (exact truth, then timed)
                "name": "emb_slow_eval", "database": "postgres", "table": "public.emb", "index": "emb_live",
                "user": "postgres", "password": SUPERPW, "eval_file": eval_file(
                    "(0.%02d, 0.5, 0.5)" % i for i in range(40)),
                "eval_query": "SELECT s.id FROM (SELECT id FROM public.emb ORDER BY v <-> $1::cube LIMIT $2) s, "
                              "pg_sleep(0.03)",
                "latency_budget_ms": 250}])

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def direct(self, app):
        return psycopg.connect(host="127.0.0.1", port=self.pg.port, user="postgres", password=SUPERPW,
                               dbname="postgres", application_name=app)

    def rebuild_blocked_by(self, app, hold, once_phase=None):
        """Start a rebuild; `hold(connection)` makes a session named `app`
        hold what the build waits for, before the build or once its phase
        contains `once_phase`.  Returns the job JSON seen while blocked."""
        blocker = self.direct(app)
        if not once_phase:
            hold(blocker)
        blocker_pid = blocker.info.backend_pid
        out = {}
        env = dict(os.environ, VECGATE_TOKEN=TOKEN, VECGATE_ADMIN_URL="http://127.0.0.1:%d" % self.admin)
        watcher = threading.Thread(target=lambda: out.update(r=subprocess.run(
            [CTL, "rebuild", "start", "emb", "--until-done"], capture_output=True, text=True, env=env, timeout=120)))
        watcher.start()
        deadline = time.time() + 30
        while once_phase and time.time() < deadline:
            jobs = self.api("/v1/jobs?index=emb")["jobs"]
            if jobs and jobs[0]["state"] == "build" and once_phase in (jobs[0]["progress"]["phase"] or ""):
                hold(blocker)
                break
            time.sleep(0.05)
        seen = None
        while time.time() < deadline and not seen:
            jobs = self.api("/v1/jobs?index=emb")["jobs"]
            if jobs and jobs[0]["progress"]["blocked_by"]:
                seen = jobs[0]
            time.sleep(0.2)
        self.assertIsNotNone(seen, "the build never reported its blocker")
        b = seen["progress"]["blocked_by"]
        self.assertEqual(b["pid"], blocker_pid)
        self.assertEqual(b["user"], "postgres")
        self.assertEqual(b["application_name"], app)
        self.assertEqual(b["client_addr"], "127.0.0.1")
        self.assertEqual(b["cancel"], "SELECT pg_cancel_backend(%d)" % blocker_pid)
        self.assertEqual(b["terminate"], "SELECT pg_terminate_backend(%d)" % blocker_pid)
        self.assertGreaterEqual(b["transaction_age_seconds"], 0)
        metrics = self.api("/metrics", raw=True)
        self.assertIn('vecgate_rebuild_blocked_seconds{index="emb",pid="%d",user="postgres",application="%s"}'
                      % (blocker_pid, app), metrics)
        self.assertIn("waits for pid %d" % blocker_pid, self.vg.log())
        time.sleep(1)
        blocker.commit()  # the blocker ends: the build goes on
        watcher.join(120)
        r = out["r"]
        self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr)
        self.assertIn("for pid %d (postgres, %s): SELECT pg_cancel_backend(%d)" % (blocker_pid, app, blocker_pid),
                      r.stdout)
        self.assertIn("baseline recall", r.stdout)  # the bar says whose recall it shows
        job = self.api("/v1/jobs?index=emb")["jobs"][0]
        self.assertEqual(job["state"], "done")
        self.assertIsNone(job["progress"]["blocked_by"])
        blocker.close()
        return seen

    def test_a_old_snapshot(self):
        # a REPEATABLE READ report holding its snapshot across the build
        def hold(c):
            c.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            c.execute("SELECT count(*) FROM emb").fetchone()
        seen = self.rebuild_blocked_by("nightly-report", hold)
        self.assertIn("SELECT count(*) FROM emb", seen["progress"]["blocked_by"]["query"])

    def test_b_writer_across_validation(self):
        # a writer that took a row lock while the index was being built: the
        # build then waits for it before validation
        def hold(c):
            c.execute("BEGIN")
            c.execute("UPDATE emb SET v = v WHERE id = 1")
        seen = self.rebuild_blocked_by("ingest-batch", hold, once_phase="building index")
        self.assertIn("waiting for writers before validation", seen["progress"]["phase"])

    def test_d_eval_progress_and_cancel(self):
        r = subprocess.run([CTL, "--json", "rebuild", "start", "emb_slow_eval"], capture_output=True, text=True,
                           env=dict(os.environ, VECGATE_TOKEN=TOKEN,
                                    VECGATE_ADMIN_URL="http://127.0.0.1:%d" % self.admin), timeout=30)
        job_id = json.loads(r.stdout)["id"]
        deadline = time.time() + 30
        seen = []
        while time.time() < deadline:
            j = self.api("/v1/jobs/%d" % job_id)
            if j["eval"] and j["eval"]["done"] >= 10:
                seen.append(j["eval"])
                break
            time.sleep(0.1)
        self.assertTrue(seen, "no eval progress seen")
        ev = seen[0]
        self.assertEqual((ev["purpose"], ev["pass"], ev["total"]), ("baseline", "ground truth", 80))
        self.assertGreater(ev["eta_seconds"], 0)
        self.assertIn('vecgate_eval_progress_percent{index="emb_slow_eval"}', self.api("/metrics", raw=True))
        # an eval can be cancelled: the job ends at once, the rest of the eval set is not run
        t0 = time.time()
        r = subprocess.run([CTL, "cancel", str(job_id)], capture_output=True, text=True,
                           env=dict(os.environ, VECGATE_TOKEN=TOKEN,
                                    VECGATE_ADMIN_URL="http://127.0.0.1:%d" % self.admin), timeout=30)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        while time.time() - t0 < 10 and self.api("/v1/jobs/%d" % job_id)["state"] != "cancelled":
            time.sleep(0.1)
        j = self.api("/v1/jobs/%d" % job_id)
        self.assertEqual(j["state"], "cancelled")
        self.assertIsNone(j["eval"])
        time.sleep(0.5)  # nothing of the eval keeps running on the server
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(0.03)%' "
                                      "AND pid <> pg_backend_pid()"), "0")

    def test_c_watch_without_traffic_says_na(self):
        job = self.api("/v1/jobs?index=emb")["jobs"][0]
        watch = [h["message"] for h in job["history"] if h["from"] == "watch"]
        self.assertTrue(watch, job["history"])
        self.assertIn("n/a (no traffic)", watch[0])
        self.assertNotIn("nan", watch[0])


if __name__ == "__main__":
    unittest.main(verbosity=2)
