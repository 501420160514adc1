#!/usr/bin/env python3
"""A single-node Slurm cluster on loopback, for the tests and for trying experimaestro by hand.

``slurm-test/start [DIR]`` and ``slurm-test/stop [DIR]`` call this file (see slurm-test/README.md).
It uses the standard library only: it runs before any virtual environment exists.

Layout of DIR: ``etc/`` (slurm.conf, gres.conf, slurmdbd.conf, cluster.json), ``munge/`` (key, socket),
``state/`` (slurmctld), ``spool/`` (slurmd), ``mariadb/``, ``log/`` and ``pids/``. The pid files under
``pids/`` are written by this script ("PID STARTTIME"); stop signals those processes only.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import hashlib
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

HERE = Path(__file__).resolve().parent
DEFAULT_DIR = "/tmp/slurm-test"

#: Daemons with a port, their default port and the environment variable that changes it.
DEFAULT_PORTS = {"slurmctld": 6817, "slurmd": 6818, "slurmdbd": 6819, "mariadb": 3307}

#: What the node advertises (SlurmdParameters=config_overrides): 8 jobs at once on 2 real cores.
NODE_CPUS = 8
#: Generic resources ``gpu`` without device files, so that ``--gpus-per-node`` can be tested.
NODE_GPUS = 2
#: Array indices 0..MAX_ARRAY_SIZE-1 are accepted (``sbatch --array=0-999`` fits).
MAX_ARRAY_SIZE = 1001
#: Finished jobs stay in slurmctld's memory for MinJobAge s: room for many benchmark runs.
MAX_JOB_COUNT = 100000
#: Daemons stopped in this order (the reverse of the start order).
DAEMONS = ["slurmd", "slurmctld", "slurmdbd", "mariadb", "munged"]
#: Environment variable giving the default cluster directory.
DIR_ENV = "SLURM_TEST_DIR"


class ClusterError(Exception):
    """A failure with a message that names the cause and the fix."""


def port_env(name: str) -> str:
    return f"SLURM_TEST_{name.upper()}_PORT"


def log(message: str) -> None:
    print(f"slurm-test: {message}", file=sys.stderr, flush=True)


# -- processes -------------------------------------------------------------------------------------


def proc_stat(pid: int) -> Optional[tuple[str, int, int]]:
    """(state, ppid, starttime) of a process, or None when it does not exist."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = data[data.rindex(")") + 2:].split()
    return fields[0], int(fields[1]), int(fields[19])


def is_alive(pid: int, starttime: Optional[int] = None) -> bool:
    """True when ``pid`` runs (a zombie counts as dead) and, if given, started at ``starttime``."""
    info = proc_stat(pid)
    if info is None or info[0] in ("Z", "X"):
        return False
    return starttime is None or info[2] == starttime


def wait_for(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``predicate`` until true; False once ``timeout`` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def environ_of(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def descendants(roots: set[int]) -> set[int]:
    """``roots`` and every process below them (by parent pid)."""
    children: dict[int, list[int]] = {}
    for pid in all_pids():
        info = proc_stat(pid)
        if info is not None:
            children.setdefault(info[1], []).append(pid)
    found, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, []))
    return found


