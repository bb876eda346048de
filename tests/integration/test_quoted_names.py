"""Names as real schemas spell them, on pgvector: a table "RAG"."DocChunks"
with an HNSW index "Chunk Emb Idx" (quoted, mixed case, a space) configured
the way SQL writes them, rebuilt end to end through vecgate (done; reads
through vecgate served by the new index, counted by pg_stat_user_indexes);
60-byte index names whose first 59 bytes are the same, one of them rebuilt
twice, with new and retired names that fit 63 bytes and never collide; and
names that match nothing refused at preflight with what was looked up.
Skipped where pgvector is not installed.
"""
import random
import time
import unittest

import psycopg

from pgtest import (AdminCase, SUPERPW, eval_file, free_port, has_pgvector, insert_random_vectors, PgCluster,
                    managed_vecgate, random_vector)

TOKEN = "quoted-names-token-0123"
DIMS = 16
LONG_A = "a" * 59 + "1"  # 60 bytes; "_vg1" does not fit in 63
LONG_B = "a" * 59 + "2"


@unittest.skipUnless(has_pgvector(), "pgvector is not installed (set VECGATE_VENDOR_DIR for tests/install-deps)")
class QuotedNames(AdminCase, unittest.TestCase):
    token = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster(extra_conf="autovacuum=off")
        cls.pg.psql("CREATE EXTENSION vector")
        cls.pg.psql('CREATE SCHEMA "RAG"')
        cls.pg.psql('CREATE TABLE "RAG"."DocChunks" (id bigserial PRIMARY KEY, embedding vector(%d))' % DIMS)
        insert_random_vectors(cls.pg, '"RAG"."DocChunks"', DIMS, 4000)
        cls.pg.psql('CREATE INDEX "Chunk Emb Idx" ON "RAG"."DocChunks" USING hnsw (embedding vector_l2_ops) '
                    "WITH (m = 4, ef_construction = 8)")
        for t, i in (("long_a", LONG_A), ("long_b", LONG_B)):
            cls.pg.psql("CREATE TABLE %s (id bigserial PRIMARY KEY, embedding vector(%d))" % (t, DIMS))
            insert_random_vectors(cls.pg, t, DIMS, 3000)
            cls.pg.psql("CREATE INDEX %s ON %s USING hnsw (embedding vector_l2_ops)" % (i, t))
        cls.pg.psql('ANALYZE "RAG"."DocChunks"; ANALYZE long_a; ANALYZE long_b')
        rnd = random.Random(5)
        evalf = eval_file(random_vector(rnd, DIMS) for _ in range(20))
        common = {"database": "postgres", "user": "postgres", "password": SUPERPW, "eval_file": evalf, "k": 10,
                  "watch_seconds": 1, "retention_seconds": 1, "latency_budget_ms": 250, "recall_tolerance": 0.5}
        cls.admin = free_port()
        cls.vg = managed_vecgate(cls.pg, cls.admin, TOKEN, [
            dict(common, name="rag", table='"RAG"."DocChunks"', index='"Chunk Emb Idx"',
                 eval_query='SELECT id FROM "RAG"."DocChunks" ORDER BY embedding <-> $1::vector LIMIT $2',
                 **{"with": {"m": 16, "ef_construction": 64}}),
            dict(common, name="long_a", table="public.long_a", index=LONG_A,
                 eval_query="SELECT id FROM long_a ORDER BY embedding <-> $1::vector LIMIT $2"),
            dict(common, name="long_b", table="long_b", index='"public"."%s"' % LONG_B,
                 eval_query="SELECT id FROM long_b ORDER BY embedding <-> $1::vector LIMIT $2"),
            dict(common, name="missing", table='"RAG"."Missing"', index='"Chunk Emb Idx"',
                 eval_query='SELECT id FROM "RAG"."DocChunks" ORDER BY embedding <-> $1::vector LIMIT $2'),
            # raw names keep their case: rag.docchunks is not "RAG"."DocChunks"
            dict(common, name="folded", table="rag.docchunks", index="chunk emb idx",
                 eval_query='SELECT id FROM "RAG"."DocChunks" ORDER BY embedding <-> $1::vector LIMIT $2'),
            dict(common, name="wrong_table", table='"RAG"."DocChunks"', index=LONG_A,
                 eval_query='SELECT id FROM "RAG"."DocChunks" ORDER BY embedding <-> $1::vector LIMIT $2'),
        ], pool_size=3)
        cls.q = random_vector(random.Random(9), DIMS)

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def rebuild(self, name, until=("done", "failed", "rolled_back", "cancelled")):
        r = self.ctl("--json", "rebuild", "start", name)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        job_id = __import__("json").loads(r.stdout)["id"]
        return self.wait(job_id, lambda j: j["state"] in until)

    def scans(self, oid):
        return int(self.pg.psql("SELECT idx_scan FROM pg_stat_user_indexes WHERE indexrelid = %s" % oid))

    def test_1_quoted_mixed_case_names_rebuilt_end_to_end(self):
        old_oid = self.pg.psql("""SELECT '"RAG"."Chunk Emb Idx"'::regclass::oid""")
        j = self.rebuild("rag")
        self.assertEqual(j["state"], "done", j)
        history = " ".join(h["message"] for h in j["history"])
        # the eval query's quoted names are the managed table's: one exact scan
        self.assertIn("one exact scan", history)
        self.assertEqual(j["new_index"], "Chunk Emb Idx_vg%d" % j["id"])
        self.assertEqual(j["retired_index"], "Chunk Emb Idx_vgold%d" % j["id"])
        new_oid = self.pg.psql("""SELECT '"RAG"."Chunk Emb Idx"'::regclass::oid""")
        self.assertNotEqual(new_oid, old_oid)
        self.assertIn("m='16'", self.pg.psql("SELECT pg_get_indexdef(%s)" % new_oid))
        # the retired index is gone (retention 1 s) and nothing else was left behind
        self.assertEqual(self.pg.psql("""SELECT string_agg(indexrelid::regclass::text, ',' ORDER BY indexrelid::regclass::text)
                                         FROM pg_index WHERE indrelid = '"RAG"."DocChunks"'::regclass"""),
                         '"RAG"."Chunk Emb Idx","RAG"."DocChunks_pkey"')
        # reads through vecgate are served by the new index
        self.pg.psql("SELECT pg_stat_force_next_flush()")
        before = self.scans(new_oid)
        with psycopg.connect(self.vg.dsn(user="postgres", password="", db="postgres"), autocommit=True) as c:
            for _ in range(20):
                rows = c.execute('SELECT id FROM "RAG"."DocChunks" ORDER BY embedding <-> %s::vector LIMIT 10',
                                 (self.q,)).fetchall()
                self.assertEqual(len(rows), 10)
        deadline = time.time() + 15
        while time.time() < deadline and self.scans(new_oid) < before + 20:
            time.sleep(0.2)
        self.assertGreaterEqual(self.scans(new_oid), before + 20)

    def test_2_long_names_never_collide(self):
        names = set()
        for name, live in (("long_a", LONG_A), ("long_a", LONG_A), ("long_b", LONG_B)):
            j = self.rebuild(name)
            self.assertEqual(j["state"], "done", j)
            for n in (j["new_index"], j["retired_index"]):
                self.assertLessEqual(len(n.encode()), 63, n)
                self.assertNotIn(n, names)
                names.add(n)
            self.assertTrue(j["new_index"].endswith("_vg%d" % j["id"]), j["new_index"])
            self.assertTrue(j["retired_index"].endswith("_vgold%d" % j["id"]), j["retired_index"])
            # the live name (untruncated) is the rebuilt index
            self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_indexes WHERE indexname = '%s'" % live), "1")
        # the two live names share 59 bytes; their derived names carry a tag of the whole name each
        self.assertEqual(len({n.rsplit("_vg", 1)[0][-9:] for n in names}), 2, names)
        # nothing left behind on either table
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_indexes WHERE tablename IN ('long_a', 'long_b')"),
                         "4")

    def test_3_names_that_match_nothing_refused_at_preflight(self):
        j = self.rebuild("missing")
        self.assertEqual(j["state"], "failed", j)
        self.assertEqual(j["history"][-1]["from"], "preflight", j)
        self.assertIn('looked up schema "RAG", table "Missing", index "Chunk Emb Idx": no table "Missing" in '
                      'schema "RAG"', j["message"])
        self.assertNotIn("internal", j["message"])
        j = self.rebuild("folded")
        self.assertEqual(j["state"], "failed", j)
        self.assertIn('looked up schema "rag", table "docchunks", index "chunk emb idx": no schema "rag"',
                      j["message"])
        self.assertIn('differ only in case: "RAG"."Chunk Emb Idx", "RAG"."DocChunks"', j["message"])
        j = self.rebuild("wrong_table")
        self.assertEqual(j["state"], "failed", j)
        self.assertIn('no index "%s" in schema "RAG"' % LONG_A, j["message"])
        self.assertIn('the table\'s indexes: "Chunk Emb Idx", "DocChunks_pkey"', j["message"])


if __name__ == "__main__":
    unittest.main()
