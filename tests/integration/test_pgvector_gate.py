"""The gate holds on real pgvector (HNSW): the candidate stays invisible to
the planner until the gated swap.

The live index is a "messy" HNSW graph (rows rewritten by UPDATEs with
autovacuum off, as churn and ingestion leave it), rebuilt with the same
parameters.  First the premise is checked: with both valid, the planner
prefers the fresh candidate (it would move traffic before any gate).  Then a
rebuild with approve_swap: while the job waits for approval, EXPLAIN through
vecgate, in a direct session, and in a direct session holding a generic
cached plan all show the live index; after approval all show the new one
(the live name now points at a new relation); after rollback the old one
again.  Skipped where pgvector is not installed (tests/install-deps builds it
from VECGATE_VENDOR_DIR).
"""
import json
import random
import re
import time
import unittest

import psycopg

from pgtest import AdminCase, SUPERPW, eval_file, free_port, has_pgvector, PgCluster, managed_vecgate, vecgatectl

TOKEN = "pgvector-gate-token-0123"
DIMS = 32


def vec(rnd):
    return "[%s]" % ",".join("%.4f" % rnd.random() for _ in range(DIMS))


@unittest.skipUnless(has_pgvector(), "pgvector is not installed (set VECGATE_VENDOR_DIR for tests/install-deps)")
class CandidateInvisible(AdminCase, unittest.TestCase):
    token = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster(extra_conf="autovacuum=off\nmaintenance_work_mem=128MB")
        cls.pg.psql("CREATE EXTENSION vector")
        cls.pg.psql("CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(%d))" % DIMS)
        noise = "(SELECT array_agg(random())::vector FROM generate_series(1, %d) WHERE g > 0)" % DIMS
        cls.pg.psql("INSERT INTO items (embedding) SELECT %s FROM generate_series(1, 8000) g" % noise)
        cls.pg.psql("CREATE INDEX items_embedding_idx ON items USING hnsw (embedding vector_l2_ops) "
                    "WITH (m = 8, ef_construction = 16)")
        # churn: every row rewritten twice, nothing vacuumed
        for _ in range(2):
            cls.pg.psql("UPDATE items SET embedding = (SELECT array_agg(random())::vector "
                        "FROM generate_series(1, %d) WHERE id > 0)" % DIMS)
        cls.pg.psql("ANALYZE items")
        # partitioned by tenant, one partition empty, tenant 0 partitioned again by id:
        # sub-partitions are refused at preflight (test_partitioned.py rebuilds one level)
        cls.pg.psql("CREATE TABLE parted (tenant int NOT NULL, id bigint NOT NULL, embedding vector(%d)) "
                    "PARTITION BY LIST (tenant)" % DIMS)
        cls.pg.psql("CREATE TABLE parted_0 PARTITION OF parted FOR VALUES IN (0) PARTITION BY RANGE (id)")
        cls.pg.psql("CREATE TABLE parted_0a PARTITION OF parted_0 FOR VALUES FROM (MINVALUE) TO (MAXVALUE)")
        for t in range(1, 3):
            cls.pg.psql("CREATE TABLE parted_%d PARTITION OF parted FOR VALUES IN (%d)" % (t, t))
        cls.pg.psql("INSERT INTO parted SELECT g %% 2, g, %s FROM generate_series(1, 600) g" % noise)
        cls.pg.psql("CREATE INDEX parted_idx ON parted USING hnsw (embedding vector_l2_ops)")
        rnd = random.Random(2)
        evalf = eval_file(vec(rnd) for _ in range(20))
        cls.admin = free_port()
        cls.vg = managed_vecgate(cls.pg, cls.admin, TOKEN, [{
                "name": "items", "database": "postgres", "table": "public.items", "index": "items_embedding_idx",
                "user": "postgres", "password": SUPERPW, "eval_file": evalf, "k": 10,
                "eval_query": "SELECT id FROM public.items ORDER BY embedding <-> $1::vector LIMIT $2",
                "search_settings": {"hnsw.ef_search": "40"}, "approve_swap": True,
                "latency_budget_ms": 250, "recall_tolerance": 0.2, "watch_seconds": 1,
                "retention_seconds": 600}, {
                # the same index rebuilt as a much worse graph, under a strict gate
                "name": "items_strict", "database": "postgres", "table": "public.items",
                "index": "items_embedding_idx", "user": "postgres", "password": SUPERPW, "eval_file": evalf,
                "k": 10, "eval_query": "SELECT id FROM public.items ORDER BY embedding <-> $1::vector LIMIT $2",
                "with": {"m": 2, "ef_construction": 4}, "search_settings": {"hnsw.ef_search": "10"},
                "approve_swap": True, "recall_tolerance": 0, "latency_budget_ms": 250, "watch_seconds": 1,
                "retention_seconds": 1}, {
                "name": "parted", "database": "postgres", "table": "public.parted", "index": "parted_idx",
                "user": "postgres", "password": SUPERPW, "eval_file": evalf, "k": 10,
                "eval_query": "SELECT id FROM public.parted ORDER BY embedding <-> $1::vector LIMIT $2"}],
            pool_size=4)
        cls.q = vec(random.Random(9))

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def plan_index(self, conn, sql):
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + sql).fetchone()[0]
        return json.dumps(plan).split('"Index Name": "')[1].split('"')[0] if '"Index Name"' in json.dumps(plan) \
            else "seq scan"

    def knn(self):
        return "SELECT id FROM items ORDER BY embedding <-> '%s' LIMIT 10" % self.q

    def direct(self):
        return psycopg.connect(host="127.0.0.1", port=self.pg.port, user="postgres", password=SUPERPW,
                               dbname="postgres", autocommit=True)

    def test_candidate_stays_invisible_until_the_swap(self):
        # the premise: a fresh compact graph wins the planner when both are valid
        self.pg.psql("CREATE INDEX fresh_probe ON items USING hnsw (embedding vector_l2_ops) "
                     "WITH (m = 8, ef_construction = 16)")
        with self.direct() as c:
            self.assertEqual(self.plan_index(c, self.knn()), "fresh_probe")
        self.pg.psql("DROP INDEX fresh_probe")

        old_oid = self.pg.psql("SELECT 'items_embedding_idx'::regclass::oid")
        cached = self.direct()  # holds a generic plan made before the rebuild
        cached.execute("SET plan_cache_mode = force_generic_plan")
        cached.execute("PREPARE knn(vector) AS SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 10")
        explain_cached = "EXECUTE knn('%s')" % self.q
        self.assertEqual(self.plan_index(cached, explain_cached), "items_embedding_idx")

        r = self.ctl("--json", "rebuild", "start", "items")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        job_id = json.loads(r.stdout)["id"]
        deadline = time.time() + 240
        while time.time() < deadline:
            j = self.job(job_id)
            if j["awaiting_approval"] or j["terminal"]:
                break
            time.sleep(0.2)
        self.assertTrue(j["awaiting_approval"], j)
        candidate = j["new_index"]
        # the candidate exists, is maintained (indisready) and invisible (not indisvalid)
        self.assertEqual(self.pg.psql("SELECT indisvalid || ' ' || indisready FROM pg_index "
                                      "WHERE indexrelid = '%s'::regclass" % candidate), "false true")
        with psycopg.connect(self.vg.dsn(user="postgres", password=SUPERPW, db="postgres"), autocommit=True) as via:
            self.assertEqual(self.plan_index(via, self.knn()), "items_embedding_idx")
        with self.direct() as c:
            self.assertEqual(self.plan_index(c, self.knn()), "items_embedding_idx")
        self.assertEqual(self.plan_index(cached, explain_cached), "items_embedding_idx")
        # the gate measured the candidate (EXPLAIN inside its own transaction)
        self.assertIn("plan used %s" % candidate, " ".join(h["message"] for h in j["history"]))

        r = self.ctl("approve", str(job_id))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        while time.time() < deadline:
            j = self.job(job_id)
            if j["state"] in ("retain", "failed", "rolled_back", "done"):
                break
            time.sleep(0.2)
        self.assertEqual(j["state"], "retain", j)
        new_oid = self.pg.psql("SELECT 'items_embedding_idx'::regclass::oid")
        self.assertNotEqual(new_oid, old_oid)
        with psycopg.connect(self.vg.dsn(user="postgres", password=SUPERPW, db="postgres"), autocommit=True) as via:
            self.assertEqual(self.plan_index(via, self.knn()), "items_embedding_idx")
        self.assertEqual(self.plan_index(cached, explain_cached), "items_embedding_idx")
        self.assertEqual(self.pg.psql("SELECT 'items_embedding_idx_vgold%d'::regclass::oid" % job_id), old_oid)
        print("recall@10 %.3f -> %.3f, swap %.2f ms" % (j["baseline"]["recall"], j["candidate"]["recall"],
                                                        j["swap_lock_ms"]))

        r = self.ctl("rollback", str(job_id))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        while time.time() < deadline and self.job(job_id)["state"] != "rolled_back":
            time.sleep(0.2)
        self.assertEqual(self.pg.psql("SELECT 'items_embedding_idx'::regclass::oid"), old_oid)
        with self.direct() as c:
            self.assertEqual(self.plan_index(c, self.knn()), "items_embedding_idx")
        self.assertEqual(self.plan_index(cached, explain_cached), "items_embedding_idx")
        cached.close()


