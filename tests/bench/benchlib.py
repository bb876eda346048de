"""Shared by the benchmarks: build vecgate if needed, start Debian's
PgBouncer in front of a cluster, run pgbench and read its tps, peak RSS."""
import base64
import hashlib
import hmac
import os
import pwd
import re
import resource
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from pgtest import SRC, error_fields, free_port, read_message, startup_packet, wait_port, _cleanups  # noqa: E402

SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))


def vecgate_bin():
    """VECGATE_BIN, else the repository's build/ brought up to date (a stale
    build would measure old code)."""
    if os.environ.get("VECGATE_BIN"):
        return os.environ["VECGATE_BIN"]
    build = os.path.join(SRC, "build")
    if not os.path.exists(os.path.join(build, "CMakeCache.txt")):
        subprocess.run(["cmake", "-S", SRC, "-B", build, "-DCMAKE_BUILD_TYPE=RelWithDebInfo"],
                       check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", build, "-j2"], check=True, stdout=subprocess.DEVNULL)
    return os.path.join(build, "vecgate")


def in_own_namespace(ns_host, env_name):
    """Re-run this script (sys.argv) under unshare -m with /etc/resolv.conf
    bind-mounted to one naming only the nameserver at `ns_host` (port 53), so
    that PgBouncer's c-ares, vecgate and glibc all ask it without settings of
    their own; exits with the re-run's status.  Inside (`env_name` set to 1)
    returns True; returns False when no mount namespace can be had here (no
    root, unshare refused)."""
    if os.environ.get(env_name):
        return os.environ[env_name] == "1"
    d = tempfile.mkdtemp(prefix="vg-resolv-")
    rc = os.path.join(d, "resolv.conf")
    with open(rc, "w") as f:
        f.write("nameserver %s\noptions timeout:5 attempts:2\n" % ns_host)
    probe = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            'mount --bind "$0" /etc/resolv.conf && grep -q %s /etc/resolv.conf' % ns_host, rc],
                           capture_output=True)
    if probe.returncode != 0:
        shutil.rmtree(d, ignore_errors=True)
        os.environ[env_name] = "0"
        return False
    env = dict(os.environ, **{env_name: "1"})
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        'mount --bind "$0" /etc/resolv.conf && exec "$@"', rc, sys.executable,
                        os.path.abspath(sys.argv[0])] + sys.argv[1:], env=env)
    shutil.rmtree(d, ignore_errors=True)
    sys.exit(r.returncode)


def raise_open_file_limit():
    """Soft RLIMIT_NOFILE up to the hard limit, for this process and what it
    starts; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def start_pgbouncer(pg, db="app", user="app", password="app-pw", pool_size=20, max_client_conn=500,
                    extra_databases="", wrapper=(), name="pgbouncer", start_timeout=10.0, host="127.0.0.1",
                    settings=""):
    """PgBouncer in transaction mode in front of `pg` (reached as `host`, an
    address or a name); `extra_databases` are more [databases] lines,
    `settings` more [pgbouncer] lines, `wrapper` a command the process runs
    under (valgrind)."""
    d = os.path.join(pg.dir, name)
    os.makedirs(d)
    pw = pwd.getpwnam("postgres")
    port = free_port()
    with open(os.path.join(d, "users.txt"), "w") as f:
        f.write('"%s" "%s"\n' % (user, password))
    with open(os.path.join(d, "pgbouncer.ini"), "w") as f:
        f.write("""[databases]
