"""The SSH connector's copies and the commands on remote jobs, against the real sshd on a separate
host (tests/helpers/remote_host.py): ``copy_to_local`` / ``copy_from_local``, ``experimaestro jobs
sync ID [--all-files]`` and ``experimaestro jobs log -f ID`` run as the real command (``python -m
experimaestro``, in a subprocess whose HOME holds the ssh config), their errors included.

A remote job here is made by hand, as the scheduler will make it: a folder in the remote workspace,
and a local job folder holding ``.remote.json``."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest
from remote_host import RemoteHost

from conftest import wait_until
from experimaestro.connectors.remote_record import RemoteCopy, read_remote_record, write_remote_record
from experimaestro.connectors.ssh import SshConnector
from experimaestro.connectors.staging import stage, take_snapshot
from experimaestro.connectors.streams import RemoteCommandError
from test_ssh_connector import fresh_connections  # noqa: F401 (autouse: no shared connection left)
from test_staging import make_project

TYPE_ID = "pkg.Learn"
JOB_ID = "0123456789abcdef"


@pytest.fixture
def host(remote_host: RemoteHost, ssh_home: Path) -> SshConnector:
    return SshConnector(remote_host.alias, python=remote_host.python)


@pytest.fixture
def remote_dir(remote_host: RemoteHost) -> Iterator[str]:
    """A fresh folder in the remote user's HOME (it exists only there), removed afterwards."""
    path = f"{remote_host.home}/ops-{time.monotonic_ns()}"
    remote_host.run(f"mkdir -p {shlex.quote(path)}")
    yield path
    remote_host.run(f"rm -rf {shlex.quote(path)}")


def remote_files(remote_host: RemoteHost, root: str, files: dict[str, str]) -> None:
    """Write files (relative path -> text) under ``root`` on the remote, not through SSH."""
    script = "".join(f"mkdir -p \"$(dirname {shlex.quote(f'{root}/{p}')})\" && "
                     f"printf %s {shlex.quote(text)} > {shlex.quote(f'{root}/{p}')} && "
                     for p, text in files.items())
    remote_host.run(script + "true")


def local_job(workspace: Path, record: RemoteCopy, type_id: str = TYPE_ID) -> Path:
    """A local job folder whose remote copy is ``record``."""
    path = workspace / "jobs" / type_id / JOB_ID
    write_remote_record(path, record)
    return path


