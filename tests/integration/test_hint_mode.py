"""swap_mode hint: the whole safe swap for a maintenance role that is not
superuser (the table's owner, as on managed PostgreSQL), on real pgvector
HNSW with pg_hint_plan loaded through shared_preload_libraries.

Which index served a read is never taken from EXPLAIN here: reads through
vecgate are counted by the server's own scan counters (pg_stat_user_indexes
deltas for reads of every kind, and pg_stat_get_xact_numscans inside a
transaction for a reader that runs through a whole rebuild).

Two vecgate processes, A (drives the rebuilds) and B (only follows), share
the managed indexes.  Two scenarios:

(a) a live graph grown messy by churn, rebuilt with the same parameters: the
    planner prefers the fresh candidate the moment it is built, yet while the
    job waits for approval every kind of read through A and B scans only the
    live index; after the swap only the candidate; after a rollback the live
    index again, and the candidate is dropped.
(b) live m 4, candidate m 16: the planner prefers the live index, yet after
    the swap every kind of read scans only the candidate; A restarted during
    watch keeps the pin before serving its first client; at retention's end
    the old index is dropped, the pin cleared and the new index renamed to
    the live name, with no sequential scan at any point.

Skipped where pgvector or pg_hint_plan is not installed."""
import asyncio
import json
import os
import random
import threading
import time
import unittest

import psycopg

from pgtest import admin_get, eval_file, free_port, has_pgvector, PgCluster, run, Vecgate, vecgatectl

TOKEN = "hint-mode-token-0123"
DIMS = 32
N = 6  # reads per kind and check


def has_hint_plan():
    r = run(["/usr/lib/postgresql/15/bin/pg_config", "--pkglibdir"])
    return os.path.exists(os.path.join(r.stdout.strip(), "pg_hint_plan.so"))


def vec(rnd):
    return "[%s]" % ",".join("%.4f" % rnd.random() for _ in range(DIMS))


def managed(table, live, with_, approve=True, watch=3, retention=300):
    return {"name": table, "database": "app", "table": "public." + table, "index": live, "user": "owner",
            "password": "owner-pw", "eval_file": None, "k": 10, "swap_mode": "auto",
            "eval_query": "SELECT id FROM public.%s ORDER BY embedding <-> $1::vector LIMIT $2" % table,
            "with": with_, "search_settings": {"hnsw.ef_search": "20"}, "approve_swap": approve,
            "recall_tolerance": 0.2, "latency_budget_ms": 250, "watch_seconds": watch,
            "retention_seconds": retention, "route_policy": {}}