%s = host=%s port=%d dbname=%s
%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir = %s
auth_type = scram-sha-256
auth_file = %s/users.txt
pool_mode = transaction
default_pool_size = %d
max_client_conn = %d
logfile = %s/pgbouncer.log
pidfile = %s/pgbouncer.pid
%s
""" % (db, host, pg.port, db, extra_databases, port, d, d, pool_size, max_client_conn, d, d, settings))
    for root, _, files in os.walk(d):
        os.chown(root, pw.pw_uid, pw.pw_gid)
        for fn in files:
            os.chown(os.path.join(root, fn), pw.pw_uid, pw.pw_gid)
    # setpriv, not runuser: runuser opens a PAM session whose limits cap
    # PgBouncer at 1,024 open files; setpriv only changes the ids, so the
    # pooler keeps the open-file limit this process has (raised below, as
    # vecgate gets it), and is itself the child (no parent to look through)
    raise_open_file_limit()
    proc = subprocess.Popen(["setpriv", "--reuid=%d" % pw.pw_uid, "--regid=%d" % pw.pw_gid, "--init-groups", "--"] +
                            list(wrapper) + ["/usr/sbin/pgbouncer", os.path.join(d, "pgbouncer.ini")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            # as a login would set them: valgrind's gdbserver names its pipes
                            # after LOGNAME, and callgrind_control looks them up as postgres
                            env=dict(os.environ, USER=pw.pw_name, LOGNAME=pw.pw_name, HOME=pw.pw_dir))

    def stop():
        if proc.poll() is None:
            proc.terminate()
            proc.wait(10)
    _cleanups.append(stop)
    wait_port(port, timeout=start_timeout, proc=proc)
    # the pidfile names the pooler itself; it may appear just after the
    # port opens
    pidfile = os.path.join(d, "pgbouncer.pid")
    for _ in range(200):
        if os.path.exists(pidfile) and open(pidfile).read().strip():
            break
        time.sleep(0.05)
    with open(pidfile) as f:
        pid = int(f.read().split()[0])
    return port, pid


def pgbench(port, args, clients, db="app", user="app", password="app-pw"):
    cmd = ["pgbench", "-n", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-c", str(clients),
           "-j", str(min(2, clients)), "-T", str(SECONDS)] + args + [db]
    r = subprocess.run(cmd, env=dict(os.environ, PGPASSWORD=password), capture_output=True, text=True,
                       timeout=SECONDS * 4 + 60)
    m = re.search(r"^tps = ([0-9.]+)", r.stdout, re.M)
    failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
    aborted = "aborted" in r.stderr or "error" in r.stderr.lower()
    if r.returncode != 0 or not m or (failed and int(failed.group(1)) > 0) or aborted:
        return None, (r.stderr.strip().splitlines() or ["failed"])[-1]
    return float(m.group(1)), None


def cap_cpu(pid, share, name):
    """Hold process `pid` to `share` of one core (a CPU cgroup, 10 ms
    period), so that a run measures what the pooler gets done per unit of
    CPU instead of what the kernel and the other processes leave it.
    Needs root and a writable cgroup v1 `cpu` or v2 hierarchy; returns a
    description, or raises RuntimeError saying what is missing."""
    period = 10000
    quota = max(1000, int(period * share))
    v1 = "/sys/fs/cgroup/cpu"
    if os.path.isdir(v1) and os.access(v1, os.W_OK):
        d = os.path.join(v1, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "cpu.cfs_period_us"), "w") as f:
            f.write(str(period))
        with open(os.path.join(d, "cpu.cfs_quota_us"), "w") as f:
            f.write(str(quota))
        root_procs = os.path.join(v1, "cgroup.procs")
    elif os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        root = "/sys/fs/cgroup"
        with open(os.path.join(root, "cgroup.controllers")) as f:
            if "cpu" not in f.read().split():
                raise RuntimeError("the cgroup v2 hierarchy has no cpu controller")
        with open(os.path.join(root, "cgroup.subtree_control"), "w") as f:
            f.write("+cpu")
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "cpu.max"), "w") as f:
            f.write("%d %d" % (quota, period))
        root_procs = os.path.join(root, "cgroup.procs")
    else:
        raise RuntimeError("no writable CPU cgroup (run as root on a machine with cgroup v1 cpu or v2)")
    with open(os.path.join(d, "cgroup.procs"), "w") as f:
        f.write(str(pid))

    def release():
        try:
            with open(root_procs, "w") as f:
                f.write(str(pid))
        except OSError:
            pass  # the process is gone: the group empties by itself
        try:
            os.rmdir(d)
        except OSError:
            pass
    _cleanups.append(release)  # cleanups run newest first: before the pooler stops
    return "%s held to %.0f%% of one core (%s)" % (name, 100.0 * quota / period, d)


def cpu_seconds(pid):
    """User + system CPU time of a process so far (its own, not children's)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


# ---- a raw-protocol client: fresh connection, SCRAM, one query, with a hard deadline ----

def _msg(typ, body):
    return typ + struct.pack("!I", len(body) + 4) + body


def fresh_query(port, user, password, db, timeout, query="SELECT 1", app="bench-probe"):
    """A new connection to 127.0.0.1:port (SCRAM, md5 or plaintext login) that
    runs `query` (simple protocol) and leaves, all within `timeout` seconds:
    None when it was answered, else a short label of what went wrong."""
    deadline = time.monotonic() + timeout
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return "connect refused"
    except (socket.timeout, TimeoutError):
        return "connect timeout"
    except OSError as e:
        return "connect " + (e.strerror or type(e).__name__)
    stage = "login"
    try:
        with s:
            s.sendall(startup_packet({"user": user, "database": db, "application_name": app}))
            first_bare = "n=,r=" + base64.b64encode(os.urandom(18)).decode()
            while True:
                rem = deadline - time.monotonic()
                if rem <= 0:
                    raise socket.timeout()
                s.settimeout(rem)
                typ, body = read_message(s)
                if typ == b"E":
                    f = error_fields(body)
                    return "E %s %s (%s)" % (f.get("C", "?"), f.get("M", "")[:90], stage)
                if typ == b"Z":
                    if stage == "query":
                        try:
                            s.sendall(_msg(b"X", b""))
                        except OSError:
                            pass
                        return None
                    stage = "query"
                    s.sendall(_msg(b"Q", query.encode() + b"\0"))
                elif typ == b"R":
                    code = struct.unpack("!I", body[:4])[0]
                    if code == 10:  # SASL
                        cf = ("n,," + first_bare).encode()
                        s.sendall(_msg(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(cf)) + cf))
                    elif code == 11:  # SASLContinue
                        server_first = body[4:].decode()
                        f = dict(kv.split("=", 1) for kv in server_first.split(","))
                        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(f["s"]),
                                                     int(f["i"]))
                        ck = hmac.new(salted, b"Client Key", "sha256").digest()
                        final_wo = "c=biws,r=" + f["r"]
                        auth_msg = ",".join((first_bare, server_first, final_wo)).encode()
                        sig = hmac.new(hashlib.sha256(ck).digest(), auth_msg, "sha256").digest()
                        proof = base64.b64encode(bytes(a ^ b for a, b in zip(ck, sig))).decode()
                        s.sendall(_msg(b"p", (final_wo + ",p=" + proof).encode()))
                    elif code == 5:  # md5
                        inner = hashlib.md5((password + user).encode()).hexdigest().encode()
                        s.sendall(_msg(b"p", b"md5" + hashlib.md5(inner + body[4:8]).hexdigest().encode() + b"\0"))
                    elif code == 3:
                        s.sendall(_msg(b"p", password.encode() + b"\0"))
    except EOFError:
        return "closed (%s)" % stage
    except (socket.timeout, TimeoutError):
        return "timeout (%s)" % stage
    except ConnectionResetError:
        return "reset (%s)" % stage
    except OSError as e:
        return "%s (%s)" % (e.strerror or type(e).__name__, stage)


class Prober:
    """Starts fresh_query() every `every` s, each in its own thread (at most
    `cap` at once); records (start, end, error-or-None) of every finished
    attempt."""

    def __init__(self, port, every, deadline, cap, user="app", password="app-pw", db="app", query="SELECT 1",
                 app="bench-probe"):
        self.args = (port, user, password, db, deadline, query, app)
        self.every, self.cap = every, cap
        self.done = []
        self.running = 0
        self.skipped = 0
        self.lock = threading.Lock()
        self.halt = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _one(self):
        t = time.monotonic()
        err = fresh_query(*self.args)
        with self.lock:
            self.done.append((t, time.monotonic(), err))
            self.running -= 1

    def _loop(self):
        nxt = time.monotonic()
        while not self.halt.is_set():
            with self.lock:
                launch = self.running < self.cap
                if launch:
                    self.running += 1
                else:
                    self.skipped += 1
            if launch:
                threading.Thread(target=self._one, daemon=True).start()
            nxt += self.every
            self.halt.wait(max(0.0, nxt - time.monotonic()))

    def snapshot(self):
        with self.lock:
            return list(self.done), self.running

    def stop(self):
        self.halt.set()
        self.thread.join()
        return self.snapshot()
