"""Sync-back and code staging across a real SSH connection to the separate remote host (ssh-test/):
the remote half runs as ``python -m experimaestro sync-send`` / ``stage-receive`` with the remote's
own installed experimaestro, on one paramiko channel each; the controller's files are not visible
there, so nothing can pass through a shared path."""

from __future__ import annotations

import hashlib
import io
import shlex
import tarfile
from pathlib import Path
from typing import Iterator

import pytest
from remote_host import RemoteHost
from ssh_streams import ExecStreams

from experimaestro.connectors.staging import stage, take_snapshot
from experimaestro.connectors.streams import RemoteCommandError
from experimaestro.connectors.sync import SyncError, pull, receive, SyncRequest
from test_staging import make_project


@pytest.fixture
def streams(remote_host: RemoteHost) -> Iterator[ExecStreams]:
    python = remote_host.python
    with remote_host.connect() as client:
        yield ExecStreams(client, python)


@pytest.fixture
def remote_dir(remote_host: RemoteHost, request: pytest.FixtureRequest) -> str:
    """An empty folder in the remote user's HOME, removed afterwards."""
    path = f"{remote_host.home}/sync-{hashlib.sha1(request.node.nodeid.encode()).hexdigest()[:10]}"
    remote_host.run(f"rm -rf {shlex.quote(path)} && mkdir -p {shlex.quote(path)}")
    yield path
    remote_host.run(f"rm -rf {shlex.quote(path)}")


def remote_python(host: RemoteHost, code: str) -> str:
    """Run Python code on the remote (as its user, not through SSH); its stdout."""
    return host.run(f"{shlex.quote(host.python)} -c {shlex.quote(code)}", timeout=120).stdout


def sync(streams: ExecStreams, remote: str, local: Path, **options):
    with streams.sync_streams(remote) as (to_sender, from_sender):
        return pull(local, to_sender, from_sender, **options)


def test_sync_back_is_incremental_across_the_namespace(remote_host: RemoteHost, streams: ExecStreams,
                                                       remote_dir: str, tmp_path: Path) -> None:
    remote_python(remote_host, f"""
import os
root = {remote_dir!r}
os.makedirs(root + "/sub")
for name in ("metrics.json", "sub/a.txt", "sub/b.txt"):
    open(os.path.join(root, name), "w").write(name)
os.symlink("sub/a.txt", root + "/last")
""")
    local = tmp_path / "job"
    first = sync(streams, remote_dir, local)
    assert sorted(first.paths) == ["last", "metrics.json", "sub/a.txt", "sub/b.txt"]
    assert (local / "sub" / "b.txt").read_text() == "sub/b.txt"
    assert (local / "last").readlink() == Path("sub/a.txt")
    assert sync(streams, remote_dir, local).files == 0, "the second sync sends nothing"
    remote_python(remote_host, f"open({remote_dir!r} + '/sub/b.txt', 'a').write('!')")
    assert sync(streams, remote_dir, local).paths == ["sub/b.txt"]
    assert (local / "sub" / "b.txt").read_text() == "sub/b.txt!"


def test_excluded_files_stay_remote_until_asked(remote_host: RemoteHost, streams: ExecStreams,
                                                remote_dir: str, tmp_path: Path) -> None:
    remote_python(remote_host, f"""
import os
os.makedirs({remote_dir!r} + "/checkpoints")
open({remote_dir!r} + "/model.ckpt", "w").write("weights")
open({remote_dir!r} + "/checkpoints/e1.pt", "w").write("w1")
open({remote_dir!r} + "/log.txt", "w").write("log")
""")
    local = tmp_path / "job"
    exclude = ["*.ckpt", "checkpoints"]
    assert sync(streams, remote_dir, local, exclude=exclude).paths == ["log.txt"]
    fetched = sync(streams, remote_dir, local, exclude=exclude, include_excluded=True)
    assert sorted(fetched.paths) == ["checkpoints/e1.pt", "model.ckpt"]
    assert (local / "model.ckpt").read_text() == "weights"


