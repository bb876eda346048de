"""Eval sets from live traffic (eval_source: traffic): vecgate samples the
query vectors of vector reads passing through it (literals of simple and
extended queries, Bind parameters of unnamed and named prepared statements;
reads that start a transaction-pooling cycle, reads inside transaction
blocks, and reads in session pooling),
keeps a uniform reservoir of traffic_sample_size in vecgate.eval_samples,
refuses a traffic-only rebuild until it has traffic_min_samples, then gates
on the sample; the drift monitor reports recall on it too.  Real pgvector
(HNSW) where installed, else the cube stand-in."""
import json
import os
import random
import struct
import subprocess
import time
import unittest
import urllib.request

import psycopg
from psycopg.adapt import Dumper
from psycopg.pq import Format

from pgtest import AdminCase, SUPERPW, eval_file, free_port, has_pgvector, PgCluster, Vecgate

TOKEN = "traffic-sample-token-01"
SIZE = 50
PGVECTOR = has_pgvector()
DIMS = 16 if PGVECTOR else 3


class BinaryVec(list):
    pass


def vec(rnd):
    xs = ",".join("%.4f" % rnd.random() for _ in range(DIMS))
    return "[%s]" % xs if PGVECTOR else "(%s)" % xs


class TrafficSample(AdminCase, unittest.TestCase):
    token = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster(extra_conf="autovacuum=off")
        cls.pg.add_app()
        if PGVECTOR:
            cls.pg.psql("CREATE EXTENSION vector", db="app")
            cls.pg.psql("CREATE TABLE items (id bigserial PRIMARY KEY, v vector(%d))" % DIMS, db="app")
            cls.pg.psql("INSERT INTO items (v) SELECT (SELECT array_agg(random())::vector FROM generate_series(1, %d)"
                        " WHERE g > 0) FROM generate_series(1, 3000) g" % DIMS, db="app")
            cls.pg.psql("CREATE INDEX items_v_idx ON items USING hnsw (v vector_l2_ops) WITH (m = 8)", db="app")
            cast = "vector"
        else:
            cls.pg.psql("CREATE EXTENSION cube", db="app")
            cls.pg.psql("CREATE TABLE items (id bigserial PRIMARY KEY, v cube)", db="app")
            cls.pg.psql("INSERT INTO items (v) SELECT cube(array[random(), random(), random()]) "
                        "FROM generate_series(1, 3000)", db="app")
            cls.pg.psql("CREATE INDEX items_v_idx ON items USING gist (v)", db="app")
            cast = "cube"
        cls.pg.psql("GRANT ALL ON items TO app; GRANT ALL ON SEQUENCE items_id_seq TO app", db="app")
        cls.pg.psql("ANALYZE items", db="app")
        cls.cast = cast
        cls.admin = free_port()
        base = {"database": "app", "table": "public.items", "index": "items_v_idx", "user": "postgres",
                "password": SUPERPW, "k": 10,
                "eval_query": "SELECT id FROM public.items ORDER BY v <-> $1::%s LIMIT $2" % cast,
                "watch_seconds": 1, "retention_seconds": 1}
        traffic = dict(base, name="items", eval_source="traffic", traffic_sample_size=SIZE,
                       traffic_min_samples=40, recall_tolerance=0.5, latency_budget_ms=500,
                       drift_check_seconds=1)
        from_file = dict(base, name="items_file", eval_file=eval_file([vec(random.Random(3))]))
        cls.vg = Vecgate(cls.pg, databases=[{"name": "app", "pool_mode": "transaction", "pool_size": 4},
                                            {"name": "app_session", "dbname": "app", "pool_mode": "session",
                                             "pool_size": 2}], extra={
            "admin": {"port": cls.admin, "token": TOKEN}, "managed_indexes": [traffic, from_file]})

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def route(self, name):
        return [r for r in self.api("/v1/routes")["routes"] if r["name"] == name][0]

    def rebuild(self):
        r = self.ctl("--json", "rebuild", "start", "items")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        job_id = json.loads(r.stdout)["id"]
        deadline = time.time() + 120
        while time.time() < deadline:
            j = self.api("/v1/jobs/%d" % job_id)
            if j["terminal"]:
                return j
            time.sleep(0.2)
        self.fail(j)

    def test_sample_then_rebuild_on_it(self):
        self.assertIsNone(self.route("items_file")["traffic_sample"])  # eval_source file: nothing sampled
        j = self.rebuild()
        self.assertEqual(j["state"], "failed", j)
        self.assertIn("0 traffic samples of items in vecgate.eval_samples", j["message"])
        self.assertIn("needs traffic_min_samples (40)", j["message"])

        rnd = random.Random(7)
        sent = []
        knn = "SELECT id FROM items ORDER BY v <-> %s LIMIT 5"
        with psycopg.connect(self.vg.dsn(), autocommit=True) as c:
            for _ in range(40):  # extended protocol, the vector a literal
                v = vec(rnd)
                sent.append(v)
                c.execute((knn % "'%s'") % v, prepare=False).fetchall()
            for _ in range(40):  # unnamed statement, the vector a text parameter
                v = vec(rnd)
                sent.append(v)
                c.execute(knn % ("%%s::%s" % self.cast), (v,), prepare=False).fetchall()
            for _ in range(40):  # named prepared statement: Parse once, then Bind only
                v = vec(rnd)
                sent.append(v)
                c.execute(knn % ("%%s::%s" % self.cast), (v,), prepare=True).fetchall()
            if PGVECTOR:  # binary parameters, as pgvector's client libraries send them
                oid = int(self.pg.psql("SELECT 'vector'::regtype::oid", db="app"))

                class VecDumper(Dumper):
                    format = Format.BINARY

                    def dump(self, obj):
                        return struct.pack("!hh%df" % len(obj), len(obj), 0, *obj)
                VecDumper.oid = oid
                c.adapters.register_dumper(BinaryVec, VecDumper)
                for _ in range(20):
                    xs = BinaryVec(rnd.random() for _ in range(DIMS))
                    # kept as the text literal vecgate makes of it: each float32 with 9 digits
                    sent.append("[%s]" % ",".join("%.9g" % struct.unpack("!f", struct.pack("!f", x))[0]
                                                  for x in xs))
                    c.execute(knn % "%b", (xs,), prepare=False).fetchall()
            c.execute("INSERT INTO items (v) VALUES ('%s')" % vec(rnd))  # writes are not sampled
        param = knn % ("%%s::%s" % self.cast)
        with psycopg.connect(self.vg.dsn()) as c:
            # autocommit off, as most drivers and ORMs run: every read sits
            # inside BEGIN ... COMMIT, so it starts no cycle and is not routed
            for i in range(30):
                v = vec(rnd)
                sent.append(v)
                if i % 3 == 0:
                    c.execute((knn % "'%s'") % v, prepare=False).fetchall()
                else:  # unnamed, then named (Parse once, then Binds only)
                    c.execute(param, (v,), prepare=i % 3 == 2).fetchall()
                c.execute("SELECT 1").fetchall()  # not a vector read: its Parse voids no offer it should not
                c.commit()
        with psycopg.connect(self.vg.dsn(db="app_session"), autocommit=True) as c:
            for i in range(20):  # session pooling: literal and unnamed parameter
                v = vec(rnd)
                sent.append(v)
                if i % 2:
                    c.execute((knn % "'%s'") % v, prepare=False).fetchall()
                else:
                    c.execute(param, (v,), prepare=False).fetchall()
            # named statements of a session pass through unmapped: not sampled, not counted
            c.execute(param, (vec(rnd),), prepare=True).fetchall()
        for _ in range(40):  # simple protocol
            v = vec(rnd)
            sent.append(v)
            r = subprocess.run(["psql", self.vg.dsn(), "-Atc", (knn % "'%s'") % v], capture_output=True, text=True,
                               env=dict(os.environ, PGPASSWORD="app-pw"))
            self.assertEqual(r.returncode, 0, r.stderr)

        ts = self.route("items")["traffic_sample"]
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % self.admin,
                                     headers={"Authorization": "Bearer " + TOKEN})
        with urllib.request.urlopen(req, timeout=5) as r:
            self.assertIn('vecgate_traffic_sample_vectors{index="items"} %d' % SIZE, r.read().decode())
        self.assertEqual(ts["seen"], len(sent))
        self.assertEqual(ts["filled"], SIZE)
        self.assertEqual(ts["missed"], 0)
        deadline = time.time() + 10
        while time.time() < deadline and self.route("items")["traffic_sample"]["unwritten"]:
            time.sleep(0.2)
        time.sleep(0.5)
        stored = self.pg.psql("SELECT vector FROM vecgate.eval_samples WHERE index_name = 'items' ORDER BY slot",
                              db="app").splitlines()
        self.assertEqual(len(stored), SIZE)
        self.assertTrue(set(stored) <= set(sent), set(stored) - set(sent))
        order = [sent.index(v) for v in stored]
        # a reservoir: later reads replaced early ones, not just the last SIZE kept
        self.assertTrue(any(i >= SIZE for i in order), order)
        self.assertTrue(any(i < len(sent) - SIZE for i in order), order)

        j = self.rebuild()
        self.assertEqual(j["state"], "done", j)
        msgs = " ".join(h["message"] for h in j["history"])
        self.assertIn("eval set: 0 queries from the eval file, %d sampled from traffic" % SIZE, msgs)
        self.assertIn("over %d queries sampled from traffic" % SIZE, msgs)
        self.assertEqual(j["traffic_queries"], SIZE)
        self.assertIsNotNone(j["baseline"]["recall_traffic"])
        self.assertIsNone(j["baseline"]["recall_eval_file"])

        deadline = time.time() + 30
        while time.time() < deadline:
            drift = [i for i in self.api("/v1/indexes")["indexes"] if i["name"] == "items"][0]["drift"]
            if drift["traffic_queries"]:
                break
            time.sleep(0.3)
        self.assertEqual(drift["traffic_queries"], SIZE, drift)
        self.assertIsNotNone(drift["recall_traffic"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
