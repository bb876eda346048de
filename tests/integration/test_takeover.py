"""Several vecgate instances share a managed index: when the one driving a
rebuild dies, another takes the job over, and no unverified candidate ever
serves a read.

Real pgvector HNSW, flip mode (superuser maintenance role), three vecgate
processes.  A reader through a surviving instance runs the whole time, each
read inside a transaction whose own scan counters say which index served it:
no read may touch any index but the live one before the gate passed, and no
read may fail.  Scenarios: the driver killed (SIGKILL) during the build, while
waiting for approval and during watch; the driver frozen (SIGSTOP) past
takeover_seconds, then woken: it touches nothing; the driver killed inside
the swap transaction and PostgreSQL restarted before anyone took over.  Afterwards no invalid or
duplicate index is left.  Skipped without pgvector."""
import contextlib
import json
import os
import random
import signal
import threading
import time
import unittest

import psycopg

from pgtest import (SUPERPW, admin_get, eval_file, free_port, has_pgvector, pgvector_items, PgCluster, Vecgate,
                    vecgatectl, random_vector)

TOKEN = "takeover-token-0123"
DIMS = 32


def vec(rnd):
    return random_vector(rnd, DIMS)


@unittest.skipUnless(has_pgvector(), "needs pgvector (VECGATE_VENDOR_DIR)")
class Takeover(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster(extra_conf="autovacuum=off\nmaintenance_work_mem=256MB")
        pg = cls.pg
        pgvector_items(pg, rows=40000, dims=DIMS)
        cls.evalf = eval_file(vec(random.Random(7)) for _ in range(20))
        cls.vgs = {}
        for name in ("a", "b", "c"):
            cls.start(name)

    @classmethod
    def start(cls, name):
        admin = cls.vgs[name]["admin"] if name in cls.vgs else free_port()
        idx = {"name": "items", "database": "postgres", "table": "public.items", "index": "items_idx",
               "user": "postgres", "password": SUPERPW, "eval_file": cls.evalf, "k": 10,
               "eval_query": "SELECT id FROM public.items ORDER BY embedding <-> $1::vector LIMIT $2",
               "with": {"m": 16, "ef_construction": 64}, "search_settings": {"hnsw.ef_search": "20"},
               "approve_swap": True, "recall_tolerance": 0.5, "latency_budget_ms": 500, "watch_seconds": 4,
               "retention_seconds": 2, "takeover_seconds": 3, "drop_invalid": True, "route_policy": {},
               "lock_timeout_ms": 4000}
        v = Vecgate(cls.pg, auth_type="trust", users=[], databases=[
            {"name": "postgres", "pool_mode": "transaction", "pool_size": 3, "user": "postgres",
             "password": SUPERPW}],
            extra={"admin": {"port": admin, "token": TOKEN}, "routing": {"refresh_seconds": 1},
                   "managed_indexes": [idx]}, port=cls.vgs[name]["vg"].port if name in cls.vgs else None)
        cls.vgs[name] = {"vg": v, "admin": admin}

    @classmethod
    def tearDownClass(cls):
        for v in cls.vgs.values():
            if v["vg"].proc.poll() is None:
                v["vg"].stop()

    # ---- helpers ----

    def alive(self):
        return [n for n, v in self.vgs.items() if v["vg"].proc.poll() is None]

    def jobs(self, name):
        return admin_get(self.vgs[name]["admin"], TOKEN, "/v1/jobs?index=items")["jobs"]

    def job_on(self, name, db_id):
        return next((j for j in self.jobs(name) if j["db_id"] == db_id), None)

    def driver(self, db_id, names, timeout=60):
        """The instance that drives job db_id (it does not follow it)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            for n in names:
                j = self.job_on(n, db_id)
                if j and not j["following"] and (not j["terminal"] or j["state"] == "done"):
                    return n, j
            time.sleep(0.1)
        self.fail("nobody drives job %d: %s" % (db_id, {n: self.job_on(n, db_id) for n in names}))

    def wait(self, name, db_id, pred, timeout=120):
        deadline = time.time() + timeout
        j = None
        while time.time() < deadline:
            j = self.job_on(name, db_id)
            if j and pred(j):
                return j
            time.sleep(0.1)
        self.fail("%s: %s\n%s" % (name, json.dumps(j)[:3000], self.vgs[name]["vg"].log()[-3000:]))

    def start_job(self, name):
        """Start a rebuild on instance `name`: its id in vecgate.jobs (the
        same on every instance; the API's ids are each process's own)."""
        r = vecgatectl(self.vgs[name]["admin"], TOKEN, "--json", "rebuild", "start", "items")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.vgs[name]["vg"].log()[-4000:])
        job_id = json.loads(r.stdout)["id"]
        deadline = time.time() + 30
        while time.time() < deadline:
            j = admin_get(self.vgs[name]["admin"], TOKEN, "/v1/jobs/%d" % job_id)
            if j["db_id"]:
                return j["db_id"]
            time.sleep(0.05)
        self.fail("job %d never recorded" % job_id)

    def approve(self, name, db_id):
        j = self.job_on(name, db_id)
        r = vecgatectl(self.vgs[name]["admin"], TOKEN, "approve", str(j["id"]))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def approve_and_finish(self, name, db_id):
        j = self.wait(name, db_id, lambda j: j["awaiting_approval"] or j["terminal"])
        self.assertTrue(j["awaiting_approval"], j)
        self.approve(name, db_id)
        j = self.wait(name, db_id, lambda j: j["terminal"])
        self.assertEqual(j["state"], "done", j)
        return j

    def reader(self, via):
        """Reads through `via` until stopped: (time, scans of the live index
        (by its oid at the start), scans of any other index, seq scans)."""
        stop, seen, errors = threading.Event(), [], []
        live = self.pg.psql("SELECT 'items_idx'::regclass::oid")

        def run():
            rnd = random.Random()
            try:
                with psycopg.connect(self.vgs[via]["vg"].dsn(user="postgres", db="postgres"),
                                     autocommit=False) as c:
                    counts = ("SELECT pg_stat_get_xact_numscans(%s::oid), (SELECT coalesce(sum("
                              "pg_stat_get_xact_numscans(indexrelid)), 0) FROM pg_index WHERE indrelid = "
                              "'items'::regclass AND indexrelid <> %s::oid AND indexrelid <> 'items_pkey'::regclass), "
                              "pg_stat_get_xact_numscans('items'::regclass)" % (live, live))
                    while not stop.is_set():
                        b0 = c.execute(counts).fetchone()
                        c.execute("SELECT id FROM items ORDER BY embedding <-> %s::vector LIMIT 10",
                                  (vec(rnd),)).fetchall()
                        b1 = c.execute(counts).fetchone()
                        c.commit()
                        seen.append((time.time(),) + tuple(int(x - y) for x, y in zip(b1, b0)))
                        time.sleep(0.02)
            except Exception as e:  # noqa: BLE001
                errors.append(repr(e))
        t = threading.Thread(target=run)
        t.start()
        return stop, t, seen, errors

    @contextlib.contextmanager
    def reading(self, via):
        """A reader through `via` for the block (see reader): its reads, and
        afterwards the check that none failed."""
        stop, t, seen, errors = self.reader(via)
        try:
            yield seen
        finally:
            stop.set()
            t.join()
        self.assertEqual(errors, [])

    def settled(self, db_id):
        """Every live instance sees the job ended (followers look every second)."""
        for n in self.alive():
            self.wait(n, db_id, lambda j: j["terminal"], timeout=30)

    def assert_gated(self, seen, gate):
        """No read before the gate passed used an index but the live one.
        Flip mode has one window it cannot close: a concurrent build ends
        with its index valid, and hiding it takes the next round trip of
        the driver's session (a few ms); a read planned in it may use the
        candidate.  Allowed: at most 2 such reads, within 0.5 s."""
        self.assertEqual([s for s in seen if s[3]], [], "sequential scans")
        bad = [s for s in seen if s[0] < gate and s[2]]
        self.assertTrue(len(bad) <= 2 and (not bad or bad[-1][0] - bad[0][0] < 0.5),
                        "reads on an unverified index: %s" % bad)

    def assert_clean(self):
        deadline = time.time() + 30
        while True:
            rows = self.pg.psql("SELECT string_agg(c.relname || ':' || i.indisvalid, ',' ORDER BY c.relname) FROM "
                                "pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = "
                                "'items'::regclass")
            if rows == "items_idx:true,items_pkey:true":
                return
            self.assertLess(time.time(), deadline, "indexes left behind: %s" % rows)
            time.sleep(0.3)

    def kill(self, name, sig=signal.SIGKILL):
        self.vgs[name]["vg"].proc.send_signal(sig)
        if sig == signal.SIGKILL:
            self.vgs[name]["vg"].proc.wait()

    # ---- scenarios ----

    def test_1_killed_in_build_three_instances(self):
        with self.reading("b") as seen:
            db_id = self.start_job("a")
            self.wait("a", db_id, lambda j: j["state"] == "build" and (j["progress"]["percent"] or 0) > 5)
            fresh = self.job_on("a", db_id)["new_index"]
            killed = time.time()
            self.kill("a")
            # the build dies with its client: the candidate never becomes valid
            became_valid = took_over = None
            while time.time() < killed + 4:
                if self.pg.psql("SELECT coalesce((SELECT indisvalid FROM pg_index WHERE indexrelid = "
                                "to_regclass('%s')), false)" % fresh) == "t":
                    became_valid = time.time() - killed
                    break
                if took_over is None and any(not (self.job_on(n, db_id) or {"following": True})["following"]
                                             for n in ("b", "c")):
                    took_over = time.time() - killed
                time.sleep(0.05)
            name, j = self.driver(db_id, ["b", "c"])
            took_over = took_over or time.time() - killed
            other = "c" if name == "b" else "b"
            j = self.wait(name, db_id, lambda j: j["awaiting_approval"] or j["terminal"])
            self.assertIn("took over", self.vgs[name]["vg"].log())
            follower = self.job_on(other, db_id)
            self.assertTrue(follower["following"], follower)
            self.assertEqual(follower["driver"]["instance"], j["driver"]["instance"])
            gate = time.time()
            self.approve_and_finish(name, db_id)
        self.assertIsNone(became_valid, "the killed build's candidate became valid")
        before_gate = [s for s in seen if s[0] < gate]
        self.assertGreater(len(before_gate), 20)
        self.assert_gated(seen, gate)
        self.assert_clean()
        self.settled(db_id)
        print("takeover in build: %.1f s from SIGKILL to the new driver (%s), candidate never valid, %d reads, 0 "
              "errors" % (took_over, name, len(seen)))
        self.__class__.start("a")

    def test_2_killed_awaiting_approval_and_in_watch(self):
        # readers through A and C: one of them is killed later, as the driver
        readers = {n: self.reader(n) for n in ("a", "c")}
        try:
            db_id = self.start_job("b")
            self.wait("b", db_id, lambda j: j["awaiting_approval"] or j["terminal"])
            killed = time.time()
            self.kill("b")
            name, j = self.driver(db_id, ["a", "c"])
            took_over = time.time() - killed
            j = self.wait(name, db_id, lambda j: j["awaiting_approval"] or j["terminal"])
            self.assertTrue(j["awaiting_approval"], j)
            gate = time.time()
            self.approve(name, db_id)
            self.wait(name, db_id, lambda j: j["state"] == "watch" or j["terminal"])
            killed2 = time.time()
            self.kill(name)
            (survivor,) = [n for n in ("a", "c") if n != name]
            name2, j = self.driver(db_id, [survivor])
            took_over2 = time.time() - killed2
            j = self.wait(name2, db_id, lambda j: j["terminal"])
            self.assertEqual(j["state"], "done", j)
        finally:
            for stop, t, _, _ in readers.values():
                stop.set()
                t.join()
        seen, errors = readers[survivor][2], readers[survivor][3]
        self.assertEqual(errors, [])  # reads through the survivor never failed
        for s in (readers["a"][2], readers["c"][2]):
            self.assert_gated(s, gate)
        self.assert_clean()
        self.settled(db_id)
        print("takeover awaiting approval %.1f s, in watch %.1f s; %d reads through the survivor, 0 errors"
              % (took_over, took_over2, len(seen)))
        for n in ("a", "b", "c"):
            if self.vgs[n]["vg"].proc.poll() is not None:
                self.__class__.start(n)

    def test_3_frozen_driver_is_fenced(self):
        with self.reading("b") as seen:
            db_id = self.start_job("a")
            self.wait("a", db_id, lambda j: j["awaiting_approval"] or j["terminal"])
            frozen = time.time()
            self.kill("a", signal.SIGSTOP)
            name, j = self.driver(db_id, ["b", "c"], timeout=30)
            took_over = time.time() - frozen
            # takeover_seconds (3) of silence since its last heartbeat (written every second)
            self.assertGreaterEqual(took_over, 1.8)
            self.vgs["a"]["vg"].proc.send_signal(signal.SIGCONT)
            # the woken instance learns it lost the lock and touches nothing
            self.wait("a", db_id, lambda j: j["terminal"], timeout=30)
            self.assertEqual(self.job_on("a", db_id)["state"], "cancelled")
            self.approve_and_finish(name, db_id)
        self.assert_clean()
        self.settled(db_id)
        self.assertIn("another vecgate instance", self.vgs["a"]["vg"].log())
        print("frozen driver: taken over after %.1f s, fenced when woken; %d reads, 0 errors" % (took_over, len(seen)))

    def test_4_killed_in_swap_then_postgres_restarts(self):
        db_id = self.start_job("b")
        self.wait("b", db_id, lambda j: j["awaiting_approval"] or j["terminal"])
        # the swap waits (lock_timeout_ms 4000) for the live index's row in
        # pg_index, which an open transaction holds: the driver dies inside it
        blocker = psycopg.connect("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres"
                                  % (self.pg.port, SUPERPW))
        blocker.execute("UPDATE pg_index SET indisvalid = indisvalid WHERE indexrelid = 'items_idx'::regclass")
        old_oid = self.pg.psql("SELECT 'items_idx'::regclass::oid")
        self.approve("b", db_id)
        deadline = time.time() + 15
        swap_pid = ""
        while not swap_pid:
            self.assertLess(time.time(), deadline, "the swap never waited: %s" % self.job_on("b", db_id))
            time.sleep(0.02)
            swap_pid = self.pg.psql("SELECT pid FROM pg_stat_activity WHERE application_name = 'vecgate rebuild "
                                    "items' AND wait_event_type = 'Lock'")
        # nobody may take over before PostgreSQL is back: the followers sleep
        for n in ("a", "c"):
            self.kill(n, signal.SIGSTOP)
        try:
            self.kill("b")
            # the server notices the dead client inside the lock wait
            # (client_connection_check_interval) and ends the swap's
            # transaction; had the blocker let go first, the swap would have
            # committed and the new driver would find it done (the catalog
            # decides, either way)
            killed = time.time()
            while self.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE pid = %s" % swap_pid) != "0":
                self.assertLess(time.time(), killed + 10, "the swap's server session outlived its client")
                time.sleep(0.05)
            gone = time.time() - killed
            self.pg.pg_ctl("restart", "-m", "fast")
        finally:
            for n in ("a", "c"):
                self.kill(n, signal.SIGCONT)
        try:
            blocker.close()
        except Exception:  # noqa: BLE001 (it died with the restart)
            pass
        restarted = time.time()
        with self.reading("a") as seen:
            name, j = self.driver(db_id, ["a", "c"])
            took_over = time.time() - restarted
            # the swap never committed (its transaction died with its client):
            # the new driver finds that in the catalog and asks for approval again
            j = self.wait(name, db_id, lambda j: j["awaiting_approval"] or j["terminal"])
            self.assertTrue(j["awaiting_approval"], j)
            self.assertIn("the swap had not happened", " ".join(h["message"] for h in j["history"]))
            gate = time.time()
            self.approve_and_finish(name, db_id)
        self.assert_gated(seen, gate)
        self.assertNotEqual(self.pg.psql("SELECT 'items_idx'::regclass::oid"), old_oid)
        self.assert_clean()
        self.settled(db_id)
        print("killed inside the swap: its server session ended %.1f s later; PostgreSQL restarted: %s took over "
              "%.1f s after the restart and swapped; %d reads, 0 errors" % (gone, name, took_over, len(seen)))
        self.__class__.start("b")

    def test_5_killed_in_verify(self):
        # verify of 20 queries can be over between two polls: a row lock on
        # the live index's pg_index row holds the candidate's measurement
        # (it flips both rows in its transaction) until after the kill
        holder = self.pg.connect()
        holder.execute("BEGIN")
        holder.execute("UPDATE pg_index SET indisvalid = indisvalid WHERE indexrelid = 'items_idx'::regclass")
        try:
            with self.reading("b") as seen:
                db_id = self.start_job("c")
                self.wait("c", db_id, lambda j: j["state"] == "verify" or j["terminal"] or j["awaiting_approval"])
                self.assertEqual(self.job_on("c", db_id)["state"], "verify")
                killed = time.time()
                self.kill("c")
                holder.rollback()
                name, j = self.driver(db_id, ["a", "b"])
                took_over = time.time() - killed
                gate = time.time()
                self.approve_and_finish(name, db_id)
        finally:
            holder.close()
        # the resumed verify measured a rebuilt candidate before any read could use it
        self.assertIn("resumed", " ".join(h["message"] for h in j["history"]) + self.vgs[name]["vg"].log())
        self.assert_gated(seen, gate)
        self.assert_clean()
        self.settled(db_id)
        print("killed in verify: %s took over after %.1f s; %d reads, 0 errors" % (name, took_over, len(seen)))
        self.__class__.start("c")


if __name__ == "__main__":
    unittest.main(verbosity=2)