class HeldCandidate(CandidateInvisible):
    """approve_swap: a candidate the gate refuses waits for the operator
    (invisible) instead of being dropped; approve --override swaps it with
    the refusal on the record, cancel drops it."""

    test_candidate_stays_invisible_until_the_swap = None

    def test_sub_partitioned_table_refused_at_preflight(self):
        count = "SELECT count(*) FROM pg_index WHERE indrelid IN (SELECT relid FROM pg_partition_tree('parted'))"
        before = self.pg.psql(count)
        self.assertEqual(before, "5")  # the parent's, one per partition, one on the sub-partition
        r = vecgatectl(self.admin, TOKEN, "rebuild", "start", "parted", "--until-done")
        self.assertNotEqual(r.returncode, 0, r.stdout)
        j = json.loads(vecgatectl(self.admin, TOKEN, "--json", "jobs", "parted").stdout)["jobs"][0]
        self.assertEqual(j["state"], "failed", j)
        self.assertEqual([h["from"] for h in j["history"]], ["preflight"], j["history"])
        self.assertIn("public.parted has sub-partitions (partition tree 2 levels deep)", j["message"])
        # nothing was built, on the parent or any partition
        self.assertEqual(self.pg.psql(count), before)

    def test_refused_then_overridden_or_cancelled(self):
        r = self.ctl("rebuild", "start", "items_strict", "--watch")
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)  # --watch ends: the operator must decide
        job_id = int(re.search(r"vecgatectl approve (\d+)", r.stdout).group(1))
        j = self.wait(job_id, lambda j: j["awaiting_approval"])
        self.assertEqual(j["state"], "swap")
        self.assertIn("recall", j["gate_refused"])
        self.assertIn("recall_tolerance >=", j["gate_refused"])
        candidate = j["new_index"]
        self.assertEqual(self.pg.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = '%s'::regclass"
                                      % candidate), "f")
        r = self.ctl("approve", str(job_id))
        self.assertEqual(r.returncode, 1)
        self.assertIn("--override", r.stderr)
        r = self.ctl("approve", str(job_id), "--override")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        j = self.wait(job_id, lambda j: j["terminal"] or j["state"] == "retain")
        self.assertIn(j["state"], ("retain", "done"), j)
        override = [h for h in j["history"] if h["event"] == "override"]
        self.assertEqual(len(override), 1, j["history"])
        self.assertIn("over the gate's refusal: recall", override[0]["message"])
        j = self.wait(job_id, lambda j: j["terminal"])
        self.assertEqual(j["state"], "done")

        # waiting for the operator again (the live graph is now as poor as the candidate, so the
        # gate may pass or refuse), then cancelled: the candidate is dropped, the live index untouched
        live_oid = self.pg.psql("SELECT 'items_embedding_idx'::regclass::oid")
        r = self.ctl("rebuild", "start", "items_strict", "--watch")
        self.assertEqual(r.returncode, 3, r.stdout + r.stderr)
        job_id = int(re.search(r"vecgatectl approve (\d+)", r.stdout).group(1))
        candidate = self.job(job_id)["new_index"]
        r = self.ctl("cancel", str(job_id))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.wait(job_id, lambda j: j["state"] == "cancelled")
        deadline = time.time() + 30
        while time.time() < deadline and self.pg.psql("SELECT to_regclass('%s') IS NULL" % candidate) != "t":
            time.sleep(0.2)
        self.assertEqual(self.pg.psql("SELECT to_regclass('%s') IS NULL" % candidate), "t")
        self.assertEqual(self.pg.psql("SELECT 'items_embedding_idx'::regclass::oid"), live_oid)


