"""The SSH tests' remote host (ssh-test/, tests/helpers/remote_host.py) is real and really separate:
strict host keys, another user, HOME, hostname and file system view, a remote Python with our version,
a way to drop a connection, and a stop that leaves nothing behind."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import paramiko
import psutil
import pytest
from remote_host import SSH_TEST, RemoteHost, start_remote_host

from conftest import wait_until


def remote(client: paramiko.SSHClient, command: str) -> tuple[int, str]:
    """Run ``command`` over SSH: (exit status, stdout)."""
    _, stdout, _ = client.exec_command(command, timeout=30)
    output = stdout.read().decode()
    return stdout.channel.recv_exit_status(), output


def test_connect_with_ssh_config_and_known_hosts(remote_host: RemoteHost, ssh_home: Path) -> None:
    # What a user's ~/.ssh gives paramiko: the alias resolves, the host key is known, the key is accepted.
    config = paramiko.SSHConfig.from_path(str(ssh_home / ".ssh" / "config")).lookup(remote_host.alias)
    client = paramiko.SSHClient()
    client.load_host_keys(os.path.expanduser("~/.ssh/known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(config["hostname"], port=int(config["port"]), username=config["user"],
                   key_filename=config["identityfile"], look_for_keys=False, allow_agent=False, timeout=10)
    with client:
        assert remote(client, "id -un") == (0, f"{remote_host.user}\n")


def test_unknown_host_key_is_refused(remote_host: RemoteHost, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        remote_host.connect(known_hosts=empty)


def test_changed_host_key_is_refused(remote_host: RemoteHost, tmp_path: Path) -> None:
    other = paramiko.Ed25519Key.from_private_key_file(str(remote_host.key))  # any other key will do
    changed = tmp_path / "known_hosts"
    changed.write_text(f"{remote_host.address} {other.get_name()} {other.get_base64()}\n")
    with pytest.raises(paramiko.BadHostKeyException):
        remote_host.connect(known_hosts=changed)


def test_remote_is_another_user_home_and_hostname(remote_host: RemoteHost) -> None:
    with remote_host.connect() as client:
        code, output = remote(client, 'id -u; echo "$HOME"; hostname')
    uid, home, hostname = output.split()
    assert code == 0
    assert int(uid) not in (0, os.getuid())
    assert home == remote_host.home != os.path.expanduser("~")
    assert hostname == remote_host.alias != socket.gethostname()
    assert not Path(home).exists(), "the remote HOME exists only on the remote"


def test_controller_files_are_not_visible_remotely(remote_host: RemoteHost, tmp_path: Path) -> None:
    secret = tmp_path / "written-by-the-controller.txt"
    secret.write_text("local")
    repository = Path(__file__).resolve().parents[1]
    with remote_host.connect() as client:
        for path in (secret, tmp_path, repository / "pyproject.toml", Path.home() / ".bashrc"):
            code, _ = remote(client, f"test -e {path}")
            assert code == 1, f"{path} is visible from the remote"
        assert remote(client, "ls -A /work")[1] == ""
    assert remote_host.run(f"test -e {secret}", check=False).returncode == 1


def test_remote_files_are_not_visible_locally(remote_host: RemoteHost) -> None:
    name = f"written-remotely-{uuid.uuid4().hex}"
    with remote_host.connect() as client:
        assert remote(client, f'echo remote > "$HOME/{name}" && echo remote > /tmp/{name}')[0] == 0
    for path in (Path(remote_host.home) / name, Path("/tmp") / name):
        assert not path.exists(), f"{path} written on the remote is visible locally"
        assert remote_host.run(f"cat {path}").stdout == "remote\n"


def test_remote_python_has_our_version_not_our_checkout(remote_host: RemoteHost) -> None:
    python = remote_host.python
    ours = subprocess.run([sys.executable, "-m", "experimaestro", "--version"], capture_output=True,
                          text=True, check=True).stdout
    with remote_host.connect() as client:
        assert remote(client, f"{python} -m experimaestro --version") == (0, ours)
        code, location = remote(client, f"{python} -c 'import experimaestro; print(experimaestro.__file__)'")
    assert code == 0
    assert location.startswith(str(Path(python).parents[1])), "installed in the venv, not an editable link"


def test_killing_the_sessions_sshd_drops_only_that_connection(remote_host: RemoteHost) -> None:
    with remote_host.connect() as victim, remote_host.connect() as bystander:
        port = victim.get_transport().sock.getsockname()[1]
        killed = remote_host.kill_sessions(client_port=port)
        assert killed
        wait_until(lambda: not victim.get_transport().is_active(), timeout=10, what="the connection to drop")
        with pytest.raises((paramiko.SSHException, EOFError, OSError)):
            victim.exec_command("true")
        assert remote(bystander, "echo alive") == (0, "alive\n")
        assert remote_host.sessions(client_port=port) == []


def test_stop_leaves_nothing_behind(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    directory = tmp_path / "host"
    host = start_remote_host(directory, tmp_path_factory.getbasetemp(), "--port=2222")
    state = json.loads((directory / "state.json").read_text())
    netns, sshd = f"xpmssh-{state['id']}", int((directory / "server" / "sshd.pid").read_text())
    again = subprocess.run([str(SSH_TEST / "start"), str(directory), "--port=2222",
                            f"--hide={tmp_path_factory.getbasetemp()}"],
                           capture_output=True, text=True, check=True)
    assert RemoteHost.from_exports(directory, again.stdout) == host, "a second start is a no-op"
    assert int((directory / "server" / "sshd.pid").read_text()) == sshd
    with host.connect() as client:  # a session, whose processes stop must end too
        assert remote(client, "sleep 600 >/dev/null 2>&1 & echo started")[0] == 0
        wait_until(lambda: host.run("pgrep -u \"$(id -u)\" -x sleep", check=False).returncode == 0,
                   what="the remote sleep")
        for _ in range(2):  # stop is idempotent
            stop = subprocess.run([str(SSH_TEST / "stop"), str(directory)], capture_output=True, text=True)
            assert stop.returncode == 0, stop.stderr
    assert netns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not Path(f"/sys/class/net/xs{state['id']}h").exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(state["user"])
    owned = [p.pid for p in psutil.process_iter(["uids"])
             if p.info["uids"].real == state["uid"] and _alive(p.pid)]
    assert owned == [], "processes of the remote user survived stop"
    assert not _alive(sshd)
    assert str(directory) not in Path("/proc/self/mountinfo").read_text()
    assert not directory.exists()


def _alive(pid: int) -> bool:
    """Running, not a zombie (PID 1 here reaps orphans late)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_slurm_inside_the_remote_through_ssh(remote_slurm_host: RemoteHost) -> None:
    with remote_slurm_host.connect() as client:
        code, output = remote(client, 'echo "$SLURM_CONF"; sbatch --wait --quiet -o out.txt --wrap hostname '
                                      '&& cat out.txt')
    assert code == 0, output
    assert output.split() == [remote_slurm_host.slurm_conf, remote_slurm_host.alias]


