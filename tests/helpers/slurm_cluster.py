"""Real Slurm clusters for the tests (a pytest plugin, loaded by tests/conftest.py).

Fixtures:
- ``slurm_plain`` / ``slurm_accounting`` (session): a cluster started by ``slurm-test/start`` once per
  session, without and with accounting (slurmdbd, so that ``sacct`` works), stopped at the end.
- ``slurm_cluster``: the same, parametrized over both profiles (a test using it runs twice).
- ``slurm_cgroup`` (session): a cluster with cgroups (``--mem`` enforced: OUT_OF_MEMORY), started
  only if a test asks for it.
- ``slurm_env``: ``slurm_cluster`` with ``SLURM_CONF`` set in ``os.environ`` for the test, so that
  the test process and every subprocess it starts talk to that cluster.
- ``fake_slurm``: puts a fake ``sbatch`` (or ``squeue``...) first on PATH, for faults a real Slurm cannot
  produce on demand; it delegates to the real command once its planned faults are used up.

When a cluster cannot run, the tests that need it are skipped with the reason, except with
``CI=true``, where that fails them: CI must run the Slurm tests. The fixture starts the cluster with
``slurm-test/start``, which installs the Debian packages when they are missing (root only).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Iterator, Optional

import pytest

SLURM_TEST = Path(__file__).resolve().parents[2] / "slurm-test"
PROFILES = ("plain", "accounting")
#: The error Slurm clients print when slurmctld does not answer in time (MessageTimeout).
SOCKET_TIMEOUT = "Socket timed out on send/recv operation"


def cluster_module() -> ModuleType:
    """slurm-test/cluster.py as a module (what start and stop run)."""
    spec = importlib.util.spec_from_file_location("slurm_test_cluster", SLURM_TEST / "cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on all addresses right now (the kernel's choice)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("0.0.0.0", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class SlurmCluster:
    """A running test cluster: its directory, ``SLURM_CONF`` and ports."""

    root: Path
    accounting: bool
    ports: dict[str, int]
    cgroup: bool = False
    conf: Path = field(init=False)

    def __post_init__(self) -> None:
        self.conf = self.root / "etc" / "slurm.conf"

    @property
    def profile(self) -> str:
        return "accounting" if self.accounting else "plain"

    def env(self, extra: Optional[dict[str, str]] = None) -> dict[str, str]:
        """``os.environ`` with this cluster's ``SLURM_CONF`` (and ``extra``)."""
        return {**os.environ, "SLURM_CONF": str(self.conf), **(extra or {})}

    def run(self, *argv: str, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess:
        """Run a Slurm client command (``sbatch``, ``squeue``...) against this cluster."""
        kwargs.setdefault("env", self.env())
        return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=60,
                              **kwargs)

    def sbatch(self, *argv: str) -> str:
        """Submit with ``sbatch --parsable``; returns the job id."""
        return self.run("sbatch", "--parsable", *argv).stdout.strip().split(";")[0]

    def job_state(self, jobid: str) -> str:
        """The job's state from ``scontrol`` (finished jobs stay there for an hour)."""
        out = self.run("scontrol", "-o", "show", "job", jobid, check=False).stdout
        match = re.search(r"\bJobState=(\S+)", out)
        return match.group(1) if match else ""

    def start_argv(self) -> list[str]:
        argv = [str(SLURM_TEST / "start"), str(self.root)]
        if self.accounting:
            argv.append("--accounting")
        if self.cgroup:
            argv.append("--cgroup")
        for name, port in self.ports.items():
            argv.append(f"--{name}-port={port}")
        return argv

    def log_dir(self) -> Path:
        return self.root / "log"


def cluster_unavailable() -> Optional[str]:
    """Why no cluster can be started here (None if it can be tried)."""
    if os.name != "posix" or not Path("/proc").is_dir():
        return "Slurm tests need Linux"
    if os.geteuid() != 0:
        return "Slurm tests need root (slurm-test/start runs the daemons as root)"
    missing = subprocess.run(["dpkg-query", "-W", "slurmctld"], capture_output=True).returncode != 0 \
        if shutil.which("dpkg-query") else shutil.which("slurmctld") is None
    if missing and not shutil.which("apt-get"):
        return "slurm packages missing and no apt-get: install Slurm 22.05, munge, slurmdbd and MariaDB"
    return None


