"""A rebuild survives PostgreSQL restarting under it: `pg_ctl restart -m
fast` during build, during verify, right at the swap (waiting for approval,
then again while the swap transaction waits for its lock) and during watch,
and a 3 s outage (stop -m immediate, start) in the middle of a build; an
operator's rollback sent while PostgreSQL restarts; and another instance
taking the advisory lock while this one's state session is down.  Every
job must end `done`, with no invalid index left on the table, the live index
valid, and vecgate.jobs up to date (transitions made while the lock was lost
written late).  The build is held in CREATE INDEX CONCURRENTLY's wait by an
open writing transaction, verify and watch are slowed by a pg_sleep in the
eval query, so each restart lands inside the step it is meant for."""
import json
import os
import random
import re
import subprocess
import sys
import time
import unittest

import psycopg

from pgtest import SUPERPW, PgCluster, SRC, managed_vecgate, cube_table, eval_file, free_port

CTL = os.environ.get("VECGATECTL_BIN", os.path.join(SRC, "build", "vecgatectl"))
TOKEN = "test-token-0123456789"
FAST_EVAL = "SELECT id FROM public.emb ORDER BY v <-> $1::cube LIMIT $2"
# the same plan (EXPLAIN's first index is the one measured), 20 ms slower per query
SLOW_EVAL = "SELECT s.id FROM (SELECT id FROM public.emb ORDER BY v <-> $1::cube LIMIT $2) s, pg_sleep(0.02)"