def test_start_refuses_a_folder_it_did_not_create(tmp_path: Path) -> None:
    # stop removes DIR: a folder with someone's files must never become one.
    (tmp_path / "precious.txt").write_text("mine")
    proc = subprocess.run([str(SSH_TEST / "start"), str(tmp_path), "--no-install"], capture_output=True,
                          text=True)
    assert proc.returncode == 1
    assert "not empty and not an ssh-test folder" in proc.stderr
    subprocess.run([str(SSH_TEST / "stop"), str(tmp_path)], capture_output=True, check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious.txt"]


def test_a_host_whose_owner_died_is_stopped_by_the_next_start(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    owner = subprocess.Popen(["sleep", "60"])  # stands for a test session that gets killed
    orphan = tmp_path / "orphan"
    subprocess.run([str(SSH_TEST / "start"), str(orphan), "--no-install", f"--owner-pid={owner.pid}",
                    f"--hide={tmp_path_factory.getbasetemp()}"], capture_output=True, check=True)
    user = json.loads((orphan / "state.json").read_text())["user"]
    owner.kill()
    owner.wait()
    # Any start of any host reaps the orphans.
    subprocess.run([str(SSH_TEST / "start"), str(tmp_path / "next"), "--no-install",
                    f"--hide={tmp_path_factory.getbasetemp()}"], capture_output=True, check=True)
    subprocess.run([str(SSH_TEST / "stop"), str(tmp_path / "next")], capture_output=True, check=True)
    assert not orphan.exists()
    with pytest.raises(KeyError):
        pwd.getpwnam(user)


def test_an_unavailable_host_skips_outside_ci_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    from remote_host import unavailable

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true: no sshd"):
        unavailable("no sshd")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="no sshd"):
        unavailable("no sshd")


def test_python_cache_keeps_venvs_used_lately(tmp_path: Path) -> None:
    """Pruning the remote Pythons never removes one used within the hour (another checkout's test
    session may be running jobs with it), only older ones beyond the 3 most recent."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("ssh_test_host", SSH_TEST / "host.py")
    assert spec is not None and spec.loader is not None
    host = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host)
    now = time.time()
    ages = {"a": 10, "b": 20, "c": 30, "d": 40, "old1": 7200, "old2": 9000}  # seconds since used
    for name, age in ages.items():
        complete = tmp_path / name / ".complete"
        complete.parent.mkdir()
        complete.write_text("built\n")
        os.utime(complete, (now - age, now - age))
    host.prune_python_cache(tmp_path, keep=3)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["a", "b", "c", "d"]
