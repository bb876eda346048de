"""Ground truth of a filtered eval query in one pass (issue 23), on pgvector.

A 10-tenant table (some rows without a tenant or a language); eval queries
each name their tenant ("VECTOR ; tenant" in the eval file, $3 in the eval
query).  For filters of the simple kinds (col = $n, IN, ranges, text
equality, IS NULL) the exact scan reads the filter's columns in its one
binary COPY and applies the WHERE clause to each row; its truth must be the
per-query method's and the server's own (a sequential scan here, ORDER BY
distance, id) for every query, including a tenant that has no rows, and the
recall of the same timed queries must come out the same.  A filter one pass
does not apply (OR) keeps per-query ground truth and says why, in the log
and in the job's baseline message.  Each configuration is a managed index
whose drift monitor runs one eval at start (debug lines "eval truth NAME
qI (scan|per query): ...").  Skipped where pgvector is not installed.
"""
import json
import random
import unittest

from pgtest import (AdminCase, SUPERPW, PgCluster, eval_file, free_port, has_pgvector, managed_vecgate, random_vector,
                    wait_drift_checks)
from test_eval_truth import parse_truth

TOKEN = "filtered-truth-token-0123"
DIMS = 16
K = 10
TENANTS = 10
ROWS = 6000
BASE = "SELECT id FROM docs WHERE %s ORDER BY embedding <-> $1::vector LIMIT $2"
FILTERS = {
    "tenant": "tenant_id = $3",
    "range_lang": "tenant_id <= $3 AND lang = 'en'",
    "in_null": "tenant_id IN (2, $3) AND lang IS NOT NULL AND flagged IS NULL",
    "between": "tenant_id BETWEEN 3 AND $3 AND score >= 0.25",
}


@unittest.skipUnless(has_pgvector(), "pgvector is not installed (set VECGATE_VENDOR_DIR for tests/install-deps)")
class FilteredTruth(AdminCase, unittest.TestCase):
    token = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.psql("CREATE EXTENSION vector")
        rnd = random.Random(23)
        with cls.pg.connect() as c:
            c.execute("CREATE TABLE docs (id bigint PRIMARY KEY, tenant_id int, lang text, flagged bool, "
                      "score float8, embedding vector(%d))" % DIMS)
            with c.cursor().copy("COPY docs FROM STDIN") as cp:
                for i in range(1, ROWS + 1):
                    tenant = None if i % 97 == 0 else rnd.randint(1, TENANTS)
                    lang = None if i % 89 == 0 else rnd.choice(["en", "fr"])
                    flagged = True if i % 13 == 0 else None
                    cp.write_row((i, tenant, lang, flagged, rnd.random(), random_vector(rnd, DIMS)))
            c.execute("CREATE INDEX docs_hnsw ON docs USING hnsw (embedding vector_l2_ops)")
            c.execute("ANALYZE docs")
        # each query names its tenant; tenant 11 has no rows at all
        cls.queries = [(random_vector(rnd, DIMS), rnd.randint(1, TENANTS)) for _ in range(40)]
        cls.queries.append((random_vector(rnd, DIMS), TENANTS + 1))
        evalf = eval_file("%s ; %d" % q for q in cls.queries)
        common = {"database": "postgres", "table": "docs", "index": "docs_hnsw", "user": "postgres",
                  "password": SUPERPW, "eval_file": evalf, "k": K, "drift_check_seconds": 3600,
                  "latency_budget_ms": 250, "approve_swap": True}
        indexes = []
        for name, where in FILTERS.items():
            for method in ("exact_scan", "per_query"):
                indexes.append(dict(common, name="%s_%s" % (name, method), ground_truth=method,
                                    eval_query=BASE % where))
        indexes.append(dict(common, name="or_filter", eval_query=BASE % "tenant_id = $3 OR lang = 'fr'",
                            drift_check_seconds=0))
        cls.admin = free_port()
        cls.vg = managed_vecgate(cls.pg, cls.admin, TOKEN, indexes, logging={"level": "debug"})
        cls.drift = wait_drift_checks(cls.admin, TOKEN, [i["name"] for i in indexes if i["drift_check_seconds"]])

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def reference(self, c, where, q, tenant):
        """The server's exact answer: a sequential scan, ties by id."""
        c.execute("SET enable_indexscan = off")
        c.execute("SET enable_bitmapscan = off")
        sql = ("SELECT id FROM docs WHERE %s ORDER BY embedding <-> %%s::vector, id LIMIT %d"
               % (where.replace("$3", "%s"), K))
        args = [tenant] * where.count("$3") + [q]
        return [r[0] for r in c.execute(sql, args)]

    def test_a_one_pass_equals_per_query_and_server(self):
        log = self.vg.log()
        with self.pg.connect(prepare_threshold=None) as c:
            for name, where in FILTERS.items():
                self.assertEqual(self.drift["%s_exact_scan" % name]["last_error"], None, self.drift)
                self.assertIn("eval %s_exact_scan: ground truth by one exact scan of docs: %d rows" % (name, ROWS),
                              log)
                scan, _ = parse_truth(log, "%s_exact_scan" % name)
                perq, _ = parse_truth(log, "%s_per_query" % name)
                self.assertEqual(len(scan), len(self.queries), name)
                self.assertEqual(len(perq), len(self.queries), name)
                for qi, (q, tenant) in enumerate(self.queries):
                    ids = [i for i, _ in scan[qi]]
                    self.assertEqual(ids, [i for i, _ in perq[qi]], (name, qi))
                    self.assertEqual(ids, self.reference(c, where, q, tenant), (name, qi))
                # the same timed queries against the same truth: the same recall
                self.assertAlmostEqual(self.drift["%s_exact_scan" % name]["recall"],
                                       self.drift["%s_per_query" % name]["recall"], places=9, msg=name)
        # the tenant without rows: no neighbours at all, by either method
        self.assertEqual(parse_truth(log, "tenant_exact_scan")[0][len(self.queries) - 1], [])
        # one class per tenant named by the queries (the empty one included)
        self.assertRegex(log, r"eval tenant_exact_scan: ground truth by one exact scan of docs: \d+ rows \(\d+ with a "
                              r"NULL id or vector skipped, the WHERE clause applied to each row for %d distinct filter "
                              r"values" % len({t for _, t in self.queries}))

    def test_b_other_filters_say_why(self):
        r = self.ctl("--json", "rebuild", "start", "or_filter")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        job_id = json.loads(r.stdout)["id"]
        j = self.wait(job_id, lambda j: any(h["from"] == "baseline" for h in j["history"]) or j["terminal"])
        baseline = [h["message"] for h in j["history"] if h["from"] == "baseline"][0]
        self.assertIn("ground truth: per query (eval_query is not a plain k-NN query: OR in the WHERE clause needs "
                      "per-query ground truth", baseline)
        self.assertIn("ground truth by %d exact queries: eval_query is not a plain k-NN query" % len(self.queries),
                      self.vg.log())
        self.ctl("cancel", str(job_id))
        self.wait(job_id, lambda j: j["terminal"])


if __name__ == "__main__":
    unittest.main()