def kill_and_wait(pids: set[int], timeout: float) -> set[int]:
    """SIGTERM ``pids``, SIGKILL those alive after ``timeout`` s; returns those still alive."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        for pid in pids:
            if is_alive(pid):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
        wait_for(lambda: not any(is_alive(pid) for pid in pids), wait)
    return {pid for pid in pids if is_alive(pid)}


# -- the cluster directory -------------------------------------------------------------------------


class Cluster:
    """The files of one cluster under ``root``."""

    def __init__(self, root: Path):
        self.root = root
        self.etc = root / "etc"
        self.conf = self.etc / "slurm.conf"
        self.dbd_conf = self.etc / "slurmdbd.conf"
        self.profile_file = self.etc / "cluster.json"
        self.munge = root / "munge"
        self.munge_socket = self.munge / "munge.socket"
        self.logs = root / "log"
        self.pids = root / "pids"
        self.state = root / "state"
        self.spool = root / "spool"
        self.mariadb = root / "mariadb"
        self.host = socket.gethostname().split(".")[0]
        #: The node's name: the host's, or the cluster's with --cgroup (slurmd's cgroups are named
        #: after the node: two cgroup clusters on one host must not share them).
        self.node = self.host
        # One name per directory: job environments carry it (SLURM_CLUSTER_NAME), stop uses it.
        self.name = "xpm" + hashlib.sha1(str(root).encode()).hexdigest()[:8]

    # pid files ---------------------------------------------------------------------------------

    def pid_file(self, daemon: str) -> Path:
        return self.pids / f"{daemon}.pid"

    def recorded(self, daemon: str) -> Optional[tuple[int, int]]:
        try:
            pid, start = self.pid_file(daemon).read_text().split()
            return int(pid), int(start)
        except (FileNotFoundError, ValueError):
            return None

    def running(self, daemon: str) -> Optional[int]:
        """The pid of ``daemon`` if the process of its pid file still runs."""
        record = self.recorded(daemon)
        if record and is_alive(*record):
            return record[0]
        return None

    def running_daemons(self) -> dict[str, int]:
        return {d: pid for d in DAEMONS if (pid := self.running(d)) is not None}

    def profile(self) -> Optional[dict]:
        try:
            return json.loads(self.profile_file.read_text())
        except (FileNotFoundError, ValueError):
            return None

    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def log_tails(self, lines: int = 15) -> str:
        parts = []
        for path in sorted(self.logs.glob("*")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            if text:
                parts.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
        return "\n".join(parts)

    # starting ----------------------------------------------------------------------------------

    def spawn(self, daemon: str, argv: list[str]) -> int:
        """Start ``daemon`` in the foreground of its own session; its output goes to log/."""
        env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "HOME": "/root",
               "LANG": "C.UTF-8",
               # slurmd finds gres.conf beside the slurm.conf named here.
               "SLURM_CONF": str(self.conf)}
        with open(self.logs / f"{daemon}.out", "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=env, start_new_session=True, cwd=self.root)
        info = proc_stat(proc.pid)
        self.pid_file(daemon).write_text(f"{proc.pid} {info[2] if info else 0}\n")
        return proc.pid

    def expect(self, daemon: str, what: str, predicate: Callable[[], object], timeout: float) -> None:
        """Wait until ``predicate`` holds while ``daemon`` keeps running; ClusterError otherwise."""
        def done() -> object:
            if self.running(daemon) is None:
                raise ClusterError(f"{daemon} exited while waiting for {what}")
            return predicate()

        if not wait_for(done, timeout):
            raise ClusterError(f"{what}: not done after {timeout:.0f} s")


def port_taken(port: int, host: str) -> bool:
    """True when something listens on ``host:port`` (the daemons set SO_REUSEADDR too)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def node_memory_mb() -> int:
    """RealMemory for the node: about 95% of what ``slurmd -C`` reports."""
    result = subprocess.run(["slurmd", "-C"], capture_output=True, text=True)
    out = result.stdout
    if result.returncode != 0:
        raise ClusterError(f"`slurmd -C` failed (exit {result.returncode}): {result.stderr.strip()}")
    for item in out.split():
        if item.startswith("RealMemory="):
            return int(int(item.split("=", 1)[1]) * 0.95)
    raise ClusterError(f"`slurmd -C` printed no RealMemory: {out!r}")


def cgroup_plugin() -> str:
    """The cgroup plugin for --cgroup: v1 when its memory controller is mounted, else v2."""
    v1 = Path("/sys/fs/cgroup/memory")
    if v1.is_dir() and os.access(v1, os.W_OK):
        return "cgroup/v1"
    controllers = Path("/sys/fs/cgroup/cgroup.controllers")
    if controllers.exists() and "memory" in controllers.read_text().split():
        return "cgroup/v2"
    raise ClusterError("--cgroup: no writable memory cgroup controller on this machine "
                       "(/sys/fs/cgroup/memory or cgroup v2 with memory): start without --cgroup")