def test_thousand_small_files_and_a_100_mb_file(remote_host: RemoteHost, streams: ExecStreams,
                                                remote_dir: str, tmp_path: Path) -> None:
    digest = remote_python(remote_host, f"""
import hashlib, os
root = {remote_dir!r}
os.makedirs(root + "/many")
for i in range(1000):
    open(f"{{root}}/many/{{i:04}}.txt", "w").write(str(i))
data = os.urandom(100 * 2**20)
open(root + "/big.bin", "wb").write(data)
print(hashlib.sha256(data).hexdigest())
""").strip()
    local = tmp_path / "job"
    stats = sync(streams, remote_dir, local)
    assert stats.files == 1001 and stats.bytes == 100 * 2**20 + sum(len(str(i)) for i in range(1000))
    with open(local / "big.bin", "rb") as handle:
        assert hashlib.file_digest(handle, "sha256").hexdigest() == digest
    assert (local / "many" / "0999.txt").read_text() == "999"
    assert sync(streams, remote_dir, local).files == 0


def test_a_hostile_remote_sender_is_refused(streams: ExecStreams, tmp_path: Path) -> None:
    # A remote that answers with a tar escaping the folder (a compromised or buggy host).
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    code = f"import sys; sys.stdin.readline(); sys.stdout.buffer.write({buffer.getvalue()!r})"
    local = tmp_path / "inside" / "job"
    with streams.command([streams.python, "-c", code]) as (to_sender, from_sender):
        to_sender.write(SyncRequest().to_line())
        to_sender.flush()
        with pytest.raises(SyncError, match="outside the folder"):
            receive(local, from_sender, SyncRequest())
    assert not (tmp_path / "inside" / "escaped.txt").exists()


def test_a_missing_remote_folder_is_reported(streams: ExecStreams, tmp_path: Path) -> None:
    with pytest.raises(RemoteCommandError, match="is not a folder on this host"):
        with streams.sync_streams("/nonexistent/job") as (to_sender, from_sender):
            with pytest.raises(SyncError, match="no tar stream"):
                pull(tmp_path / "job", to_sender, from_sender)


def test_staging_sends_only_missing_files_and_the_job_imports_them(
        remote_host: RemoteHost, streams: ExecStreams, remote_dir: str, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    workspace = f"{remote_dir}/workspace"
    with streams.stage_streams(workspace) as (to_remote, from_remote):
        first = stage(take_snapshot([project]), to_remote, from_remote)
    assert len(first.sent) == 3
    with streams.stage_streams(workspace) as (to_remote, from_remote):
        assert stage(take_snapshot([project]), to_remote, from_remote).sent == []
    (project / "mypkg" / "model.py").write_text("VALUE = 43\n")
    with streams.stage_streams(workspace) as (to_remote, from_remote):
        changed = stage(take_snapshot([project]), to_remote, from_remote)
    assert len(changed.sent) == 1
    assert all(p.startswith(workspace + "/.experimaestro/code/snapshots/") for p in changed.pythonpath)
    pythonpath = shlex.quote(changed.pythonpath_value())
    job = remote_host.run(f"cd / && PYTHONPATH={pythonpath} {shlex.quote(remote_host.python)} -c "
                          f"'import mypkg.model; print(mypkg.model.VALUE)'")
    assert job.stdout == "43\n"
    find = "find . -type f -not -path '*/__pycache__/*' | sort"
    listing = remote_host.run(f"cd {shlex.quote(changed.pythonpath[0])} && {find}").stdout
    assert listing.split() == ["./experiment.py", "./mypkg/__init__.py", "./mypkg/model.py"], \
        "only the Python files (not data.csv, .git, .venv, environments, workspaces)"


def test_bench_ssh_tiny(remote_host: RemoteHost) -> None:
    # bench/ssh.py keeps working: the transfers, tiny sizes, on this session's host (the other
    # measurements: tests/test_bench.py).
    import json
    import subprocess
    import sys

    bench = Path(__file__).parents[1] / "bench" / "ssh.py"
    done = subprocess.run([sys.executable, str(bench), "--tiny", "--only", "sync_small,sync_large,stage",
                           "--host-dir", str(remote_host.directory)],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    for key in ("sync_20_files_s", "sync_20_files_unchanged_s", "sync_2mb_mb_per_s", "stage_200_files_s",
                "stage_unchanged_s", "sync_command_start_s"):
        assert isinstance(result[key], float) and result[key] > 0, (key, result)
