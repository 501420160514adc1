"""The SSH connector against a real sshd on a separate host (tests/helpers/remote_host.py): the
connection (ssh config, known_hosts, errors within the timeout, one per host), the remote agent
(version check, batched operations, pushed events) and reconnection after the link drops."""

from __future__ import annotations

import os
import select
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import paramiko
import pytest
from remote_host import RemoteHost

from conftest import wait_until
from experimaestro.connectors.agentclient import AgentStartError, close_agents
from experimaestro.connectors.ssh import SshConnector
from experimaestro.connectors.sshconnection import (
    ConnectionLost,
    HostKeyError,
    SshConnectError,
    close_all,
)
from experimaestro.version import __version__


@pytest.fixture(autouse=True)
def fresh_connections() -> Iterator[None]:
    """Each test starts without shared connections and leaves none."""
    close_agents()
    close_all()
    yield
    close_agents()
    close_all()


def set_host(ssh_home: Path, name: str, **options: Any) -> None:
    """Add a ``Host name`` block to the temporary ~/.ssh/config."""
    lines = "".join(f"    {key} {value}\n" for key, value in options.items())
    with open(ssh_home / ".ssh" / "config", "a") as f:
        f.write(f"Host {name}\n{lines}")


def remote_dir(remote_host: RemoteHost, name: str) -> str:
    """A fresh folder in the remote user's HOME (it exists only on the remote)."""
    path = f"{remote_host.home}/{name}-{time.monotonic_ns()}"
    remote_host.run(f"mkdir -p {shlex.quote(path)}")
    return path


def agents_running(remote_host: RemoteHost, client_port: Optional[int] = None) -> List[int]:
    """The agents running on the remote (those of the SSH connection from ``client_port`` if given:
    their SSH_CONNECTION names it)."""
    match = f"grep -q '^SSH_CONNECTION=[^ ]* {client_port} '" if client_port else "true"
    out = remote_host.run(
        "for p in $(pgrep -u \"$(id -u)\" -f '[e]xperimaestro agent'); do "
        f"tr '\\0' '\\n' < /proc/$p/environ 2>/dev/null | {match} && echo $p; done; true").stdout
    return [int(pid) for pid in out.split()]


# --- the connection ---


def test_connects_through_the_ssh_config_alias(remote_host: RemoteHost, ssh_home: Path) -> None:
    host = SshConnector(remote_host.alias, workspace=f"{remote_host.home}/xpm", python=remote_host.python)
    assert host.agent.hello["host"] == remote_host.alias
    assert host.agent.hello["version"] == __version__
    assert str(host.resolve("~")) == remote_host.home
    folder = remote_dir(remote_host, "files")
    host.mkdir(f"{folder}/a/b")
    assert remote_host.run(f"test -d {folder}/a/b", check=False).returncode == 0
    host.write_atomic(f"{folder}/a.txt", "written through the agent")
    host.write_atomic(f"{folder}/b.bin", b"\x00\xff")
    assert remote_host.run(f"cat {folder}/a.txt").stdout == "written through the agent"
    assert not Path(folder).exists(), "the remote folder is not visible locally"
    assert host.read_text(f"{folder}/a.txt") == "written through the agent"
    assert host.listdir(folder) == ["a", "a.txt", "b.bin"]
    assert [s and s.size for s in host.stat_many([f"{folder}/b.bin", f"{folder}/none"])] == [2, None]
    with pytest.raises(FileNotFoundError, match="none"):
        host.read_text(f"{folder}/none")
    done = host.run(["sh", "-c", "hostname; echo oops >&2; exit 3"])
    assert (done.returncode, done.stdout, done.stderr) == (3, f"{remote_host.alias}\n", "oops\n")