def write_configs(cluster: Cluster, ports: dict[str, int], accounting: bool, max_array_size: int,
                  cgroup: bool) -> None:
    c = cluster
    lines = [
        "# Written by slurm-test/start: a single-node test cluster on loopback.",
        f"ClusterName={c.name}",
        f"SlurmctldHost={c.host}(127.0.0.1)",
        f"SlurmctldPort={ports['slurmctld']}",
        f"SlurmdPort={ports['slurmd']}",
        "AuthType=auth/munge",
        "CryptoType=crypto/munge",
        f"AuthInfo=socket={c.munge_socket}",
        "SlurmUser=root",
        "SlurmdUser=root",
        f"StateSaveLocation={c.state}",
        f"SlurmdSpoolDir={c.spool}",
        f"SlurmctldPidFile={c.root / 'run' / 'slurmctld.pid'}",
        f"SlurmdPidFile={c.root / 'run' / 'slurmd.pid'}",
        f"SlurmctldLogFile={c.logs / 'slurmctld.log'}",
        f"SlurmdLogFile={c.logs / 'slurmd.log'}",
        "SlurmctldDebug=info",
        "SlurmdDebug=info",
        # Without cgroups by default; --cgroup enforces --mem (a job over it ends OUT_OF_MEMORY).
        f"ProctrackType=proctrack/{'cgroup' if cgroup else 'linuxproc'}",
        f"TaskPlugin=task/{'cgroup' if cgroup else 'none'}",
        "MpiDefault=none",
        "ReturnToService=2",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "DefMemPerCPU=1024",
        "SlurmdParameters=config_overrides",
        "SchedulerParameters=batch_sched_delay=0,sched_min_interval=0",
        "MinJobAge=3600",
        "KillWait=5",
        f"MaxArraySize={max_array_size}",
        f"MaxJobCount={MAX_JOB_COUNT}",
        "JobCompType=jobcomp/filetxt",
        f"JobCompLoc={c.logs / 'jobcomp.txt'}",
        "GresTypes=gpu",
        # A job of the hidden `urgent` partition preempts jobs of the others: requeued (or PREEMPTED
        # with --no-requeue), so that the launcher's handling of preemption can be tested.
        "PreemptType=preempt/partition_prio",
        "PreemptMode=REQUEUE",
    ]
    if accounting:
        lines += [
            "AccountingStorageType=accounting_storage/slurmdbd",
            "AccountingStorageHost=127.0.0.1",
            f"AccountingStoragePort={ports['slurmdbd']}",
            # slurmctld authenticates to slurmdbd through this munge socket.
            f"AccountingStoragePass={c.munge_socket}",
        ]
    lines += [
        f"NodeName={c.node} NodeHostname={c.host} NodeAddr=127.0.0.1 CPUs={NODE_CPUS} Boards=1 "
        f"SocketsPerBoard=1 CoresPerSocket={NODE_CPUS} ThreadsPerCore=1 RealMemory={node_memory_mb()} "
        f"Gres=gpu:{NODE_GPUS} State=UNKNOWN",
        f"PartitionName=debug Nodes={c.node} Default=YES MaxTime=INFINITE State=UP PriorityTier=1",
        f"PartitionName=gpu Nodes={c.node} MaxTime=INFINITE State=UP PriorityTier=1",
        f"PartitionName=urgent Nodes={c.node} MaxTime=INFINITE State=UP PriorityTier=2 Hidden=YES "
        "PreemptMode=OFF",
    ]
    c.conf.write_text("\n".join(lines) + "\n")
    c.conf.chmod(0o644)
    if cgroup:
        cgroup_conf = c.etc / "cgroup.conf"
        cgroup_conf.write_text(f"CgroupPlugin={cgroup_plugin()}\nConstrainRAMSpace=yes\n"
                               "ConstrainSwapSpace=yes\nAllowedSwapSpace=0\n")
        cgroup_conf.chmod(0o644)
    gres = c.etc / "gres.conf"
    gres.write_text(f"NodeName={c.node} Name=gpu File={','.join(map(str, fake_gpus(c)))}\n")
    gres.chmod(0o644)
    if accounting:
        dbd = [
            "AuthType=auth/munge",
            f"AuthInfo=socket={c.munge_socket}",
            "DbdAddr=127.0.0.1",
            f"DbdHost={c.host}",
            f"DbdPort={ports['slurmdbd']}",
            "SlurmUser=root",
            f"PidFile={c.root / 'run' / 'slurmdbd.pid'}",
            f"LogFile={c.logs / 'slurmdbd.log'}",
            "DebugLevel=info",
            "StorageType=accounting_storage/mysql",
            "StorageHost=127.0.0.1",
            f"StoragePort={ports['mariadb']}",
            "StorageUser=root",
            "StorageLoc=slurm_acct_db",
        ]
        fd = os.open(c.dbd_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(dbd) + "\n")
        c.dbd_conf.chmod(0o600)


