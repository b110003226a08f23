"""The servers of the failover suite, which its tests start, crash, restart and promote
themselves: plain PostgreSQL (initdb, pg_ctl, pg_basebackup) and Patroni nodes. Every
process runs as the server user (PostgreSQL refuses root) and is killed by id; a test
registers each server with the `procs` fixture, which kills whatever is left at teardown,
and scripts/failover-tests.sh kills anything still running under its directory on exit."""

import json
import os
import pwd
import signal
import subprocess
import urllib.error
import urllib.request

import pgtest_util

# The longest any single wait may take: the suite asserts behaviour, not speed.
PATIENCE = 60.0

RUNAS = os.environ.get("FAILOVER_RUNAS") or pwd.getpwuid(os.getuid()).pw_name
PRELOAD = "pg_named_locks"


def _as_server_user():
    """subprocess arguments that run a child as the server user (root only: any other
    user runs its servers itself)."""
    if os.getuid() != 0:
        return {}
    pw = pwd.getpwnam(RUNAS)
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def make_dir(path):
    """A directory the server user owns (it creates data directories and sockets in it)."""
    os.makedirs(path, exist_ok=True)
    if os.getuid() == 0:
        pw = pwd.getpwnam(RUNAS)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def write_file(path, text, mode="w"):
    with open(path, mode, encoding="utf-8") as f:
        f.write(text)
    if os.getuid() == 0:
        pw = pwd.getpwnam(RUNAS)
        os.chown(path, pw.pw_uid, pw.pw_gid)


def run(cmd, timeout=PATIENCE, check=True, cwd=None):
    """Run a command as the server user; fail with its output when it fails."""
    p = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd or os.environ.get("FAILOVER_DIR") or "/",
        stdin=subprocess.DEVNULL,
        **_as_server_user(),
    )
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {p.returncode}:\n{p.stdout}{p.stderr}")
    return p


def spawn(cmd, logfile, cwd):
    """Start a long-running process as the server user, in a session of its own."""
    with open(logfile, "ab") as log:
        return subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            start_new_session=True,
            **_as_server_user(),
        )


def alive(pid):
    """Whether process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


def kill(pid, sig=signal.SIGKILL):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def processes_in(directory):
    """Pids of the live processes whose working directory is `directory` (a postmaster
    and all its children run in their data directory; a zombie has none)."""
    want = os.path.realpath(directory)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/cwd") == want:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def wait_until(pred, timeout=PATIENCE, what="condition", interval=0.1):
    """pgtest_util.wait_until, by default as patient as this suite."""
    return pgtest_util.wait_until(pred, timeout, what, interval)


class _Postgres:
    """What a Server and a PatroniNode share: a PostgreSQL data directory (self.data)
    and port (self.port), and a log (self.log)."""

    def postmaster_pid(self):
        """The pid in postmaster.pid, or None."""
        try:
            with open(os.path.join(self.data, "postmaster.pid"), encoding="ascii") as f:
                return int(f.readline())
        except (FileNotFoundError, ValueError):
            return None

    def log_text(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def dsn(self, dbname="postgres"):
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname}"

    def connect(self, dbname="postgres", autocommit=True, timeout=PATIENCE, **kw):
        """A connection, retried while the server refuses (starting up, in crash recovery)."""
        return pgtest_util.connect_retry(
            self.dsn(dbname), timeout=timeout, connect_timeout=5, autocommit=autocommit, **kw
        )


class Server(_Postgres):
    """One PostgreSQL data directory at DIR/data, listening on 127.0.0.1:port and in
    DIR/sock, logging to DIR/server.log."""

    def __init__(self, bindir, root, name, port):
        self.bindir, self.name, self.port = bindir, name, port
        self.dir = os.path.join(root, name)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.log = os.path.join(self.dir, "server.log")

    def __repr__(self):
        return f"Server({self.name}:{self.port})"

    def _prepare_dir(self):
        make_dir(self.dir)
        make_dir(self.sock)

    def _local_settings(self):
        return (
            f"listen_addresses = '127.0.0.1'\nport = {self.port}\nunix_socket_directories = '{self.sock}'\n"
            # also the application_name a standby's walreceiver connects with
            f"cluster_name = '{self.name}'\nlog_line_prefix = '%m [%p] '\n"
        )

    def init(self, *conf):
        """initdb, then the suite's settings and `conf` (postgresql.conf lines)."""
        self._prepare_dir()
        run([f"{self.bindir}/initdb", "-D", self.data, "-U", "postgres", "-E", "UTF8", "--locale=C", "-A", "trust"])
        write_file(
            os.path.join(self.data, "postgresql.conf"),
            self._local_settings() + "".join(f"{line}\n" for line in conf),
            mode="a",
        )

    def basebackup_from(self, primary):
        """A streaming standby of `primary` (pg_basebackup -R -X stream), not started."""
        self._prepare_dir()
        run(
            [
                f"{self.bindir}/pg_basebackup",
                "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres",
                "-D", self.data, "-R", "-X", "stream", "-c", "fast",
            ],
            timeout=120,
        )  # fmt: skip
        # postgresql.auto.conf: the copy's postgresql.conf names the primary's port
        write_file(os.path.join(self.data, "postgresql.auto.conf"), self._local_settings(), mode="a")

    def pg_ctl(self, *args, timeout=PATIENCE):
        return run([f"{self.bindir}/pg_ctl", "-D", self.data, *args], timeout=timeout + 10)

    def start(self):
        try:
            self.pg_ctl("-l", self.log, "-w", "-t", str(int(PATIENCE)), "start")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- {self.log}:\n{self.log_text()[-3000:]}") from None

    def restart(self, mode):
        self.pg_ctl("-l", self.log, "-w", "-t", str(int(PATIENCE)), "-m", mode, "restart")

    def stop(self, mode="fast"):
        self.pg_ctl("-w", "-t", str(int(PATIENCE)), "-m", mode, "stop")

    def promote(self):
        self.pg_ctl("-w", "-t", str(int(PATIENCE)), "promote")

    def kill_hard(self):
        """SIGKILL the postmaster and every process left in the data directory (its
        children do not outlive it for long anyway); return once all are gone."""
        kill_dir(self.data, self.postmaster_pid())


