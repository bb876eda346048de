"""The rebuild on real pgvector HNSW: PGlite (PostgreSQL 18 + pgvector 0.8.7
in WASM) served over TCP by @electric-sql/pglite-socket.  Approximate recall
is measured and gated: a rebuild with better WITH (m, ef_construction) is
swapped in; a rebuild with worse parameters is refused and the live index is
left as it was.  (PGlite serialises connections, so this proves the HNSW
path, not behaviour under load.)"""
import json
import os
import random
import shutil
import subprocess
import tempfile
import time
import unittest

from pgtest import SRC, Vecgate, _cleanups, free_port, wait_port

HERE = os.path.dirname(os.path.abspath(__file__))
PGLITE_DIR = os.path.join(HERE, "pglite")
CTL = os.environ.get("VECGATECTL_BIN", os.path.join(SRC, "build", "vecgatectl"))
TOKEN = "hnsw-token-0123456789"


class FakeCluster:
    """What Vecgate needs of a cluster: a port."""

    def __init__(self, port):
        self.port = port


def psql(port, sql):
    r = subprocess.run(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                        "-d", "postgres", "-c", sql], capture_output=True, text=True, timeout=120)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return r.stdout.strip()


class HnswOnPglite(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if not os.path.isdir(os.path.join(PGLITE_DIR, "node_modules", "@electric-sql", "pglite-socket")):
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=PGLITE_DIR, check=True,
                           timeout=300)
        cls.port = free_port()
        cls.node = subprocess.Popen(["node", os.path.join(PGLITE_DIR, "server.mjs"), str(cls.port)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=PGLITE_DIR)
        _cleanups.append(lambda: cls.node.poll() is None and (cls.node.terminate(), cls.node.wait(10)))
        wait_port(cls.port, timeout=60, proc=cls.node)
        psql(cls.port, "CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(16))")
        psql(cls.port, "INSERT INTO items (embedding) SELECT (SELECT array_agg(random())::real[] "
                       "FROM generate_series(1, 16) WHERE g > 0)::vector FROM generate_series(1, 3000) g")
        psql(cls.port, "CREATE INDEX items_hnsw ON items USING hnsw (embedding vector_l2_ops) "
                       "WITH (m = 2, ef_construction = 4)")
        psql(cls.port, "ANALYZE items")
        d = tempfile.mkdtemp(prefix="vg-hnsw-")
        _cleanups.append(lambda: shutil.rmtree(d, ignore_errors=True))
        evalf = os.path.join(d, "eval.txt")
        rnd = random.Random(5)
        with open(evalf, "w") as f:
            for _ in range(30):
                f.write("[" + ",".join("%.4f" % rnd.random() for _ in range(16)) + "]\n")
        base = {"database": "postgres", "table": "public.items", "index": "items_hnsw", "user": "postgres", "k": 10,
                "eval_file": evalf, "eval_query": "SELECT id FROM public.items ORDER BY embedding <-> $1::vector "
                                                 "LIMIT $2",
                "search_settings": {"hnsw.ef_search": "10"}, "watch_seconds": 1, "retention_seconds": 1,
                "latency_tolerance": 20, "recall_tolerance": 0.05}
        cls.admin = free_port()
        cls.vg = Vecgate(FakeCluster(cls.port), auth_type="trust", users=[],
                         databases=[{"name": "postgres", "pool_mode": "transaction", "pool_size": 2}],
                         extra={"admin": {"port": cls.admin, "token": TOKEN}, "managed_indexes": [
                             dict(base, name="better", **{"with": {"m": 16, "ef_construction": 64}}),
                             dict(base, name="worse", **{"with": {"m": 2, "ef_construction": 4}})]})

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()
        cls.node.terminate()
        cls.node.wait(10)

    def ctl(self, *args):
        env = dict(os.environ, VECGATE_TOKEN=TOKEN, VECGATE_ADMIN_URL="http://127.0.0.1:%d" % self.admin)
        return subprocess.run([CTL] + list(args), capture_output=True, text=True, env=env, timeout=180)

    def latest(self, name):
        return json.loads(self.ctl("--json", "jobs", name).stdout)["jobs"][0]

    def test_1_better_parameters_are_swapped_in(self):
        r = self.ctl("rebuild", "start", "better", "--until-done")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.vg.log()[-3000:])
        j = self.latest("better")
        self.assertEqual(j["state"], "done")
        # approximate recall measured on both sides, and the better graph wins
        self.assertLess(j["baseline"]["recall"], 0.6)
        self.assertGreater(j["candidate"]["recall"], j["baseline"]["recall"] + 0.2)
        self.assertIn("plan used items_hnsw_vg", " ".join(h["message"] for h in j["history"]))
        definition = psql(self.port, "SELECT pg_get_indexdef('items_hnsw'::regclass)")
        self.assertIn("USING hnsw (embedding vector_l2_ops) WITH (m='16', ef_construction='64')", definition)

    def test_2_worse_parameters_are_refused(self):
        before = psql(self.port, "SELECT 'items_hnsw'::regclass::oid || ' ' || pg_get_indexdef('items_hnsw'::regclass)")
        r = self.ctl("rebuild", "start", "worse", "--watch")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        j = self.latest("worse")
        self.assertEqual(j["state"], "failed")
        self.assertIn("gate refused the new index: recall", j["message"])
        self.assertIn("the live index is untouched", j["message"])
        self.assertLess(j["candidate"]["recall"], j["baseline"]["recall"] - 0.05)
        time.sleep(1)
        self.assertEqual(psql(self.port, "SELECT 'items_hnsw'::regclass::oid || ' ' || "
                                         "pg_get_indexdef('items_hnsw'::regclass)"), before)
        deadline = time.time() + 20
        while time.time() < deadline and psql(self.port, "SELECT to_regclass('items_hnsw_vg%d') IS NULL" % j["id"]) != "t":
            time.sleep(0.3)
        self.assertEqual(psql(self.port, "SELECT to_regclass('items_hnsw_vg%d') IS NULL" % j["id"]), "t")


if __name__ == "__main__":
    unittest.main(verbosity=2)