def fake_gpus(c: Cluster) -> list[Path]:
    """Device files for the node's GPUs: slurmd drops a GPU without one. They are character devices
    with the numbers of /dev/null and /dev/zero (regular files if mknod is not allowed; slurmd then
    logs an error per file but counts them)."""
    dev = c.root / "dev"
    dev.mkdir(exist_ok=True)
    paths = []
    for index in range(NODE_GPUS):
        path = dev / f"gpu{index}"
        if not path.exists():
            try:
                os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3 + 2 * index))
            except OSError:
                path.touch()
        paths.append(path)
    return paths


def start_munged(c: Cluster) -> None:
    key = c.munge / "munge.key"
    if not key.exists():
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
        with os.fdopen(fd, "wb") as out:
            out.write(os.urandom(1024))
    c.spawn("munged", ["munged", "--foreground", "--force", f"--key-file={key}",
                       f"--socket={c.munge_socket}", f"--pid-file={c.root / 'run' / 'munged.pid'}",
                       f"--log-file={c.logs / 'munged.log'}", f"--seed-file={c.munge / 'munged.seed'}",
                       "--origin=127.0.0.1"])
    c.expect("munged", "the munge socket", c.munge_socket.exists, 15)


#: A small MariaDB: 20 MB on disk instead of 110 (the default redo log is 96 MB).
MARIADB_SMALL = ["--innodb-log-file-size=8M", "--innodb-buffer-pool-size=32M"]


def mariadb_client(c: Cluster, sql: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mariadb", "--no-defaults", f"--socket={c.mariadb / 'mysqld.sock'}",
                           "-uroot", "-e", sql], capture_output=True, text=True)


def start_mariadb(c: Cluster, port: int) -> None:
    data = c.mariadb / "data"
    if not (data / "mysql").is_dir():
        data.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mariadb-install-db", "--no-defaults", "--user=root", f"--datadir={data}",
             "--auth-root-authentication-method=normal", "--skip-test-db", *MARIADB_SMALL],
            capture_output=True, text=True)
        if result.returncode != 0:
            raise ClusterError(f"mariadb-install-db failed:\n{result.stdout}{result.stderr}")
    c.spawn("mariadb", [
        "mariadbd", "--no-defaults", "--user=root", f"--datadir={data}",
        f"--socket={c.mariadb / 'mysqld.sock'}", f"--port={port}", "--bind-address=127.0.0.1",
        f"--pid-file={c.root / 'run' / 'mariadb.pid'}", f"--log-error={c.logs / 'mariadb.log'}",
        "--skip-log-bin", "--performance-schema=OFF", *MARIADB_SMALL,
    ])
    c.expect("mariadb", "MariaDB to accept connections",
             lambda: mariadb_client(c, "SELECT 1").returncode == 0, 60)


