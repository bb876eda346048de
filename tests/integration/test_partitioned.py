"""A partitioned table rebuilt partition by partition, on real pgvector.

docs(id, tenant, v vector(64)) is partitioned by tenant into three
partitions, one of them empty, with an HNSW index on the parent (a
partitioned index over one index per partition).  vecgate builds one
candidate per partition with CREATE INDEX CONCURRENTLY, attaches them under a
parent candidate, gates the whole table once and swaps the whole tree in one
transaction (flip mode: a superuser maintenance role).

(a) under reads and writes through vecgate: no read or write fails, no row is
    lost, the job ends done, each partition's recall is in the job JSON (null
    for the empty partition, the whole recall their weighted mean), the new partitions' indexes served the reads
    after the swap and the old ones none (scan counters), the parent index is
    valid with every partition's index attached, nothing invalid is left.
(b) PostgreSQL restarts while the second partition builds (the first one
    built): the job goes on, the first partition's candidate is not built
    again (same oid at the end), and ends done; (b2) the same with vecgate
    killed (SIGKILL) and started again: the new process resumes the job from
    vecgate.jobs and the catalog.
(c) cancel during the build: the parent and every partition's index are the
    ones from before (same oids, valid), no candidate is left.
(f) rollback after the swap (flip mode): the old tree serves again under the
    live names (same oids as before the job, valid, attached), the new tree
    is dropped.
(d) rename mode (the table's owner, no superuser, no pg_hint_plan), on a
    churned graph rebuilt with the same parameters (a fresh graph wins the
    planner): the tree is renamed in one transaction and the old one dropped
    after it.
Skipped where pgvector is not installed.
"""
import json
import os
import random
import threading
import time
import unittest

import psycopg

from pgtest import (AdminCase, SUPERPW, eval_file, free_port, has_pgvector, PgCluster, random_vector, run, Vecgate,
                    wait_port)

TOKEN = "partitioned-token-0123"
DIMS = 64


def has_hint_plan():
    r = run(["/usr/lib/postgresql/15/bin/pg_config", "--pkglibdir"])
    return os.path.exists(os.path.join(r.stdout.strip(), "pg_hint_plan.so"))


