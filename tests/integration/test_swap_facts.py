"""The swap SQL vecgate generates, run on a real PostgreSQL 15 (cube + GiST
stand-in for a vector index): traffic really moves, including a session that
cached its plan before the swap, the old index stays maintained, and the
rollback moves everything back with no lost rows.  The checks themselves are
in swap_check.c, which links vecgate's own SQL builders."""
import os
import subprocess
import unittest

from pgtest import SUPERPW, PgCluster, SRC

SWAP_CHECK = os.environ.get("SWAP_CHECK_BIN", os.path.join(SRC, "build", "swap_check"))


class SwapFacts(unittest.TestCase):
    def test_flip_swap_and_rollback(self):
        pg = PgCluster()
        dsn = "host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres" % (pg.port, SUPERPW)
        r = subprocess.run([SWAP_CHECK, dsn], capture_output=True, text=True, timeout=120)
        print(r.stdout + r.stderr)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("swap_check: 0 failed", r.stdout)
        self.assertEqual(r.stdout.count("ok  "), 9)


if __name__ == "__main__":
    unittest.main(verbosity=2)