def start_slurmdbd(c: Cluster, port: int) -> None:
    c.spawn("slurmdbd", ["slurmdbd", "-D"])
    c.expect("slurmdbd", f"slurmdbd to listen on port {port}", lambda: accepts(port), 30)
    listed = subprocess.run(["sacctmgr", "-n", "-P", "list", "cluster", "format=cluster"],
                            capture_output=True, text=True, env=c.env())
    if c.name not in listed.stdout.split():
        result = subprocess.run(["sacctmgr", "-i", "add", "cluster", c.name],
                                capture_output=True, text=True, env=c.env())
        if result.returncode != 0:
            raise ClusterError(f"sacctmgr add cluster {c.name} failed:\n{result.stdout}{result.stderr}")


def node_state(c: Cluster) -> str:
    """The node's state as sinfo prints it ("idle", "drained", ...); raises if it cannot run jobs."""
    result = subprocess.run(["sinfo", "-h", "-N", "-n", c.node, "-o", "%T|%E"],
                            capture_output=True, text=True, env=c.env())
    state, _, reason = result.stdout.strip().partition("|")
    if result.returncode == 0 and any(bad in state for bad in ("drain", "inval", "fail")):
        raise ClusterError(f"node {c.node} is {state}: {reason}")
    return state if result.returncode == 0 else ""


def start(args: argparse.Namespace) -> None:
    if os.geteuid() != 0:
        raise ClusterError("slurm-test/start runs the Slurm daemons as root: run it as root")
    c = Cluster(Path(args.dir).resolve())
    if not args.no_install:
        code = subprocess.run([str(HERE / "install")]).returncode
        if code != 0:
            raise ClusterError(f"slurm-test/install failed (exit {code}): see its message above")
    for sub in (c.root, c.etc, c.munge, c.logs, c.pids, c.state, c.spool, c.root / "run"):
        sub.mkdir(parents=True, exist_ok=True)
        sub.chmod(0o755)  # users other than root read slurm.conf and reach the munge socket
    with DirectoryLock(c):
        old = c.profile()
        running = c.running_daemons()
        ports = {}
        for name, default in DEFAULT_PORTS.items():
            given = getattr(args, f"{name}_port")
            from_env = os.environ.get(port_env(name))
            if given is None and from_env:
                given = int(from_env)
            if given is None and running and old:
                given = old["ports"][name]  # `start DIR` again: the running cluster's ports
            ports[name] = given if given is not None else default
        profile = {"accounting": args.accounting, "cgroup": args.cgroup, "ports": ports,
                   "max_array_size": args.max_array_size}
        if args.cgroup:
            c.node = c.name
        wanted = ["munged", "slurmctld", "slurmd"] + (["mariadb", "slurmdbd"] if args.accounting else [])
        if running:
            if old != profile:
                differences = ", ".join(f"{key} {was} (asked: {value})"
                                        for key, value in flat(profile).items()
                                        if (was := flat(old or {}).get(key)) != value)
                raise ClusterError(
                    f"a cluster with other settings runs in {c.root} ({differences}); "
                    f"run `slurm-test/stop {c.root}` first")
            if set(running) == set(wanted):
                wait_idle(c, args.timeout)
                log(f"cluster already running in {c.root}")
                print_exports(c)
                return
            log(f"some daemons of {c.root} stopped ({sorted(set(wanted) - set(running))}): restarting all")
            stop_cluster(c)
        check_ports(ports, args.accounting)
        write_configs(c, ports, args.accounting, args.max_array_size, args.cgroup)
        c.profile_file.write_text(json.dumps(profile) + "\n")
        # The node's state comes from slurm.conf, not from an earlier run (jobs are kept).
        for old_state in c.state.glob("node_state*"):
            old_state.unlink()
        t0 = time.monotonic()
        try:
            start_munged(c)
            if args.accounting:
                start_mariadb(c, ports["mariadb"])
                start_slurmdbd(c, ports["slurmdbd"])
            c.spawn("slurmctld", ["slurmctld", "-D", "-f", str(c.conf)])
            c.spawn("slurmd", ["slurmd", "-D", "-f", str(c.conf), "-N", c.node])
            wait_idle(c, args.timeout)
        except BaseException as exc:
            tails = c.log_tails()
            stop_cluster(c)
            if isinstance(exc, ClusterError):
                raise ClusterError(f"{exc}\nLogs of {c.root}:\n{tails}") from None
            raise
        log(f"cluster {c.name} up in {time.monotonic() - t0:.1f} s (node {c.node}, "
            f"accounting {'on' if args.accounting else 'off'}, cgroup {'on' if args.cgroup else 'off'}, "
            f"ports {ports})")
        print_exports(c)


