#!/usr/bin/python3
"""The vecgate demo (what `tests/run-demo` runs once dependencies are
installed and vecgate is built): a primary and a streaming replica of
PostgreSQL 15 in a temp dir, an embeddings table of clustered synthetic
vectors, vecgate in front with a sample config, a load generator shaped like
a RAG app plus an ingestion pipeline (k-NN reads with prepared statements,
single-row INSERTs, COPY batches), and a full online rebuild through
`vecgatectl rebuild start --until-done`.  The route moves to the replica while
the index builds and verifies, and back.  Then a report; its last line:

  demo: failed_queries=<n> failed_writes=<n> lost_rows=<n> swap_lock_ms=<x> recall_before=<a> recall_after=<b>

With the `vector` extension available (pgvector), the table uses vector(16)
and an HNSW index; otherwise the cube contrib type with GiST stands in.

--no-superuser runs the same demo as on managed PostgreSQL: a role `owner`
that is not superuser owns the database `app` and the table, and is both
the app's role and vecgate's maintenance role (no superuser credentials in
vecgate's config).  Where pg_hint_plan is installed, both servers load it
(shared_preload_libraries) and the rebuild runs in swap mode hint; without
it, in rename mode (with hypopg, where installed, for verify).  The report
says which swap mode ran and the watch's traffic proof (the server's scan
counters: did the reads move to the new index?).

  tests/demo.py [--rows N] [--dims D] [--readers N] [--no-superuser] [--keep]
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))
import pgtest  # noqa: E402
from pgtest import SUPERPW, SRC, PgCluster, Vecgate, free_port, _cleanups  # noqa: E402

import psycopg  # noqa: E402

TOKEN = "demo-token-0123456789"
OWNER, OWNER_PW = "owner", "owner-pw"  # --no-superuser: the table's owner, the app's role
CLUSTERS = 40
PHASES = ("before", "preflight", "baseline", "build", "verify", "swap", "watch", "retain", "done", "after")


class Space:
    """Clustered synthetic vectors and their SQL spelling (cube or pgvector)."""

    def __init__(self, dims, pgvector):
        self.dims, self.pgvector = dims, pgvector
        rnd = random.Random(11)
        self.centers = [[rnd.random() for _ in range(dims)] for _ in range(CLUSTERS)]

    def sample(self, rnd, spread=0.05):
        c = self.centers[rnd.randrange(CLUSTERS)]
        return [x + rnd.gauss(0, spread) for x in c]

    def literal(self, vec):
        body = ", ".join("%.5f" % x for x in vec)
        return "[%s]" % body if self.pgvector else "(%s)" % body

    @property
    def cast(self):
        return "vector" if self.pgvector else "cube"

    def column_type(self):
        return "vector(%d)" % self.dims if self.pgvector else "cube"

    def generate_sql(self, rows):
        """INSERT ... SELECT of clustered points, computed by the server: each
        row is a cluster center plus uniform noise of +-0.05 per coordinate."""
        centers = ", ".join("(%d, ARRAY[%s])" % (i, ",".join("%.5f" % x for x in c))
                            for i, c in enumerate(self.centers))
        if self.pgvector:
            # pgvector adds vectors: center + a noise vector drawn per row
            noise = ("(SELECT array_agg((random() - 0.5) * 0.1)::vector FROM generate_series(1, %d) WHERE g > 0)"
                     % self.dims)
            value = "c.v::vector + %s" % noise
        else:
            coords = ", ".join("c.v[%d] + (random() - 0.5) * 0.1" % (i + 1) for i in range(self.dims))
            value = "cube(ARRAY[%s])" % coords
        return ("INSERT INTO embeddings (doc, v) SELECT 'seed ' || g, %s FROM generate_series(1, %d) g "
                "JOIN (VALUES %s) AS c(i, v) ON c.i = g %% %d" % (value, rows, centers, CLUSTERS))


class Load:
    """Reads through prepared statements, INSERTs and COPY batches; latency per phase."""

    def __init__(self, vg, space, db, user):
        self.vg, self.space, self.db, self.user = vg, space, db, user
        self.stop = threading.Event()
        self.phase = "before"
        self.lock = threading.Lock()
        self.lat = {}
        self.on_replica = {}
        self.reads = self.failed_reads = self.failed_writes = 0
        self.ingested = []  # (id, vector) of rows written through vecgate
        self.errors = []

    def dsn(self):
        return self.vg.dsn(db=self.db, user=self.user, password="")

    def fail(self, kind, e):
        with self.lock:
            setattr(self, kind, getattr(self, kind) + 1)
            self.errors.append("%s: %s" % (kind, e))

    def reader(self, seed):
        rnd = random.Random(seed)
        sql = ("SELECT id, pg_is_in_recovery() FROM embeddings ORDER BY v <-> %%s::%s LIMIT 10" % self.space.cast)
        with psycopg.connect(self.dsn(), autocommit=True, prepare_threshold=0) as c:
            while not self.stop.is_set():
                t0 = time.perf_counter()
                try:
                    rows = c.execute(sql, (self.space.literal(self.space.sample(rnd)),)).fetchall()
                    if len(rows) != 10:
                        raise RuntimeError("short result: %d rows" % len(rows))
                    ms = (time.perf_counter() - t0) * 1000
                    with self.lock:
                        self.reads += 1
                        self.lat.setdefault(self.phase, []).append(ms)
                        self.on_replica[self.phase] = self.on_replica.get(self.phase, 0) + bool(rows[0][1])
                except Exception as e:
                    self.fail("failed_reads", e)

    def inserter(self, seed):
        rnd = random.Random(seed)
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            while not self.stop.is_set():
                vec = self.space.sample(rnd)
                try:
                    rid = c.execute("INSERT INTO embeddings (doc, v) VALUES ('ingest', %%s::%s) RETURNING id"
                                    % self.space.cast, (self.space.literal(vec),)).fetchone()[0]
                    with self.lock:
                        self.ingested.append((rid, vec))
                except Exception as e:
                    self.fail("failed_writes", e)
                time.sleep(0.005)

    def copier(self, seed):
        rnd = random.Random(seed)
        n = 0
        with psycopg.connect(self.dsn(), autocommit=True) as c:
            while not self.stop.is_set():
                n += 1
                tag = "copy-%d-%d" % (seed, n)
                batch = [self.space.sample(rnd) for _ in range(200)]
                try:
                    with c.cursor().copy("COPY embeddings (doc, v) FROM STDIN") as cp:
                        for vec in batch:
                            cp.write_row((tag, self.space.literal(vec)))
                    ids = [r[0] for r in c.execute("SELECT id FROM embeddings WHERE doc = %s ORDER BY id",
                                                   (tag,)).fetchall()]
                    with self.lock:
                        self.ingested.extend(zip(ids, batch))
                except Exception as e:
                    self.fail("failed_writes", e)
                self.stop.wait(0.5)


def has_hint_plan():
    """Is pg_hint_plan built for Debian's PostgreSQL 15 (tests/install-deps builds it from VECGATE_VENDOR_DIR)?"""
    r = subprocess.run([pgtest.PGBIN + "/pg_config", "--pkglibdir"], capture_output=True, text=True)
    return os.path.exists(os.path.join(r.stdout.strip(), "pg_hint_plan.so"))


