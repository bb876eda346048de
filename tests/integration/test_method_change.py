"""A rebuild that changes the index's shape, on pgvector: an IVFFlat index
(lists = 100, 20,000 rows of 64 dimensions) rebuilt as HNSW through the
same gate (baseline and candidate recall measured against exact truth, the
candidate's recall checked again here with exact top-k from a sequential
scan; pg_indexes shows hnsw with the new parameters and no lists after
done), and refusals at preflight, before anything is built, of shapes that
could not serve the same reads: an operator class with another distance
operator (vector_cosine_ops for reads ordered by <->), a half-precision key
the eval query does not read, an access method that does not exist.
Skipped where pgvector is not installed.
"""
import json
import random
import unittest

from pgtest import (AdminCase, SUPERPW, eval_file, free_port, has_pgvector, insert_random_vectors, PgCluster,
                    managed_vecgate, random_vector)

TOKEN = "method-change-token-0123"
DIMS = 64
K = 10
QUERY = "SELECT id FROM items ORDER BY embedding <-> $1::vector LIMIT $2"


@unittest.skipUnless(has_pgvector(), "pgvector is not installed (set VECGATE_VENDOR_DIR for tests/install-deps)")
class MethodChange(AdminCase, unittest.TestCase):
    token = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster(extra_conf="maintenance_work_mem=256MB")
        cls.pg.psql("CREATE EXTENSION vector")
        cls.pg.psql("CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(%d))" % DIMS)
        insert_random_vectors(cls.pg, "items", DIMS, 20000)
        cls.pg.psql("CREATE INDEX items_ivf ON items USING ivfflat (embedding vector_l2_ops) WITH (lists = 100)")
        cls.pg.psql("ANALYZE items")
        rnd = random.Random(11)
        cls.queries = [random_vector(rnd, DIMS) for _ in range(40)]
        evalf = eval_file(cls.queries)
        common = {"database": "postgres", "table": "items", "index": "items_ivf", "user": "postgres",
                  "password": SUPERPW, "eval_file": evalf, "k": K, "eval_query": QUERY,
                  "search_settings": {"ivfflat.probes": 1, "hnsw.ef_search": 100},
                  "watch_seconds": 1, "retention_seconds": 1, "latency_budget_ms": 250}
        cls.admin = free_port()
        cls.vg = managed_vecgate(cls.pg, cls.admin, TOKEN, [
            dict(common, name="upgrade", method="hnsw", **{"with": {"m": 16, "ef_construction": 64}}),
            dict(common, name="cosine", method="hnsw", opclass="vector_cosine_ops"),
            dict(common, name="half", opclass="halfvec_l2_ops", expression="embedding::halfvec(%d)" % DIMS),
            dict(common, name="nomethod", method="diskann"),
        ])

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def run_job(self, name):
        r = self.ctl("--json", "rebuild", "start", name)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        job_id = json.loads(r.stdout)["id"]
        return self.wait(job_id, lambda j: j["terminal"], timeout=280)

    def indexes(self):
        return self.pg.psql("SELECT string_agg(indexdef, E'\\n' ORDER BY indexname) FROM pg_indexes "
                            "WHERE tablename = 'items'")

    def refused(self, name, *fragments):
        before = self.indexes()
        j = self.run_job(name)
        self.assertEqual(j["state"], "failed", j)
        self.assertEqual([h["from"] for h in j["history"]], ["preflight"], j)
        self.assertIn("preflight: the new definition could not serve the same reads", j["message"])
        for f in fragments:
            self.assertIn(f, j["message"])
        self.assertEqual(self.indexes(), before)  # nothing was built

    def test_1_refused_at_preflight(self):
        self.refused("cosine", "operator class vector_cosine_ops orders by <=>, the live vector_l2_ops by <->")
        self.refused("half", "the eval query orders by embedding <->, not by the new key embedding::halfvec(64)")
        self.refused("nomethod", "there is no access method diskann")

    def test_2_ivfflat_rebuilt_as_hnsw(self):
        j = self.run_job("upgrade")
        self.assertEqual(j["state"], "done", j)
        history = " ".join(h["message"] for h in j["history"])
        self.assertIn("ground truth: one exact scan of 20000 rows", history)
        base, cand = j["baseline"]["recall"], j["candidate"]["recall"]
        self.assertIsNotNone(base)
        self.assertIsNotNone(cand)
        self.assertGreaterEqual(cand, base - 0.02)
        defn = self.pg.psql("SELECT indexdef FROM pg_indexes WHERE indexname = 'items_ivf'")
        self.assertIn("USING hnsw (embedding vector_l2_ops) WITH (m='16', ef_construction='64')", defn)
        self.assertNotIn("lists", defn)
        # only the new index and the primary key are left
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_indexes WHERE tablename = 'items'"), "2")
        # the candidate's recall, recomputed here against exact top-k (sequential scans)
        hits = 0
        # (prepare_threshold None: psycopg would otherwise prepare the query after 5 runs, and a
        # generic plan may not use the index at all)
        with self.pg.connect(prepare_threshold=None) as c:
            c.execute("SET hnsw.ef_search = 100")
            self.assertIn("Index Scan using items_ivf", "\n".join(
                r[0] for r in c.execute("EXPLAIN " + QUERY.replace("$1", "%s").replace("$2", str(K)), (self.queries[0],))))
            for q in self.queries:
                got = [r[0] for r in c.execute(QUERY.replace("$1", "%s").replace("$2", str(K)), (q,))]
                c.execute("SET enable_indexscan = off")
                exact = [r[0] for r in c.execute(QUERY.replace("$1", "%s").replace("$2", str(K)), (q,))]
                c.execute("RESET enable_indexscan")
                hits += len(set(got) & set(exact))
        recall = hits / (K * len(self.queries))
        self.assertAlmostEqual(recall, cand, delta=0.05, msg=json.dumps(j["history"], indent=1))
        print("ivfflat (lists=100, probes=1) recall@%d %.3f -> hnsw (m=16, ef_search=100) %.3f (exact check %.3f)"
              % (K, base, cand, recall))


if __name__ == "__main__":
    unittest.main()