#: Node states (sinfo %T) in which the node takes jobs; a busy node (cluster already running) counts.
READY = ("idle", "mixed", "allocated", "completing")


def flat(profile: dict) -> dict:
    """{"accounting": .., "slurmctld port": .., ...}: a profile as one level, for messages."""
    out = {key: value for key, value in profile.items() if key != "ports"}
    out.update({f"{name} port": port for name, port in profile.get("ports", {}).items()})
    return out


def wait_idle(c: Cluster, timeout: float) -> None:
    c.expect("slurmctld", f"node {c.node} to be idle",
             lambda: c.running("slurmd") is not None and node_state(c) in READY, timeout)


def check_ports(ports: dict[str, int], accounting: bool) -> None:
    names = ["slurmctld", "slurmd"] + (["slurmdbd", "mariadb"] if accounting else [])
    for name in names:
        # slurmctld and slurmd bind 0.0.0.0 (22.05 has no bind option); the others 127.0.0.1.
        host = "0.0.0.0" if name in ("slurmctld", "slurmd") else "127.0.0.1"
        if port_taken(ports[name], host):
            raise ClusterError(
                f"port {ports[name]} ({name}) is already in use: choose another with "
                f"--{name}-port N (or {port_env(name)}=N)")
    if len(set(ports[n] for n in names)) != len(names):
        raise ClusterError(f"the ports must differ: {', '.join(f'{n}={ports[n]}' for n in names)}")


def print_exports(c: Cluster) -> None:
    print(f"export SLURM_CONF={c.conf}")


# -- stopping --------------------------------------------------------------------------------------


def step_daemons(c: Cluster) -> set[int]:
    """slurmstepd processes of this cluster: those holding a socket bound in its spool directory
    (slurmd starts them with a clean environment, so that is what ties them to the cluster)."""
    inodes = set()
    try:
        with open("/proc/net/unix") as table:
            next(table)
            for line in table:
                fields = line.split()
                if len(fields) >= 8 and fields[7].startswith(f"{c.spool}/"):
                    inodes.add(f"socket:[{fields[6]}]")
    except OSError:
        return set()
    found = set()
    for pid in all_pids():
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    found.add(pid)
                    break
            except OSError:
                continue
    return found


def job_processes(c: Cluster) -> set[int]:
    """The job steps of this cluster: its slurmstepd processes, the processes below them, and any
    process of one of its jobs (SLURM_CLUSTER_NAME in its environment) that left that tree."""
    daemons = set(c.running_daemons().values())
    roots = step_daemons(c) - daemons
    for pid in all_pids():
        env = environ_of(pid)
        if env.get("SLURM_CLUSTER_NAME") == c.name and "SLURM_JOB_ID" in env:
            roots.add(pid)
    roots.discard(os.getpid())
    return {pid for pid in descendants(roots) if is_alive(pid)}


