"""Authentication at the proxy (SCRAM-SHA-256, md5, trust; plaintext, md5
and SCRAM secrets; auth_query against pg_shadow) and TLS on both sides
(client TLS allow/require with a test certificate, backend TLS verify-full),
including vecgate's side connections (auth_query, health checks, route
sync, drift sessions), which follow tls.server too."""
import asyncio
import json
import os
import time
import urllib.request
import shutil
import subprocess
import tempfile
import unittest

import asyncpg
import psycopg

from pgtest import PgCluster, Vecgate, cube_table, free_port, read_until_error_or_close, startup_packet, _cleanups

import pwd
import socket


def make_certs(d):
    """A CA and a server certificate for 127.0.0.1/localhost signed by it."""
    def ossl(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=d)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
         "-subj", "/CN=vecgate test CA")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
         "/CN=127.0.0.1")
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out",
         "server.crt", "-days", "2", "-extfile", "ext.cnf")
    os.chmod(os.path.join(d, "server.key"), 0o600)


TOKEN = "auth-tls-token-0123456789"
SIDE_PW = "side-pw"


def api(port, path):
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (port, path), headers={"Authorization": "Bearer " + TOKEN})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def asyncpg_connect(port, **kw):
    async def go():
        conn = await asyncpg.connect(host="127.0.0.1", port=port, **kw)
        try:
            return await conn.fetchval("SELECT current_user")
        finally:
            await conn.close()
    return asyncio.run(go())


