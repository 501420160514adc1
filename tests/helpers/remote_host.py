"""A real, separate "remote host" for the SSH tests: fixtures around ``ssh-test/`` (see its README).

``remote_host`` (session scope) starts a private sshd in its own network, mount and UTS namespaces, as
an unprivileged user whose HOME, /tmp and hostname are not the controller's, and stops it at the end.
``remote_slurm_host`` is the same with the ``slurm-test/`` cluster running inside it. ``ssh_home`` points
``$HOME`` at a temporary folder whose ``.ssh/config`` and ``.ssh/known_hosts`` describe the host, for
paramiko (the OpenSSH client reads ``~/.ssh`` from the password database, not from ``$HOME``).

When the host cannot start (not root, a missing tool, sshd failing), the tests that use it are skipped
with the reason, or fail with ``CI=true``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[2]
SSH_TEST = REPO / "ssh-test"
SLURM_TEST = REPO / "slurm-test"
#: Seconds allowed for ``ssh-test/start`` (seconds usually; more when Slurm comes up inside).
START_TIMEOUT = 180


def unavailable(reason: str) -> None:
    """Skip the test, or fail it under CI (where every component must be there)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"remote host unavailable under CI=true: {reason}")
    pytest.skip(f"remote host unavailable: {reason}")


def missing_requirement() -> Optional[str]:
    """Why a remote host cannot be started here, or None."""
    if not sys.platform.startswith("linux"):
        return "needs Linux namespaces"
    if os.geteuid() != 0:
        return "needs root (namespaces, a user, sshd): run the tests as root"
    for tool in ("ip", "unshare", "nsenter", "setpriv", "useradd", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"`{tool}` not found: run ssh-test/install as root"
    if not os.path.exists("/usr/sbin/sshd"):
        return "/usr/sbin/sshd not found (openssh-server): run ssh-test/install as root"
    return None


@dataclass
class RemoteHost:
    """A running remote host, as ``ssh-test/start`` described it."""

    directory: Path
    alias: str  #: the ``Host`` of ssh_config, also the remote's hostname
    address: str
    port: int
    user: str
    home: str  #: the remote user's HOME, which exists only on the remote
    key: Path  #: the client's private key
    known_hosts: Path
    ssh_config: Path  #: an ssh_config file with a ``Host alias`` entry (for ``ssh -F``)
    slurm_conf: Optional[str] = None
    _python: Optional[str] = field(default=None, repr=False)

    @classmethod
    def from_exports(cls, directory: Path, text: str) -> "RemoteHost":
        values = dict(line[len("export "):].split("=", 1) for line in text.splitlines()
                      if line.startswith("export "))
        values = {k: shlex.split(v)[0] for k, v in values.items()}
        return cls(
            directory=directory, alias=values["SSH_TEST_HOST"], address=values["SSH_TEST_ADDR"],
            port=int(values["SSH_TEST_PORT"]), user=values["SSH_TEST_USER"], home=values["SSH_TEST_HOME"],
            key=Path(values["SSH_TEST_KEY"]), known_hosts=Path(values["SSH_TEST_KNOWN_HOSTS"]),
            ssh_config=Path(values["SSH_TEST_CONFIG"]), slurm_conf=values.get("SSH_TEST_SLURM_CONF"),
        )

    @property
    def python(self) -> str:
        """A Python on the remote with this checkout installed (not editable): a venv from the system
        interpreter, built on first use and cached by a hash of the sources (about 10 s once)."""
        if self._python is None:
            self._python = self._ssh_test("python", str(self.directory), str(REPO), timeout=900).strip()
        return self._python

    def run(self, command: str, root: bool = False, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess:
        """Run a shell command on the remote host, not through SSH (nsenter, as the remote user in its
        HOME unless ``root``): for assertions about the remote side."""
        argv = [str(SSH_TEST / "exec"), str(self.directory), *(["--root"] if root else []), "--", "sh", "-c",
                command]
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=check)

    def sessions(self, client_port: Optional[int] = None) -> list[int]:
        """Pids of the sshd processes serving the remote user's connections (the one from the local
        ``client_port`` if given)."""
        args = ["sessions", str(self.directory)] + ([f"--client-port={client_port}"] if client_port else [])
        return [int(pid) for pid in self._ssh_test(*args).split()]

    def kill_sessions(self, client_port: Optional[int] = None) -> list[int]:
        """Kill (SIGKILL) the sshd processes serving the connection from ``client_port`` (all the user's
        connections if None): the client sees its connection drop, as when a network link fails."""
        args = ["sessions", str(self.directory), "--kill"]
        args += [f"--client-port={client_port}"] if client_port else []
        return [int(pid) for pid in self._ssh_test(*args).split()]

    def connect(self, known_hosts: Optional[Path] = None, **kwargs):
        """A paramiko client connected as the remote user, host key checked (RejectPolicy)."""
        import paramiko

        client = paramiko.SSHClient()
        client.load_host_keys(str(known_hosts or self.known_hosts))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        options = dict(hostname=self.address, port=self.port, username=self.user, key_filename=str(self.key),
                       look_for_keys=False, allow_agent=False, timeout=10, banner_timeout=10, auth_timeout=10)
        options.update(kwargs)
        try:
            client.connect(**options)
        except BaseException:
            client.close()
            raise
        return client

    def _ssh_test(self, *args: str, timeout: float = 60) -> str:
        proc = subprocess.run([sys.executable, str(SSH_TEST / "host.py"), *args], capture_output=True,
                              text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"ssh-test {args[0]} failed: {proc.stderr.strip()}")
        return proc.stdout


def start_remote_host(directory: Path, tmp_root: Path, *options: str) -> RemoteHost:
    """Run ``ssh-test/start DIR OPTIONS`` (skip or, with CI=true, fail when it cannot); ``tmp_root``, the
    session's temporary folder, is hidden from the remote."""
    reason = missing_requirement()
    if reason:
        unavailable(reason)
    argv = [str(SSH_TEST / "start"), str(directory), "--no-install", f"--owner-pid={os.getpid()}",
            f"--hide={tmp_root}", *options]  # the tests' folders, even with --basetemp outside /tmp
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=START_TIMEOUT)
    except subprocess.TimeoutExpired:
        subprocess.run([str(SSH_TEST / "stop"), str(directory)], capture_output=True, timeout=120)
        unavailable(f"ssh-test/start did not finish within {START_TIMEOUT} s")
    if proc.returncode != 0:
        unavailable(f"ssh-test/start failed: {proc.stderr.strip()}")
    return RemoteHost.from_exports(directory, proc.stdout)