def unreachable_host(ssh_home: Path, alias: str) -> None:
    """A ``Host alias`` of the ssh config on a local port nobody listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with open(ssh_home / ".ssh" / "config", "a") as config:
        config.write(f"Host {alias}\n    HostName 127.0.0.1\n    Port {port}\n")


def xpm(*args: object, timeout: float = 60) -> subprocess.CompletedProcess:
    """The real command line (``python -m experimaestro``), HOME being the test's ssh home."""
    return subprocess.run([sys.executable, "-m", "experimaestro", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


# --- copy_to_local / copy_from_local ---


def test_copy_to_local_merges_a_tree(remote_host: RemoteHost, host: SshConnector, remote_dir: str,
                                     tmp_path: Path) -> None:
    remote_files(remote_host, remote_dir, {"a.txt": "remote a", "sub/b.txt": "remote b"})
    remote_host.run(f"mkdir {remote_dir}/empty")
    local = tmp_path / "copy"
    local.mkdir()
    (local / "a.txt").write_text("old a")
    (local / "mine.txt").write_text("only here")
    host.copy_to_local(remote_dir, local)
    assert (local / "a.txt").read_text() == "remote a"
    assert (local / "sub" / "b.txt").read_text() == "remote b"
    assert (local / "empty").is_dir(), "empty folders are copied too"
    assert (local / "mine.txt").read_text() == "only here", "a merge: local files stay"
    assert not any(p.name.endswith(".xpm-sync") for p in local.rglob("*"))


def test_copy_to_local_of_a_file_and_of_nothing(remote_host: RemoteHost, host: SshConnector,
                                                remote_dir: str, tmp_path: Path) -> None:
    remote_files(remote_host, remote_dir, {"metrics.json": "{}"})
    remote_host.run(f"touch -d '2020-01-02 03:04:05' {remote_dir}/metrics.json")
    into = tmp_path / "into"
    into.mkdir()
    host.copy_to_local(f"{remote_dir}/metrics.json", into)  # into a folder: keeps its name
    assert (into / "metrics.json").read_text() == "{}"
    host.copy_to_local(f"{remote_dir}/metrics.json", tmp_path / "new" / "m.json")
    copied = tmp_path / "new" / "m.json"
    assert copied.read_text() == "{}"
    assert time.gmtime(copied.stat().st_mtime)[:3] == (2020, 1, 2), "the modification time is kept"
    with pytest.raises(FileNotFoundError, match=f"{remote_dir}/none does not exist on {host.host}"):
        host.copy_to_local(f"{remote_dir}/none", tmp_path / "none")
    assert not (tmp_path / "none").exists()


def test_copy_from_local_merges_a_tree_and_a_file(remote_host: RemoteHost, host: SshConnector,
                                                  remote_dir: str, tmp_path: Path) -> None:
    remote_files(remote_host, remote_dir, {"theirs.txt": "stays", "a.txt": "old"})
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("new a")
    (source / "sub" / "b.txt").write_text("b")
    (source / "run.sh").write_text("#!/bin/sh\n")
    (source / "run.sh").chmod(0o755)
    host.copy_from_local(source, remote_dir)
    listing = remote_host.run(f"cd {remote_dir} && find . -type f | sort && cat a.txt && "
                              f"test -x run.sh && echo executable").stdout.split("\n")
    assert listing == ["./a.txt", "./run.sh", "./sub/b.txt", "./theirs.txt", "new aexecutable", ""]
    single = tmp_path / "single.txt"
    single.write_text("one file")
    host.copy_from_local(single, f"{remote_dir}/deep/er/copy.txt")  # parents are made
    host.copy_from_local(single, f"{remote_dir}/sub")  # into a folder: keeps its name
    assert remote_host.run(f"cat {remote_dir}/deep/er/copy.txt {remote_dir}/sub/single.txt").stdout == \
        "one fileone file"
    assert "xpm-copy" not in remote_host.run(f"find {remote_dir}").stdout


def test_copy_from_local_refuses_a_link_leading_outside(remote_host: RemoteHost, host: SshConnector,
                                                        remote_dir: str, tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    (source / "ok.txt").write_text("ok")
    (source / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(RemoteCommandError, match="sync-receive.*'passwd'.*outside the folder"):
        host.copy_from_local(source, f"{remote_dir}/target")
    assert remote_host.run(f"test -e {remote_dir}/target/passwd", check=False).returncode != 0


def test_the_connectors_streams_stage_code_on_the_shared_connection(
        remote_host: RemoteHost, host: SshConnector, remote_dir: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    channels = remote_host.sessions()
    with host.stage_streams(f"{remote_dir}/ws") as (to_remote, from_remote):
        staged = stage(take_snapshot([project]), to_remote, from_remote)
    assert len(staged.sent) == 3
    assert remote_host.sessions() == channels, "a channel of the shared connection, not a new one"
    job = host.run([remote_host.python, "-c", "import mypkg.model; print(mypkg.model.VALUE)"], cwd="/",
                   env={"PYTHONPATH": staged.pythonpath_value(), "PATH": "/usr/bin:/bin"})
    assert (job.returncode, job.stdout) == (0, "42\n"), job.stderr


# --- experimaestro jobs sync ---


def test_jobs_sync_fetches_again_and_all_files_on_demand(remote_host: RemoteHost, ssh_home: Path,
                                                         remote_dir: str, tmp_path: Path) -> None:
    remote_files(remote_host, remote_dir, {"metrics.json": "1", "model.ckpt": "weights",
                                           "logs/x.txt": "x"})
    workspace = tmp_path / "workspace"
    record = RemoteCopy(host=remote_host.alias, path=remote_dir, python=remote_host.python,
                        exclude=("*.ckpt",))
    job = local_job(workspace, record)
    done = xpm("jobs", "sync", "--workdir", workspace, JOB_ID[:6])
    assert done.returncode == 0, done.stderr
    assert f"Synced job {TYPE_ID}/{JOB_ID} from {remote_host.alias}:{remote_dir}: 2 file(s)" in done.stdout
    assert (job / "metrics.json").read_text() == "1" and (job / "logs" / "x.txt").read_text() == "x"
    assert not (job / "model.ckpt").exists(), "excluded by the record's patterns"
    synced = read_remote_record(job)
    assert synced is not None and synced.synced_at is not None
    assert synced.exclude == ("*.ckpt",) and synced.python == remote_host.python

    remote_files(remote_host, remote_dir, {"metrics.json": "22"})
    remote_host.run(f"rm {remote_dir}/logs/x.txt")
    done = xpm("jobs", "sync", "--workdir", workspace, JOB_ID)
    assert done.returncode == 0, done.stderr
    assert "1 file(s) (2 bytes) fetched, removed 1 the remote folder no longer has" in done.stdout
    assert (job / "metrics.json").read_text() == "22" and not (job / "logs" / "x.txt").exists()

    done = xpm("jobs", "sync", "--workdir", workspace, JOB_ID, "--all-files")
    assert done.returncode == 0, done.stderr
    assert (job / "model.ckpt").read_text() == "weights"
    assert xpm("jobs", "sync", "--workdir", workspace, JOB_ID).returncode == 0
    assert (job / "model.ckpt").exists(), "a later sync leaves fetched excluded files alone"


def test_jobs_sync_errors(remote_host: RemoteHost, ssh_home: Path, remote_dir: str, tmp_path: Path
                          ) -> None:
    workspace = tmp_path / "workspace"
    local = workspace / "jobs" / "pkg.Local" / "fedcba9876543210"
    local.mkdir(parents=True)
    done = xpm("jobs", "sync", "--workdir", workspace, "fedcba")
    assert done.returncode == 1
    assert "job pkg.Local/fedcba9876543210 ran on this machine (no .remote.json" in done.stderr

    job = local_job(workspace, RemoteCopy(host=remote_host.alias, path=remote_dir))
    (job / ".remote.json").write_text("{not json")
    done = xpm("jobs", "sync", "--workdir", workspace, JOB_ID)
    assert done.returncode == 1
    assert f"{job}/.remote.json is not a valid remote record" in done.stderr

    unreachable_host(ssh_home, "gone")
    local_job(workspace, RemoteCopy(host="gone", path=remote_dir, python=remote_host.python))
    done = xpm("jobs", "sync", "--workdir", workspace, JOB_ID)
    assert done.returncode == 1
    assert f"ran on gone (in {remote_dir}), which cannot be reached: cannot reach gone" in done.stderr

    # The remote folder was removed: the remote side's own error, not a broken stream.
    local_job(workspace, RemoteCopy(host=remote_host.alias, path=f"{remote_dir}/removed",
                                    python=remote_host.python))
    done = xpm("jobs", "sync", "--workdir", workspace, JOB_ID)
    assert done.returncode == 1
    assert f"{remote_dir}/removed is not a folder on this host" in done.stderr
    assert read_remote_record(job).synced_at is None, "a failed sync records no time"


# --- experimaestro jobs log -f ---

#: A job as the launcher runs it: writes to its stderr, waits for ``go``, writes again, then its
#: marker (renamed into place). Bounded: it gives up after about 60 s.
FAKE_JOB = ("echo 'line one' >&2; i=0; while [ ! -e go ] && [ $i -lt 3000 ]; do sleep 0.02; "
            "i=$((i+1)); done; echo 'line two' >&2; : > .marker && mv .marker Learn.done")


def start_remote_job(host: SshConnector, folder: str) -> None:
    started = host.start_detached(["sh", "-c", FAKE_JOB], folder, f"{folder}/Learn.out",
                                  f"{folder}/Learn.err")
    host.write_atomic(f"{folder}/Learn.pid", started.record.to_json())
    wait_until(lambda: "line one" in host.read_text(f"{folder}/Learn.err"), timeout=20,
               what="the remote job's first line")


def test_read_from_waits_on_the_host_in_one_request(host: SshConnector, remote_dir: str) -> None:
    start_remote_job(host, remote_dir)
    log, job = f"{remote_dir}/Learn.err", (remote_dir, "Learn")
    first = host.read_from(log, 0, job=job)
    assert (first.data, first.exists, first.ended) == (b"line one\n", True, False)
    answers = []
    requests = host.agent.requests
    waiting = threading.Thread(target=lambda: answers.append(host.read_from(log, first.offset, job=job,
                                                                            wait=60)))
    waiting.start()
    host.write_atomic(f"{remote_dir}/go", "")
    # The answer comes when the log grows, far before the 60 s: the agent watches the folder.
    wait_until(lambda: answers, timeout=15, what="the long-polled answer")
    waiting.join()
    assert answers[0].data.startswith(b"line two\n")
    wait_until(lambda: host.read_from(log, answers[0].offset, job=job).ended, timeout=15,
               what="the job's end")
    assert host.agent.requests - requests >= 2
    assert host.read_from(f"{remote_dir}/none", 0).exists is False


def test_jobs_log_follow_prints_a_running_remote_job_until_its_marker(
        remote_host: RemoteHost, host: SshConnector, remote_dir: str, tmp_path: Path) -> None:
    start_remote_job(host, remote_dir)
    workspace = tmp_path / "workspace"
    local_job(workspace, RemoteCopy(host=remote_host.alias, path=remote_dir, python=remote_host.python))
    follower = subprocess.Popen(
        [sys.executable, "-m", "experimaestro", "jobs", "log", "--workdir", str(workspace), JOB_ID, "-f"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.extend(iter(lambda: follower.stdout.read1(1 << 16), b"")))
    reader.start()
    try:
        wait_until(lambda: b"line one" in b"".join(output), timeout=30, what="the first line printed")
        assert follower.poll() is None, "still following: the job runs"
        host.write_atomic(f"{remote_dir}/go", "")
        assert follower.wait(timeout=30) == 0, follower.stderr.read().decode()
    finally:
        if follower.poll() is None:
            follower.kill()
        follower.wait()
        reader.join()
    assert b"".join(output) == b"line one\nline two\n"


def test_jobs_log_follow_errors(remote_host: RemoteHost, ssh_home: Path, remote_dir: str,
                                tmp_path: Path) -> None:
    workspace = tmp_path / "workspace"
    job = local_job(workspace, RemoteCopy(host=remote_host.alias, path=remote_dir,
                                          python=remote_host.python))
    done = xpm("jobs", "log", "--workdir", workspace, JOB_ID, "-f")
    assert done.returncode == 1
    assert f"job {TYPE_ID}/{JOB_ID} has no stderr log yet on {remote_host.alias} ({remote_dir}/Learn.err)" \
        in done.stderr
    (job / ".remote.json").write_text('{"host": 3}')
    done = xpm("jobs", "log", "--workdir", workspace, JOB_ID, "-f")
    assert done.returncode == 1 and "is not a valid remote record" in done.stderr
    # A finished job whose copy is synced is read locally, without a connection.
    unreachable_host(ssh_home, "gone-for-good")
    write_remote_record(job, RemoteCopy(host="gone-for-good", path=remote_dir))
    (job / "Learn.err").write_text("synced log\n")
    (job / "Learn.done").write_text("")
    done = xpm("jobs", "log", "--workdir", workspace, JOB_ID, "-f")
    assert (done.returncode, done.stdout) == (0, "synced log\n"), done.stderr
    os.unlink(job / "Learn.done")
    done = xpm("jobs", "log", "--workdir", workspace, JOB_ID, "-f")
    assert done.returncode == 1 and "ran on gone-for-good" in done.stderr
