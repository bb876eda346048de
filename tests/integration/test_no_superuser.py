"""Rebuilds with a maintenance role that is not superuser (the table's
owner, as on managed PostgreSQL), on real pgvector HNSW with hypopg 1.4.

First the facts the design rests on, checked on this server: hypopg's
hypopg_hide_index() changes what EXPLAIN shows but not which index a query
really scans (the transaction's scan counters say so), while a generic plan
made by EXPLAIN EXECUTE with the index hidden, then reused by EXECUTE, does
scan the other index.

Then a rebuild to a larger m, which pgvector's cost model never prefers
while the old graph is visible: without hypopg verify cannot measure the
candidate and says what would let it; with hypopg it measures the candidate
through such a planted plan (proved by the scan counters), and the
rename-mode swap moves traffic through vecgate, with prepared k-NN queries
and inserts running through transaction pooling the whole time.  Skipped
where pgvector or hypopg >= 1.4 is not installed."""
import json
import os
import random
import threading
import time
import unittest

import psycopg

from pgtest import AdminCase, eval_file, free_port, has_pgvector, PgCluster, run, Vecgate

TOKEN = "no-superuser-token-0123"
DIMS = 32


def has_hypopg_14():
    r = run(["/usr/lib/postgresql/15/bin/pg_config", "--sharedir"])
    return os.path.exists(os.path.join(r.stdout.strip(), "extension", "hypopg--1.4.0.sql"))


def vec(rnd):
    return "[%s]" % ",".join("%.4f" % rnd.random() for _ in range(DIMS))