class AuthTls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.certs = tempfile.mkdtemp(prefix="vg-certs-")
        _cleanups.append(lambda: shutil.rmtree(cls.certs, ignore_errors=True))
        make_certs(cls.certs)
        cls.pg = PgCluster()
        pw = pwd.getpwnam("postgres")
        for f in ("server.crt", "server.key"):
            shutil.copy(os.path.join(cls.certs, f), os.path.join(cls.pg.data, f))
            os.chown(os.path.join(cls.pg.data, f), pw.pw_uid, pw.pw_gid)
        # md5user's stored hash is md5: let the backend accept md5 for it
        hba = os.path.join(cls.pg.data, "pg_hba.conf")
        with open(hba) as f:
            rules = f.read()
        with open(hba, "w") as f:
            f.write("host all md5user 127.0.0.1/32 md5\n"
                    # the role of vecgate's side connections may only come in over TLS
                    "hostnossl all sidessl 127.0.0.1/32 reject\n"
                    "hostssl all sidessl 127.0.0.1/32 scram-sha-256\n" + rules)
        cls.pg.psql("ALTER SYSTEM SET ssl = on")
        # "connection authorized: ... application_name=... SSL enabled (...)" for short-lived sessions
        cls.pg.psql("ALTER SYSTEM SET log_connections = on")
        cls.pg.psql("SELECT pg_reload_conf()")
        cls.pg.add_app()
        cls.pg.psql("SET password_encryption = 'md5'; CREATE ROLE md5user LOGIN PASSWORD 'md5-pw'")
        cls.pg.psql("CREATE ROLE scramuser LOGIN PASSWORD 'scram-pw'")
        cls.pg.psql("CREATE ROLE lookup LOGIN PASSWORD 'lookup-pw'")
        cls.pg.psql("GRANT pg_read_all_data TO lookup")
        cls.pg.psql("CREATE ROLE viaquery LOGIN PASSWORD 'query-pw'")
        cls.pg.psql("GRANT ALL ON DATABASE app TO PUBLIC")
        # auth_query reads pg_authid, route sync creates the vecgate schema, the drift monitor runs eval
        # queries: one superuser role for all of vecgate's side connections
        cls.pg.psql("CREATE ROLE sidessl LOGIN SUPERUSER PASSWORD '%s'" % SIDE_PW)
        cube_table(cls.pg, "side_items", 300, "side_items_v")
        cls.eval_file = os.path.join(cls.certs, "eval.txt")
        with open(cls.eval_file, "w") as f:
            for i in range(5):
                f.write("(%f, %f, %f)\n" % (0.1 + i * 0.2, 0.5, 0.3))
        cls.scram_secret = cls.pg.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'scramuser'")
        cls.md5_secret = cls.pg.psql("SELECT rolpassword FROM pg_authid WHERE rolname = 'md5user'")
        assert cls.scram_secret.startswith("SCRAM-SHA-256$") and cls.md5_secret.startswith("md5")

    def proxy(self, **kw):
        vg = Vecgate(self.pg, **kw)
        self.addCleanup(vg.stop)
        return vg

    def test_scram_plaintext_md5_and_scram_secrets(self):
        vg = self.proxy(users=[
            {"name": "app", "password": "app-pw"},
            {"name": "md5user", "password": self.md5_secret},
            {"name": "scramuser", "password": self.scram_secret},
        ], databases=[{"name": "app", "pool_mode": "transaction", "pool_size": 2}])
        self.assertEqual(asyncpg_connect(vg.port, user="app", password="app-pw", database="app"), "app")
        # SCRAM secret: the backend login reuses the client's proof (passthrough)
        self.assertEqual(asyncpg_connect(vg.port, user="scramuser", password="scram-pw", database="app"), "scramuser")
        # an md5 secret cannot do SCRAM: refused, as PostgreSQL would
        with self.assertRaises(asyncpg.exceptions.InvalidPasswordError):
            asyncpg_connect(vg.port, user="md5user", password="md5-pw", database="app")
        for user, pw in (("app", "wrong"), ("scramuser", "wrong"), ("nobody", "x")):
            with self.assertRaises(asyncpg.exceptions.InvalidPasswordError) as cm:
                asyncpg_connect(vg.port, user=user, password=pw, database="app")
            self.assertEqual(cm.exception.sqlstate, "28P01")
            self.assertIn('password authentication failed for user "%s"' % user, str(cm.exception))

    def test_md5_auth(self):
        vg = self.proxy(auth_type="md5", users=[
            {"name": "app", "password": "app-pw"},
            {"name": "md5user", "password": self.md5_secret},
            {"name": "scramuser", "password": self.scram_secret},
        ])
        self.assertEqual(asyncpg_connect(vg.port, user="app", password="app-pw", database="app"), "app")
        # md5 passthrough of the stored hash to a backend that stores md5
        self.assertEqual(asyncpg_connect(vg.port, user="md5user", password="md5-pw", database="app"), "md5user")
        # md5 method with a SCRAM secret uses SCRAM (PostgreSQL's rule)
        self.assertEqual(asyncpg_connect(vg.port, user="scramuser", password="scram-pw", database="app"), "scramuser")
        with self.assertRaises(asyncpg.exceptions.InvalidPasswordError) as cm:
            asyncpg_connect(vg.port, user="md5user", password="bad", database="app")
        self.assertEqual(cm.exception.sqlstate, "28P01")

    def test_trust(self):
        vg = self.proxy(auth_type="trust", users=[{"name": "app", "password": "app-pw"}])
        with psycopg.connect("host=127.0.0.1 port=%d user=app dbname=app" % vg.port) as c:
            self.assertEqual(c.execute("SELECT current_user").fetchone()[0], "app")

    def test_auth_query(self):
        vg = self.proxy(users=[], databases=[{"name": "app", "pool_mode": "transaction", "pool_size": 2}],
                        extra={})
        vg.stop()
        vg.cfg["auth"] = {"type": "scram-sha-256", "auth_query": "SELECT rolname, rolpassword FROM pg_authid "
                          "WHERE rolname = $1", "auth_user": "postgres", "auth_password": "super-pw"}
        vg.write_config()
        vg.start()
        self.assertEqual(asyncpg_connect(vg.port, user="viaquery", password="query-pw", database="app"), "viaquery")
        with self.assertRaises(asyncpg.exceptions.InvalidPasswordError):
            asyncpg_connect(vg.port, user="viaquery", password="nope", database="app")
        with self.assertRaises(asyncpg.exceptions.InvalidPasswordError):
            asyncpg_connect(vg.port, user="ghost", password="nope", database="app")

    def test_client_tls_allow_and_require(self):
        tls = {"cert": os.path.join(self.certs, "server.crt"), "key": os.path.join(self.certs, "server.key")}
        vg = self.proxy(extra={"tls": {"client": dict(tls, mode="allow")}})
        ca = os.path.join(self.certs, "ca.crt")
        dsn = vg.dsn(sslmode="verify-full", sslrootcert=ca)
        with psycopg.connect(dsn) as c:
            self.assertEqual(c.execute("SELECT 1").fetchone()[0], 1)
            self.assertEqual(c.pgconn.ssl_in_use, True)
        with psycopg.connect(vg.dsn(sslmode="disable")) as c:
            self.assertEqual(c.pgconn.ssl_in_use, False)

        vg2 = self.proxy(extra={"tls": {"client": dict(tls, mode="require")}})
        with psycopg.connect(vg2.dsn(sslmode="require")) as c:
            self.assertEqual(c.execute("SELECT 2").fetchone()[0], 2)
        # plaintext is refused with 28000
        s = socket.create_connection(("127.0.0.1", vg2.port), timeout=5)
        self.addCleanup(s.close)
        s.sendall(startup_packet({"user": "app", "database": "app"}))
        err = read_until_error_or_close(s)
        self.assertEqual((err["C"], err["M"]), ("28000", "SSL required"))
        script = os.path.join(self.certs, "select.sql")
        with open(script, "w") as f:
            f.write("SELECT 1;\n")
        r = subprocess.run(["pgbench", "-n", "-f", script, "-c", "4", "-j", "2", "-t", "50",
                            vg2.dsn(sslmode="require")], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("number of transactions actually processed: 200", r.stdout)

    def test_server_tls_verify_full(self):
        vg = self.proxy(extra={"tls": {"server": {"mode": "verify-full", "ca": os.path.join(self.certs, "ca.crt")}}})
        with psycopg.connect(vg.dsn()) as c:
            # the backend sees its own connection from vecgate as TLS
            self.assertEqual(c.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()[0],
                             True)
        # a CA that did not sign the backend's certificate fails the login
        bad = self.proxy(extra={"tls": {"server": {"mode": "verify-full",
                                                   "ca": os.path.join(self.certs, "server.crt")}}})
        t0 = time.time()
        with self.assertRaises(psycopg.OperationalError) as cm:
            psycopg.connect(bad.dsn())
        self.assertIn("vecgate could not connect to the server", str(cm.exception))
        # a certificate that does not verify will not heal: told at once, not after query_wait
        self.assertLess(time.time() - t0, 30)

    # ---- side connections (libpq) follow tls.server ----

    def side_proxy(self, tls_server):
        """auth_query, health checks, vecgate.routes sync and a drift monitor, all as the TLS-only role."""
        admin = free_port()
        vg = self.proxy(databases=[{"name": "app", "pool_mode": "transaction", "pool_size": 2}], extra={
            "auth": {"type": "scram-sha-256", "auth_user": "sidessl", "auth_password": SIDE_PW,
                     "auth_query": "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = $1"},
            "tls": {"server": tls_server},
            "health_check": {"user": "sidessl", "password": SIDE_PW, "interval": 0.2, "timeout": 2},
            "routing": {"refresh_seconds": 1},
            "admin": {"port": admin, "token": TOKEN},
            "managed_indexes": [{
                "name": "side_items", "database": "postgres", "table": "public.side_items",
                "index": "side_items_v", "user": "sidessl", "password": SIDE_PW, "eval_file": self.eval_file,
                "eval_query": "SELECT id FROM public.side_items ORDER BY v <-> $1::cube LIMIT $2", "k": 5,
                "drift_check_seconds": 0.5}],
        })
        vg.admin = admin
        return vg

    @staticmethod
    def primary(vg):
        return [b for b in api(vg.admin, "/v1/backends")["backends"] if b["name"] == "primary"][0]

    @staticmethod
    def side_route(vg):
        return [r for r in api(vg.admin, "/v1/routes")["routes"] if r["name"] == "side_items"][0]

    @staticmethod
    def drift(vg):
        return [i for i in api(vg.admin, "/v1/indexes")["indexes"] if i["name"] == "side_items"][0]["drift"]

    def wait(self, vg, what, pred, timeout=15):
        deadline = time.time() + timeout
        while True:
            v = what(vg)
            if pred(v):
                return v
            if time.time() > deadline:
                self.fail("never got there: %s\n%s" % (v, vg.log()[-3000:]))
            time.sleep(0.1)

    def side_sessions(self):
        """application_name -> ssl of the side role's sessions, as the server sees them."""
        rows = self.pg.psql("SELECT a.application_name, s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s "
                            "USING (pid) WHERE a.usename = 'sidessl' ORDER BY 1")
        return dict(line.split("|") for line in rows.splitlines() if line)

    def test_side_connections_follow_server_tls(self):
        ca = os.path.join(self.certs, "ca.crt")
        for tls_server in ({"mode": "require"}, {"mode": "verify-ca", "ca": ca}):
            with self.subTest(tls_server=tls_server["mode"]):
                vg = self.side_proxy(tls_server)
                # health checks: the primary is up, checked as the TLS-only role
                b = self.wait(vg, self.primary, lambda b: b["status"] == "up")
                self.assertIsNone(b["last_error"])
                # route sync: written to and read back from vecgate.routes
                self.wait(vg, self.side_route, lambda r: r["synced"])
                # auth_query: a user vecgate does not list logs in through the TLS-only lookup role
                self.assertEqual(asyncpg_connect(vg.port, user="viaquery", password="query-pw", database="app"),
                                 "viaquery")
                with self.assertRaises(asyncpg.exceptions.InvalidPasswordError):
                    asyncpg_connect(vg.port, user="viaquery", password="nope", database="app")
                # the drift monitor's session (proxy/control/session.c) ran its eval set
                d = self.wait(vg, self.drift, lambda d: d["checks"] >= 1)
                self.assertIsNone(d["last_error"])
                self.assertEqual(d["recall"], 1.0)
                # the server itself says the long-lived side sessions use TLS
                sessions = self.wait(vg, lambda _: self.side_sessions(),
                                     lambda s: "vecgate health" in s and "vecgate routes" in s)
                self.assertEqual((sessions["vecgate health"], sessions["vecgate routes"]), ("t", "t"), sessions)
                self.assertEqual(set(sessions.values()), {"t"}, sessions)
                vg.stop()
        # the short-lived ones too: the server logged them as SSL connections
        with open(os.path.join(self.pg.dir, "log"), errors="replace") as f:
            authorized = [l for l in f if "connection authorized: user=sidessl" in l]
        for app in ("vecgate auth_query", "vecgate drift side_items", "vecgate health", "vecgate routes"):
            lines = [l for l in authorized if "application_name=%s" % app in l]
            self.assertTrue(lines, app)
            self.assertTrue(all("SSL enabled" in l for l in lines), lines)

    def test_side_connections_refused_without_tls(self):
        """The same setup fails where pg_hba's hostnossl reject applies (tls.server.mode disable: no TLS
        on any side connection, also not libpq's default prefer), and where the CA does not verify."""
        cases = (({"mode": "disable"}, "no encryption"),
                 ({"mode": "verify-ca", "ca": os.path.join(self.certs, "server.crt")}, "certificate verify failed"))
        for tls_server, why in cases:
            with self.subTest(tls_server=tls_server["mode"]):
                vg = self.side_proxy(tls_server)
                b = self.wait(vg, self.primary, lambda b: b["status"] == "down" and b["last_error"])
                self.assertIn(why, b["last_error"])
                d = self.wait(vg, self.drift, lambda d: d["last_error"])
                self.assertIn(why, d["last_error"])
                with self.assertRaises(asyncpg.exceptions.PostgresError) as cm:
                    asyncpg_connect(vg.port, user="viaquery", password="query-pw", database="app")
                self.assertEqual(cm.exception.sqlstate, "08006")
                self.assertIn("authentication lookup failed", str(cm.exception))
                time.sleep(1.5)  # more than routing.refresh_seconds: the sync had its chances
                self.assertFalse(self.side_route(vg)["synced"])
                self.assertIn("routes: ", vg.log())
                self.assertEqual(self.side_sessions(), {})
                vg.stop()


if __name__ == "__main__":
    unittest.main(verbosity=2)