def start_cluster(root: Path, accounting: bool, ports: Optional[dict[str, int]] = None,
                  timeout: float = 300, cgroup: bool = False) -> SlurmCluster:
    """Run ``slurm-test/start``; raises RuntimeError with its output when the cluster does not come up."""
    if ports is None:
        names = ["slurmctld", "slurmd"] + (["slurmdbd", "mariadb"] if accounting else [])
        ports = dict(zip(names, free_ports(len(names))))
    cluster = SlurmCluster(root, accounting, ports, cgroup)
    # A strict umask (as on hardened machines): users other than root must still reach the cluster.
    result = subprocess.run(cluster.start_argv(), capture_output=True, text=True, timeout=timeout,
                            umask=0o077)
    if result.returncode != 0 or f"export SLURM_CONF={cluster.conf}" not in result.stdout:
        raise RuntimeError(f"slurm-test/start failed (exit {result.returncode}):\n"
                           f"{result.stdout}{result.stderr}")
    return cluster


def stop_cluster(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(SLURM_TEST / "stop"), str(root)], capture_output=True, text=True,
                          timeout=120)


#: Test clusters live in /tmp/xpm-slurm-*, each with an ``owner`` file: "PID STARTTIME" of its pytest.
CLUSTER_PREFIX = "xpm-slurm-"


def make_cluster_dir(kind: str) -> Path:
    """A directory under /tmp that users other than root can traverse (SSH tests log in as one),
    owned by this test process (see ``reap_orphan_clusters``)."""
    root = Path(tempfile.mkdtemp(prefix=f"{CLUSTER_PREFIX}{kind}-", dir="/tmp"))
    root.chmod(0o755)
    _, _, starttime = cluster_module().proc_stat(os.getpid())
    (root / "owner").write_text(f"{os.getpid()} {starttime}\n")
    return root


def reap_orphan_clusters() -> list[Path]:
    """Stop and remove the test clusters whose test process is gone (a killed pytest cannot tear
    down); clusters of test sessions still running, or started by hand, are left alone."""
    module = cluster_module()
    reaped = []
    for root in Path("/tmp").glob(f"{CLUSTER_PREFIX}*"):
        try:
            pid, starttime = map(int, (root / "owner").read_text().split())
        except (OSError, ValueError):
            continue
        if not module.is_alive(pid, starttime):
            if stop_cluster(root).returncode == 0:
                shutil.rmtree(root, ignore_errors=True)
                reaped.append(root)
    return reaped


def unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI: there the Slurm tests must run."""
    if in_ci():
        pytest.fail(f"CI=true and no Slurm cluster: {reason}", pytrace=False)
    pytest.skip(reason)


class SessionCluster:
    """One profile's cluster for the whole session: started on first use, stopped at the end.
    ``get()`` skips the test (fails it under CI) when the cluster cannot run."""

    def __init__(self, accounting: bool, ports: Optional[dict[str, int]] = None, cgroup: bool = False):
        self.accounting = accounting
        self.ports = ports
        self.cgroup = cgroup
        self.cluster: Optional[SlurmCluster] = None
        self.error: Optional[str] = None

    def get(self) -> SlurmCluster:
        if self.cluster is None and self.error is None:
            self.error = cluster_unavailable()
            if self.error is None:
                root = make_cluster_dir("cgroup" if self.cgroup else "acct" if self.accounting else "plain")
                try:
                    self.cluster = start_cluster(root, self.accounting, self.ports, cgroup=self.cgroup)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:
                    self.error = str(exc)
                    stop_cluster(root)
                    shutil.rmtree(root, ignore_errors=True)
        if self.cluster is None:
            unavailable(self.error or "no cluster")
        return self.cluster

    def close(self) -> None:
        if self.cluster is not None:
            result = stop_cluster(self.cluster.root)
            if result.returncode != 0:
                raise RuntimeError(f"slurm-test/stop failed:\n{result.stdout}{result.stderr}")
            shutil.rmtree(self.cluster.root, ignore_errors=True)
            self.cluster = None


@pytest.fixture(scope="session")
def _slurm_sessions() -> Iterator[dict[str, SessionCluster]]:
    if cluster_unavailable() is None:
        reap_orphan_clusters()
    sessions = {"plain": SessionCluster(False), "accounting": SessionCluster(True),
                "cgroup": SessionCluster(False, cgroup=True)}
    yield sessions
    errors = []
    for session in sessions.values():
        try:
            session.close()
        except RuntimeError as exc:  # stop the others all the same
            errors.append(str(exc))
    if errors:
        raise RuntimeError("\n".join(errors))


@pytest.fixture(scope="session")
def slurm_plain(_slurm_sessions: dict[str, SessionCluster]) -> SlurmCluster:
    """The session's cluster without accounting (``sacct`` fails, as on some real sites)."""
    return _slurm_sessions["plain"].get()


