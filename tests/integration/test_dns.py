"""Backend host names: looked up without stopping the proxy, cached for their
TTL, followed when they move, and a name that does not resolve told to the
clients at once.

A real PostgreSQL 15 listening on 127.0.0.1 and 127.0.0.2 (same port), and
the DNS responder of dnsserver.py as vecgate's only nameserver
(dns.nameservers), serving made-up names under vg.test that the system
resolver does not know: a connection that reaches PostgreSQL through such a
name got its address from vecgate's resolver, not from a getaddrinfo() of
its own or of libpq's.

  - a client's SELECT 1 loop keeps going while another client opens pools on
    five backend names the responder answers 300 ms late (a blocking lookup
    stalled it 300 ms per pool);
  - a name's answer is kept for its TTL: a new server connection within it
    still goes to the old address, one after it to the new one
    (inet_server_addr() through vecgate), and a refused connect to a cached
    address has the name looked up again at once, long before its TTL;
  - a name that does not exist: the client gets 08006 naming the host at
    once (not after query_wait), later clients too without another question
    to the responder while dns.nxdomain_ttl lasts, and the log says it once;
  - libpq side connections (auth_query's one per login, the health check)
    connect through the same cache: 25 logins cost a handful of questions,
    one per TTL, not one each.
Latencies are checked against the 300 ms delay with a wide margin: a
behaviour check, not a benchmark.
"""
import socket
import threading
import time
import unittest

import psycopg

from dnsserver import DnsServer
from pgtest import (SUPERPW, LatencyProbe, PgCluster, Vecgate, admin_get, free_port, read_until_error_or_close,
                    startup_packet)

NAME = "db.vg.test"


def server_addr(conn):
    return str(conn.execute("SELECT inet_server_addr()").fetchone()[0])