def test_proxyjump_goes_through_the_jump_hosts_connection(remote_host: RemoteHost, ssh_home: Path) -> None:
    # The remote is its own jump host: the second hop's TCP connection starts on the remote.
    set_host(ssh_home, "behind", HostName=remote_host.address, User=remote_host.user,
             IdentityFile=ssh_home / ".ssh" / "id_ed25519", ProxyJump=remote_host.alias)
    direct = SshConnector(remote_host.alias, python=remote_host.python)
    behind = SshConnector("behind", python=remote_host.python)
    assert behind.connection is not direct.connection
    assert behind.connection._jump is direct.connection, "the jump host's shared connection is used"
    direct_client = direct.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()[0]
    behind_client = behind.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()[0]
    assert direct_client != remote_host.address, "the direct connection comes from the controller"
    assert behind_client == remote_host.address, "the jumped connection comes from the jump host"
    # Two hops (ssh -J alias,alias): the second hop is reached through the first.
    set_host(ssh_home, "twohops", HostName=remote_host.address, User=remote_host.user,
             IdentityFile=ssh_home / ".ssh" / "id_ed25519",
             ProxyJump=f"{remote_host.alias},{remote_host.alias}")
    twohops = SshConnector("twohops", python=remote_host.python)
    assert twohops.connection._jump is not None
    assert twohops.connection._jump._jump is direct.connection
    assert twohops.run(["sh", "-c", "echo $SSH_CONNECTION"]).stdout.split()[0] == remote_host.address


def test_an_unknown_host_key_is_refused_with_how_to_add_it(remote_host: RemoteHost, ssh_home: Path
                                                          ) -> None:
    (ssh_home / ".ssh" / "known_hosts").write_text("")
    real = paramiko.HostKeys(str(remote_host.known_hosts)).lookup(remote_host.address)
    fingerprint = next(iter(real.values())).fingerprint
    with pytest.raises(HostKeyError) as caught:
        SshConnector(remote_host.alias, python=remote_host.python)
    message = str(caught.value)
    assert "not in known_hosts" in message and fingerprint in message
    assert f"ssh-keyscan {remote_host.address} >> {ssh_home}/.ssh/known_hosts" in message
    assert f"ssh {remote_host.alias}" in message
    assert (ssh_home / ".ssh" / "known_hosts").read_text() == "", "nothing accepted silently"


def test_a_changed_host_key_is_refused(remote_host: RemoteHost, ssh_home: Path) -> None:
    other = paramiko.Ed25519Key.from_private_key_file(str(remote_host.key))  # any other key
    (ssh_home / ".ssh" / "known_hosts").write_text(
        f"{remote_host.address} {other.get_name()} {other.get_base64()}\n")
    with pytest.raises(HostKeyError, match=f"CHANGED.*ssh-keygen -R {remote_host.address}"):
        SshConnector(remote_host.alias, python=remote_host.python)


def test_a_silent_host_is_an_error_within_the_connect_timeout(ssh_home: Path) -> None:
    # A host that accepts TCP and never speaks SSH (a hung sshd, a firewall that holds connections).
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        set_host(ssh_home, "silent", HostName="127.0.0.1", Port=server.getsockname()[1], User="me")
        start = time.monotonic()
        with pytest.raises(SshConnectError, match="no SSH session with silent .* connect timeout is 1"):
            SshConnector("silent", connect_timeout=1)
        assert time.monotonic() - start < 5


def test_a_closed_port_is_an_error_naming_host_and_port(ssh_home: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    set_host(ssh_home, "closed", HostName="127.0.0.1", Port=port, User="me")
    start = time.monotonic()
    with pytest.raises(SshConnectError, match=f"cannot reach closed .*127.0.0.1:{port}.*HostName and Port"):
        SshConnector("closed", connect_timeout=2)
    assert time.monotonic() - start < 5


def test_a_wrong_user_is_an_authentication_error(remote_host: RemoteHost, ssh_home: Path) -> None:
    start = time.monotonic()
    with pytest.raises(SshConnectError, match="authentication as 'nobody-here' .*Check `User`"):
        SshConnector(remote_host.alias, user="nobody-here", connect_timeout=5)
    assert time.monotonic() - start < 10


def test_a_refused_key_is_an_authentication_error(remote_host: RemoteHost, ssh_home: Path) -> None:
    key = ssh_home / ".ssh" / "id_other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    set_host(ssh_home, "otherkey", HostName=remote_host.address, User=remote_host.user, IdentityFile=key)
    start = time.monotonic()
    with pytest.raises(SshConnectError, match=f"authentication as '{remote_host.user}'.*{key}"):
        SshConnector("otherkey", connect_timeout=5)
    assert time.monotonic() - start < 10


def test_an_encrypted_key_without_a_terminal_says_to_use_the_agent(remote_host: RemoteHost,
                                                                  ssh_home: Path) -> None:
    key = ssh_home / ".ssh" / "id_secret"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(key)], check=True)
    set_host(ssh_home, "secret", HostName=remote_host.address, User=remote_host.user, IdentityFile=key)
    with pytest.raises(SshConnectError, match=f"{key} .*encrypted.*ssh-add {key}"):
        SshConnector("secret", connect_timeout=5)