@unittest.skipUnless(has_pgvector() and has_hint_plan(), "needs pgvector and pg_hint_plan (VECGATE_VENDOR_DIR)")
class HintMode(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster(extra_conf="autovacuum=off\nmaintenance_work_mem=128MB\n"
                                      "shared_preload_libraries='pg_hint_plan'")
        pg = cls.pg
        pg.psql("CREATE ROLE owner LOGIN PASSWORD 'owner-pw'")
        pg.psql("CREATE DATABASE app OWNER owner")
        pg.psql("CREATE EXTENSION vector", db="app")
        noise = "(SELECT array_agg(random())::vector FROM generate_series(1, %d) WHERE g > 0)" % DIMS
        for t in ("items_a", "items_b"):
            pg.psql("SET ROLE owner; CREATE TABLE %s (id bigserial PRIMARY KEY, embedding vector(%d))" % (t, DIMS),
                    db="app")
            pg.psql("INSERT INTO %s (embedding) SELECT %s FROM generate_series(1, 6000) g" % (t, noise), db="app")
        # (a) a graph grown messy by churn: rows inserted and deleted after it was built
        pg.psql("SET ROLE owner; CREATE INDEX items_a_idx ON items_a USING hnsw (embedding vector_l2_ops) "
                "WITH (m = 8, ef_construction = 32)", db="app")
        pg.psql("INSERT INTO items_a (embedding) SELECT %s FROM generate_series(1, 12000) g" % noise, db="app")
        pg.psql("DELETE FROM items_a WHERE id > 6000", db="app")
        # (b) a sparse live graph; the rebuild asks for m 16
        pg.psql("SET ROLE owner; CREATE INDEX items_b_idx ON items_b USING hnsw (embedding vector_l2_ops) "
                "WITH (m = 4, ef_construction = 8)", db="app")
        pg.psql("ANALYZE items_a; ANALYZE items_b", db="app")
        rnd = random.Random(5)
        evalf = eval_file(vec(rnd) for _ in range(30))
        idx = [managed("items_a", "items_a_idx", {"m": 8, "ef_construction": 32}),
               managed("items_b", "items_b_idx", {"m": 16, "ef_construction": 32}, watch=6, retention=12)]
        for m in idx:
            m["eval_file"] = evalf
        cls.admin_a, cls.admin_b = free_port(), free_port()

        def vecgate(admin):
            return Vecgate(pg, auth_type="trust", users=[], databases=[
                {"name": "app", "pool_mode": "transaction", "pool_size": 4, "user": "owner",
                 "password": "owner-pw"},
                {"name": "app_s", "dbname": "app", "pool_mode": "session", "pool_size": 6, "user": "owner",
                 "password": "owner-pw"}],
                # idle servers close within a second, and a backend that exits
                # reports its scans at once (a live one may hold them 10 s)
                extra={"admin": {"port": admin, "token": TOKEN}, "routing": {"refresh_seconds": 1},
                       "timeouts": {"server_idle": 0.5}, "managed_indexes": idx})
        cls.a = vecgate(cls.admin_a)
        cls.b = vecgate(cls.admin_b)

    @classmethod
    def tearDownClass(cls):
        cls.b.stop()
        cls.a.stop()

    # ---- helpers ----

    def conn(self, via, db="app", **kw):
        return psycopg.connect(via.dsn(user="owner", password="x", db=db), autocommit=kw.pop("autocommit", True),
                               **kw)

    def direct(self):
        return psycopg.connect(host="127.0.0.1", port=self.pg.port, user="owner", password="owner-pw", dbname="app",
                               autocommit=True)

    def ctl(self, admin, *args):
        r = vecgatectl(admin, TOKEN, *args)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return r.stdout

    def job(self, admin, job_id):
        return admin_get(admin, TOKEN, "/v1/jobs/%d" % job_id)

    def wait(self, admin, job_id, pred, timeout=120):
        deadline = time.time() + timeout
        j = None
        while time.time() < deadline:
            j = self.job(admin, job_id)
            if pred(j):
                return j
            time.sleep(0.2)
        self.fail(json.dumps(j)[:3000])

    def route(self, admin, name):
        return next(r for r in admin_get(admin, TOKEN, "/v1/routes")["routes"] if r["name"] == name)

    def scans(self, table):
        """idx_scan per index of the table, and its seq_scan, as the server reports them."""
        rows = self.pg.psql("SELECT indexrelname, idx_scan FROM pg_stat_user_indexes WHERE relname = '%s' UNION ALL "
                            "SELECT '(seq)', seq_scan FROM pg_stat_user_tables WHERE relname = '%s'" % (table, table),
                            db="app")
        return {n: int(c) for n, c in (line.split("|") for line in rows.splitlines())}

    def served(self, table, reads, n=N):
        """Run `reads` (n vector reads) and return which indexes served them
        (idx_scan deltas, seq scans under '(seq)'), once every read is counted."""
        before = self.scans(table)
        reads()
        deadline = time.time() + 15
        while True:
            after = self.scans(table)
            # (an index dropped meanwhile has no row any more: not counted)
            delta = {k: after[k] - before.get(k, 0) for k in after}
            delta = {k: v for k, v in delta.items() if v}
            if sum(delta.values()) >= n or time.time() > deadline:
                return delta
            time.sleep(0.1)

    def kinds(self, via, table):
        """Every kind of vector read an application sends, n reads each."""
        rnd = random.Random()
        q = "SELECT id FROM %s ORDER BY embedding <-> %%s::vector LIMIT 10" % table
        lit = "SELECT id FROM %s ORDER BY embedding <-> '%%s' LIMIT 10" % table

        def simple(db="app"):
            with self.conn(via, db) as c:
                cur = psycopg.ClientCursor(c)  # the simple query protocol
                for _ in range(N):
                    cur.execute(lit % vec(rnd))
                    self.assertGreater(len(cur.fetchall()), 0)

        def unnamed():
            with self.conn(via) as c:
                for _ in range(N):
                    self.assertGreater(len(c.execute(q, (vec(rnd),), prepare=False).fetchall()), 0)

        def named(db="app"):
            with self.conn(via, db) as c:
                for _ in range(N):
                    self.assertGreater(len(c.execute(q, (vec(rnd),), prepare=True).fetchall()), 0)

        def aliased():
            with self.conn(via) as c:
                for _ in range(N):
                    c.execute("SELECT t.id FROM %s AS t ORDER BY t.embedding <-> %%s::vector LIMIT 10" % table,
                              (vec(rnd),), prepare=False).fetchall()

        def in_transaction():
            # drivers with autocommit off (psycopg, SQLAlchemy, JDBC)
            with self.conn(via, autocommit=False) as c:
                for _ in range(N):
                    c.execute(q, (vec(rnd),)).fetchall()
                c.commit()

        def asyncpg_reads():
            import asyncpg

            async def go():
                c = await asyncpg.connect(host="127.0.0.1", port=via.port, user="owner", password="x",
                                          database="app", statement_cache_size=0)
                try:
                    for _ in range(N):
                        rows = await c.fetch("SELECT id FROM %s ORDER BY embedding <-> $1::text::vector LIMIT 10"
                                             % table, vec(rnd))
                        self.assertGreater(len(rows), 0)
                finally:
                    await c.close()
            asyncio.run(go())

        return {"simple": simple, "unnamed extended": unnamed, "named prepared": named, "aliased": aliased,
                "inside a transaction block": in_transaction, "asyncpg": asyncpg_reads,
                "session pooling, simple": lambda: simple("app_s"),
                "session pooling, named prepared": lambda: named("app_s")}

    def settle(self, table):
        """Wait until no scan of the table is still on its way to the
        statistics, so that only the reads of a check count.  (A backend
        that reported less than a second ago holds its counts for up to 10 s;
        vecgate's eval runs send theirs at once.)"""
        last, stable = self.scans(table), 0
        for _ in range(15):
            time.sleep(1.1)
            now = self.scans(table)
            stable = stable + 1 if now == last else 0
            if stable == 2:
                return
            last = now

    def assert_all_on(self, vias, table, index, label, extra=None, extra_n=0):
        """Every kind of read through each vecgate in `vias` (and `extra`,
        extra_n reads) is served by `index`: nothing else, no seq scan."""
        self.settle(table)

        def reads():
            for via in vias:
                for kind, fn in self.kinds(via, table).items():
                    fn()
            if extra:
                extra()
        n = len(self.kinds(vias[0], table)) * N * len(vias) + extra_n
        delta = self.served(table, reads, n)
        self.assertEqual(delta, {index: n}, "%s: reads served by %s" % (label, delta))

    def early_statements(self, via, table):
        """Named statements prepared before a rebuild starts, on connections
        that stay open (transaction and session pooling): a pin must reach
        them too."""
        held = []
        q = "SELECT id FROM %s ORDER BY embedding <-> %%s::vector LIMIT 10" % table
        for db in ("app", "app_s"):
            c = self.conn(via, db)
            with c.transaction():  # its count reaches the statistics at once (see settle)
                c.execute(q, (vec(random.Random(1)),), prepare=True).fetchall()
                c.execute("SELECT pg_stat_force_next_flush()")
            held.append(c)

        def reads():
            for c in held:
                for _ in range(N // 2):
                    c.execute(q, (vec(random.Random()),), prepare=True).fetchall()
                # the session's server stays linked (no idle close): its counts are sent now
                c.execute("SELECT pg_stat_force_next_flush()")
        return held, reads

    def plan_index(self, conn, table):
        sql = "EXPLAIN (FORMAT JSON) SELECT id FROM %s ORDER BY embedding <-> '%s' LIMIT 10" % (
            table, vec(random.Random(9)))
        plan = json.dumps(conn.execute(sql).fetchone()[0])
        return plan.split('"Index Name": "')[1].split('"')[0] if '"Index Name"' in plan else "seq scan"

    # ---- (a) ----

    def test_a_messy_graph_pinned_until_swap_and_after_rollback(self):
        a, b = self.a, self.b
        held, early = self.early_statements(b, "items_a")
        job_id = json.loads(self.ctl(self.admin_a, "--json", "rebuild", "start", "items_a"))["id"]
        j = self.wait(self.admin_a, job_id, lambda j: j["awaiting_approval"] or j["terminal"])
        self.assertTrue(j["awaiting_approval"], j)
        self.assertEqual(j["swap_mode"], "hint")
        self.assertEqual(j["verify_hides_live_by"], "hint")
        fresh = j["new_index"]
        msgs = " ".join(h["message"] for h in j["history"])
        self.assertIn("pg_hint_plan is loaded", msgs)
        self.assertIn("plan used %s" % fresh, msgs)  # verify measured the candidate, counted by scans
        # the premise: the planner alone prefers the fresh compact graph ...
        self.settle("items_a")
        with self.direct() as d:
            self.assertEqual(self.plan_index(d, "items_a"), fresh)
            # ... which is what reads that do not pass through vecgate get
            self.assertEqual(self.served("items_a", lambda: [d.execute(
                "SELECT id FROM items_a ORDER BY embedding <-> %s::vector LIMIT 10", (vec(random.Random()),),
                prepare=False).fetchall() for _ in range(N)]), {fresh: N})
        # every read through either vecgate stays on the live index, statements prepared early too
        self.assert_all_on((a, b), "items_a", "items_a_idx", "awaiting approval", early, N // 2 * 2)
        self.assertEqual(self.route(self.admin_b, "items_a")["pinned_to"], "items_a_idx")

        # reads vecgate cannot pin safely pass unchanged, counted and logged
        before = self.route(self.admin_a, "items_a")["unpinned_reads"]
        with self.conn(a) as c:
            c.execute("/*+ SeqScan(items_a) */ SELECT id FROM items_a ORDER BY embedding <-> %s::vector LIMIT 10",
                      (vec(random.Random()),), prepare=False).fetchall()
            c.execute("SELECT x.id FROM items_a x, items_a y WHERE x.id = y.id ORDER BY x.embedding <-> %s::vector "
                      "LIMIT 3", (vec(random.Random()),), prepare=False).fetchall()
        self.assertEqual(self.route(self.admin_a, "items_a")["unpinned_reads"], before + 2)
        self.assertIn("passes unpinned", a.log())

        # the swap: a pin change, followed by B; traffic really moves (watch's proof)
        stop = threading.Event()
        errors = []

        def load():
            rnd = random.Random(3)
            try:
                with self.conn(a) as c:
                    while not stop.is_set():
                        with c.transaction():  # the counts reach the statistics at once (see settle)
                            c.execute("SELECT id FROM items_a ORDER BY embedding <-> %s::vector LIMIT 10",
                                      (vec(rnd),), prepare=True).fetchall()
                            c.execute("SELECT pg_stat_force_next_flush()")
                        time.sleep(0.02)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        t = threading.Thread(target=load)
        t.start()
        try:
            self.ctl(self.admin_a, "approve", str(job_id))
            j = self.wait(self.admin_a, job_id, lambda j: j["state"] in ("retain", "rolled_back", "failed"))
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(j["state"], "retain", j)
        proof = j["watch"]["traffic_proof"]
        self.assertTrue(proof["verdict"].startswith("traffic moved"), proof)
        self.assertGreater(proof["new_index_scans"], 0, proof)
        # (a read in flight at the swap may count on the old index afterwards)
        self.assertLessEqual(proof["retired_index_scans"], 1, proof)
        self.assertIn("no DDL, no lock", " ".join(h["message"] for h in j["history"]))
        self.assert_all_on((a, b), "items_a", fresh, "after the swap", early, N // 2 * 2)

        # rollback: instant, lossless, followed by B; the candidate goes
        self.ctl(self.admin_a, "rollback", str(job_id))
        j = self.wait(self.admin_a, job_id, lambda j: j["terminal"])
        self.assertEqual(j["state"], "rolled_back", j)
        self.assert_all_on((a, b), "items_a", "items_a_idx", "rolled back", early, N // 2 * 2)
        deadline = time.time() + 30
        while self.pg.psql("SELECT to_regclass('%s') IS NOT NULL" % fresh, db="app") == "t":
            self.assertLess(time.time(), deadline, "the candidate was not dropped")
            time.sleep(0.2)
        self.assert_all_on((a, b), "items_a", "items_a_idx", "candidate dropped", early, N // 2 * 2)
        deadline = time.time() + 10
        while self.route(self.admin_b, "items_a")["pinned_to"] is not None:
            self.assertLess(time.time(), deadline, "B still pins reads after the rollback")
            time.sleep(0.2)
        for c in held:
            c.close()

    # ---- (b) ----

    def test_b_larger_m_pinned_after_swap_restart_and_retention(self):
        a, b = self.a, self.b
        # the premise: with both valid, the planner keeps the sparse m=4 live graph
        self.pg.psql("SET ROLE owner; CREATE INDEX probe_m16 ON items_b USING hnsw (embedding vector_l2_ops) "
                     "WITH (m = 16, ef_construction = 32)", db="app")
        with self.direct() as d:
            self.assertEqual(self.plan_index(d, "items_b"), "items_b_idx")
        self.pg.psql("DROP INDEX probe_m16", db="app")
        old_oid = self.pg.psql("SELECT 'items_b_idx'::regclass::oid", db="app")

        # a reader through B for the whole job, each read attributed by the
        # transaction's own scan counters (index oids fixed at the start)
        stop, pause = threading.Event(), threading.Event()
        seen = []  # (time, live scans, candidate scans, seq scans)
        errors = []

        def reader():
            rnd = random.Random(4)
            cand = 0  # the candidate's oid, once it exists (it keeps it through the rename)
            try:
                with self.conn(b, autocommit=False) as c:
                    while not stop.is_set():
                        if pause.is_set():
                            time.sleep(0.05)
                            continue
                        if not cand and self.job_no:
                            cand = c.execute("SELECT coalesce((SELECT oid FROM pg_class WHERE relname = %s), 0)",
                                             ("items_b_idx_vg" + self.job_no,)).fetchone()[0]
                        ids = (old_oid, cand)
                        counts = ("SELECT pg_stat_get_xact_numscans(%s::oid), pg_stat_get_xact_numscans(%s::oid), "
                                  "pg_stat_get_xact_numscans('items_b'::regclass)")
                        b0 = c.execute(counts, ids).fetchone()
                        c.execute("SELECT id FROM items_b ORDER BY embedding <-> %s::vector LIMIT 10",
                                  (vec(rnd),)).fetchall()
                        b1 = c.execute(counts, ids).fetchone()
                        c.execute("SELECT pg_stat_force_next_flush()")
                        c.commit()
                        seen.append((time.time(),) + tuple(x - y for x, y in zip(b1, b0)))
                        time.sleep(0.03)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        self.job_no = None
        t = threading.Thread(target=reader)
        t.start()
        try:
            job_id = json.loads(self.ctl(self.admin_a, "--json", "rebuild", "start", "items_b"))["id"]
            j = self.wait(self.admin_a, job_id, lambda j: j["awaiting_approval"] or j["terminal"])
            self.assertTrue(j["awaiting_approval"], j)
            fresh, db_id = j["new_index"], j["db_id"]
            self.job_no = fresh.rsplit("_vg", 1)[1]
            self.assertEqual(j["swap_mode"], "hint")
            self.assertGreater(j["candidate"]["recall"], j["baseline"]["recall"])
            pause.set()  # the reader's own reads would count in the checks
            self.assert_all_on((a,), "items_b", "items_b_idx", "A, awaiting approval")
            pause.clear()
            swapped_at = time.time()  # (before the approval: the swap commits right after it)
            self.ctl(self.admin_a, "approve", str(job_id))
            self.wait(self.admin_a, job_id, lambda j: j["state"] == "watch" or j["terminal"])
            # A restarted during watch: the pin holds before its first client
            a.stop()
            a.start()
            cand = self.pg.psql("SELECT '%s'::regclass::oid" % fresh, db="app")
            with self.conn(a, autocommit=False) as c:  # the transaction's own counters: exact at once
                counts = ("SELECT pg_stat_get_xact_numscans(%s::oid), pg_stat_get_xact_numscans(%s::oid), "
                          "pg_stat_get_xact_numscans('items_b'::regclass)" % (old_oid, cand))
                b0 = c.execute(counts).fetchone()
                c.execute("SELECT id FROM items_b ORDER BY embedding <-> %s::vector LIMIT 10",
                          (vec(random.Random()),)).fetchall()
                b1 = c.execute(counts).fetchone()
                c.execute("SELECT pg_stat_force_next_flush()")
                self.assertEqual(tuple(x - y for x, y in zip(b1, b0)), (0, 1, 0), "first read through restarted A")
            self.assertEqual(self.route(self.admin_a, "items_b")["pinned_to"], fresh)
            # the restarted process numbers its jobs anew: the resumed one by its record
            job_id = next(j["id"] for j in admin_get(self.admin_a, TOKEN, "/v1/jobs?index=items_b")["jobs"]
                          if j["db_id"] == db_id)
            self.wait(self.admin_a, job_id, lambda j: j["state"] != "watch", timeout=60)
            pause.set()
            self.assert_all_on((a, b), "items_b", fresh, "A restarted during watch, and B")
            pause.clear()
            j = self.wait(self.admin_a, job_id, lambda j: j["terminal"], timeout=120)
            self.assertEqual(j["state"], "done", j)
            # retention over: old index gone, pin cleared, new index under the live name
            deadline = time.time() + 20
            while self.route(self.admin_b, "items_b")["pinned_to"] is not None or \
                    self.pg.psql("SELECT to_regclass('%s') IS NOT NULL" % fresh, db="app") == "t":
                self.assertLess(time.time(), deadline, "pin or candidate name left behind")
                time.sleep(0.2)
            time.sleep(1)
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])
        self.assertNotEqual(self.pg.psql("SELECT 'items_b_idx'::regclass::oid", db="app"), old_oid)
        self.assertIn("m='16'", self.pg.psql("SELECT pg_get_indexdef('items_b_idx'::regclass)", db="app"))
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_index WHERE indrelid = 'items_b'::regclass "
                                      "AND NOT indisvalid", db="app"), "0")
        self.assert_all_on((a,), "items_b", "items_b_idx", "A, after retention")
        # the reader: never a sequential scan, the live graph until the swap, the candidate after it
        self.assertGreater(len(seen), 50)
        self.assertEqual([s for s in seen if s[3] != 0], [], "sequential scans")
        before = [s for s in seen if s[0] < swapped_at]
        after = [s for s in seen if swapped_at + 1.5 < s[0]]
        self.assertTrue(before and after)
        self.assertEqual([s for s in before if s[1:] != (1, 0, 0)], [], "reads before the swap not on the live index")
        # after the rename the candidate's oid is the live name's: either counter
        self.assertEqual([s for s in after if s[1] != 0 and s[2] == 0], [], "reads on the old index after the swap")
        print("hint mode (b): %d reads through B, 0 sequential scans, recall@10 of the candidate %.3f"
              % (len(seen), j["candidate"]["recall"] or 0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
