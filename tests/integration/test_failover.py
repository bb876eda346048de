"""A primary failover behind a host name, followed by the pool and by a
rebuild in flight.

Two PostgreSQL 15 servers on two loopback addresses with the same port, the
primary on 127.0.0.2 and a streaming replica on 127.0.0.3, and one name
(db.vg.test, TTL 1 s) served by the test DNS responder, which is vecgate's
only nameserver.  A failover is what a managed service does: the primary
stops, the replica is promoted, the name moves to it.  Real pgvector HNSW.

  - in build: a writer through vecgate keeps inserting; an idle client,
    connected before, queries after; a client connects after the move.
    Writes come back on the new primary, no acknowledged write is missing
    there, the idle and the new client see no error, and the rebuild goes on
    on the new primary: its build starts again (the interrupted candidate,
    replicated as invalid, is dropped first) and the job ends done with only
    the live index and the key left;
  - in watch (a new replica made from the new primary, then a failover back
    to it): the job resumes its watch on the new primary and ends done: the
    errors of the failover are not counted against the new index, the
    traffic proof is not judged across two servers' counters, the retired
    index is dropped there.
Skipped without pgvector."""
import itertools
import json
import random
import threading
import time
import unittest

import psycopg

from dnsserver import DnsServer
from pgtest import (SUPERPW, PgCluster, Replica, Vecgate, admin_get, eval_file, free_port, free_port_on, has_pgvector,
                    pgvector_items, random_vector, vecgatectl, wait_for)

NAME = "db.vg.test"
TOKEN = "failover-token-01"
DIMS = 32


def vec(rnd):
    return random_vector(rnd, DIMS)


