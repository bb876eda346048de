"""The quickstart demo end to end at a small size: tests/demo.py (what
tests/run-demo runs after installing and building) with 20k rows, and its
report asserted: zero failed queries and writes, every ingested row there
and found, the job done with a measured swap, recall after >= before minus
the gate's tolerance, the route moved to the replica during the build and
back."""
import os
import re
import subprocess
import sys
import unittest

from pgtest import SRC


class Demo(unittest.TestCase):
    def test_demo_small(self):
        r = subprocess.run([sys.executable, os.path.join(SRC, "tests", "demo.py"), "--rows", "20000", "--readers", "3"],
                           capture_output=True, text=True, timeout=240, env=dict(os.environ))
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


if __name__ == "__main__":
    unittest.main(verbosity=2)