def test_an_encrypted_key_on_a_terminal_asks_its_passphrase(remote_host: RemoteHost, ssh_home: Path
                                                            ) -> None:
    key = ssh_home / ".ssh" / "id_secret"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(key)], check=True)
    with open(remote_host.directory / "server" / "authorized_keys" / remote_host.user, "a") as f:
        f.write(Path(f"{key}.pub").read_text())  # one more key for the session's remote user
    set_host(ssh_home, "secret", HostName=remote_host.address, User=remote_host.user, IdentityFile=key)
    script = ("from experimaestro.connectors.ssh import SshConnector; "
              f"host = SshConnector('secret', python={remote_host.python!r}, connect_timeout=10); "
              "print('remote user:', host.run(['id', '-un']).stdout.strip())")
    master, slave = os.openpty()  # the child's terminal
    child = subprocess.Popen([sys.executable, "-c", script], stdin=slave, stdout=slave, stderr=slave,
                             start_new_session=True)
    os.close(slave)
    output = b""

    def read_until(text: bytes) -> bool:
        nonlocal output
        if select.select([master], [], [], 0.1)[0]:
            try:
                output += os.read(master, 4096)
            except OSError:  # EIO: the child has ended, its terminal is closed
                return True
        return text in output

    try:
        wait_until(lambda: read_until(f"Passphrase for {key}: ".encode()), timeout=20,
                   what="the passphrase prompt")
        os.write(master, b"secret\n")
        wait_until(lambda: read_until(b"\0"), timeout=30, what="the child to end")  # EIO then
        assert child.wait(timeout=30) == 0, output
    finally:
        child.kill()
        os.close(master)
    assert f"remote user: {remote_host.user}".encode() in output, output