class Dns(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster(extra_conf="listen_addresses='127.0.0.1,127.0.0.2'",
                           extra_hba="host all all 127.0.0.0/8 scram-sha-256")
        cls.pg.add_app()
        cls.dns = DnsServer(ttl=1)

    def vecgate(self, backends, databases, **extra):
        cfg = {"dns": dict({"nameservers": [self.dns.address]}, **extra.pop("dns", {})),
               "backends": {name: {"host": host, "port": self.pg.port} for name, host in backends.items()},
               "timeouts": {"query_wait": 30}}
        cfg.update(extra)
        vg = Vecgate(self.pg, databases=databases, extra=cfg)
        self.addCleanup(vg.stop)
        return vg

    def test_slow_resolver_stalls_no_one(self):
        self.dns.set(NAME, ["127.0.0.1"], ttl=60)
        names = ["p%d.vg.test" % i for i in range(5)]
        for n in names:
            self.dns.set(n, ["127.0.0.1"])
        backends = dict({"primary": NAME}, **{"b%d" % i: n for i, n in enumerate(names)})
        dbs = [{"name": "app", "pool_mode": "transaction", "pool_size": 2}] + [
            {"name": "p%d" % i, "dbname": "app", "backend": "b%d" % i, "pool_mode": "transaction", "pool_size": 1}
            for i in range(len(names))]
        vg = self.vecgate(backends, dbs)
        probe = LatencyProbe(vg.dsn()).start()  # its server is logged in: it needs no lookup
        try:
            time.sleep(0.3)
            self.dns.delay = 0.3
            opened = []
            for i in range(len(names)):
                t0 = time.monotonic()
                with psycopg.connect(vg.dsn(db="p%d" % i), autocommit=True, connect_timeout=20) as c:
                    self.assertEqual(c.execute("SELECT 1").fetchone()[0], 1)
                opened.append(time.monotonic() - t0)
            time.sleep(0.2)
        finally:
            self.dns.delay = 0
            lat = probe.stop()
        worst = max(lat)
        print("pools opened in %s s; unrelated client: %d queries, max %.1f ms"
              % (", ".join("%.2f" % x for x in opened), len(lat), worst * 1000))
        self.assertEqual(probe.errors, [])
        # each pool's first login waited for its name's late answer...
        for x in opened:
            self.assertGreaterEqual(x, 0.25)
        for n in names:
            self.assertEqual(self.dns.count(n), 1)
        # ...while the unrelated client did not (a lookup on the loop: >= 300 ms)
        self.assertGreater(len(lat), 50)
        self.assertLess(worst, 0.1)

    def test_ttl_honoured_then_followed(self):
        name = "moving.vg.test"
        self.dns.set(name, ["127.0.0.1"], ttl=2)
        vg = self.vecgate({"primary": name}, [{"name": "app", "pool_mode": "transaction", "pool_size": 4}])
        held = []

        def new_server_addr():
            # a transaction held open on each earlier client: this one needs a server of its own
            c = psycopg.connect(vg.dsn(), connect_timeout=20)
            held.append(c)
            return server_addr(c)

        try:
            self.assertEqual(new_server_addr(), "127.0.0.1")
            asked = self.dns.last_asked(name)
            self.dns.set(name, ["127.0.0.2"], ttl=2)
            if time.monotonic() - asked < 1.5:
                self.assertEqual(new_server_addr(), "127.0.0.1")  # the answer is kept for its TTL
            time.sleep(max(0, asked + 2.3 - time.monotonic()))
            self.assertEqual(new_server_addr(), "127.0.0.2")  # then the name is asked again
            self.assertEqual(self.dns.count(name), 2)
        finally:
            for c in held:
                c.close()
        self.assertIn("dns: %s resolves to 127.0.0.2, was 127.0.0.1" % name, vg.log())

    def test_failed_connect_asks_again_at_once(self):
        name = "stale.vg.test"
        self.dns.set(name, ["127.0.0.3"], ttl=60)  # nothing listens there: refused
        vg = self.vecgate({"primary": name}, [{"name": "app", "pool_mode": "transaction", "pool_size": 2}],
                          dns={"max_ttl": 60})
        result = []

        def client():
            t0 = time.monotonic()
            try:
                with psycopg.connect(vg.dsn(), autocommit=True, connect_timeout=30) as c:
                    result.append((server_addr(c), time.monotonic() - t0))
            except psycopg.Error as e:
                result.append((str(e), time.monotonic() - t0))

        t = threading.Thread(target=client)
        t.start()
        deadline = time.monotonic() + 10
        while self.dns.count(name) < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.dns.set(name, ["127.0.0.1"], ttl=60)
        t.join(40)
        print("after a refused connect to the cached address: %s in %.2f s, %d lookups"
              % (result[0][0], result[0][1], self.dns.count(name)))
        self.assertEqual(result[0][0], "127.0.0.1")
        self.assertLess(result[0][1], 10)  # not the 60 s TTL, nor query_wait
        self.assertGreaterEqual(self.dns.count(name), 2)

    def test_nxdomain_told_at_once_and_logged_once(self):
        name = "gone.vg.test"
        self.dns.nxdomain(name)
        forced = {"dbname": "app", "backend": "gone", "user": "app", "password": "app-pw"}
        vg = self.vecgate({"primary": NAME, "gone": name},
                          [{"name": "app", "pool_mode": "transaction", "pool_size": 2},
                           dict(forced, name="gone", pool_mode="transaction"),
                           dict(forced, name="gone2", pool_mode="session")],
                          dns={"nxdomain_ttl": 60}, auth={"type": "trust", "users": []})
        for db in ("gone", "gone", "gone2"):
            t0 = time.monotonic()
            with socket.create_connection(("127.0.0.1", vg.port)) as s:
                s.sendall(startup_packet({"user": "app", "database": db}))
                err = read_until_error_or_close(s, timeout=20)
            took = time.monotonic() - t0
            self.assertIsNotNone(err)
            self.assertEqual(err["C"], "08006", err)
            self.assertIn("cannot resolve host %s: no such host" % name, err["M"])
            self.assertLess(took, 5)  # at once: query_wait is 30 s
        # the later clients and the other pool took the cached answer
        self.assertEqual(self.dns.count(name), 1)
        lines = [ln for ln in vg.log().splitlines() if name in ln]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn("dns: cannot resolve %s: no such host" % name, lines[0])

    def test_libpq_side_connections_use_the_cache(self):
        name = "side.vg.test"
        self.dns.set(name, ["127.0.0.1"], ttl=1)
        admin, token = free_port(), "t" * 20
        vg = self.vecgate({"primary": name}, [{"name": "app", "pool_mode": "transaction", "pool_size": 2}],
                          auth={"type": "scram-sha-256", "users": [],
                                "auth_query": "SELECT usename, passwd FROM pg_shadow WHERE usename = $1",
                                "auth_user": "postgres", "auth_password": SUPERPW},
                          health_check={"user": "postgres", "password": SUPERPW, "interval": 0.2,
                                        "quiet_interval": 0},
                          admin={"port": admin, "token": token})
        t0 = time.monotonic()
        before = self.dns.count(name)
        logins = 25
        for _ in range(logins):  # each login runs auth_query on a libpq connection of its own
            with psycopg.connect(vg.dsn(), autocommit=True, connect_timeout=20) as c:
                self.assertEqual(c.execute("SELECT 1").fetchone()[0], 1)
            time.sleep(0.04)
        elapsed = time.monotonic() - t0
        asked = self.dns.count(name) - before
        backend = admin_get(admin, token, "/v1/backends")["backends"][0]
        print("%d logins (auth_query) and %d health checks in %.1f s: %d questions for %s"
              % (logins, backend["checks"], elapsed, asked, name))
        self.assertEqual(backend["status"], "up", backend)
        self.assertGreater(backend["checks"], 3)
        # one question per TTL (1 s) at most, plus the one running when it started
        self.assertLessEqual(asked, int(elapsed) + 2)
        self.assertLess(asked, logins)


if __name__ == "__main__":
    unittest.main(verbosity=2)