@unittest.skipUnless(has_pgvector(), "pgvector is not installed (set VECGATE_VENDOR_DIR for tests/install-deps)")
class Partitioned(AdminCase, unittest.TestCase):
    token = TOKEN
    report = []

    @classmethod
    def setUpClass(cls):
        cls.hints = has_hint_plan()
        cls.pg = PgCluster(extra_conf="maintenance_work_mem=128MB\nmax_parallel_maintenance_workers=0" +
                           ("\nshared_preload_libraries='pg_hint_plan'" if cls.hints else ""))
        cls.pg.psql("CREATE EXTENSION vector")
        cls.pg.psql("CREATE TABLE docs (id bigserial, tenant int NOT NULL, v vector(%d)) PARTITION BY LIST (tenant)"
                    % DIMS)
        for t in (1, 2, 3):
            cls.pg.psql("CREATE TABLE docs_t%d PARTITION OF docs FOR VALUES IN (%d)" % (t, t))
        noise = "(SELECT array_agg(random())::vector FROM generate_series(1, %d) WHERE g > 0)" % DIMS
        # tenant 3 stays empty
        cls.pg.psql("INSERT INTO docs (tenant, v) SELECT 1, %s FROM generate_series(1, 6000) g" % noise)
        cls.pg.psql("INSERT INTO docs (tenant, v) SELECT 2, %s FROM generate_series(1, 6000) g" % noise)
        cls.pg.psql("CREATE INDEX docs_v_idx ON docs USING hnsw (v vector_l2_ops) WITH (m = 4, ef_construction = 8)")
        cls.pg.psql("ANALYZE docs")
        rnd = random.Random(23)
        cls.queries = [random_vector(rnd, DIMS) for _ in range(20)]
        # the same shape owned by a role that is not superuser, in its own database
        cls.pg.psql("CREATE ROLE owner LOGIN PASSWORD 'owner-pw'")
        cls.pg.psql("CREATE DATABASE app OWNER owner")
        cls.pg.psql("CREATE EXTENSION vector", db="app")
        cls.pg.psql("SET ROLE owner; CREATE TABLE notes (id bigserial, tenant int NOT NULL, v vector(%d)) "
                    "PARTITION BY LIST (tenant); CREATE TABLE notes_a PARTITION OF notes FOR VALUES IN (1); "
                    "CREATE TABLE notes_b PARTITION OF notes FOR VALUES IN (2)" % DIMS, db="app")
        cls.pg.psql("INSERT INTO notes (tenant, v) SELECT 1, %s FROM generate_series(1, 3000) g" % noise, db="app")
        cls.pg.psql("SET ROLE owner; CREATE INDEX notes_v_idx ON notes USING hnsw (v vector_l2_ops) "
                    "WITH (m = 4, ef_construction = 8)", db="app")
        # churn: a graph grown messy loses the planner to a fresh one of the same shape,
        # which rename mode's verify needs (nothing hides the live tree without superuser)
        cls.pg.psql("DELETE FROM notes WHERE id %% 2 = 0; INSERT INTO notes (tenant, v) SELECT 1, %s "
                    "FROM generate_series(1, 1500) g" % noise, db="app")
        cls.pg.psql("ANALYZE notes", db="app")
        common = {"eval_file": eval_file(cls.queries), "k": 10, "search_settings": {"hnsw.ef_search": "40"},
                  "recall_tolerance": 0.3, "latency_budget_ms": 500, "watch_seconds": 3, "max_attempts": 5,
                  "backoff_seconds": 0.5}
        cls.admin = free_port()
        cls.vg = Vecgate(cls.pg, auth_type="trust", users=[], databases=[
            {"name": "postgres", "pool_mode": "transaction", "pool_size": 4, "user": "postgres", "password": SUPERPW},
            {"name": "app", "pool_mode": "transaction", "pool_size": 2, "user": "owner", "password": "owner-pw"}],
            extra={"admin": {"port": cls.admin, "token": TOKEN}, "managed_indexes": [dict(
                common, name="docs", database="postgres", table="public.docs", index="docs_v_idx", user="postgres",
                password=SUPERPW, eval_query="SELECT id FROM public.docs ORDER BY v <-> $1::vector LIMIT $2",
                retention_seconds=6, partitions="whole", **{"with": {"m": 16, "ef_construction": 48}}), dict(
                # the same index for the cases that need no scan window after the swap
                common, name="docs_quick", database="postgres", table="public.docs", index="docs_v_idx",
                user="postgres", password=SUPERPW, watch_seconds=2, retention_seconds=0.5,
                eval_query="SELECT id FROM public.docs ORDER BY v <-> $1::vector LIMIT $2",
                **{"with": {"m": 16, "ef_construction": 48}}), dict(
                common, name="notes", database="app", table="public.notes", index="notes_v_idx", user="owner",
                password="owner-pw", eval_query="SELECT id FROM public.notes ORDER BY v <-> $1::vector LIMIT $2",
                retention_seconds=1, swap_mode="rename"), dict(
                common, name="docs_hint", database="postgres", table="public.docs", index="docs_v_idx",
                user="postgres", password=SUPERPW, swap_mode="hint",
                eval_query="SELECT id FROM public.docs ORDER BY v <-> $1::vector LIMIT $2"), dict(
                # partitions: rolling: each partition gated and swapped on its own
                common, name="docs_roll", database="postgres", table="public.docs", index="docs_v_idx",
                user="postgres", password=SUPERPW, watch_seconds=2, retention_seconds=0.5, partitions="rolling",
                eval_query="SELECT id FROM public.docs ORDER BY v <-> $1::vector LIMIT $2",
                **{"with": {"m": 16, "ef_construction": 48}}), dict(
                # auto swap mode without superuser: not flip, so rolling is refused at preflight
                common, name="notes_roll", database="app", table="public.notes", index="notes_v_idx", user="owner",
                password="owner-pw", eval_query="SELECT id FROM public.notes ORDER BY v <-> $1::vector LIMIT $2",
                partitions="rolling")]})

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()
        for line in cls.report:
            print(line)

    def start(self, name="docs"):
        r = self.ctl("--json", "rebuild", "start", name)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return json.loads(r.stdout)["id"]

    def tree(self):
        """{index name: (oid, valid)} of the live parent index and its partitions' indexes."""
        rows = self.pg.psql("SELECT c.relname, c.oid, i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = "
                            "i.indexrelid WHERE i.indrelid IN (SELECT relid FROM pg_partition_tree('docs'))")
        return {r.split("|")[0]: (r.split("|")[1], r.split("|")[2]) for r in rows.splitlines()}

    def check_consistent(self, case):
        t = self.tree()
        self.assertEqual(sorted(t), ["docs_t1_v_idx", "docs_t2_v_idx", "docs_t3_v_idx", "docs_v_idx"], case)
        self.assertTrue(all(v == "t" for _, v in t.values()), (case, t))
        attached = self.pg.psql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'docs_v_idx'::regclass")
        self.assertEqual(attached, "3", case)
        return t

    def no_candidates_left(self):
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_class WHERE relname LIKE 'docs%_vg%'"), "0")

    def check_restored(self, before, case):
        """The tree as it was before the job (same oids, valid, attached), no candidate left."""
        deadline = time.time() + 20
        while time.time() < deadline and self.tree() != before:
            time.sleep(0.2)  # the candidates go after the cancel, rollback or flip back
        self.assertEqual(self.tree(), before, case)
        self.check_consistent(case)
        self.no_candidates_left()

    def wait_parts(self, job_id, pred, what, timeout=120):
        deadline = time.time() + timeout
        while time.time() < deadline:
            j = self.job(job_id)
            if j.get("partitions") and pred(j["partitions"]):
                return j
            if j["terminal"]:
                self.fail("%s: the job ended first: %s\n%s" % (what, j, self.vg.log()[-3000:]))
            time.sleep(0.1)
        self.fail("%s: %s" % (what, self.job(job_id)))

    def scans(self, oids):
        rows = self.pg.psql("SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes WHERE indexrelid IN (%s)"
                            % ",".join(oids))
        return int(rows)

    def test_a_rebuild_under_traffic(self):
        before = self.check_consistent("before")
        old_children = [before[n][0] for n in ("docs_t1_v_idx", "docs_t2_v_idx", "docs_t3_v_idx")]
        count0 = int(self.pg.psql("SELECT count(*) FROM docs"))
        stop = threading.Event()
        stats = {"reads": 0, "read_errors": [], "inserted": 0, "write_errors": []}
        rnd = random.Random(5)

        def reader():
            with psycopg.connect(self.vg.dsn(user="postgres", password=SUPERPW, db="postgres"),
                                 autocommit=True) as c:
                while not stop.is_set():
                    try:
                        c.execute("SELECT id FROM docs ORDER BY v <-> %s::vector LIMIT 10",
                                  (random_vector(rnd, DIMS),)).fetchall()
                        stats["reads"] += 1
                    except Exception as e:  # counted, the test fails on any
                        stats["read_errors"].append(str(e))
                    time.sleep(0.01)

        def writer():
            w = random.Random(6)
            with psycopg.connect(self.vg.dsn(user="postgres", password=SUPERPW, db="postgres"),
                                 autocommit=True) as c:
                while not stop.is_set():
                    try:
                        # tenant 3 stays empty through this job: its per-partition recall must be null
                        c.execute("INSERT INTO docs (tenant, v) VALUES (%s, %s::vector)",
                                  (w.choice((1, 2)), random_vector(w, DIMS)))
                        stats["inserted"] += 1
                    except Exception as e:
                        stats["write_errors"].append(str(e))
                    time.sleep(0.02)

        # a session holding a cached generic plan from before the job (not through vecgate)
        held = self.pg.connect()
        held.execute("SET plan_cache_mode = force_generic_plan")
        held.execute("PREPARE knn(vector) AS SELECT id FROM docs ORDER BY v <-> $1 LIMIT 10")
        q = random_vector(rnd, DIMS)
        held.execute("EXECUTE knn('%s')" % q).fetchall()

        def held_scans(oids):
            return held.execute("SELECT coalesce(sum(pg_stat_get_xact_numscans(o)), 0) FROM unnest(%s::oid[]) o",
                                ("{%s}" % ",".join(oids),)).fetchone()[0]

        threads = [threading.Thread(target=reader), threading.Thread(target=writer)]
        for t in threads:
            t.start()
        try:
            t0 = time.time()
            job_id = self.start()
            j = self.wait(job_id, lambda j: j["state"] in ("watch", "retain") or j["terminal"], timeout=150)
            self.assertEqual(j["state"], "watch", "%s\n%s" % (j, self.vg.log()[-4000:]))
            at_watch = j  # verify's numbers, per partition too
            status = self.ctl("rebuild", "status", "docs").stdout
            new_children = [p["candidate_oid"] for p in j["partitions"]]
            self.assertTrue(all(new_children), j["partitions"])
            self.assertTrue(all(p["state"] == "attached" for p in j["partitions"]), j["partitions"])
            # the held plan moved with the swap (the no-op pg_class updates of the table and its partitions)
            # (deltas inside one transaction: PostgreSQL 15's "xact" counters also hold what
            # earlier transactions of the session did and did not report yet)
            with held.transaction():
                n0, o0 = held_scans(new_children), held_scans(old_children)
                held.execute("EXECUTE knn('%s')" % q).fetchall()
                held_new, held_old = held_scans(new_children) - n0, held_scans(old_children) - o0
            held.close()  # its counts (this session's too) are reported as it ends, before the window below
            # a busy backend reports its counts about once a second: the reads
            # before the swap are all counted after 1.5 s
            time.sleep(1.5)
            s_new, s_old = self.scans(new_children), self.scans(old_children)
            time.sleep(2.5)
            d_new, d_old = self.scans(new_children) - s_new, self.scans(old_children) - s_old
            j = self.wait(job_id, lambda j: j["terminal"], timeout=60)
        finally:
            stop.set()
            for t in threads:
                t.join()
        self.assertEqual(j["state"], "done", "%s\n%s" % (j, self.vg.log()[-4000:]))
        self.assertEqual(stats["read_errors"], [])
        self.assertEqual(stats["write_errors"], [])
        self.assertGreater(stats["reads"], 20)
        self.assertEqual(int(self.pg.psql("SELECT count(*) FROM docs")), count0 + stats["inserted"])
        self.assertGreater(held_new, 0, "the session's cached plan did not move to the new partitions' indexes")
        self.assertEqual(held_old, 0, "the session's cached plan still scans the old partitions' indexes")
        self.assertGreater(d_new, 0, "the new partitions' indexes served no read after the swap")
        self.assertEqual(d_old, 0, "the old partitions' indexes still served reads after the swap")
        after = self.check_consistent("after")
        # the live names now denote the candidates the job built
        self.assertEqual(sorted(after[n][0] for n in ("docs_t1_v_idx", "docs_t2_v_idx", "docs_t3_v_idx")),
                         sorted(new_children))
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_class WHERE oid IN (%s)" % ",".join(old_children)),
                         "0")  # the retired tree went after retention
        self.assertIn("m='16'", self.pg.psql("SELECT pg_get_indexdef('docs_t1_v_idx'::regclass)"))
        # the whole gate's eval split by partition: a number where true neighbours live, null for the
        # empty partition, and the whole recall is their mean weighted by the neighbours in each
        parts = {p["partition"]: p for p in at_watch["partitions"]}
        for name in ("docs_t1", "docs_t2"):
            for key in ("recall", "baseline_recall"):
                self.assertIsNotNone(parts[name][key], (name, key, parts[name]))
                self.assertTrue(0 <= parts[name][key] <= 1, parts[name])
            self.assertGreater(parts[name]["neighbours"], 0, parts[name])
        self.assertIsNone(parts["docs_t3"]["recall"], parts["docs_t3"])
        self.assertIsNone(parts["docs_t3"]["baseline_recall"], parts["docs_t3"])
        self.assertEqual(parts["docs_t3"]["neighbours"], 0, parts["docs_t3"])
        # (each run in its own snapshot: the writes between them move true neighbours)
        for key, n_key, whole in (("recall", "neighbours", at_watch["candidate"]["recall"]),
                                  ("baseline_recall", "baseline_neighbours", at_watch["baseline"]["recall"])):
            self.assertEqual(sum(parts[n][n_key] for n in parts), 10 * len(self.queries))
            weighted = sum(parts[n][key] * parts[n][n_key] for n in ("docs_t1", "docs_t2")) / \
                (10 * len(self.queries))
            self.assertAlmostEqual(weighted, whole, places=4, msg=(key, parts))
        self.assertRegex(status, r"partition docs_t1 .* recall [01]\.\d{4} \(baseline [01]\.\d{4}\)")
        self.assertRegex(status, r"partition docs_t3 .* recall - \(baseline -\)")
        swap = [h for h in j["history"] if h["from"] == "swap"][0]["message"]
        self.report.append("(a) per-partition recall (candidate / baseline, true neighbours): %s" % [
            (n, parts[n]["recall"], parts[n]["baseline_recall"], parts[n]["neighbours"], parts[n]["baseline_neighbours"])
            for n in sorted(parts)])
        self.report.append("(a) under traffic: %d reads, %d rows inserted, 0 failed; job %.1f s; %s; scans after the "
                           "swap: new partitions' indexes +%d, old +%d; a cached generic plan from before: new +%d, old +%d; build %s"
                           % (stats["reads"], stats["inserted"], time.time() - t0, swap, d_new, d_old, held_new,
                              held_old,
                              [(p["partition"], p["build_seconds"]) for p in j["partitions"]]))

    def test_b_restart_between_partitions(self):
        self.check_consistent("before")
        job_id = self.start("docs_quick")
        j = self.wait_parts(job_id, lambda p: p[0]["state"] == "built" and p[1]["state"] == "building",
                            "partition 1 built, partition 2 building")
        first = j["partitions"][0]
        self.assertTrue(first["candidate_oid"] or True)
        oid1 = self.pg.psql("SELECT '%s'::regclass::oid" % first["candidate"])
        st = self.ctl("rebuild", "status", "docs_quick")
        self.assertRegex(st.stdout, r"partition docs_t1 +built +100%")
        self.assertRegex(st.stdout, r"partition docs_t2 +building")
        self.report.append("(b) vecgatectl rebuild status docs_quick, partition 2 building:\n" + st.stdout)
        t = time.time()
        log_at = len(self.vg.log())
        self.pg.pg_ctl("restart", "-m", "fast")
        j = self.wait(job_id, lambda j: j["terminal"], timeout=150)
        self.assertEqual(j["state"], "done", "%s\n%s" % (j, self.vg.log()[-4000:]))
        # the first partition's candidate was kept, not built again: it is the live one now
        self.assertEqual(self.pg.psql("SELECT 'docs_t1_v_idx'::regclass::oid"), oid1)
        self.assertIn("1 of 3 partitions already built", self.vg.log()[log_at:])
        self.check_consistent("after restart")
        retries = [h for h in j["history"] if h["from"] == "build" and h["to"] == "build"]
        self.assertGreaterEqual(len(retries), 1, j["history"])
        self.report.append("(b) PostgreSQL restarted while partition 2 built: done %.1f s later, partition 1 kept "
                           "(oid %s), %d build retries" % (time.time() - t, oid1, len(retries)))

    def test_b2_vecgate_killed_between_partitions(self):
        self.check_consistent("before")
        job_id = self.start("docs_quick")
        j = self.wait_parts(job_id, lambda p: p[0]["state"] == "built" and p[1]["state"] == "building",
                            "partition 1 built, partition 2 building")
        db_id = j["db_id"]
        oid1 = self.pg.psql("SELECT '%s'::regclass::oid" % j["partitions"][0]["candidate"])
        t = time.time()
        log_at = len(self.vg.log())
        self.vg.proc.kill()
        self.vg.proc.wait()
        self.vg.start()
        wait_port(self.admin)
        # the new process resumes the same durable job
        deadline = time.time() + 150
        while time.time() < deadline:
            jobs = self.api("/v1/jobs?index=docs_quick")["jobs"]
            mine = [x for x in jobs if x.get("db_id") == db_id]
            if mine and mine[0]["terminal"]:
                break
            time.sleep(0.3)
        self.assertTrue(mine and mine[0]["state"] == "done", "%s\n%s" % (jobs, self.vg.log()[-4000:]))
        self.assertEqual(self.pg.psql("SELECT 'docs_t1_v_idx'::regclass::oid"), oid1)
        self.assertEqual(self.pg.psql("SELECT state FROM vecgate.jobs WHERE id = %d" % db_id), "done")
        self.assertIn("1 of 3 partitions already built", self.vg.log()[log_at:])
        self.check_consistent("after a vecgate restart")
        self.report.append("(b2) vecgate killed while partition 2 built: the restarted process finished the job "
                           "%.1f s later, partition 1 kept (oid %s)" % (time.time() - t, oid1))

    def test_c_cancel_mid_build(self):
        before = self.check_consistent("before")
        job_id = self.start("docs_quick")
        self.wait_parts(job_id, lambda p: p[0]["state"] == "built" and p[1]["state"] == "building",
                        "partition 2 building")
        r = self.ctl("cancel", str(job_id))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        j = self.wait(job_id, lambda j: j["terminal"], timeout=60)
        self.assertEqual(j["state"], "cancelled", j)
        self.check_restored(before, "after cancel")

    def test_d_rename_mode(self):
        tree = ("SELECT c.relname || ':' || i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE i.indrelid IN (SELECT relid FROM pg_partition_tree('notes')) ORDER BY 1")
        before = self.pg.psql("SELECT string_agg(oid::text, ',') FROM pg_class WHERE relname LIKE 'notes%idx'",
                              db="app")
        t = time.time()
        job_id = self.start("notes")
        j = self.wait(job_id, lambda j: j["terminal"], timeout=120)
        self.assertEqual(j["state"], "done", "%s\n%s" % (j, self.vg.log()[-4000:]))
        self.assertEqual(j["swap_mode"], "rename", j)
        deadline = time.time() + 20
        while time.time() < deadline and "vgold" in self.pg.psql(tree, db="app"):
            time.sleep(0.2)  # the old tree is dropped after the swap
        self.assertEqual(self.pg.psql(tree, db="app").splitlines(),
                         ["notes_a_v_idx:true", "notes_b_v_idx:true", "notes_v_idx:true"])
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_inherits WHERE inhparent = 'notes_v_idx'::regclass",
                                      db="app"), "2")
        after = self.pg.psql("SELECT string_agg(oid::text, ',') FROM pg_class WHERE relname LIKE 'notes%idx'",
                             db="app")
        self.assertTrue(set(before.split(",")).isdisjoint(after.split(",")), (before, after))
        swap = [h for h in j["history"] if h["from"] == "swap"][0]["message"]
        self.report.append("(d) rename mode (table owner): done in %.1f s; %s" % (time.time() - t, swap))

    def test_e_hint_mode_refused(self):
        if not self.hints:
            self.skipTest("pg_hint_plan is not installed")
        before = self.tree()
        job_id = self.start("docs_hint")
        j = self.wait(job_id, lambda j: j["terminal"], timeout=60)
        self.assertEqual(j["state"], "failed", j)
        self.assertEqual([h["from"] for h in j["history"]], ["preflight"], j["history"])
        self.assertIn("swap mode hint cannot pin its reads: pg_hint_plan ignores a partitioned index's name",
                      j["message"])
        self.assertEqual(self.tree(), before)  # nothing was built

    def test_f_rollback_after_the_swap(self):
        before = self.check_consistent("before")
        job_id = self.start("docs_quick")
        self.wait(job_id, lambda j: j["state"] in ("watch", "retain") or j["terminal"], timeout=120)
        self.assertNotEqual(self.tree(), before)  # the new tree carries the live names now
        t = time.time()
        r = self.ctl("rollback", str(job_id))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        j = self.wait(job_id, lambda j: j["terminal"], timeout=60)
        self.assertEqual(j["state"], "rolled_back", j)
        self.check_restored(before, "after the rollback")
        self.report.append("(f) rollback: the old tree served again and the new one was gone %.1f s after the "
                           "request" % (time.time() - t))

    def test_g_rolling_under_reads(self):
        before = self.check_consistent("before")
        old1, old2 = before["docs_t1_v_idx"][0], before["docs_t2_v_idx"][0]
        # partition 2's build waits for this writer: the job is held between partition 1's swap and
        # partition 2's (CREATE INDEX CONCURRENTLY on docs_t2 waits for docs_t2's writers only)
        blocker = self.hold_partition_2()
        t0 = time.time()
        try:
            job_id = self.start("docs_roll")
            j = self.wait_parts(job_id, lambda p: p[0]["state"] == "swapped" and p[1]["state"] == "building",
                                "partition 1 swapped, partition 2 building")
            new1 = self.pg.psql("SELECT '%s'::regclass::oid" % j["partitions"][0]["candidate"])
            st = self.ctl("rebuild", "status", "docs_roll").stdout
            # one read of the parent through vecgate, its scans counted inside its own transaction
            with psycopg.connect(self.vg.dsn(user="postgres", password=SUPERPW, db="postgres")) as c:
                def counts():
                    return c.execute("SELECT pg_stat_get_xact_numscans(%s), pg_stat_get_xact_numscans(%s), "
                                     "pg_stat_get_xact_numscans(%s)", (int(new1), int(old1), int(old2))).fetchone()
                with c.transaction():
                    b = counts()
                    c.execute("SELECT id FROM docs ORDER BY v <-> %s::vector LIMIT 10",
                              (self.queries[0],)).fetchall()
                    a = counts()
            d_new1, d_old1, d_old2 = (a[i] - b[i] for i in range(3))
        finally:
            blocker.rollback()
            blocker.close()
        j = self.wait(job_id, lambda j: j["terminal"], timeout=150)
        self.assertEqual(j["state"], "done", "%s\n%s" % (j, self.vg.log()[-4000:]))
        self.assertGreater(d_new1, 0, "partition 1 was not read through its new index after its swap")
        self.assertEqual(d_old1, 0, "partition 1 still read through its old index after its swap")
        self.assertGreater(d_old2, 0, "partition 2 was not read through its old index before its swap")
        # each partition's gate computed its own ground truth in one pass over the partition
        self.assertRegex(self.vg.log(), r"eval docs_roll: ground truth by one exact scan of docs_t1: ")
        self.assertRegex(st, r"partition docs_t1 +swapped")
        self.assertRegex(st, r"own gate: recall [01]\.\d{4} \(live index [01]\.\d{4}\)")
        after = self.check_consistent("after rolling")
        self.assertEqual(after["docs_t1_v_idx"][0], new1)  # the candidate gated and swapped first kept serving
        self.no_candidates_left()
        parts = j["partitions"]
        self.assertEqual([p["state"] for p in parts], ["swapped"] * 3, parts)
        self.assertTrue(parts[2]["gate"]["empty"], parts[2])
        for p in parts[:2]:
            self.assertTrue(0 <= p["gate"]["recall"] <= 1, p)
        self.report.append("(g) rolling under reads: done %.1f s after the start; partition swaps %s ms; one read "
                           "between partition 1's and 2's swaps: docs_t1 new index +%d, old +%d, docs_t2 old +%d; "
                           "own gates (recall, live recall): %s" % (
                               time.time() - t0, [round(p["swap_ms"], 2) for p in parts], d_new1, d_old1, d_old2,
                               [(p["gate"]["recall"], p["gate"]["baseline_recall"]) for p in parts]))
        self.report.append("(g) vecgatectl rebuild status, partition 1 swapped, partition 2 building:\n" + st)

    def test_h_rolling_then_rollback(self):
        before = self.check_consistent("before")
        job_id = self.start("docs_roll")
        j = self.wait(job_id, lambda j: j["state"] in ("watch", "retain") or j["terminal"], timeout=120)
        self.assertEqual(j["state"], "watch", "%s\n%s" % (j, self.vg.log()[-4000:]))
        self.assertNotEqual(self.tree(), before)
        r = self.ctl("rollback", str(job_id))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        j = self.wait(job_id, lambda j: j["terminal"], timeout=60)
        self.assertEqual(j["state"], "rolled_back", j)
        self.check_restored(before, "after the rolling job's rollback")

    def hold_partition_2(self):
        """A writer on docs_t2 that partition 2's concurrent build waits for."""
        blocker = self.pg.connect()
        blocker.execute("BEGIN")
        blocker.execute("INSERT INTO docs_t2 (tenant, v) VALUES (2, %s::vector)", (random_vector(random.Random(8), DIMS),))
        return blocker

    def test_j_rolling_cancel_after_a_swap(self):
        before = self.check_consistent("before")
        blocker = self.hold_partition_2()
        try:
            job_id = self.start("docs_roll")
            self.wait_parts(job_id, lambda p: p[0]["state"] == "swapped" and p[1]["state"] == "building",
                            "partition 1 swapped, partition 2 building")
            self.assertEqual(self.pg.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'docs_t1_v_idx'::regclass"),
                             "f")  # partition 1 reads through its candidate now
            r = self.ctl("cancel", str(job_id))
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            j = self.wait(job_id, lambda j: j["terminal"], timeout=60)
        finally:
            blocker.rollback()
            blocker.close()
        self.assertEqual(j["state"], "cancelled", j)
        self.check_restored(before, "after cancelling a rolling job")
        self.assertIn("rolled back: docs_v_idx serves again", self.vg.log())

    def test_k_rolling_restart_after_a_swap(self):
        self.check_consistent("before")
        blocker = self.hold_partition_2()
        job_id = self.start("docs_roll")
        j = self.wait_parts(job_id, lambda p: p[0]["state"] == "swapped" and p[1]["state"] == "building",
                            "partition 1 swapped, partition 2 building")
        oid1 = self.pg.psql("SELECT '%s'::regclass::oid" % j["partitions"][0]["candidate"])
        log_at = len(self.vg.log())
        self.pg.pg_ctl("restart", "-m", "fast")  # the writer holding partition 2 goes with it
        blocker.close()
        j = self.wait(job_id, lambda j: j["terminal"], timeout=150)
        self.assertEqual(j["state"], "done", "%s\n%s" % (j, self.vg.log()[-4000:]))
        # the catalog said partition 1 was swapped: neither built nor gated again
        self.assertEqual(self.pg.psql("SELECT 'docs_t1_v_idx'::regclass::oid"), oid1)
        self.assertNotIn("docs_t1's gate passed", self.vg.log()[log_at:])
        self.assertIn("docs_t2's gate passed", self.vg.log()[log_at:])
        self.check_consistent("after a restart between rolling swaps")
        self.no_candidates_left()

    def test_i_rolling_needs_flip(self):
        before = self.pg.psql("SELECT string_agg(oid::text, ',' ORDER BY oid) FROM pg_class WHERE relname LIKE "
                              "'notes%idx'", db="app")
        job_id = self.start("notes_roll")
        j = self.wait(job_id, lambda j: j["terminal"], timeout=60)
        self.assertEqual(j["state"], "failed", j)
        self.assertEqual([h["from"] for h in j["history"]], ["preflight"], j["history"])
        self.assertIn("partitions: rolling needs swap mode flip", j["message"])
        self.assertEqual(self.pg.psql("SELECT string_agg(oid::text, ',' ORDER BY oid) FROM pg_class WHERE relname "
                                      "LIKE 'notes%idx'", db="app"), before)  # nothing was built
        self.report.append("(i) rolling without flip mode: " + j["message"])


if __name__ == "__main__":
    unittest.main(verbosity=2)
