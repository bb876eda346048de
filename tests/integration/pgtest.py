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


class PgCluster:
    def __init__(self, extra_conf=""):
        self.dir = tempfile.mkdtemp(prefix="vg-pg-")
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(SUPERPW + "\n")
        os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        self._as_pg([PGBIN + "/initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8", "--locale=C",
                     "--auth=scram-sha-256", "--pwfile=" + pwfile])
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("listen_addresses='127.0.0.1'\nport=%d\nunix_socket_directories='%s'\n"
                    "max_connections=120\nfsync=off\nsynchronous_commit=off\n%s\n" % (self.port, self.dir, extra_conf))
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

    def psql(self, sql, db="postgres", user="postgres", password=SUPERPW):
        env = dict(os.environ, PGPASSWORD=password)
        r = subprocess.run(["psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port),
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

    def replica(self):
        """A streaming replica of this cluster (pg_basebackup -R) on its own port."""
        return Replica(self)

    def add_app(self, user="app", password="app-pw", db="app"):
        self.psql("CREATE ROLE %s LOGIN PASSWORD '%s'" % (user, password))
        self.psql("CREATE DATABASE %s OWNER %s" % (db, user))


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


def eval_file(lines):
    """An eval file (one query vector per line) in a temp dir removed at exit."""
    d = tempfile.mkdtemp(prefix="vg-eval-")
    _cleanups.append(lambda: shutil.rmtree(d, ignore_errors=True))
    path = os.path.join(d, "eval.txt")
    with open(path, "w") as f:
        f.writelines(line + "\n" for line in lines)
    return path


class Replica(PgCluster):
    """pg_basebackup -R of a primary into a temp dir, started as a hot standby."""

    def __init__(self, primary):
        self.dir = tempfile.mkdtemp(prefix="vg-replica-")
        pw = pwd.getpwnam("postgres")
        os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        env = dict(os.environ, PGPASSWORD=SUPERPW)
        subprocess.run(["runuser", "-u", "postgres", "--", PGBIN + "/pg_basebackup", "-h", "127.0.0.1", "-p",
                        str(primary.port), "-U", "postgres", "-D", self.data, "-R", "-X", "stream", "-c", "fast"],
                       check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write("port=%d\nunix_socket_directories='%s'\nhot_standby=on\n" % (self.port, self.dir))
        self.pg_ctl("start")
        _cleanups.append(self.stop)


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
