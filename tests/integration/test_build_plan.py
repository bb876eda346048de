"""The build plan and what a build says, on real pgvector (HNSW).

- GET /v1/indexes/NAME/plan starts a plan (a trial build of a sample in the
  vecgate schema, with the build's own maintenance_work_mem, its progress
  sampled) and returns sane JSON when it is done: a positive prediction with
  its band, memory against maintenance_work_mem, its own cost; `vecgatectl
  rebuild plan` prints it; no scratch table is left.
- A plan for a build whose graph will not fit maintenance_work_mem runs a
  second trial in scaled memory that meets pgvector's NOTICE, and predicts
  the cliff and a longer build than the one that fits.
- A build whose graph does not fit maintenance_work_mem: pgvector's NOTICE
  reaches the job's JSON (notices, with advice), its history and vecgate's
  log; the ETA `vecgatectl job` prints during the build is the job's.
- Preflight refuses a build predicted over max_build_seconds, naming it
  (plan_over_limit: refuse, the default); with plan_over_limit: approve the
  job waits in preflight for the operator with the reason and the setting,
  and vecgatectl approve lets it build.
- An IVFFlat plan: a main trial with the build's lists and a k-means trial
  with lists cut to keep the build's samples per list, on the sample; the
  prediction is the sum of its parts (k-means, sampling, assigning, loading,
  validation).
- A job held for that approval when vecgate restarts comes back from
  vecgate.jobs, plans again and waits again (nothing built meanwhile);
  approving the resumed job lets it build.
Skipped where pgvector is not installed.
"""
import json
import random
import re
import time
import unittest

from pgtest import AdminCase, SUPERPW, eval_file, free_port, has_pgvector, PgCluster, managed_vecgate

TOKEN = "build-plan-token-0123456"
DIMS = 32
ROWS = 20000


def vec(rnd):
    return "[%s]" % ",".join("%.4f" % rnd.random() for _ in range(DIMS))


def index_cfg(name, evalf, **kw):
    cfg = {"name": name, "database": "postgres", "table": "public.items", "index": "items_embedding_idx",
           "user": "postgres", "password": SUPERPW, "eval_file": evalf, "k": 10,
           "eval_query": "SELECT id FROM public.items ORDER BY embedding <-> $1::vector LIMIT $2",
           "approve_swap": True, "latency_budget_ms": 250, "recall_tolerance": 0.5, "watch_seconds": 1,
           "retention_seconds": 1, "plan_sample_fraction": 0.2, "plan_min_rows": 1000, "plan": "auto"}
    cfg.update(kw)
    return cfg