@unittest.skipUnless(has_pgvector(), "needs pgvector (VECGATE_VENDOR_DIR)")
class Failover(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster(extra_conf="autovacuum=off\nmaintenance_work_mem=256MB\nwal_keep_size=256MB",
                           host="127.0.0.2", port=free_port_on("127.0.0.2", "127.0.0.3"))
        pg = cls.pg
        pgvector_items(pg, rows=40000, dims=DIMS)
        pg.psql("CREATE TABLE writes (id bigint PRIMARY KEY)")
        cls.standby = Replica(pg, host="127.0.0.3", port=pg.port)
        cls.dns = DnsServer(ttl=1)
        cls.dns.set(NAME, ["127.0.0.2"])
        evalf = eval_file(vec(random.Random(3)) for _ in range(20))
        idx = {"name": "items", "database": "postgres", "table": "public.items", "index": "items_idx",
               "user": "postgres", "password": SUPERPW, "eval_file": evalf, "k": 10,
               "eval_query": "SELECT id FROM public.items ORDER BY embedding <-> $1::vector LIMIT $2",
               "with": {"m": 16, "ef_construction": 64}, "search_settings": {"hnsw.ef_search": "20"},
               "recall_tolerance": 0.5, "latency_budget_ms": 500, "watch_seconds": 8, "retention_seconds": 1,
               "drop_invalid": True, "route_policy": {}}
        cls.admin = free_port()
        cls.ids = itertools.count(1)
        cls.vg = Vecgate(pg, auth_type="trust", users=[], databases=[
            {"name": "postgres", "pool_mode": "transaction", "pool_size": 4, "user": "postgres",
             "password": SUPERPW}],
            extra={"dns": {"nameservers": [cls.dns.address]},
                   "backends": {"primary": {"host": NAME, "port": pg.port}},
                   "timeouts": {"query_wait": 30},
                   "admin": {"port": cls.admin, "token": TOKEN}, "managed_indexes": [idx]})

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    # ---- helpers ----

    def job(self, job_id):
        return admin_get(self.admin, TOKEN, "/v1/jobs/%d" % job_id)

    def start_job(self):
        r = vecgatectl(self.admin, TOKEN, "--json", "rebuild", "start", "items")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return json.loads(r.stdout)["id"]

    def wait_job(self, job_id, pred, what, timeout=120):
        return wait_for(lambda: (lambda j: j if pred(j) else None)(self.job(job_id)), timeout, what,
                        lambda: str(self.job(job_id))[:3000] + "\n" + self.vg.log()[-4000:])

    def dsn(self):
        return self.vg.dsn(user="postgres", db="postgres")

    def writer(self):
        """Inserts through vecgate every 20 ms until stopped: the ids each
        acknowledged, and (time, error) of each failure."""
        stop, acked, errors = threading.Event(), [], []

        def run():
            while not stop.is_set():
                try:
                    with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as c:
                        while not stop.is_set():
                            i = next(self.ids)
                            c.execute("INSERT INTO writes VALUES (%s)", (i,))
                            acked.append((time.time(), i))
                            time.sleep(0.02)
                except psycopg.Error as e:
                    errors.append((time.time(), str(e).strip()))
                    time.sleep(0.05)
        t = threading.Thread(target=run)
        t.start()
        return stop, t, acked, errors

    def failover(self, old, new):
        """The managed service's failover: the primary stops, the replica is
        promoted, the name moves.  The time of the move."""
        old.pg_ctl("stop", "-m", "fast")
        new.pg_ctl("promote")
        wait_for(lambda: new.psql("SELECT NOT pg_is_in_recovery()") == "t", 20, "the promotion")
        self.dns.set(NAME, [new.host])
        return time.time()

    def indexes(self, server):
        return server.psql("SELECT string_agg(c.relname || ':' || i.indisvalid, ',' ORDER BY c.relname) FROM "
                           "pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = 'items'::regclass")

    def assert_clean(self, server):
        wait_for(lambda: self.indexes(server) == "items_idx:true,items_pkey:true", 30,
                 "only the live index and the key on %s" % server.host, lambda: self.indexes(server))

    # ---- scenarios ----

    def test_1_failover_in_build(self):
        idle = psycopg.connect(self.dsn(), autocommit=True)
        idle.execute("SELECT 1")
        stop, t, acked, errors = self.writer()
        try:
            job_id = self.start_job()
            self.wait_job(job_id, lambda j: j["state"] == "build" and (j["progress"]["percent"] or 0) > 5,
                          "the build under way")
            moved = self.failover(self.pg, self.standby)
            back = wait_for(lambda: next((a for a, _ in acked if a > moved), None), 30, "a write after the move")
            # a client that connects after the move, and the idle one
            with psycopg.connect(self.dsn(), autocommit=True) as c:
                self.assertEqual(c.execute("SELECT inet_server_addr()::text").fetchone()[0], "127.0.0.3/32")
            self.assertEqual(idle.execute("SELECT count(*) > 0 FROM items").fetchone()[0], True)
            j = self.wait_job(job_id, lambda j: j["terminal"], "the job's end", timeout=180)
        finally:
            stop.set()
            t.join()
            idle.close()
        self.assertEqual(j["state"], "done", j)
        # the build failed with its connection and ran again
        self.assertTrue([h for h in j["history"] if h["from"] == "build" and h["to"] == "build"], j["history"])
        self.assert_clean(self.standby)
        # no acknowledged write is missing on the new primary
        ids = {int(x) for x in self.standby.psql("SELECT string_agg(id::text, ',') FROM writes").split(",")}
        lost = [i for _, i in acked if i not in ids]
        self.assertEqual(lost, [])
        self.assertEqual(self.standby.psql("SELECT state FROM vecgate.jobs ORDER BY id DESC LIMIT 1"), "done")
        during = [e for at, e in errors if at >= moved - 5]
        print("failover in build: writes back %.2f s after the name moved, %d writes acknowledged, 0 lost, %d "
              "write errors around the failover (%s), the build ran again on the new primary, job done"
              % (back - moved, len(acked), len(during), "; ".join(sorted({e[:60] for e in during}))[:300]))
        self.__class__.writes_back_s = back - moved

    def test_2_failover_in_watch(self):
        old, new = self.standby, self.pg  # after test_1: the promoted one, the stopped one
        # the old primary comes back as a replica of the new one, where it was
        new.stop()
        replica = Replica(old, host="127.0.0.2", port=old.port)
        self.__class__.pg = replica
        stop, t, acked, errors = self.writer()
        reads_stop = threading.Event()
        read_errors = []

        def reader():
            rnd = random.Random(5)
            while not reads_stop.is_set():
                try:
                    with psycopg.connect(self.dsn(), autocommit=True) as c:
                        while not reads_stop.is_set():
                            c.execute("SELECT id FROM items ORDER BY embedding <-> %s::vector LIMIT 10",
                                      (vec(rnd),)).fetchall()
                            time.sleep(0.01)
                except psycopg.Error as e:
                    read_errors.append(str(e))
                    time.sleep(0.05)
        rt = threading.Thread(target=reader)
        rt.start()
        try:
            job_id = self.start_job()
            self.wait_job(job_id, lambda j: j["state"] == "watch", "the watch", timeout=180)
            time.sleep(1)
            moved = self.failover(old, replica)
            j = self.wait_job(job_id, lambda j: j["terminal"], "the job's end", timeout=180)
        finally:
            stop.set()
            reads_stop.set()
            t.join()
            rt.join()
        self.assertEqual(j["state"], "done", j)
        self.assertIn("not measured", j["watch"]["traffic_proof"]["verdict"] or "not measured", j["watch"])
        self.assert_clean(replica)
        ids = {int(x) for x in replica.psql("SELECT string_agg(id::text, ',') FROM writes").split(",")}
        self.assertEqual([i for _, i in acked if i not in ids], [])
        print("failover in watch: job done on the new primary (%s) %.1f s after the move, watch %s; %d writes "
              "acknowledged, 0 lost; %d read errors around the failover (%s)"
              % (replica.host, time.time() - moved, j["watch"]["traffic_proof"]["verdict"], len(acked),
                 len(read_errors), "; ".join(sorted({e[:80] for e in read_errors}))))


if __name__ == "__main__":
    unittest.main(verbosity=2)