def swap_mode_line(job, user, pinned_reads):
    """Which swap mode ran, for which role, and what that meant for the reads."""
    mode = job.get("swap_mode")
    if mode == "flip":
        return "flip (role %s, superuser; the new index stayed invisible to the planner until the swap)" % user
    if mode == "hint":
        return ("hint (role %s, not superuser; vecgate pinned its reads with plan hints: %d vector reads pinned "
                "during the rebuild, the swap moved the pin)" % (user, pinned_reads))
    if mode == "rename":
        return ("rename (role %s, not superuser, pg_hint_plan not loaded: the new index was visible to the planner "
                "once built, the swap renames the indexes and the old one is dropped, no rollback; verify hid the "
                "live index by %s)" % (user, job.get("verify_hides_live_by")))
    return "%s (role %s)" % (mode or "not chosen", user)


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100 * (len(v) - 1))))]


def main():
    ap = argparse.ArgumentParser(description="vecgate demo: online rebuild under live traffic")
    ap.add_argument("--rows", type=int, default=int(os.environ.get("DEMO_ROWS", "200000")))
    ap.add_argument("--dims", type=int, default=None,
                    help="vector dimensions (default 128 with pgvector, 8 with the cube stand-in)")
    ap.add_argument("--readers", type=int, default=4)
    ap.add_argument("--no-superuser", action="store_true",
                    help="the table's owner, not superuser, as the app's and the maintenance role (managed "
                         "PostgreSQL): swap mode hint with pg_hint_plan installed, else rename")
    ap.add_argument("--keep", action="store_true", help="leave servers and vecgate running")
    args = ap.parse_args()
    vecgate = os.environ.get("VECGATE_BIN", os.path.join(SRC, "build", "vecgate"))
    ctl = os.environ.get("VECGATECTL_BIN", os.path.join(SRC, "build", "vecgatectl"))
    pgtest.VECGATE_BIN = vecgate

    hints = args.no_superuser and has_hint_plan()
    conf = "shared_buffers=256MB\nmaintenance_work_mem=256MB\nmax_connections=150"
    if hints:
        # hint mode: the servers must read vecgate's plan hints, and pg_hint_plan
        # does only when loaded at start; the replica gets this postgresql.conf
        # with pg_basebackup (checked below)
        conf += "\nshared_preload_libraries='pg_hint_plan'"
    print("== starting a PostgreSQL 15 primary and a streaming replica (pg_basebackup -R) in a temp dir", flush=True)
    pg = PgCluster(extra_conf=conf)
    replica = pg.replica()
    if hints:
        for name, server in (("primary", pg), ("replica", replica)):
            loaded = server.psql("SHOW shared_preload_libraries")
            if "pg_hint_plan" not in loaded:
                # reads routed here would ignore the pin and take the planner's choice
                raise SystemExit("demo: the %s does not load pg_hint_plan (shared_preload_libraries = '%s')"
                                 % (name, loaded))
    if args.no_superuser:
        # the managed-PostgreSQL shape: the table's owner is all the app and
        # vecgate get; only extensions are created by the administrator
        db, user, password = "app", OWNER, OWNER_PW
        pg.add_app(user=OWNER, password=OWNER_PW, db=db)
        print("== no superuser: role %s (not superuser) owns database %s and the table; it is the app's role and "
              "vecgate's maintenance role" % (OWNER, db))
    else:
        db, user, password = "postgres", "postgres", SUPERPW
    pgvector = pg.psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'") == "1"
    if args.dims is None:
        args.dims = 128 if pgvector else 8
    if pgvector:
        print("== pgvector is available: vector(%d) with an HNSW index" % args.dims)
        pg.psql("CREATE EXTENSION vector", db=db)
    else:
        print("== pgvector is not installed here (not packaged for Debian bookworm): using the cube contrib type "
              "with a GiST index as the stand-in (same <-> operator)")
        pg.psql("CREATE EXTENSION cube", db=db)
    if args.no_superuser:
        if hints:
            print("== pg_hint_plan is installed: both servers load it (shared_preload_libraries), so the rebuild "
                  "can run in swap mode hint")
        else:
            print("== pg_hint_plan is not installed (tests/install-deps builds it from VECGATE_VENDOR_DIR): the "
                  "rebuild runs in swap mode rename")
            # without superuser or hints the candidate is visible to the planner,
            # which need not pick it for verify to measure: hypopg >= 1.4 hides
            # the live index from verify's plan
            if pg.psql("SELECT count(*) FROM pg_available_extensions WHERE name = 'hypopg'") == "1":
                pg.psql("CREATE EXTENSION hypopg", db=db)
                print("== hypopg is available: created in %s for verify" % db)
    space = Space(args.dims, pgvector)

    def as_owner(sql):  # the table is the role's own (the superuser's in the default demo)
        return pg.psql(sql, db=db, user=user, password=password)
    print("== creating embeddings: %d rows of clustered %d-dimensional vectors" % (args.rows, args.dims), flush=True)
    as_owner("CREATE TABLE embeddings (id bigserial PRIMARY KEY, doc text, v %s)" % space.column_type())
    as_owner(space.generate_sql(args.rows))
    if pgvector:
        as_owner("CREATE INDEX embeddings_v ON embeddings USING hnsw (v vector_l2_ops) "
                 "WITH (m = 8, ef_construction = 16)")
    else:
        as_owner("CREATE INDEX embeddings_v ON embeddings USING gist (v)")
    as_owner("ANALYZE embeddings")

    work = tempfile.mkdtemp(prefix="vecgate-demo-")
    if not args.keep:
        _cleanups.append(lambda: subprocess.run(["rm", "-rf", work]))
    evalf = os.path.join(work, "eval.txt")
    rnd = random.Random(5)
    with open(evalf, "w") as f:
        for _ in range(100):
            f.write(space.literal(space.sample(rnd)) + "\n")
    admin = free_port()
    index = {"name": "embeddings", "database": db, "table": "public.embeddings", "index": "embeddings_v",
             "user": user, "password": password, "k": 10, "eval_file": evalf,
             "eval_query": "SELECT id FROM public.embeddings ORDER BY v <-> $1::%s LIMIT $2" % space.cast,
             "watch_seconds": 5, "retention_seconds": 2, "latency_tolerance": 5, "latency_budget_ms": 50,
             "maintenance_settings": {"maintenance_work_mem": "256MB"},
             "route": "primary", "route_policy": {"build": "replica", "verify": "replica"}}
    if pgvector:
        index["with"] = {"m": 16, "ef_construction": 64}
        index["search_settings"] = {"hnsw.ef_search": "40"}
    vg = Vecgate(pg, auth_type="trust", users=[], databases=[
        {"name": db, "pool_mode": "transaction", "pool_size": 8, "user": user, "password": password}],
        extra={"backends": {"primary": {"host": "127.0.0.1", "port": pg.port},
                            "replica": {"host": "127.0.0.1", "port": replica.port, "role": "replica"}},
               "health_check": {"user": user, "password": password, "interval": 0.5},
               "routing": {"refresh_seconds": 2},
               "admin": {"port": admin, "token": TOKEN},
               "logging": {"level": "info", "log_connections": False, "log_disconnections": False},
               "managed_indexes": [index]})
    print("== vecgate on 127.0.0.1:%d (admin API http://127.0.0.1:%d, config %s)" % (vg.port, admin, vg.path))
    env = dict(os.environ, VECGATE_TOKEN=TOKEN, VECGATE_ADMIN_URL="http://127.0.0.1:%d" % admin)

    def api(path):
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (admin, path),
                                     headers={"Authorization": "Bearer " + TOKEN})
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    deadline = time.time() + 30
    while time.time() < deadline:
        if any(b["name"] == "replica" and b["in_rotation"] for b in api("/v1/backends")["backends"]):
            break
        time.sleep(0.2)
    before_rows = int(pg.psql("SELECT count(*) FROM embeddings", db=db))
    load = Load(vg, space, db, user)
    threads = [threading.Thread(target=load.reader, args=(i,)) for i in range(args.readers)]
    threads += [threading.Thread(target=load.inserter, args=(100,)), threading.Thread(target=load.copier, args=(200,))]
    for t in threads:
        t.start()
    print("== load: %d readers (prepared k-NN), 1 inserter, 1 COPY batcher through vecgate" % args.readers, flush=True)
    time.sleep(3)

    # follow the job's state and the route while vecgatectl draws its bar
    watching = threading.Event()
    route_log = []

    def follow():
        last = None
        while not watching.is_set():
            try:
                r = [x for x in api("/v1/routes")["routes"] if x["name"] == "embeddings"][0]
                jobs = api("/v1/jobs?index=embeddings")["jobs"]
                if jobs:
                    load.phase = jobs[0]["state"]
                if r["effective"] != last:
                    route_log.append((load.phase, r["effective"]))
                    sys.stdout.write("\n   route: vector reads of embeddings now go to %s%s\n" % (
                        r["effective"], " (rebuild step %s)" % r["step"] if r["step"] else ""))
                    sys.stdout.flush()
                    last = r["effective"]
            except Exception:
                pass
            time.sleep(0.1)
    follower = threading.Thread(target=follow)
    follower.start()
    print("== vecgatectl rebuild start embeddings --until-done", flush=True)
    rc = subprocess.run([ctl, "rebuild", "start", "embeddings", "--until-done"], env=env).returncode
    watching.set()
    follower.join()
    load.phase = "after"
    time.sleep(3)
    job = api("/v1/jobs?index=embeddings")["jobs"][0]
    cleaned = None
    if job.get("swap_mode") == "hint" and job["state"] == "done":
        # after retention vecgate drops the old index, unpins and renames the new
        # one to the live name: the load keeps running through that too
        cleaned, deadline = False, time.time() + 30
        while not cleaned and time.time() < deadline:
            r = [x for x in api("/v1/routes")["routes"] if x["name"] == "embeddings"][0]
            cleaned = r["pinned_to"] is None and pg.psql(
                "SELECT to_regclass('public.%s') IS NULL" % job["new_index"], db=db) == "t"
            time.sleep(0.2)
    load.stop.set()
    for t in threads:
        t.join(60)

    job = api("/v1/jobs?index=embeddings")["jobs"][0]
    after_rows = int(pg.psql("SELECT count(*) FROM embeddings", db=db))
    ingested = len(load.ingested)
    lost = before_rows + ingested - after_rows
    # every ingested row is findable by vector search on the new index
    sample = random.Random(9).sample(load.ingested, min(50, ingested))
    found = 0
    with psycopg.connect(load.dsn(), autocommit=True) as c:
        for rid, vec in sample:
            with c.transaction():  # SET LOCAL: nothing leaks to the pool
                if pgvector:
                    # HNSW top-k is approximate, so "is this row in the index" is
                    # asked as: an index scan filtered to the row, iterating through
                    # the graph until it is found (or the graph is exhausted)
                    c.execute("SET LOCAL enable_seqscan = off")
                    c.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                    c.execute("SET LOCAL hnsw.max_scan_tuples = 1000000")
                    ids = [r[0] for r in c.execute("SELECT id FROM embeddings WHERE id + 0 = %s "
                                                   "ORDER BY v <-> %s::vector LIMIT 1",
                                                   (rid, space.literal(vec))).fetchall()]
                else:
                    ids = [r[0] for r in c.execute("SELECT id FROM embeddings ORDER BY v <-> %s::cube LIMIT 10",
                                                   (space.literal(vec),)).fetchall()]
            found += rid in ids
    routes = [x for x in api("/v1/routes")["routes"] if x["name"] == "embeddings"][0]

    print("\n== report (%s, %d rows to start)" % ("pgvector HNSW" if pgvector else "cube + GiST stand-in",
                                                   before_rows))
    print("%-10s %9s %10s %9s %9s %9s" % ("phase", "queries", "on replica", "p50 ms", "p95 ms", "p99 ms"))
    for phase in PHASES:
        v = load.lat.get(phase, [])
        if v:
            print("%-10s %9d %10d %9.2f %9.2f %9.2f" % (phase, len(v), load.on_replica.get(phase, 0), pct(v, 50),
                                                        pct(v, 95), pct(v, 99)))
    print("route changes: %s" % ", ".join("%s during %s" % (m, p) for p, m in route_log))
    print("queries served: %d (replica %d, primary %d, replayed on the primary %d); failed: %d" % (
        load.reads, routes["queries"]["replica"], load.reads - routes["queries"]["replica"],
        routes["queries"]["replayed"], load.failed_reads))
    print("rows: %d before, %d ingested (INSERT + COPY), %d after; %d of %d sampled ingested rows found by "
          "vector search; failed writes: %d" % (before_rows, ingested, after_rows, found, len(sample),
                                                load.failed_writes))
    print("job %d: %s; %s" % (job["id"], job["state"], job["message"]))
    print("swap mode: %s" % swap_mode_line(job, user, routes["pinned_reads"]))
    if args.no_superuser:
        # the server's own scan counters over the watch: did the reads really
        # move to the new index without a superuser (the pin, or the rename)?
        proof = job["watch"]["traffic_proof"]
        print("watch traffic proof: %s" % (proof["verdict"] or "not measured"))
        print("   %s" % " ".join("%s=%s" % (k, proof[k]) for k in (
            "new_index_scans", "retired_index_scans", "vector_reads_on_primary", "pinned_reads", "unpinned_reads")))
        if cleaned is not None:
            print("after retention: %s" % (
                "old index dropped, pin cleared, %s renamed to embeddings_v" % job["new_index"] if cleaned
                else "the pin or %s was still there after 30 s" % job["new_index"]))
    for e in load.errors[:5]:
        print("error:", e)
    if args.keep:
        _cleanups.clear()
        print("== --keep: left running. psql -h 127.0.0.1 -p %d -U %s %s (via vecgate); "
              "VECGATE_TOKEN=%s build/vecgatectl --url http://127.0.0.1:%d routes" % (vg.port, user, db, TOKEN, admin))
        print("   primary data %s, replica data %s, vecgate pid %d" % (pg.data, replica.data, vg.proc.pid))
    else:
        vg.stop()

    def num(x):
        return x if isinstance(x, (int, float)) else float("nan")
    print("demo: failed_queries=%d failed_writes=%d lost_rows=%d swap_lock_ms=%.2f recall_before=%.4f "
          "recall_after=%.4f" % (load.failed_reads, load.failed_writes, lost, num(job.get("swap_lock_ms")),
                                 num(job["baseline"]["recall"]), num(job["candidate"]["recall"])), flush=True)
    return 0 if rc == 0 and not load.failed_reads and not load.failed_writes and lost == 0 and cleaned is not False \
        else 1


if __name__ == "__main__":
    sys.exit(main())