def test_a_key_of_the_ssh_agent_is_used(remote_host: RemoteHost, ssh_home: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    key = tmp_path / "agent_key"  # not in ~/.ssh, and not an IdentityFile: only the agent has it
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = remote_host.directory / "server" / "authorized_keys" / remote_host.user
    line = Path(f"{key}.pub").read_text()
    with open(authorized, "a") as f:
        f.write(line)
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        wait_until(sock.exists, timeout=10, what="the ssh agent's socket")
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        subprocess.run(["ssh-add", "-q", str(key)], check=True, capture_output=True)
        set_host(ssh_home, "viaagent", HostName=remote_host.address, User=remote_host.user,
                 IdentityFile=tmp_path / "no-such-key")
        host = SshConnector("viaagent", python=remote_host.python, connect_timeout=10)
        assert host.run(["id", "-un"]).stdout.strip() == remote_host.user
    finally:
        agent.kill()
        agent.wait()
        authorized.write_text(authorized.read_text().replace(line, ""))


def test_one_connection_and_one_agent_per_host(remote_host: RemoteHost, ssh_home: Path) -> None:
    a = SshConnector(remote_host.alias, workspace="/tmp/a", python=remote_host.python)
    b = SshConnector(remote_host.alias, workspace="/tmp/b", python=remote_host.python)
    assert a.connection is b.connection and a.agent is b.agent
    folder = remote_dir(remote_host, "many")
    remote_host.run(f"cd {folder} && for i in $(seq 0 7); do echo $i > $i; done")
    answers: Dict[int, List[str]] = {}

    def ask(i: int) -> None:  # 8 threads at once on one channel: each answer goes to its asker
        connector = (a, b)[i % 2]
        answers[i] = [connector.read_text(f"{folder}/{i}") for _ in range(50)]

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == {i: [f"{i}\n"] * 50 for i in range(8)}
    port = a.connection.transport().sock.getsockname()[1]
    assert len(remote_host.sessions(client_port=port)) >= 1
    assert agents_running(remote_host, client_port=port) == [a.agent.hello["pid"]], "one agent"
    assert a.connection.generation == 1, "connected once"


# --- the agent ---


def test_no_experimaestro_on_the_remote_python_says_how_to_install(remote_host: RemoteHost,
                                                                  ssh_home: Path) -> None:
    with pytest.raises(AgentStartError,
                       match=f"not installed for /usr/bin/python3 .*/usr/bin/python3 -m pip install "
                             f"experimaestro=={__version__}"):
        SshConnector(remote_host.alias, python="/usr/bin/python3")
    with pytest.raises(AgentStartError, match="/no/python was not found on .*python="):
        SshConnector(remote_host.alias, python="/no/python")


def test_another_experimaestro_version_on_the_remote_is_refused(remote_host: RemoteHost,
                                                               ssh_home: Path) -> None:
    # A real second installation on the remote: a copy of the installed package whose version.py
    # says 0.0.1, first on the PYTHONPATH of a wrapper around the remote Python.
    other = remote_dir(remote_host, "other-xpm")
    remote_host.run(
        f"site=$({remote_host.python} -c 'import experimaestro, os; "
        f"print(os.path.dirname(experimaestro.__file__))') && cp -r \"$site\" {other}/experimaestro && "
        f"echo '__version__ = \"0.0.1\"' > {other}/experimaestro/version.py && "
        f"printf '#!/bin/sh\\nPYTHONPATH={other} exec {remote_host.python} \"$@\"\\n' > {other}/python && "
        f"chmod +x {other}/python")
    with pytest.raises(AgentStartError,
                       match=rf"runs experimaestro 0\.0\.1 with {other}/python, and this controller "
                             rf"runs {__version__}.*{other}/python -m pip install "
                             rf"experimaestro=={__version__}"):
        SshConnector(remote_host.alias, python=f"{other}/python")


def test_the_reuse_check_of_10000_jobs_is_one_round_trip(remote_host: RemoteHost, ssh_home: Path) -> None:
    root = remote_dir(remote_host, "jobs")
    remote_host.run(  # 10,000 job folders; every third one done, every fifth failed
        f"cd {root} && for i in $(seq 0 9999); do echo $i; done | xargs mkdir && "
        f"for i in $(seq 0 3 9999); do echo $i/job.done; done | xargs touch && "
        f"for i in $(seq 0 5 9999); do echo $i/job.failed; done | xargs touch", timeout=120)
    host = SshConnector(remote_host.alias, python=remote_host.python)
    before = host.agent.requests
    exists = host.exists_many([f"{root}/{i}/job.done" for i in range(10_000)])
    assert host.agent.requests == before + 1
    assert exists == [i % 3 == 0 for i in range(10_000)]
    states = host.job_states([(f"{root}/{i}", "job") for i in range(10_000)])
    assert host.agent.requests == before + 2
    assert states == ["done" if i % 3 == 0 else "error" if i % 5 == 0 else "unscheduled"
                      for i in range(10_000)]


def test_a_marker_written_remotely_is_pushed(remote_host: RemoteHost, ssh_home: Path) -> None:
    host = SshConnector(remote_host.alias, python=remote_host.python)
    events: List[Dict[str, Any]] = []
    host.subscribe(events.append)
    folder = remote_dir(remote_host, "job")
    host.watch(folder)
    remote_host.run(f"echo out > {folder}/job.out && echo '{{}}' > {folder}/job.failed.tmp && "
                    f"mv {folder}/job.failed.tmp {folder}/job.failed")
    wait_until(lambda: any(e["event"] == "file" for e in events), timeout=10, what="the pushed event")
    assert {e["path"] for e in events if e["event"] == "file"} == {f"{folder}/job.failed"}
    host.unwatch(folder)
    remote_host.run(f"touch {folder}/unwatched.done")
    host.watch(folder)
    remote_host.run(f"touch {folder}/watched.done")
    wait_until(lambda: any(e.get("path") == f"{folder}/watched.done" for e in events), timeout=10,
               what="the event of the folder watched again")
    assert not any(e.get("path") == f"{folder}/unwatched.done" for e in events)


def test_a_process_that_ends_is_pushed(remote_host: RemoteHost, ssh_home: Path) -> None:
    host = SshConnector(remote_host.alias, python=remote_host.python)
    events: List[Dict[str, Any]] = []
    host.subscribe(events.append)
    folder = remote_dir(remote_host, "proc")
    started = host.start_detached(["sh", "-c", "echo hello; exec sleep 60"], folder, f"{folder}/out",
                                  None)
    assert started.popen is None and started.record.host == remote_host.alias
    assert host.pids_alive([started.record]) == [True]
    host.watch_processes([started.record])  # also through a pidfd, as for a process of another agent
    wait_until(lambda: (st := host.stat_many([f"{folder}/out"])[0]) is not None and st.size > 0, timeout=10,
               what="the process's first line")  # killed before its echo, it would write nothing
    host.run(["kill", str(started.record.pid)])
    wait_until(lambda: len([e for e in events if e["event"] == "process_gone"]) == 2, timeout=10,
               what="both process_gone events")
    assert {e["pid"] for e in events} == {started.record.pid}
    assert -15 in {e["code"] for e in events}, "the agent reaped its child and sent its code"
    assert host.pids_alive([started.record]) == [False]
    assert host.read_text(f"{folder}/out") == "hello\n"


def test_a_remote_lock_excludes_another_holder(remote_host: RemoteHost, ssh_home: Path) -> None:
    host = SshConnector(remote_host.alias, python=remote_host.python)
    path = f"{remote_dir(remote_host, 'lock')}/x.lock"
    with host.lock(path):
        probe = remote_host.run(f"flock -n {path} true", check=False)
        assert probe.returncode == 1, "held on the remote"
        with pytest.raises(TimeoutError, match="held by another process"):
            host.lock(path).acquire(timeout=0.1)
    assert remote_host.run(f"flock -n {path} true", check=False).returncode == 0


def test_a_token_in_the_remote_workspace(remote_host: RemoteHost, ssh_home: Path) -> None:
    workspace = remote_dir(remote_host, "workspace")
    host = SshConnector(remote_host.alias, workspace=workspace, python=remote_host.python)
    assert host.token_state("gpu", 2) == {"total": 2, "available": 2, "holders": 0}
    assert remote_host.run(f"cat {workspace}/.experimaestro/tokens/gpu/total").stdout.strip() == "2"
    with pytest.raises(ValueError, match="absolute path on"):
        SshConnector(remote_host.alias, workspace="relative/xpm", connect=False)


def test_waiting_for_locks_does_not_hold_up_other_requests(remote_host: RemoteHost, ssh_home: Path
                                                           ) -> None:
    host = SshConnector(remote_host.alias, python=remote_host.python)
    path = f"{remote_dir(remote_host, 'locks')}/x.lock"
    taken: List[int] = []

    def take() -> None:
        with host.lock(path):
            taken.append(1)

    with host.lock(path):
        waiters = [threading.Thread(target=take) for _ in range(12)]  # more than the agent's pool
        for t in waiters:
            t.start()
        wait_until(lambda: len(host.agent._pending) == 12, timeout=10, what="12 waiting lock requests")
        answered: List[str] = []
        asker = threading.Thread(target=lambda: answered.append(str(host.resolve("~"))))
        asker.start()
        asker.join(timeout=10)
        assert answered == [remote_host.home], "a short request is served while locks are awaited"
    for t in waiters:
        t.join(timeout=20)
    assert len(taken) == 12


# --- reconnection ---


def test_reconnects_after_the_sessions_sshd_is_killed(remote_host: RemoteHost, ssh_home: Path) -> None:
    host = SshConnector(remote_host.alias, python=remote_host.python, reconnect_timeout=30)
    events: List[Dict[str, Any]] = []
    host.subscribe(events.append)
    folder = remote_dir(remote_host, "reconnect")
    host.watch(folder)
    job = host.start_detached(["sleep", "60"], folder, None, None)
    old_agent = host.agent.hello["pid"]
    failures: List[BaseException] = []

    def pending() -> None:  # not idempotent: must fail, not run twice
        try:
            host.run(["sleep", "20"])
        except BaseException as exc:
            failures.append(exc)

    runner = threading.Thread(target=pending)
    runner.start()
    wait_until(lambda: remote_host.run("pgrep -u \"$(id -u)\" -fx 'sleep 20'", check=False).returncode == 0,
               timeout=10, what="the pending command to run")
    port = host.connection.transport().sock.getsockname()[1]
    assert remote_host.kill_sessions(client_port=port)

    runner.join(timeout=10)
    assert not runner.is_alive()
    assert len(failures) == 1 and isinstance(failures[0], ConnectionLost), failures
    assert "lost during run" in str(failures[0])
    # Requests made meanwhile wait for the new connection and agent.
    assert str(host.resolve("~")) == remote_host.home
    assert host.agent.starts == 2 and host.connection.generation == 2
    assert host.agent.hello["pid"] != old_agent
    wait_until(lambda: {"event": "resync"} in events, timeout=10, what="the resync event")
    wait_until(lambda: old_agent not in agents_running(remote_host), timeout=10, what="the old agent to exit")
    # The job survived, and the new agent watches its folder and its process.
    assert host.pids_alive([job.record]) == [True]
    remote_host.run(f"touch {folder}/job.done")
    wait_until(lambda: any(e.get("path") == f"{folder}/job.done" for e in events), timeout=10,
               what="the marker event after reconnection")
    host.run(["kill", str(job.record.pid)])
    wait_until(lambda: any(e["event"] == "process_gone" for e in events), timeout=10,
               what="process_gone from the re-established process watch")


def test_a_killed_agent_is_restarted_on_the_same_connection(remote_host: RemoteHost, ssh_home: Path
                                                            ) -> None:
    host = SshConnector(remote_host.alias, python=remote_host.python)
    events: List[Dict[str, Any]] = []
    host.subscribe(events.append)
    remote_host.run(f"kill -9 {host.agent.hello['pid']}")
    wait_until(lambda: {"event": "resync"} in events, timeout=20, what="the new agent")
    assert str(host.resolve("~")) == remote_host.home
    assert host.agent.starts == 2
    assert host.connection.generation == 1, "the SSH connection was kept"


def test_a_host_key_changed_while_disconnected_stops_the_reconnection(remote_host: RemoteHost,
                                                                      ssh_home: Path) -> None:
    host = SshConnector(remote_host.alias, python=remote_host.python, reconnect_timeout=30)
    other = paramiko.Ed25519Key.from_private_key_file(str(remote_host.key))
    (ssh_home / ".ssh" / "known_hosts").write_text(
        f"{remote_host.address} {other.get_name()} {other.get_base64()}\n")
    port = host.connection.transport().sock.getsockname()[1]
    assert remote_host.kill_sessions(client_port=port)
    start = time.monotonic()
    with pytest.raises(HostKeyError, match="CHANGED"):
        host.resolve("~")
    assert time.monotonic() - start < 10, "refused at once, not after the reconnect timeout"


def test_a_host_that_stays_unreachable_fails_requests_after_the_reconnect_timeout(
        remote_host: RemoteHost, ssh_home: Path) -> None:
    # A key of this test only, removed from authorized_keys while disconnected: every reconnection
    # attempt fails (retried with backoff), and requests give up after reconnect_timeout.
    key = ssh_home / ".ssh" / "id_revoked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = remote_host.directory / "server" / "authorized_keys" / remote_host.user
    line = Path(f"{key}.pub").read_text()
    with open(authorized, "a") as f:
        f.write(line)
    try:
        set_host(ssh_home, "revoked", HostName=remote_host.address, User=remote_host.user,
                 IdentityFile=key)
        host = SshConnector("revoked", python=remote_host.python, reconnect_timeout=2, connect_timeout=5)
        authorized.write_text(authorized.read_text().replace(line, ""))
        port = host.connection.transport().sock.getsockname()[1]
        assert remote_host.kill_sessions(client_port=port)
        start = time.monotonic()
        with pytest.raises(ConnectionLost, match="lost for more than 2"):
            host.resolve("~")  # idempotent, yet not retried past the timeout
        assert time.monotonic() - start < 10
    finally:
        authorized.write_text(authorized.read_text().replace(line, ""))


def test_an_idempotent_request_cut_by_the_drop_is_sent_again(remote_host: RemoteHost, ssh_home: Path
                                                             ) -> None:
    host = SshConnector(remote_host.alias, python=remote_host.python, reconnect_timeout=30)
    fifo = f"{remote_dir(remote_host, 'fifo')}/pipe"
    remote_host.run(f"mkfifo {fifo}")
    old_agent = host.agent.hello["pid"]
    results: List[Any] = []

    def read() -> None:  # blocks in the agent until someone writes into the fifo
        try:
            results.append(host.read_text(fifo))
        except BaseException as exc:
            results.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    wait_until(lambda: host.agent._pending, timeout=10, what="the request to be pending")
    port = host.connection.transport().sock.getsockname()[1]
    assert remote_host.kill_sessions(client_port=port)
    wait_until(lambda: host.agent.starts == 2, timeout=20, what="the new agent")
    wait_until(lambda: old_agent not in agents_running(remote_host), timeout=10, what="the old agent to exit")
    remote_host.run(f"echo sent again > {fifo}", timeout=20)  # only the new agent reads it
    reader.join(timeout=10)
    assert results == ["sent again\n"]