class RebuildFaults(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # like many servers, this one commits asynchronously; a slow WAL
        # writer keeps such commits in memory for seconds, so that a crash
        # (case e) loses any job record vecgate does not commit synchronously
        cls.pg = PgCluster(extra_conf="wal_writer_delay = 10s")
        cube_table(cls.pg, "emb", 60000, "emb_live")
        cls.pg.psql("ANALYZE emb")
        rnd = random.Random(11)
        cls.eval_file = eval_file("(%f, %f, %f)" % (rnd.random(), rnd.random(), rnd.random()) for _ in range(40))
        cls.admin_port = free_port()
        fast = {"name": "emb", "database": "postgres", "table": "public.emb", "index": "emb_live",
                "user": "postgres", "password": SUPERPW, "k": 10, "eval_file": cls.eval_file,
                "eval_query": FAST_EVAL, "watch_seconds": 1, "retention_seconds": 1,
                # restarts make single eval queries slow (cold cache): latency is not what is tested here
                "latency_tolerance": 1000,
                "backoff_seconds": 0.5, "max_attempts": 4}
        slow = dict(fast, name="emb_slow", eval_query=SLOW_EVAL)
        gated = dict(fast, name="emb_gated", approve_swap=True, lock_timeout_ms=4000, swap_attempts=10)
        held = dict(fast, name="emb_hold", retention_seconds=600)
        cls.vg = managed_vecgate(cls.pg, cls.admin_port, TOKEN, [fast, slow, gated, held])
        cls.report = []

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()
        print("\n".join(cls.report), file=sys.stderr)
        if os.environ.get("VG_FAULTS_LOG"):
            with open(os.environ["VG_FAULTS_LOG"], "w") as f:
                f.write(cls.vg.log())

    # ---- helpers ----

    def ctl(self, *args):
        env = dict(os.environ, VECGATE_TOKEN=TOKEN, VECGATE_ADMIN_URL="http://127.0.0.1:%d" % self.admin_port)
        r = subprocess.run([CTL] + list(args), capture_output=True, text=True, env=env, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + "\n" + self.vg.log()[-3000:])
        return r

    def start(self, index):
        return int(self.ctl("rebuild", "start", index).stdout.split("job ")[1].split()[0])

    def job(self, job_id):
        return json.loads(self.ctl("--json", "job", str(job_id)).stdout)

    def wait_for(self, job_id, pred, what, timeout=40):
        deadline = time.time() + timeout
        while time.time() < deadline:
            j = self.job(job_id)
            if pred(j):
                return j
            if j["terminal"]:
                break
            time.sleep(0.1)
        self.fail("job %d never %s: %s\n%s" % (job_id, what, j, self.vg.log()[-4000:]))

    def wait_state(self, job_id, state, timeout=40):
        return self.wait_for(job_id, lambda j: j["state"] == state, "reached " + state, timeout)

    def wait_build_running(self):
        deadline = time.time() + 20
        while time.time() < deadline:
            if self.pg.psql("SELECT pid FROM pg_stat_progress_create_index WHERE relid = 'emb'::regclass"):
                return
            time.sleep(0.1)
        self.fail("the build never started")

    def blocker(self):
        """An open writing transaction: CREATE INDEX CONCURRENTLY waits for it."""
        c = psycopg.connect("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres"
                            % (self.pg.port, SUPERPW))
        c.execute("INSERT INTO emb (v) VALUES (cube(array[0.3, 0.2, 0.1]))")
        return c

    @staticmethod
    def drop(conn):
        try:
            conn.close()
        except Exception:
            pass

    def restart_pg(self, mode="fast"):
        t = time.time()
        self.pg.pg_ctl("restart", "-m", mode)
        return t

    def check_end(self, job_id, case):
        """done, nothing invalid left, the live index valid, the durable record current."""
        j = self.wait_for(job_id, lambda j: j["terminal"], "finished", timeout=60)
        self.assertEqual(j["state"], "done", "%s: %s\n%s" % (case, j, self.vg.log()[-4000:]))
        deadline = time.time() + 15
        while time.time() < deadline and self.pg.psql(
                "SELECT count(*) FROM pg_index WHERE indrelid = 'emb'::regclass") != "2":
            time.sleep(0.2)  # the retired index goes after retention
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_index WHERE indrelid = 'emb'::regclass "
                                      "AND NOT indisvalid"), "0", case)
        self.assertEqual(self.pg.psql("SELECT indisvalid AND indisready FROM pg_index "
                                      "WHERE indexrelid = 'emb_live'::regclass"), "t", case)
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_index WHERE indrelid = 'emb'::regclass"), "2", case)
        self.assertIsNotNone(j.get("db_id"), j)
        deadline = time.time() + 10
        while time.time() < deadline and self.pg.psql(
                "SELECT state FROM vecgate.jobs WHERE id = %d" % j["db_id"]) != "done":
            time.sleep(0.2)
        self.assertEqual(self.pg.psql("SELECT state FROM vecgate.jobs WHERE id = %d" % j["db_id"]), "done", case)
        # every transition reached vecgate.job_steps, those made while the lock was lost too
        steps = int(self.pg.psql("SELECT count(*) FROM vecgate.job_steps WHERE job_id = %d" % j["db_id"]))
        self.assertGreaterEqual(steps, len(j["history"]), "%s: history %s\nvecgate.job_steps:\n%s\n%s" % (
            case, [(h["from"], h["to"], h["event"]) for h in j["history"]],
            self.pg.psql("SELECT from_state, to_state, event FROM vecgate.job_steps WHERE job_id = %d ORDER BY at, ctid"
                         % j["db_id"]), self.vg.log()[-6000:]))
        return j

    def retries(self, j, state):
        return [h for h in j["history"] if h["from"] == state and h["to"] == state and h["event"] == "transient_failure"]

    def note(self, case, j, state, t_fault, t_left):
        n = len(self.retries(j, state))
        self.report.append("%-30s back past %-6s %5.1f s after the fault; %d attempt(s) of %s (%d transient "
                           "retries); final %s" % (case, state, t_left - t_fault, n + 1, state, n, j["state"]))

    def left_at(self, job_id, state):
        """Poll until the job has left `state`; the wall time it was seen leaving."""
        j = self.wait_for(job_id, lambda j: j["state"] != state, "left " + state, timeout=60)
        return time.time(), j

    # ---- the cases ----

    def test_a_restart_during_build(self):
        b = self.blocker()
        job_id = self.start("emb")
        self.wait_state(job_id, "build")
        self.wait_build_running()
        t = self.restart_pg()
        self.drop(b)
        t_left, _ = self.left_at(job_id, "build")
        j = self.check_end(job_id, "restart during build")
        retries = self.retries(j, "build")
        self.assertGreaterEqual(len(retries), 1, j["history"])
        self.assertLessEqual(len(retries), 2, j["history"])
        self.assertTrue(any("built emb_live_vg" in h["message"] for h in j["history"]), j["history"])
        db = j["db_id"]
        self.assertGreater(int(self.pg.psql("SELECT count(*) FROM vecgate.job_steps WHERE job_id = %d AND "
                                            "from_state = 'build' AND to_state = 'build'" % db)), 0)
        self.assertRegex(self.vg.log(), r"rebuild %d \(emb\) maintenance connection: reconnected" % job_id)
        self.assertRegex(self.vg.log(), r"rebuild %d \(emb\): holding the rebuild lock again" % job_id)
        self.note("(a) restart during build", j, "build", t, t_left)

    def test_b_restart_during_verify(self):
        job_id = self.start("emb_slow")
        self.wait_state(job_id, "verify")
        time.sleep(0.8)  # ANALYZE done, the eval (about 2 s) running
        t = self.restart_pg()
        t_left, _ = self.left_at(job_id, "verify")
        j = self.check_end(job_id, "restart during verify")
        self.assertGreaterEqual(len(self.retries(j, "verify")), 1, j["history"])
        self.assertTrue(any(h["from"] == "verify" and h["to"] == "swap" for h in j["history"]), j["history"])
        self.assertGreaterEqual(j["candidate"]["recall"], 0.99)
        self.note("(b) restart during verify", j, "verify", t, t_left)

    def test_c_restart_at_the_swap(self):
        job_id = self.start("emb_gated")
        self.wait_for(job_id, lambda j: j["awaiting_approval"], "waited for approval")
        # restart while it waits; approve at once, before its sessions are back
        t = self.restart_pg()
        self.ctl("approve", str(job_id))
        t_left, _ = self.left_at(job_id, "swap")
        self.note("(c1) restart, then approve", self.job(job_id), "swap", t, t_left)
        self.check_end(job_id, "restart before approval")
        # again, with the restart inside the swap transaction: it waits (under
        # lock_timeout_ms 4000) for the live index's pg_index row, which an
        # uncommitted transaction holds
        job_id = self.start("emb_gated")
        self.wait_for(job_id, lambda j: j["awaiting_approval"], "waited for approval")
        blocker = psycopg.connect("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres"
                                  % (self.pg.port, SUPERPW))
        blocker.execute("UPDATE pg_index SET indisvalid = indisvalid WHERE indexrelid = 'emb_live'::regclass")
        old_oid = self.pg.psql("SELECT 'emb_live'::regclass::oid")
        self.ctl("approve", str(job_id))
        deadline = time.time() + 10
        waiting = ""
        while time.time() < deadline and not waiting:
            waiting = self.pg.psql("SELECT pid FROM pg_stat_activity WHERE application_name = "
                                   "'vecgate rebuild emb_gated' AND wait_event_type = 'Lock'")
            time.sleep(0.05)
        self.assertTrue(waiting, "the swap never waited for its lock")
        self.assertEqual(self.job(job_id)["state"], "swap")
        # immediate: a fast stop ends the blocker first, and the woken swap
        # could commit before its own SIGTERM (CI saw it: no retry, the
        # swap done); an immediate one releases no lock on the way down
        t = self.restart_pg("immediate")
        self.drop(blocker)
        t_left, _ = self.left_at(job_id, "swap")
        j = self.check_end(job_id, "restart inside the swap")
        self.assertGreaterEqual(len(self.retries(j, "swap")), 1, j["history"])
        self.assertNotEqual(self.pg.psql("SELECT 'emb_live'::regclass::oid"), old_oid)
        self.note("(c2) restart inside the swap", j, "swap", t, t_left)

    def test_d_restart_during_watch(self):
        job_id = self.start("emb_slow")
        self.wait_state(job_id, "watch")
        old = self.pg.psql("SELECT 'emb_live_vgold%d'::regclass::oid" % job_id)
        self.assertTrue(old)
        time.sleep(1.6)  # watch_seconds 1, then its eval (about 2 s) runs
        t = self.restart_pg()
        t_left, _ = self.left_at(job_id, "watch")
        j = self.check_end(job_id, "restart during watch")
        self.assertGreaterEqual(len(self.retries(j, "watch")), 1, j["history"])
        self.assertTrue(any(h["from"] == "watch" and h["to"] == "retain" for h in j["history"]), j["history"])
        self.note("(d) restart during watch", j, "watch", t, t_left)

    def test_e_outage_during_build(self):
        b = self.blocker()
        job_id = self.start("emb")
        self.wait_state(job_id, "build")
        self.wait_build_running()
        t = time.time()
        self.pg.pg_ctl("stop", "-m", "immediate")
        self.drop(b)
        time.sleep(3)
        self.pg.pg_ctl("start")
        t_left, _ = self.left_at(job_id, "build")
        j = self.check_end(job_id, "3 s outage during build")
        retries = self.retries(j, "build")
        self.assertGreaterEqual(len(retries), 1, j["history"])
        self.assertLessEqual(len(retries), 2, j["history"])
        # one line when it went, one when it came back: not one per attempt
        log = self.vg.log()
        lost = re.findall(r"rebuild %d \(emb\) maintenance connection: (?:connection lost|cannot connect)" % job_id, log)
        self.assertLessEqual(len(lost), 2, lost)
        self.assertEqual(len(re.findall(r"rebuild %d \(emb\) maintenance connection: reconnected" % job_id, log)), 1)
        self.note("(e) 3 s outage during build", j, "build", t, t_left)

    def test_f_rollback_across_a_restart(self):
        old_oid = self.pg.psql("SELECT 'emb_live'::regclass::oid")
        job_id = self.start("emb_hold")
        self.wait_state(job_id, "retain")
        self.assertNotEqual(self.pg.psql("SELECT 'emb_live'::regclass::oid"), old_oid)
        # the operator rolls back while the server is down: the flip waits for
        # the maintenance session and the lock, then asks the catalog first
        t = time.time()
        self.pg.pg_ctl("stop", "-m", "fast")
        self.ctl("rollback", str(job_id))
        time.sleep(1)
        self.pg.pg_ctl("start")
        deadline = time.time() + 20
        while time.time() < deadline and (self.pg.psql("SELECT 'emb_live'::regclass::oid") != old_oid or
                                          self.pg.psql("SELECT count(*) FROM pg_index WHERE indrelid = "
                                                       "'emb'::regclass") != "2"):
            time.sleep(0.1)
        t_done = time.time()
        j = self.job(job_id)
        self.assertEqual(j["state"], "rolled_back", j)
        self.assertEqual(self.pg.psql("SELECT 'emb_live'::regclass::oid"), old_oid)
        self.assertEqual(self.pg.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'emb_live'::regclass"), "t")
        self.assertEqual(self.pg.psql("SELECT count(*) FROM pg_index WHERE indrelid = 'emb'::regclass"), "2")
        self.assertEqual(self.pg.psql("SELECT to_regclass('emb_live_vg%d') IS NULL" % job_id), "t")
        deadline = time.time() + 10
        while time.time() < deadline and self.pg.psql(
                "SELECT state FROM vecgate.jobs WHERE id = %d" % j["db_id"]) != "rolled_back":
            time.sleep(0.2)
        self.assertEqual(self.pg.psql("SELECT state FROM vecgate.jobs WHERE id = %d" % j["db_id"]), "rolled_back")
        self.report.append("%-30s rolled back %.1f s after the stop (server down 1 s)" % (
            "(f) rollback across restart", t_done - t))

    def test_g_another_instance_takes_the_lock(self):
        b = self.blocker()
        job_id = self.start("emb")
        self.wait_state(job_id, "build")
        self.wait_build_running()
        db_id = self.job(job_id)["db_id"]
        # the state session dies and, before it is back, "another instance"
        # (this session) takes the index's advisory lock
        other = psycopg.connect("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres"
                                % (self.pg.port, SUPERPW), autocommit=True)
        try:
            other.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                          "WHERE application_name = 'vecgate state emb'")
            other.execute("SELECT pg_advisory_lock(hashtext('vecgate:rebuild:' || 'emb'))")
            j = self.wait_for(job_id, lambda j: j["terminal"], "stopped", timeout=20)
            self.assertEqual(j["state"], "cancelled", j)
            self.assertIn("another vecgate instance took over rebuild of emb", j["message"])
            self.assertEqual(j["history"][-1]["event"], "taken_over")
            self.assertIn("another vecgate instance took over rebuild of emb", self.vg.log())
            # the record belongs to the lock's holder: not written by this instance
            time.sleep(0.5)
            self.assertEqual(self.pg.psql("SELECT state FROM vecgate.jobs WHERE id = %d" % db_id), "build")
            self.assertEqual(self.pg.psql("SELECT indisvalid FROM pg_index WHERE indexrelid = 'emb_live'::regclass"),
                             "t")
        finally:
            self.drop(b)
            # what the other instance would do when it resumes: drop the leftover, end the job
            fresh = "emb_live_vg%d" % job_id
            other.execute("DROP INDEX CONCURRENTLY IF EXISTS %s" % fresh)
            other.execute("UPDATE vecgate.jobs SET state = 'cancelled' WHERE id = %s", (db_id,))
            other.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