def stop_cluster(c: Cluster) -> None:
    """Cancel the jobs, kill what is left of their steps, then stop the daemons."""
    running = c.running_daemons()
    if "slurmctld" in running and "munged" in running:  # without munged, clients hang
        # Cancelled jobs are not restarted from slurmctld's saved state by the next start.
        try:
            jobs = subprocess.run(["squeue", "-h", "-o", "%A"], capture_output=True, text=True,
                                  env=c.env(), timeout=15).stdout.split()
            if jobs:
                subprocess.run(["scancel", *jobs], capture_output=True, env=c.env(), timeout=15)
                wait_for(lambda: not job_processes(c), 1.0)
        except subprocess.TimeoutExpired:
            log("slurmctld does not answer: its jobs are not cancelled, their processes are killed")
    # Steps that outlive the cancellation (a job ignoring SIGTERM; slurmd itself already gone) are
    # killed now rather than after KillWait.
    left = kill_and_wait(job_processes(c), 0.5)
    helpers = descendants(set(running.values())) - set(running.values())  # slurmctld's slurmscriptd
    for daemon in DAEMONS:  # one at a time, munged last: the others need it to shut down quickly
        if daemon in running:
            left |= kill_and_wait({running[daemon]}, 10.0)
    left |= kill_and_wait({pid for pid in helpers if is_alive(pid)}, 2.0)
    for daemon in DAEMONS:
        if c.running(daemon) is None:
            c.pid_file(daemon).unlink(missing_ok=True)
    remove_cgroups(c)
    if left:
        raise ClusterError(f"processes of {c.root} survived SIGKILL: {sorted(left)}")


def remove_cgroups(c: Cluster) -> None:
    """Remove the empty cgroups slurmd made for the node of a --cgroup cluster (slurm_NODE)."""
    if not (c.profile() or {}).get("cgroup"):
        return
    for top in Path("/sys/fs/cgroup").glob(f"*/slurm_{c.name}"):
        for path in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                path.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def stop(args: argparse.Namespace) -> None:
    c = Cluster(Path(args.dir).resolve())
    if not c.root.is_dir():
        log(f"no cluster in {c.root}")
        return
    if os.geteuid() != 0:
        raise ClusterError("slurm-test/stop signals the Slurm daemons, which run as root: run it as root")
    with DirectoryLock(c):
        running = c.running_daemons()
        stop_cluster(c)
        log(f"stopped {', '.join(running) or 'nothing (no daemon was running)'} in {c.root}")


class DirectoryLock:
    """An exclusive lock on DIR/.lock: one start or stop at a time on a directory."""

    def __init__(self, c: Cluster):
        self.path = c.root / ".lock"

    def __enter__(self) -> "DirectoryLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: object) -> None:
        os.close(self.fd)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="slurm-test/cluster.py", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_start = sub.add_parser("start", help="start (or keep) the cluster; prints `export SLURM_CONF=...`")
    p_start.add_argument("dir", nargs="?", default=os.environ.get(DIR_ENV, DEFAULT_DIR),
                         help=f"cluster directory (default: ${DIR_ENV} or {DEFAULT_DIR})")
    p_start.add_argument("--accounting", action="store_true",
                         help="also run MariaDB and slurmdbd, so that sacct works")
    p_start.add_argument("--cgroup", action="store_true",
                         help="track jobs with cgroups and enforce --mem (OUT_OF_MEMORY); the node is "
                              "then named after the cluster")
    for name, default in DEFAULT_PORTS.items():
        p_start.add_argument(f"--{name}-port", type=int, default=None, metavar="N",
                             help=f"port of {name} (default: ${port_env(name)} or {default})")
    p_start.add_argument("--max-array-size", type=int, default=MAX_ARRAY_SIZE, metavar="N",
                         help=f"MaxArraySize: indices 0..N-1 (default {MAX_ARRAY_SIZE})")
    p_start.add_argument("--timeout", type=float, default=60.0,
                         help="seconds to wait for the node to become idle (default 60)")
    p_start.add_argument("--no-install", action="store_true",
                         help="do not run slurm-test/install (packages already there)")
    p_stop = sub.add_parser("stop", help="stop the daemons and job steps of the cluster")
    p_stop.add_argument("dir", nargs="?", default=os.environ.get(DIR_ENV, DEFAULT_DIR),
                        help=f"cluster directory (default: ${DIR_ENV} or {DEFAULT_DIR})")
    args = parser.parse_args(argv)
    try:
        (start if args.command == "start" else stop)(args)
    except ClusterError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