def stop_remote_host(host: RemoteHost) -> None:
    proc = subprocess.run([str(SSH_TEST / "stop"), str(host.directory)], capture_output=True, text=True,
                          timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"ssh-test/stop {host.directory} failed: {proc.stderr.strip()}")


@pytest.fixture(scope="session")
def remote_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteHost]:
    """A separate host with a private sshd, for the whole session (about a second to start)."""
    host = start_remote_host(tmp_path_factory.mktemp("ssh-test"), tmp_path_factory.getbasetemp())
    yield host
    stop_remote_host(host)


@pytest.fixture(scope="session")
def remote_slurm_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RemoteHost]:
    """A separate host whose SSH sessions get ``SLURM_CONF`` of a Slurm cluster running inside it."""
    if not (SLURM_TEST / "start").exists():
        # The cluster scripts come with the slurm-test/ folder (branch slurm-infra): not a missing
        # component of the machine but of this checkout, so a skip even under CI.
        pytest.skip("no slurm-test/ in this checkout")
    host = start_remote_host(tmp_path_factory.mktemp("ssh-slurm-test"), tmp_path_factory.getbasetemp(),
                             "--slurm", f"--slurm-test={SLURM_TEST}")
    yield host
    stop_remote_host(host)


@pytest.fixture
def ssh_home(remote_host: RemoteHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary ``$HOME`` whose ``.ssh/config`` (Host ``remote_host.alias``), key and
    ``.ssh/known_hosts`` describe the remote host, as a user's would; returns it."""
    return point_home_at(remote_host, tmp_path / "home", monkeypatch)


def point_home_at(remote_host: RemoteHost, home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make ``home`` a ``$HOME`` whose ``.ssh`` describes ``remote_host`` (see ``ssh_home``), and
    point ``$HOME`` at it for the test."""
    ssh = home / ".ssh"
    ssh.mkdir(parents=True, mode=0o700)
    key = ssh / "id_ed25519"
    shutil.copyfile(remote_host.key, key)
    key.chmod(0o600)
    shutil.copyfile(remote_host.known_hosts, ssh / "known_hosts")
    (ssh / "config").write_text(
        f"Host {remote_host.alias}\n    HostName {remote_host.address}\n    Port {remote_host.port}\n"
        f"    User {remote_host.user}\n    IdentityFile {key}\n"
    )
    monkeypatch.setenv("HOME", str(home))
    return home


@contextlib.contextmanager
def fresh_workspace(host: RemoteHost) -> Iterator[str]:
    """A fresh experimaestro workspace in the remote user's HOME on ``host`` (only there),
    removed afterwards."""
    path = f"{host.home}/xpm-{time.monotonic_ns()}"
    try:
        yield path
    finally:
        host.run(f"rm -rf {shlex.quote(path)}", check=False)


@pytest.fixture
def remote_workspace(remote_host: RemoteHost) -> Iterator[str]:
    """A fresh experimaestro workspace in the remote user's HOME (only there), removed afterwards."""
    with fresh_workspace(remote_host) as path:
        yield path