@pytest.fixture(scope="session")
def slurm_accounting(_slurm_sessions: dict[str, SessionCluster]) -> SlurmCluster:
    """The session's cluster with MariaDB and slurmdbd: ``sacct`` works (about 1 s behind)."""
    return _slurm_sessions["accounting"].get()


@pytest.fixture(scope="session")
def slurm_cgroup(_slurm_sessions: dict[str, SessionCluster]) -> SlurmCluster:
    """A third cluster, started only for the tests that use it: jobs tracked with cgroups, so that
    ``--mem`` is enforced and a job over it ends OUT_OF_MEMORY (no accounting)."""
    return _slurm_sessions["cgroup"].get()


@pytest.fixture(params=PROFILES)
def slurm_cluster(request: pytest.FixtureRequest, _slurm_sessions: dict[str, SessionCluster]) -> SlurmCluster:
    """Each session cluster in turn: the test runs once without and once with accounting."""
    return _slurm_sessions[request.param].get()


@pytest.fixture
def slurm_env(slurm_cluster: SlurmCluster, monkeypatch: pytest.MonkeyPatch) -> SlurmCluster:
    """``slurm_cluster`` with its ``SLURM_CONF`` in ``os.environ`` for the test."""
    monkeypatch.setenv("SLURM_CONF", str(slurm_cluster.conf))
    return slurm_cluster


# -- counting what a client asks of slurmctld ------------------------------------------------------


class SlurmctldRpcCounter:
    """slurmctld's own count of RPCs by message type (``sdiag``, root only).

    ``reset()`` zeroes them (``sdiag -r``); ``counts()`` reads them, e.g.
    ``{"REQUEST_JOB_INFO": 3, "REQUEST_SUBMIT_BATCH_JOB": 1, ...}``. One ``sbatch`` is one
    REQUEST_SUBMIT_BATCH_JOB whatever the array size; ``squeue`` is REQUEST_JOB_INFO (plus
    REQUEST_PARTITION_INFO/REQUEST_FED_INFO); ``squeue -j``/``scontrol show job`` are
    REQUEST_JOB_INFO_SINGLE. ``sacct`` goes to slurmdbd and is not counted here. slurmd's own messages
    (registrations, job completions) and sdiag's (REQUEST_STATS_INFO) are counted too: compare the
    message types a test cares about.
    """

    #: What a client asks about jobs (the queries a launcher's watcher makes).
    JOB_QUERIES = ("REQUEST_JOB_INFO", "REQUEST_JOB_INFO_SINGLE", "REQUEST_JOB_USER_INFO")

    def __init__(self, cluster: SlurmCluster):
        self.cluster = cluster

    def reset(self) -> None:
        self.cluster.run("sdiag", "-r")

    def counts(self) -> dict[str, int]:
        out = self.cluster.run("sdiag").stdout
        section = out.split("Remote Procedure Call statistics by message type", 1)
        if len(section) < 2:
            raise RuntimeError(f"unexpected sdiag output:\n{out}")
        body = section[1].split("Remote Procedure Call statistics by user", 1)[0]
        return {m.group(1): int(m.group(2))
                for m in re.finditer(r"^\s*(\w+)\s+\(\s*\d+\)\s+count:(\d+)", body, re.M)}

    def job_queries(self) -> int:
        """How many job-state queries slurmctld answered since the last reset."""
        counts = self.counts()
        return sum(counts.get(name, 0) for name in self.JOB_QUERIES)