@unittest.skipUnless(has_pgvector(), "pgvector is not installed (set VECGATE_VENDOR_DIR for tests/install-deps)")
class IvfflatRebuild(unittest.TestCase):
    """IVFFlat at 128 dimensions: lists 10 -> 40 with ivfflat.probes 2.
    Recall is approximate on both sides and gated for real; the new
    definition keeps the access method and operator class of the live one."""

    def test_lists_rebuild(self):
        dims = 128
        pg = PgCluster(extra_conf="maintenance_work_mem=128MB")
        pg.psql("CREATE EXTENSION vector")
        pg.psql("CREATE TABLE docs (id bigserial PRIMARY KEY, embedding vector(%d))" % dims)
        # uniform points: no cluster structure for the lists to follow, so
        # probing 2 lists finds many but not all true neighbours
        pg.psql("INSERT INTO docs (embedding) SELECT (SELECT array_agg(random())::vector "
                "FROM generate_series(1, %d) WHERE g > 0) FROM generate_series(1, 6000) g" % dims)
        pg.psql("CREATE INDEX docs_ivf ON docs USING ivfflat (embedding vector_l2_ops) WITH (lists = 10)")
        pg.psql("ANALYZE docs")
        rnd = random.Random(4)
        evalf = eval_file("[%s]" % ",".join("%.4f" % rnd.random() for _ in range(dims)) for _ in range(30))
        admin = free_port()
        vg = managed_vecgate(pg, admin, TOKEN, [{
                "name": "docs", "database": "postgres", "table": "public.docs", "index": "docs_ivf",
                "user": "postgres", "password": SUPERPW, "eval_file": evalf, "k": 10,
                "eval_query": "SELECT id FROM public.docs ORDER BY embedding <-> $1::vector LIMIT $2",
                "with": {"lists": 40}, "search_settings": {"ivfflat.probes": "2"},
                "recall_tolerance": 0.5, "latency_budget_ms": 250, "watch_seconds": 1, "retention_seconds": 1}])
        try:
            r = vecgatectl(admin, TOKEN, "rebuild", "start", "docs", "--until-done")
            self.assertEqual(r.returncode, 0, r.stdout[-3000:] + r.stderr)
            j = json.loads(vecgatectl(admin, TOKEN, "--json", "jobs", "docs").stdout)["jobs"][0]
            self.assertEqual(j["state"], "done")
            # approximate on both sides: neither graph finds every true neighbour at 2 probes
            self.assertLess(j["baseline"]["recall"], 1.0)
            self.assertLess(j["candidate"]["recall"], 1.0)
            self.assertGreater(j["candidate"]["recall"], 0)
            self.assertIn("USING ivfflat (embedding) WITH (lists='40')",
                          pg.psql("SELECT pg_get_indexdef('docs_ivf'::regclass)"))
            print("ivfflat lists 10 -> 40, probes 2: recall@10 %.3f -> %.3f" % (j["baseline"]["recall"],
                                                                             j["candidate"]["recall"]))
        finally:
            vg.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