@unittest.skipUnless(has_pgvector(), "pgvector is not installed (set VECGATE_VENDOR_DIR for tests/install-deps)")
class BuildPlan(AdminCase, unittest.TestCase):
    token = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster(extra_conf="maintenance_work_mem=64MB\nmax_parallel_maintenance_workers=0")
        cls.pg.psql("CREATE EXTENSION vector")
        cls.pg.psql("CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(%d))" % DIMS)
        cls.pg.psql("INSERT INTO items (embedding) SELECT (SELECT array_agg(random())::vector FROM "
                    "generate_series(1, %d) WHERE g > 0) FROM generate_series(1, %d) g" % (DIMS, ROWS))
        cls.pg.psql("CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_l2_ops) "
                    "WITH (m = 8, ef_construction = 16)")
        cls.pg.psql("ANALYZE items")
        evalf = eval_file(vec(random.Random(2)) for _ in range(10))
        cls.admin = free_port()
        cls.vg = managed_vecgate(cls.pg, cls.admin, TOKEN, [
            index_cfg("items", evalf),
            # 1 MB cannot hold the graph of 20k rows: the build goes on disk
            index_cfg("items_small", evalf, plan="off", maintenance_settings={"maintenance_work_mem": "1MB"}),
            index_cfg("items_window", evalf, plan="auto", max_build_seconds=0.001),
            index_cfg("items_window_approve", evalf, plan="auto", max_build_seconds=0.001,
                      plan_over_limit="approve"),
            index_cfg("items_window_restart", evalf, plan="auto", max_build_seconds=0.001,
                      plan_over_limit="approve"),
            index_cfg("items_ivf", evalf, plan="off", method="ivfflat", **{"with": {"lists": "20"}}),
            # 8 MB holds the sample's graph (4000 tuples), not the table's:
            # the on-disk trial runs in the sample's share, 8 MB x 20%
            index_cfg("items_disk", evalf, plan="off", maintenance_settings={"maintenance_work_mem": "8MB"})],
            pool_size=2)

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def scratch_tables(self):
        return self.pg.psql("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "WHERE n.nspname = 'vecgate' AND c.relname LIKE 'plan%'")

    def finished_plan(self, name):
        first = self.api("/v1/indexes/%s/plan" % name)
        self.assertIn(first["state"], ("connecting", "facts", "sample", "trial", "probe", "eval", "cleanup", "done"))
        deadline = time.time() + 120
        while True:
            p = self.api("/v1/indexes/%s/plan" % name)
            if not p["running"] or time.time() > deadline:
                break
            self.assertGreaterEqual(p["percent"], 0)
            time.sleep(0.3)
        self.assertEqual(p["state"], "done", p)
        return p["plan"]

    def test_plan_endpoint(self):
        plan = self.finished_plan("items")
        self.assertEqual(plan["method"], "hnsw")
        self.assertEqual(plan["table_rows"], ROWS)
        # the sample is built once, in the build's own memory: it fits, so
        # no second (on-disk) trial
        trials = plan["trials"]
        self.assertEqual([t["kind"] for t in trials], ["memory"], trials)
        self.assertLessEqual(trials[0]["rows"], 0.2 * ROWS)
        self.assertGreaterEqual(trials[0]["rows"], 1000)
        self.assertAlmostEqual(trials[0]["maintenance_work_mem_kb"], 64 * 1024, delta=1)
        self.assertEqual(trials[0]["graph_overflow_after_tuples"], 0)
        self.assertEqual(trials[0]["parallel_workers"], 0)
        if (plan["fit"]["model"] or "").startswith("phases"):
            self.assertGreaterEqual(trials[0]["progress_samples"], 2)
            self.assertGreaterEqual(plan["fit"]["memory_d"], 0)
            self.assertIsNone(plan["fit"]["disk_d"])
        else:  # too few samples to fit (a loaded machine): timed as a whole, and said so
            self.assertIn("too few progress samples", plan["notes"])
        self.assertGreater(plan["build"]["predicted_seconds"], 0)
        self.assertLessEqual(plan["build"]["predicted_low_seconds"], plan["build"]["predicted_seconds"])
        self.assertGreaterEqual(plan["build"]["predicted_high_seconds"], plan["build"]["predicted_seconds"])
        self.assertAlmostEqual(plan["memory"]["maintenance_work_mem_bytes"], 64 * 1024 * 1024, delta=1024)
        self.assertGreater(plan["memory"]["peak_bytes"], 0)
        self.assertTrue(plan["memory"]["fits"])
        self.assertGreater(plan["disk"]["index_bytes"], 0)
        self.assertGreater(plan["wal"]["bytes"], 0)
        self.assertGreater(plan["cost"]["seconds"], 0)
        self.assertIn("CONCURRENTLY", plan["definition"])
        self.assertEqual(self.scratch_tables(), "0")
        # the CLI prints the newest plan (and starts none while it exists)
        out = self.ctl("rebuild", "plan", "items")
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertIn("predicted build", out.stdout)
        self.assertIn("memory: peak", out.stdout)
        self.assertEqual(self.scratch_tables(), "0")

    def test_ivfflat_plan_components(self):
        # a scratch table of a plan whose backend is gone (pid 0 is no
        # backend's): the next plan drops it
        self.pg.psql("CREATE SCHEMA IF NOT EXISTS vecgate; CREATE TABLE vecgate.plan_0_1_sample (x int)")
        plan = self.finished_plan("items_ivf")
        self.assertEqual(plan["method"], "ivfflat")
        self.assertIn("USING ivfflat", plan["definition"])
        # 20 lists: pgvector's k-means samples 10,000 rows, 500 a list; the
        # sample (20% of 20k) has 4000: the main trial builds 3000 of them
        # with 20 lists, the k-means trial all 4000 with 8 (500 a list)
        trials = plan["trials"]
        self.assertEqual([t["kind"] for t in trials], ["scaled", "kmeans"], trials)
        self.assertEqual([t["lists"] for t in trials], [20, 8], trials)
        self.assertEqual([t["rows"] for t in trials], [3000, 4000], trials)
        steps = plan["cost"]["by_step"]
        self.assertEqual(set(steps), {"connecting", "facts", "sample", "trial", "eval", "cleanup"})
        self.assertAlmostEqual(sum(steps.values()), plan["cost"]["seconds"], delta=0.005)
        self.assertGreater(steps["trial"], 0)
        # the eval query was timed (on the progress session, during the sample's copy)
        self.assertGreater(plan["eval"]["query_seconds"], 0)
        self.assertGreater(plan["eval"]["seconds"], 0)
        f = plan["fit"]
        if f["model"] and f["model"].startswith("components"):
            parts = [f[k] for k in ("kmeans_seconds", "assign_seconds", "load_seconds", "fixed_seconds")]
            self.assertTrue(all(x is not None and x >= 0 for x in parts), f)
            self.assertGreater(f["kmeans_pair_seconds"], 0)
            self.assertAlmostEqual(sum(parts), plan["build"]["predicted_seconds"], delta=0.01)
        else:  # trials quicker than the poller: timed as wholes, and said so
            self.assertIn("phases were not seen", plan["notes"])
        self.assertGreater(plan["build"]["predicted_seconds"], 0)
        self.assertLessEqual(plan["build"]["predicted_low_seconds"], plan["build"]["predicted_seconds"])
        self.assertGreaterEqual(plan["build"]["predicted_high_seconds"], plan["build"]["predicted_seconds"])
        self.assertTrue(plan["memory"]["fits"])
        self.assertEqual(self.scratch_tables(), "0")

    def test_plan_predicts_cliff(self):
        fits = self.finished_plan("items")
        plan = self.finished_plan("items_small")
        self.assertFalse(plan["memory"]["fits"], plan)
        self.assertGreater(plan["memory"]["overflow_after_tuples"], 0)
        self.assertGreater(plan["memory"]["maintenance_work_mem_to_fit_bytes"], 1024 * 1024)
        kinds = [t["kind"] for t in plan["trials"]]
        self.assertEqual(kinds[0], "memory")
        # 1 MB is too little for the sample's graph: the memory trial met
        # the NOTICE itself, or a second trial in scaled memory did
        self.assertTrue(any(t["graph_overflow_after_tuples"] > 0 for t in plan["trials"]), plan["trials"])
        self.assertIn("maintenance_work_mem", plan["notes"])
        # the full build crosses the cliff, the one that fits never does
        # (structure, not seconds: two plans' timings move with the load)
        self.assertLess(plan["memory"]["overflow_after_tuples"], plan["table_rows"])
        self.assertTrue(fits["memory"]["fits"], fits["memory"])
        self.assertIsNone(fits["memory"]["overflow_after_tuples"])
        self.assertEqual(self.scratch_tables(), "0")

    def test_disk_trial_in_the_samples_share(self):
        plan = self.finished_plan("items_disk")
        self.assertFalse(plan["memory"]["fits"], plan["memory"])
        trials = plan["trials"]
        self.assertEqual([t["kind"] for t in trials], ["memory", "disk"], trials)
        self.assertEqual(trials[0]["graph_overflow_after_tuples"], 0)
        share = 8 * 1024 * trials[1]["rows"] / ROWS
        self.assertAlmostEqual(trials[1]["maintenance_work_mem_kb"], share, delta=2)
        # the share overflows where the build would, in proportion
        self.assertGreater(trials[1]["graph_overflow_after_tuples"], 0)
        self.assertLess(trials[1]["graph_overflow_after_tuples"], trials[1]["rows"])
        self.assertEqual(self.scratch_tables(), "0")

    def test_cliff_notice_and_eta(self):
        out = self.ctl("rebuild", "start", "items_small")
        self.assertEqual(out.returncode, 0, out.stderr)
        job_id = int(re.search(r"job (\d+)", out.stdout).group(1))
        # while it builds: the ETA the CLI prints is the job's (the CLI's
        # read falls between two reads of the JSON, which the progress poll
        # changes at most once)
        seen_eta = False
        deadline = time.time() + 120
        while time.time() < deadline and not seen_eta:
            j1 = self.job(job_id)
            if j1["state"] not in ("preflight", "baseline", "build"):
                break
            cli = self.ctl("job", str(job_id)).stdout
            j2 = self.job(job_id)
            m = re.search(r"build ETA (\d+)s", cli)
            if j1["state"] == j2["state"] == "build" and m and j1["progress"]["eta_seconds"] is not None \
                    and j2["progress"]["eta_seconds"] is not None:
                self.assertIn(int(m.group(1)), {round(j1["progress"]["eta_seconds"]),
                                                round(j2["progress"]["eta_seconds"])}, (cli, j1["progress"],
                                                                                        j2["progress"]))
                seen_eta = True
            time.sleep(0.1)
        j = self.wait(job_id, lambda j: j["state"] in ("swap", "failed", "cancelled"), timeout=180)
        self.assertEqual(j["state"], "swap", j["message"])
        notices = [n for n in j["notices"] if "no longer fits into maintenance_work_mem" in n["message"]]
        self.assertTrue(notices, j["notices"])
        self.assertIn("maintenance_work_mem", notices[0]["advice"])
        self.assertGreater(j["progress"]["graph_overflow_after_tuples"], 0)
        self.assertTrue([h for h in j["history"] if h["event"] == "notice" and "no longer fits" in h["message"]])
        self.assertIn("no longer fits into maintenance_work_mem", self.vg.log())
        self.assertTrue(seen_eta, "the build never showed an ETA in vecgatectl")
        self.ctl("cancel", str(job_id))
        self.wait(job_id, lambda j: j["terminal"])

    def test_preflight_refuses_over_window(self):
        out = self.ctl("rebuild", "start", "items_window")
        self.assertEqual(out.returncode, 0, out.stderr)
        job_id = int(re.search(r"job (\d+)", out.stdout).group(1))
        j = self.wait(job_id, lambda j: j["terminal"], timeout=120)
        self.assertEqual(j["state"], "failed")
        self.assertIn("max_build_seconds", j["message"])
        self.assertIsNotNone(j["plan"])
        self.assertIsNone(j["plan_over_limit"]["setting"])
        self.assertFalse(j["awaiting_approval"])
        self.assertFalse([h for h in j["history"] if h["to"] == "build"])
        self.assertEqual(self.scratch_tables(), "0")

    def start_held(self, name):
        """Start a rebuild whose plan is over the limit; return it once held."""
        out = self.ctl("rebuild", "start", name)
        self.assertEqual(out.returncode, 0, out.stderr)
        job_id = int(re.search(r"job (\d+)", out.stdout).group(1))
        j = self.wait(job_id, lambda j: j["awaiting_approval"] or j["terminal"], timeout=120)
        self.assertEqual(j["state"], "preflight", j["message"])
        return job_id, j

    def approve_to_swap(self, job_id):
        """vecgatectl approve lets a held job build through to the swap."""
        out = self.ctl("approve", str(job_id))
        self.assertEqual(out.returncode, 0, out.stderr + out.stdout)
        j = self.wait(job_id, lambda j: j["state"] in ("swap", "failed", "cancelled"), timeout=180)
        self.assertEqual(j["state"], "swap", j["message"])
        self.assertTrue([h for h in j["history"] if h["message"].startswith("built ")], j["history"])
        self.assertTrue(j["plan_over_limit"]["approved"])
        return j

    def test_over_window_waits_for_approval(self):
        job_id, j = self.start_held("items_window_approve")
        self.assertTrue(j["plan_over_limit"]["waiting"])
        self.assertEqual(j["plan_over_limit"]["setting"], "max_build_seconds")
        self.assertIn("max_build_seconds", j["plan_over_limit"]["reason"])
        self.assertIn("vecgatectl approve %d" % job_id, j["message"])
        self.assertIsNotNone(j["plan"])
        # held: nothing is built while it waits
        time.sleep(1)
        j = self.job(job_id)
        self.assertEqual(j["state"], "preflight")
        self.assertFalse([h for h in j["history"] if h["to"] in ("baseline", "build")], j["history"])
        j = self.approve_to_swap(job_id)
        self.assertTrue([h for h in j["history"] if "approved by operator over the build plan" in h["message"]],
                        j["history"])
        self.ctl("cancel", str(job_id))
        self.wait(job_id, lambda j: j["terminal"])

    def test_over_window_approval_survives_restart(self):
        job_id, j = self.start_held("items_window_restart")
        db_id = j["db_id"]
        self.assertIsNotNone(db_id)
        self.assertEqual(self.pg.psql("SELECT state FROM vecgate.jobs WHERE id = %d" % db_id), "preflight")
        # vecgate restarts while the operator has not decided yet
        self.vg.stop()
        self.vg.start()
        deadline = time.time() + 30
        resumed = []
        while time.time() < deadline and not resumed:
            jobs = json.loads(self.ctl("--json", "jobs", "items_window_restart").stdout or "{}").get("jobs", [])
            resumed = [x for x in jobs if x.get("db_id") == db_id]
            time.sleep(0.3)
        self.assertEqual(len(resumed), 1, jobs)
        new_id = resumed[0]["id"]
        # the resumed job plans again and is held again: the limit still holds
        j = self.wait(new_id, lambda j: j["awaiting_approval"] or j["terminal"] or
                      j["state"] not in ("preflight",), timeout=120)
        self.assertEqual(j["state"], "preflight", j["history"])
        self.assertTrue(j["awaiting_approval"], j["message"])
        self.assertTrue(j["plan_over_limit"]["waiting"])
        self.assertEqual(j["plan_over_limit"]["setting"], "max_build_seconds")
        self.assertIsNotNone(j["plan"])
        self.assertIn("vecgatectl approve %d" % new_id, j["message"])
        self.assertIn("resumed after a restart", " ".join(h["message"] for h in j["history"]))
        self.assertFalse([h for h in j["history"] if h["to"] in ("baseline", "build")], j["history"])
        self.assertEqual(self.pg.psql("SELECT state FROM vecgate.jobs WHERE id = %d" % db_id), "preflight")
        self.approve_to_swap(new_id)
        self.ctl("cancel", str(new_id))
        self.wait(new_id, lambda j: j["terminal"])
        self.assertEqual(self.scratch_tables(), "0")


if __name__ == "__main__":
    unittest.main()
