"""The quickstart demo end to end at a small size: tests/demo.py (what
tests/run-demo runs after installing and building) with 20k rows, and its
report asserted: zero failed queries and writes, every ingested row there
and found, the job done with a measured swap, recall after >= before minus
the gate's tolerance, the route moved to the replica during the build and
back.  Then the same with --no-superuser where pgvector and pg_hint_plan are
installed: the table's owner as the only role, swap mode hint, and the
watch's traffic proof that the reads moved to the new index."""
import os
import re
import subprocess
import sys
import unittest

from pgtest import PGBIN, SRC, has_pgvector


def has_hint_plan():
    r = subprocess.run([PGBIN + "/pg_config", "--pkglibdir"], capture_output=True, text=True)
    return os.path.exists(os.path.join(r.stdout.strip(), "pg_hint_plan.so"))


class Demo(unittest.TestCase):
    def run_demo(self, *extra):
        """Run the demo at 20k rows and check the report every variant shares; its output."""
        r = subprocess.run([sys.executable, os.path.join(SRC, "tests", "demo.py"), "--rows", "20000", "--readers", "3"]
                           + list(extra), capture_output=True, text=True, timeout=240, env=dict(os.environ))
        out = r.stdout
        self.assertEqual(r.returncode, 0, out[-4000:] + r.stderr[-3000:])
        last = out.strip().splitlines()[-1]
        m = re.fullmatch(r"demo: failed_queries=(\d+) failed_writes=(\d+) lost_rows=(-?\d+) swap_lock_ms=([0-9.]+) "
                         r"recall_before=([0-9.]+) recall_after=([0-9.]+)", last)
        self.assertIsNotNone(m, last)
        failed_q, failed_w, lost = int(m.group(1)), int(m.group(2)), int(m.group(3))
        swap_ms, before, after = float(m.group(4)), float(m.group(5)), float(m.group(6))
        self.assertEqual((failed_q, failed_w, lost), (0, 0, 0))
        self.assertGreater(swap_ms, 0)
        self.assertGreaterEqual(after, before - 0.02)
        rows = re.search(r"rows: (\d+) before, (\d+) ingested .*?, (\d+) after; (\d+) of (\d+) sampled", out)
        self.assertIsNotNone(rows, out[-3000:])
        b, ing, a, found, sampled = map(int, rows.groups())
        self.assertEqual((b, a), (20000, 20000 + ing))
        self.assertGreater(ing, 100)
        if "report (pgvector HNSW" in out:
            # an HNSW graph does not promise that every element stays reachable
            # (concurrent inserts under a rebuild); nearly all must be found
            self.assertGreaterEqual(found, sampled * 0.95, out[-2000:])
        else:
            self.assertEqual(found, sampled)  # the cube stand-in's GiST search is exact
        self.assertRegex(out, r"job \d+: done;")
        self.assertRegex(out, r"route changes: .*replica during (build|baseline|verify).*primary during")
        served = re.search(r"queries served: (\d+) \(replica (\d+)", out)
        self.assertGreater(int(served.group(1)), 500)
        self.assertGreater(int(served.group(2)), 0)
        return out

    def test_demo_small(self):
        out = self.run_demo()
        self.assertIn("swap mode: flip (role postgres, superuser;", out)

    @unittest.skipUnless(has_pgvector() and has_hint_plan(), "needs pgvector and pg_hint_plan (VECGATE_VENDOR_DIR)")
    def test_demo_no_superuser_hint(self):
        out = self.run_demo("--no-superuser")
        self.assertIn("swap mode: hint (role owner, not superuser;", out)
        proof = re.search(r"watch traffic proof: (.*)\n +new_index_scans=(\d+) retired_index_scans=(-?\d+) "
                          r"vector_reads_on_primary=(\d+) pinned_reads=(\d+) unpinned_reads=(\d+)", out)
        self.assertIsNotNone(proof, out[-3000:])
        self.assertTrue(proof.group(1).startswith("traffic moved"), proof.group(0))
        self.assertGreater(int(proof.group(2)), 0)
        self.assertIn("after retention: old index dropped, pin cleared", out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