@unittest.skipUnless(has_pgvector() and has_hypopg_14(), "needs pgvector and hypopg >= 1.4 (VECGATE_VENDOR_DIR)")
class NoSuperuser(AdminCase, unittest.TestCase):
    token = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster(extra_conf="autovacuum=off\nmaintenance_work_mem=128MB")
        cls.pg.psql("CREATE ROLE owner LOGIN PASSWORD 'owner-pw'")
        cls.pg.psql("CREATE DATABASE app OWNER owner")
        cls.pg.psql("CREATE EXTENSION vector", db="app")
        cls.pg.psql("SET ROLE owner; CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(%d))" % DIMS,
                    db="app")
        noise = "(SELECT array_agg(random())::vector FROM generate_series(1, %d) WHERE g > 0)" % DIMS
        cls.pg.psql("INSERT INTO items (embedding) SELECT %s FROM generate_series(1, 6000) g" % noise, db="app")
        cls.pg.psql("SET ROLE owner; CREATE INDEX items_embedding_idx ON items USING hnsw "
                    "(embedding vector_l2_ops) WITH (m = 4, ef_construction = 8)", db="app")
        cls.pg.psql("ANALYZE items", db="app")
        cls.admin = free_port()
        rnd = random.Random(5)
        cls.evalf = eval_file(vec(rnd) for _ in range(30))
        cls.vg = Vecgate(cls.pg, auth_type="trust", users=[], databases=[
            {"name": "app", "pool_mode": "transaction", "pool_size": 4, "user": "owner", "password": "owner-pw"}],
            extra={"admin": {"port": cls.admin, "token": TOKEN},
                   "managed_indexes": [{
                       "name": "items", "database": "app", "table": "public.items", "index": "items_embedding_idx",
                       "user": "owner", "password": "owner-pw", "eval_file": cls.evalf, "k": 10,
                       "eval_query": "SELECT id FROM public.items ORDER BY embedding <-> $1::vector LIMIT $2",
                       "with": {"m": 16, "ef_construction": 32}, "search_settings": {"hnsw.ef_search": "10"},
                       "approve_swap": True, "recall_tolerance": 0.05, "latency_budget_ms": 250,
                       "watch_seconds": 1, "retention_seconds": 1}]})

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def owner(self):
        return psycopg.connect(host="127.0.0.1", port=self.pg.port, user="owner", password="owner-pw", dbname="app",
                               autocommit=True)

    @staticmethod
    def plan_index(conn, sql):
        plan = json.dumps(conn.execute("EXPLAIN (FORMAT JSON) " + sql).fetchone()[0])
        return plan.split('"Index Name": "')[1].split('"')[0] if '"Index Name"' in plan else "seq scan"

    def test_1_hypopg_hides_from_explain_only(self):
        self.pg.psql("CREATE EXTENSION hypopg", db="app")
        self.pg.psql("SET ROLE owner; CREATE INDEX probe_a ON items USING hnsw (embedding vector_l2_ops) "
                     "WITH (m = 4, ef_construction = 8)", db="app")
        try:
            q = vec(random.Random(1))
            knn = "SELECT id FROM items ORDER BY embedding <-> '%s' LIMIT 5" % q
            with self.owner() as c:
                both = ("SELECT pg_stat_get_xact_numscans('items_embedding_idx'::regclass), "
                        "pg_stat_get_xact_numscans('probe_a'::regclass)")
                first = self.plan_index(c, knn)
                other = "probe_a" if first == "items_embedding_idx" else "items_embedding_idx"
                c.execute("SELECT hypopg_hide_index('%s'::regclass)" % first)
                c.execute("DISCARD PLANS")
                self.assertEqual(self.plan_index(c, knn), other)  # EXPLAIN follows the hide ...
                # (the counters include what the session has not reported yet: compare within a transaction)
                with c.transaction():
                    before = c.execute(both).fetchone()
                    c.execute(knn).fetchall()
                    scans = [a - b for a, b in zip(c.execute(both).fetchone(), before)]
                # ... the query itself does not
                self.assertEqual(scans[0 if first == "items_embedding_idx" else 1], 1, scans)
                self.assertEqual(scans[1 if first == "items_embedding_idx" else 0], 0, scans)
                # a generic plan made under EXPLAIN with the index hidden is reused by EXECUTE
                with c.transaction():
                    c.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                    c.execute("PREPARE k(vector) AS SELECT id FROM items ORDER BY embedding <-> $1 LIMIT 5")
                    c.execute("EXPLAIN EXECUTE k('%s')" % q)
                    before = c.execute(both).fetchone()
                    for _ in range(3):
                        c.execute("EXECUTE k('%s')" % q).fetchall()
                    scans = [a - b for a, b in zip(c.execute(both).fetchone(), before)]
                self.assertEqual(scans[1 if first == "items_embedding_idx" else 0], 3, scans)
                self.assertEqual(scans[0 if first == "items_embedding_idx" else 1], 0, scans)
        finally:
            self.pg.psql("DROP INDEX probe_a", db="app")
            self.pg.psql("DROP EXTENSION hypopg", db="app")

    def test_2_rebuild_without_then_with_hypopg(self):
        # the premise: with both valid the planner keeps the smaller-m live graph
        self.pg.psql("SET ROLE owner; CREATE INDEX probe_m16 ON items USING hnsw (embedding vector_l2_ops) "
                     "WITH (m = 16, ef_construction = 32)", db="app")
        knn = "SELECT id FROM items ORDER BY embedding <-> '%s' LIMIT 10" % vec(random.Random(9))
        with self.owner() as c:
            self.assertEqual(self.plan_index(c, knn), "items_embedding_idx")
        self.pg.psql("DROP INDEX probe_m16", db="app")

        # without hypopg: verify cannot measure the candidate and says what would let it
        r = self.ctl("--json", "rebuild", "start", "items")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        job_id = json.loads(r.stdout)["id"]
        j = self.wait(job_id, lambda j: j["terminal"])
        self.assertEqual(j["state"], "failed", j)
        self.assertEqual(j["swap_mode"], "rename")
        self.assertEqual(j["verify_hides_live_by"], "nothing")
        msgs = " ".join(h["message"] for h in j["history"])
        self.assertIn("is not superuser", msgs)
        self.assertIn("without hypopg >= 1.4 (CREATE EXTENSION hypopg)", msgs)
        self.assertIn("not the new index %s" % j["new_index"], j["message"])
        self.assertIn("CREATE EXTENSION hypopg", j["message"])

        # with hypopg, under load through vecgate
        self.pg.psql("CREATE EXTENSION hypopg", db="app")
        old_oid = self.pg.psql("SELECT 'items_embedding_idx'::regclass::oid", db="app")
        stop = threading.Event()
        stats = {"reads": 0, "inserts": 0, "errors": []}

        def load(kind):
            rnd = random.Random(kind)
            try:
                conn = psycopg.connect(self.vg.dsn(user="owner", password="owner-pw", db="app"), autocommit=True,
                                       prepare_threshold=0)  # named prepared statements through transaction pooling
            except Exception as e:  # noqa: BLE001
                stats["errors"].append(repr(e))
                return
            with conn:
                while not stop.is_set():
                    try:
                        if kind == "read":
                            conn.execute("SELECT id FROM items ORDER BY embedding <-> %s::vector LIMIT 10",
                                         (vec(rnd),)).fetchall()
                            stats["reads"] += 1
                        else:
                            conn.execute("INSERT INTO items (embedding) VALUES (%s::vector)", (vec(rnd),))
                            stats["inserts"] += 1
                    except Exception as e:  # noqa: BLE001
                        stats["errors"].append(repr(e))
                    time.sleep(0.01)

        threads = [threading.Thread(target=load, args=(k,)) for k in ("read", "write")]
        for t in threads:
            t.start()
        try:
            r = self.ctl("--json", "rebuild", "start", "items")
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            job_id = json.loads(r.stdout)["id"]
            j = self.wait(job_id, lambda j: j["awaiting_approval"] or j["terminal"])
            self.assertTrue(j["awaiting_approval"], j)
            self.assertEqual(j["verify_hides_live_by"], "hypopg")
            msgs = " ".join(h["message"] for h in j["history"])
            self.assertIn("hypopg 1.4.0 (schema public) lets verify measure the new index", msgs)
            self.assertIn("plan used %s" % j["new_index"], msgs)
            # while it waits, traffic still sees the planner's choice: the live graph
            with psycopg.connect(self.vg.dsn(user="owner", password="owner-pw", db="app"), autocommit=True) as via:
                self.assertEqual(self.plan_index(via, knn), "items_embedding_idx")
            # the session the gate measured in left nothing hidden and nothing prepared behind
            self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction' "
                                          "AND application_name LIKE 'vecgate%'", db="app"), "0")
            r = self.ctl("approve", str(job_id))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            j = self.wait(job_id, lambda j: j["terminal"])
            self.assertEqual(j["state"], "done", j)
            time.sleep(0.5)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(stats["errors"], [])
        self.assertGreater(stats["reads"], 20)
        self.assertGreater(stats["inserts"], 20)
        # traffic moved: the live name is the new m=16 graph, the old one is gone
        self.assertNotEqual(self.pg.psql("SELECT 'items_embedding_idx'::regclass::oid", db="app"), old_oid)
        self.assertIn("m='16'", self.pg.psql("SELECT pg_get_indexdef('items_embedding_idx'::regclass)", db="app"))
        with psycopg.connect(self.vg.dsn(user="owner", password="owner-pw", db="app"), autocommit=True) as via:
            self.assertEqual(self.plan_index(via, knn), "items_embedding_idx")
        self.assertGreater(j["candidate"]["recall"], j["baseline"]["recall"])
        print("no superuser, hypopg: recall@10 %.3f -> %.3f, swap %.2f ms, %d reads + %d inserts, 0 errors"
              % (j["baseline"]["recall"], j["candidate"]["recall"], j["swap_lock_ms"], stats["reads"],
                 stats["inserts"]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
