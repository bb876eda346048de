"""pgjdbc through vecgate (transaction pooling, fewer servers than clients):
server-side prepared statements past prepareThreshold, batches, commit and
rollback, SQLSTATEs, concurrent connections.  The Java program asserts; this
compiles and runs it against a real PostgreSQL 15."""
import os
import shutil
import subprocess
import tempfile
import unittest

from pgtest import PgCluster, Vecgate, _cleanups

HERE = os.path.dirname(os.path.abspath(__file__))
JAR = "/usr/share/java/postgresql.jar"


class Jdbc(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.pg.add_app()
        cls.vg = Vecgate(cls.pg, databases=[{"name": "app", "pool_mode": "transaction", "pool_size": 3}])
        cls.classes = tempfile.mkdtemp(prefix="vg-jdbc-")
        _cleanups.append(lambda: shutil.rmtree(cls.classes, ignore_errors=True))
        subprocess.run(["javac", "-d", cls.classes, "-cp", JAR, os.path.join(HERE, "jdbc", "JdbcThroughVecgate.java")],
                       check=True, timeout=120)

    @classmethod
    def tearDownClass(cls):
        cls.vg.stop()

    def test_pgjdbc_transaction_pooling(self):
        r = subprocess.run(["java", "-cp", JAR + ":" + self.classes, "JdbcThroughVecgate", str(self.vg.port), "8"],
                           capture_output=True, text=True, timeout=180)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr + self.vg.log()[-2000:])
        self.assertIn("jdbc: 8 clients ok", r.stdout)
        # eight clients shared at most three server connections
        self.assertLessEqual(int(self.pg.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'")), 3)


if __name__ == "__main__":
    unittest.main(verbosity=2)