@pytest.fixture
def slurmctld_rpcs(slurm_cluster: SlurmCluster) -> SlurmctldRpcCounter:
    """An RPC counter on ``slurm_cluster``, reset at the start of the test."""
    counter = SlurmctldRpcCounter(slurm_cluster)
    counter.reset()
    return counter


# -- fake Slurm commands ---------------------------------------------------------------------------

_FAKE_COMMAND = '''#!{python}
# A fake `{name}` written by tests/helpers/slurm_cluster.py: it plays the planned faults of
# {plan}, one per call, then runs the real {real}. Every call is logged in {calls}.
import fcntl, json, os, subprocess, sys
with open({plan!r}, "r+") as f:
    fcntl.flock(f, fcntl.LOCK_EX)
    plan = json.load(f)
    fault = plan.pop(0) if plan else None
    f.seek(0); f.truncate(); json.dump(plan, f)
call = {{"argv": sys.argv[1:], "fault": fault}}
if fault is not None and fault["after_real"]:  # the real command acts, its answer is lost
    real = subprocess.run([{real!r}] + sys.argv[1:], capture_output=True, text=True)
    call["real"] = {{"code": real.returncode, "stdout": real.stdout, "stderr": real.stderr}}
with open({calls!r}, "a") as log:
    log.write(json.dumps(call) + "\\n")
if fault is None:
    os.execv({real!r}, [{real!r}] + sys.argv[1:])
sys.stdout.write(fault["stdout"]); sys.stderr.write(fault["stderr"])
sys.exit(fault["code"])
'''


class FakeSlurm:
    """Fake Slurm commands first on PATH: each plays its planned faults, then delegates to the real one."""

    def __init__(self, directory: Path, real_path: str):
        self.bin = directory
        self.real_path = real_path  # PATH without the fakes: where the real commands are

    def _paths(self, command: str) -> tuple[Path, Path]:
        return self.bin / f".{command}.plan.json", self.bin / f".{command}.calls.jsonl"

    def _install(self, command: str) -> None:
        script = self.bin / command
        if script.exists():
            return
        real = shutil.which(command, path=self.real_path)
        if real is None:
            raise RuntimeError(f"no real {command} on PATH to delegate to")
        plan, calls = self._paths(command)
        plan.write_text("[]")
        calls.touch()
        script.write_text(_FAKE_COMMAND.format(python=sys.executable, name=command, plan=str(plan),
                                               calls=str(calls), real=real))
        script.chmod(0o755)

    def fail(self, command: str, stderr: str, code: int = 1, times: int = 1, stdout: str = "",
             after_real: bool = False) -> None:
        """The next ``times`` calls of ``command`` print ``stderr`` and exit with ``code``.

        With ``after_real``, the real command runs first and its answer is replaced by the fault's:
        the job is submitted but the caller is told it failed (a reply lost to a timeout).
        """
        self._install(command)
        plan_path, _ = self._paths(command)
        plan = json.loads(plan_path.read_text())
        fault = {"stdout": stdout, "stderr": stderr, "code": code, "after_real": after_real}
        plan += [fault] * times
        plan_path.write_text(json.dumps(plan))

    def socket_timeout(self, command: str = "sbatch", times: int = 1, after_real: bool = False) -> None:
        """Slurm's transient error when slurmctld is too busy to answer in time; with
        ``after_real``, the command took effect all the same (sbatch: the job is queued)."""
        verb = "Batch job submission failed" if command == "sbatch" else "slurm_load_jobs error"
        self.fail(command, f"{command}: error: {verb}: {SOCKET_TIMEOUT}\n", times=times,
                  after_real=after_real)

    def calls(self, command: str) -> list[dict]:
        """Every call of the fake ``command`` so far: ``{"argv": [...], "fault": {...} or None}``,
        plus ``"real": {"code", "stdout", "stderr"}`` when the real command ran behind a fault."""
        _, calls = self._paths(command)
        if not calls.exists():
            return []
        return [json.loads(line) for line in calls.read_text().splitlines()]


@pytest.fixture
def fake_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSlurm:
    """Fake Slurm commands first on PATH for this test (and its subprocesses)."""
    directory = tmp_path / "fake-slurm-bin"
    directory.mkdir()
    real_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", f"{directory}{os.pathsep}{real_path}")
    return FakeSlurm(directory, real_path)
