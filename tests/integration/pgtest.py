"""Test harness: real PostgreSQL 15 clusters and a real vecgate process.

PgCluster initdb's a scram-sha-256 cluster in a temp dir (as the postgres OS
user, since initdb refuses root) on a free loopback port; Vecgate writes a
YAML config and runs the binary under test.  Everything started is stopped at
exit, also when a test fails.  Raw-socket helpers speak just enough of the
protocol to send malformed input on purpose.
"""
import atexit
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PGBIN = "/usr/lib/postgresql/15/bin"
SRC = os.environ.get("VECGATE_SRC", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
VECGATE_BIN = os.environ.get("VECGATE_BIN", os.path.join(SRC, "build", "vecgate"))
VECGATECTL_BIN = os.environ.get("VECGATECTL_BIN", os.path.join(SRC, "build", "vecgatectl"))
SUPERPW = "super-pw"

_cleanups = []


def _run_cleanups():
    while _cleanups:
        fn = _cleanups.pop()
        try:
            fn()
        except Exception as e:  # keep cleaning up
            print("cleanup:", e, file=sys.stderr)


atexit.register(_run_cleanups)
for _sig in (signal.SIGTERM, signal.SIGINT):
    signal.signal(_sig, lambda *a: sys.exit(1))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("port %d did not open" % port)


def wait_for(pred, timeout, what, detail=None, pause=0.05):
    """pred()'s first true value within `timeout` seconds, else an
    AssertionError naming `what` (and detail(), a callable, e.g. a log tail)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = pred()
        if got:
            return got
        time.sleep(pause)
    raise AssertionError("not within %.1f s: %s%s" % (timeout, what, "\n" + detail() if detail else ""))


def free_port_on(*hosts):
    """A TCP port free on every one of these loopback addresses (e.g. a
    primary and a replica on two addresses with the same port)."""
    for _ in range(50):
        port = free_port()
        try:
            for h in hosts:
                with socket.socket() as s:
                    s.bind((h, port))
            return port
        except OSError:
            continue
    raise RuntimeError("no port free on all of %s" % ", ".join(hosts))


def _loopback_hba(host):
    """pg_hba.conf lines for clients and replication on a loopback address
    other than 127.0.0.1 (initdb's lines name 127.0.0.1 alone)."""
    if host == "127.0.0.1":
        return ""
    return "host all all 127.0.0.0/8 scram-sha-256\nhost replication all 127.0.0.0/8 scram-sha-256\n"


class PgCluster:
    """`host`: the address it listens on and psql() connects to (another
    loopback address, e.g. 127.0.0.2, for a primary and a replica with the
    same `port`); the defaults are 127.0.0.1 and a free port."""

    def __init__(self, extra_conf="", extra_hba="", host="127.0.0.1", port=None):
        self.dir = tempfile.mkdtemp(prefix="vg-pg-")
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.host = host
        self.port = port or free_port()
        extra_hba = extra_hba + _loopback_hba(host)
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(SUPERPW + "\n")
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._as_pg([PGBIN + "/initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8", "--locale=C",
                     "--auth=scram-sha-256", "--pwfile=" + pwfile])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("listen_addresses='%s'\nport=%d\nunix_socket_directories='%s'\n"
                    "max_connections=120\nfsync=off\nsynchronous_commit=off\n%s\n" % (host, self.port, self.dir,
                                                                                       extra_conf))
        if extra_hba:
            # first: pg_hba.conf's first matching line decides
            hba = os.path.join(self.data, "pg_hba.conf")
            with open(hba) as f:
                rest = f.read()
            with open(hba, "w") as f:
                f.write(extra_hba.rstrip("\n") + "\n" + rest)
        self._as_pg([PGBIN + "/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w", "start"])
        _cleanups.append(self.stop)

    def _as_pg(self, cmd):
        subprocess.run(["runuser", "-u", "postgres", "--"] + cmd, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def stop(self):
        if os.path.isdir(self.data):
            subprocess.run(["runuser", "-u", "postgres", "--", PGBIN + "/pg_ctl", "-D", self.data, "-m", "immediate",
                            "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)

    def psql(self, sql, db="postgres", user="postgres", password=SUPERPW, options=None):
        """`options`: PGOPTIONS for this session (e.g. "-c default_transaction_read_only=off")."""
        env = dict(os.environ, PGPASSWORD=password)
        if options:
            env["PGOPTIONS"] = options
        r = subprocess.run(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", self.host, "-p", str(self.port),
                            "-U", user, "-d", db, "-c", sql], env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("psql failed: %s" % r.stderr)
        return r.stdout.strip()

    def connect(self, db="postgres", **kw):
        """A psycopg connection as the superuser, autocommit (kw: more connect arguments)."""
        import psycopg
        return psycopg.connect(host="127.0.0.1", port=self.port, user="postgres", password=SUPERPW, dbname=db,
                               autocommit=True, **kw)

    def pg_ctl(self, *args):
        self._as_pg([PGBIN + "/pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "log"), "-w"] + list(args))

    def restart(self, *settings):
        """Stop (fast: sessions get 57P01) and start again with these extra
        `name=value` settings for this run only (none: as configured)."""
        self.pg_ctl("stop", "-m", "fast")
        opts = " ".join("-c " + kv for kv in settings)
        self.pg_ctl("start", *(["-o", opts] if opts else []))

    def server_log(self):
        """The server's log so far (pg_ctl -l)."""
        with open(os.path.join(self.dir, "log"), errors="replace") as f:
            return f.read()

    def replica(self, host=None, port=None):
        """A streaming replica of this cluster (pg_basebackup -R), on its own
        port unless `port` says (then on another `host`)."""
        return Replica(self, host, port)

    def add_app(self, user="app", password="app-pw", db="app"):
        self.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (user, password))
        self.psql("CREATE DATABASE %s OWNER %s" % (db, user))


class LatencyProbe:
    """A client's SELECT 1 loop on one open connection (dsn) in a thread,
    from start() to stop(): `latencies` holds each round trip in seconds
    (`started` when each began, time.monotonic()).  What an unrelated client
    sees while something else happens."""

    def __init__(self, dsn):
        import psycopg
        # never prepared (psycopg prepares a query it runs 5 times): a
        # transaction pooler without prepared-statement support can be probed too
        self.conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=None)
        self.conn.execute("SELECT 1")
        self.latencies = []
        self.started = []
        self.errors = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        import psycopg
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.conn.execute("SELECT 1")
            except psycopg.Error as e:
                self.errors.append(str(e))
                return
            self.latencies.append(time.monotonic() - t0)
            self.started.append(t0)
            time.sleep(0.002)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(30)
        self.conn.close()
        return self.latencies


def cube_table(cluster, table, rows, index, extra_columns=""):
    """The vector stand-in: `table` (id, v cube[, extra]) holding `rows` random
    3-d points, with a GiST index named `index` (cube extension created)."""
    cluster.psql("CREATE EXTENSION IF NOT EXISTS cube")
    cluster.psql("CREATE TABLE %s (id bigserial PRIMARY KEY, v cube%s)" % (table, extra_columns))
    cluster.psql("INSERT INTO %s (v) SELECT cube(array[random(), random(), random()]) "
                 "FROM generate_series(1, %d)" % (table, rows))
    cluster.psql("CREATE INDEX %s ON %s USING gist (v)" % (index, table))


def has_pgvector():
    """Is pgvector installed in Debian's PostgreSQL 15 (tests/install-deps builds it from VECGATE_VENDOR_DIR)?"""
    r = subprocess.run([PGBIN + "/pg_config", "--sharedir"], capture_output=True, text=True)
    return os.path.exists(os.path.join(r.stdout.strip(), "extension", "vector.control"))


def random_vector(rnd, dims):
    """A pgvector literal of `dims` uniform random components from `rnd` (4 decimals)."""
    return "[%s]" % ",".join("%.4f" % rnd.random() for _ in range(dims))


def insert_random_vectors(cluster, table, dims, rows, db="postgres"):
    """`rows` rows of random vector(dims) into table's `embedding` column, made server-side."""
    cluster.psql("INSERT INTO %s (embedding) SELECT (SELECT array_agg(random())::vector FROM generate_series(1, %d) "
                 "WHERE g > 0) FROM generate_series(1, %d) g" % (table, dims, rows), db=db)


def pgvector_items(cluster, rows=40000, dims=32):
    """pgvector's items(id, embedding vector(dims)) with `rows` random rows
    and a cheap HNSW graph items_idx (m 4, ef_construction 8), analysed:
    the live index a rebuild test replaces."""
    cluster.psql("CREATE EXTENSION IF NOT EXISTS vector")
    cluster.psql("CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(%d))" % dims)
    insert_random_vectors(cluster, "items", dims, rows)
    cluster.psql("CREATE INDEX items_idx ON items USING hnsw (embedding vector_l2_ops) "
                 "WITH (m = 4, ef_construction = 8)")
    cluster.psql("ANALYZE items")


def eval_file(lines):
    """An eval file (one query vector per line) in a temp dir removed at exit."""
    d = tempfile.mkdtemp(prefix="vg-eval-")
    _cleanups.append(lambda: shutil.rmtree(d, ignore_errors=True))
    path = os.path.join(d, "eval.txt")
    with open(path, "w") as f:
        f.writelines(line + "\n" for line in lines)
    return path


class Replica(PgCluster):
    """pg_basebackup -R of a primary into a temp dir, started as a hot standby
    listening on `host` (default: the primary's address), `port` (default: a
    free one)."""

    def __init__(self, primary, host=None, port=None):
        self.dir = tempfile.mkdtemp(prefix="vg-replica-")
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.host = host or primary.host
        self.port = port or free_port()
        self.primary = primary
        self._basebackup()
        _cleanups.append(self.stop)

    def _basebackup(self):
        env = dict(os.environ, PGPASSWORD=SUPERPW)
        subprocess.run(["runuser", "-u", "postgres", "--", PGBIN + "/pg_basebackup", "-h", self.primary.host, "-p",
                        str(self.primary.port), "-U", "postgres", "-D", self.data, "-R", "-X", "stream", "-c", "fast"],
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("listen_addresses='%s'\nport=%d\nunix_socket_directories='%s'\nhot_standby=on\n" % (
                self.host, self.port, self.dir))
        self.pg_ctl("start")

    def promote(self):
        """pg_ctl promote, waiting until it takes writes."""
        self.pg_ctl("promote")

    def rebuild(self):
        """Make it a replica of its primary again, on the same port: stopped,
        its data directory replaced by a fresh pg_basebackup -R (a promoted
        replica's timeline no longer follows the primary's)."""
        subprocess.run(["runuser", "-u", "postgres", "--", PGBIN + "/pg_ctl", "-D", self.data, "-m", "fast", "-w",
                        "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.data)
        self._basebackup()


def yaml_dump(obj, indent=0):
    """A small YAML emitter: enough for vecgate configs (dicts, lists, scalars)."""
    pad = "  " * indent
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, (dict, list)) and v:
                out.append("%s%s:" % (pad, k))
                out.append(yaml_dump(v, indent + 1))
            else:
                out.append("%s%s: %s" % (pad, k, _scalar(v)))
    elif isinstance(obj, list):
        for item in obj:
            if isinstance(item, dict):
                inner = yaml_dump(item, indent + 1).split("\n")
                out.append("%s- %s" % (pad, inner[0].strip()))
                out.extend(inner[1:])
            else:
                out.append("%s- %s" % (pad, _scalar(item)))
    return "\n".join(out)


def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (dict, list)):
        return "{}" if isinstance(v, dict) else "[]"
    return "'" + str(v).replace("'", "''") + "'"


class Vecgate:
    def __init__(self, cluster, databases=None, users=None, auth_type="scram-sha-256", extra=None, port=None):
        self.dir = tempfile.mkdtemp(prefix="vg-proxy-")
        _cleanups.append(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        self.port = port or free_port()
        self.cluster = cluster
        self.cfg = {
            "listen": [{"host": "127.0.0.1", "port": self.port}],
            "backends": {"primary": {"host": "127.0.0.1", "port": cluster.port}},
            "databases": databases or [{"name": "app", "pool_mode": "transaction", "pool_size": 2}],
            "auth": {"type": auth_type, "users": users if users is not None else [{"name": "app", "password": "app-pw"}]},
            "logging": {"level": "info"},
        }
        for k, v in (extra or {}).items():
            self.cfg[k] = v
        self.path = os.path.join(self.dir, "vecgate.yaml")
        self.write_config()
        self.logpath = os.path.join(self.dir, "vecgate.log")
        self.proc = None
        self.start()

    def write_config(self, cfg=None):
        with open(self.path, "w") as f:
            f.write(yaml_dump(cfg or self.cfg) + "\n")

    def start(self):
        if getattr(self, "logf", None):
            self.logf.close()
        self.logf = open(self.logpath, "ab")
        self.proc = subprocess.Popen([VECGATE_BIN, "-c", self.path], stdout=self.logf, stderr=self.logf)
        _cleanups.append(self.stop)
        wait_port(self.port, proc=self.proc)

    def stop(self):
        if getattr(self, "logf", None):
            self.logf.close()
            self.logf = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc and self.proc.returncode not in (0, None, -signal.SIGKILL):
            # a sanitizer report makes the process exit non-zero
            raise RuntimeError("vecgate exited with %s:\n%s" % (self.proc.returncode, self.log()[-4000:]))

    def log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode(errors="replace")

    def dsn(self, user="app", password="app-pw", db="app", **kw):
        parts = ["host=127.0.0.1", "port=%d" % self.port, "user=%s" % user, "dbname=%s" % db,
                 "password=%s" % password]
        parts += ["%s=%s" % (k, v) for k, v in kw.items()]
        return " ".join(parts)


def managed_vecgate(cluster, admin_port, token, indexes, pool_size=2, **extra):
    """vecgate in front of the superuser's database `postgres` (clients
    trusted, transaction pooling) with an admin port and these managed
    indexes: the set-up of the rebuild, gate and eval tests.  `extra`: more
    top-level config sections (logging=...)."""
    return Vecgate(cluster, auth_type="trust", users=[], databases=[
        {"name": "postgres", "pool_mode": "transaction", "pool_size": pool_size, "user": "postgres",
         "password": SUPERPW}], extra=dict({"admin": {"port": admin_port, "token": token},
                                            "managed_indexes": indexes}, **extra))


def vecgatectl(admin_port, token, *args, timeout=300):
    """Run the CLI against an admin port; the CompletedProcess (text)."""
    env = dict(os.environ, VECGATE_TOKEN=token, VECGATE_ADMIN_URL="http://127.0.0.1:%d" % admin_port)
    return subprocess.run([VECGATECTL_BIN] + list(args), capture_output=True, text=True, env=env, timeout=timeout)


def admin_get(admin_port, token, path, raw=False):
    """GET an admin API path with the bearer token: the decoded JSON (the text with raw)."""
    import json
    req = urllib.request.Request("http://127.0.0.1:%d%s" % (admin_port, path),
                                 headers={"Authorization": "Bearer " + token})
    with urllib.request.urlopen(req, timeout=5) as r:
        body = r.read().decode()
    return body if raw else json.loads(body)


def wait_drift_checks(admin_port, token, names, timeout=180):
    """Until the drift monitor of each named index has run once (or failed): {name: its drift JSON}."""
    deadline = time.time() + timeout
    while True:
        drift = {i["name"]: i["drift"] for i in admin_get(admin_port, token, "/v1/indexes")["indexes"]}
        if all(drift[n]["checks"] or drift[n]["last_error"] for n in names) or time.time() > deadline:
            return drift
        time.sleep(0.3)


class AdminCase:
    """Mixin for a TestCase whose class sets `admin` (the admin port) and `token`:
    the CLI, a job's JSON, and waiting until a job gets somewhere."""

    def ctl(self, *args):
        return vecgatectl(self.admin, self.token, *args)

    def job(self, job_id):
        return admin_get(self.admin, self.token, "/v1/jobs/%d" % job_id)

    def api(self, path, raw=False):
        return admin_get(self.admin, self.token, path, raw)

    def wait(self, job_id, pred, timeout=240):
        deadline = time.time() + timeout
        while time.time() < deadline:
            j = self.job(job_id)
            if pred(j):
                return j
            time.sleep(0.2)
        self.fail(j)


class LoopbackServer(threading.Thread):
    """A thread accepting TCP connections on a free loopback port (self.port),
    each handed to self.handle(conn) on this thread; closed at exit."""

    def __init__(self):
        super().__init__(daemon=True)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        _cleanups.append(self.sock.close)

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.handle(c)

    def handle(self, conn):
        raise NotImplementedError


# ---- raw protocol helpers ----

def startup_packet(params, version=196608):
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def read_message(sock):
    hdr = recv_exact(sock, 5)
    typ, length = hdr[0:1], struct.unpack("!I", hdr[1:])[0]
    return typ, recv_exact(sock, length - 4)


def error_fields(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[chr(part[0])] = part[1:].decode(errors="replace")
    return fields


def read_until_error_or_close(sock, timeout=5.0):
    """Messages until an ErrorResponse (returns its fields) or EOF (returns None)."""
    sock.settimeout(timeout)
    try:
        while True:
            typ, body = read_message(sock)
            if typ == b"E":
                return error_fields(body)
    except EOFError:
        return None


def is_closed(sock, timeout=3.0):
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(4096):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def run(cmd, env=None, timeout=120):
    e = dict(os.environ)
    e.update(env or {})
    return subprocess.run(cmd, env=e, capture_output=True, text=True, timeout=timeout)