def become_subreaper():
    """Make this process the reaper of its orphaned descendants (a postmaster whose
    pg_ctl or Patroni exited), so that a killed server is reaped here at once: a zombie
    postmaster still "exists" for the next postmaster's postmaster.pid check."""
    import ctypes

    pr_set_child_subreaper = 36
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")


def gone(pid):
    """Whether no process `pid` exists any more, not even a zombie (reaped here when it
    is a child of this process)."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
    return not os.path.exists(f"/proc/{pid}")


def kill_dir(data, first_pid=None):
    """SIGKILL `first_pid` (a postmaster), then every process working in `data`, and
    wait until all of them are gone."""
    victims = set()
    if first_pid is not None and _cwd(first_pid) == os.path.realpath(data):
        kill(first_pid)
        victims.add(first_pid)

    def done():
        for p in processes_in(data):
            kill(p)
            victims.add(p)
        return all(gone(p) for p in victims) and not processes_in(data)

    wait_until(done, timeout=30, what=f"every process in {data} to exit", interval=0.05)


def _cwd(pid):
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


class PatroniNode(_Postgres):
    """One Patroni member: its YAML configuration, data directory and REST API; Patroni
    runs as the server user and starts its PostgreSQL (Debian's 15) itself, on port
    `pg_port`. Its log is Patroni's."""

    def __init__(self, root, scope, name, pg_port, api_port, etcd, bindir, preload=True):
        self.scope, self.name, self.port, self.api_port = scope, name, pg_port, api_port
        self.etcd, self.bindir, self.preload = etcd, bindir, preload
        self.dir = os.path.join(root, name)
        self.data = os.path.join(self.dir, "data")
        self.sock = os.path.join(self.dir, "sock")
        self.config = os.path.join(self.dir, "patroni.yml")
        self.log = os.path.join(self.dir, "patroni.log")
        self.pidfile = os.path.join(self.dir, "patroni.pid")
        self.proc = None

    def __repr__(self):
        return f"PatroniNode({self.name}: pg {self.port}, api {self.api_port})"

    def write_config(self, ttl, loop_wait, retry_timeout):
        make_dir(self.dir)
        make_dir(self.sock)
        params = {
            "wal_level": "replica",
            "hot_standby": "on",
            "max_wal_senders": 5,
            "max_replication_slots": 5,
            "wal_keep_size": "64MB",
            "unix_socket_directories": self.sock,
            "log_line_prefix": "%m [%p] ",
        }
        if self.preload:
            params["shared_preload_libraries"] = PRELOAD
        # JSON is YAML: no YAML library needed here.
        cfg = {
            "scope": self.scope,
            "name": self.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{self.api_port}", "connect_address": f"127.0.0.1:{self.api_port}"},
            "etcd3": {"hosts": [self.etcd]},
            "bootstrap": {
                "dcs": {
                    "ttl": ttl,
                    "loop_wait": loop_wait,
                    "retry_timeout": retry_timeout,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    "synchronous_mode": False,
                    "postgresql": {"use_pg_rewind": False, "use_slots": True, "parameters": params},
                },
                "initdb": [{"encoding": "UTF8"}, {"locale": "C"}],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{self.port}",
                "connect_address": f"127.0.0.1:{self.port}",
                "data_dir": self.data,
                "bin_dir": self.bindir,
                "pgpass": os.path.join(self.dir, "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres"},
                    "replication": {"username": "replicator"},
                },
                "parameters": params,
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication all 127.0.0.1/32 trust",
                ],
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }
        write_file(self.config, json.dumps(cfg, indent=2) + "\n")

    def start(self):
        self.proc = spawn(["/usr/bin/patroni", self.config], self.log, cwd=self.dir)
        write_file(self.pidfile, f"{self.proc.pid}\n")

    def api(self, path, timeout=2.0):
        """(HTTP status, parsed JSON body) of GET path on the REST API; (None, None) when
        it does not answer."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.api_port}{path}", timeout=timeout) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            body = e.read()
            try:
                return e.code, json.loads(body or b"null")
            except ValueError:
                return e.code, None
        except (OSError, ValueError):
            return None, None

    def is_primary(self):
        """The REST API says this member holds the leader lock and runs a primary."""
        return self.api("/primary")[0] == 200

    def state(self):
        return self.api("/patroni")[1] or {}

    def kill_hard(self):
        """SIGKILL Patroni, then its PostgreSQL (postmaster first, then every process in
        its data directory), so that nothing of this member runs any more."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired as e:
                raise AssertionError(f"{self} Patroni survived SIGKILL") from e
        if os.path.isdir(self.data):
            kill_dir(self.data, self.postmaster_pid())

    def stop(self):
        """At teardown: no graceful shutdown needed, the cluster is thrown away."""
        self.kill_hard()
