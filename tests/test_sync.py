"""Incremental folder sync as one tar stream (experimaestro/connectors/sync.py), between two local
folders; the same functions run over SSH in test_ssh_sync.py."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest

from experimaestro.connectors.remote_record import (
    RECORD_NAME, RemoteCopy, RemoteRecordError, read_remote_record, write_remote_record,
)
from experimaestro.connectors.streams import thread_streams
from experimaestro.connectors.sync import (
    INDEX_NAME, SyncError, SyncRequest, is_excluded, pull_job, receive, receive_bytes, scan, send_bounded,
    serve_send, sync_folders,
)


def tree(root: Path) -> dict[str, bytes]:
    """Relative path -> content of every regular file under root (links as '-> target')."""
    result = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        if path.is_symlink():
            result[relative] = f"-> {os.readlink(path)}".encode()
        elif path.is_file():
            result[relative] = path.read_bytes()
    return result


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "remote-job"
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "metrics.json").write_text('{"loss": 1}')
    (root / "sub" / "a.txt").write_text("a")
    (root / "sub" / "deep" / "b.txt").write_text("b" * 5000)
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o755)
    (root / "last").symlink_to("sub/a.txt")
    return root


def test_first_sync_copies_files_links_modes_and_exact_mtimes(source: Path, tmp_path: Path) -> None:
    stats = sync_folders(source, tmp_path / "local")
    local = tmp_path / "local"
    assert tree(local) == tree(source)
    assert sorted(stats.paths) == ["last", "metrics.json", "run.sh", "sub/a.txt", "sub/deep/b.txt"]
    assert os.access(local / "run.sh", os.X_OK)
    for name in ("metrics.json", "sub/deep/b.txt"):
        assert (local / name).stat().st_mtime_ns == (source / name).stat().st_mtime_ns
    assert not list(local.rglob("*.xpm-sync")), "no temporary file left"
    assert not (local / INDEX_NAME).exists()


def test_second_sync_sends_nothing_and_a_change_sends_one_file(source: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    sync_folders(source, local)
    again = sync_folders(source, local)
    assert (again.files, again.bytes, again.deleted) == (0, 0, 0)
    # Same size, another content and mtime: the modification time alone tells it changed.
    (source / "sub" / "a.txt").write_text("A")
    os.utime(source / "sub" / "a.txt", ns=(time.time_ns(), time.time_ns() + 10**9))
    changed = sync_folders(source, local)
    assert changed.paths == ["sub/a.txt"]
    assert (local / "sub" / "a.txt").read_text() == "A"


def test_files_removed_on_the_sender_are_removed_but_not_the_record(source: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    sync_folders(source, local)
    write_remote_record(local, RemoteCopy("cluster", str(source)))
    (source / "sub" / "a.txt").unlink()
    (source / "last").unlink()
    stats = sync_folders(source, local)
    assert stats.deleted == 2
    assert not (local / "sub" / "a.txt").exists() and not (local / "last").is_symlink()
    assert read_remote_record(local) == RemoteCopy("cluster", str(source))


def test_excluded_files_stay_remote_unless_asked_and_are_then_kept(source: Path, tmp_path: Path) -> None:
    (source / "model.ckpt").write_text("weights")
    (source / "checkpoints").mkdir()
    (source / "checkpoints" / "epoch1.pt").write_text("w1")
    (source / "sub" / "deep" / "best.ckpt").write_text("w2")
    exclude = ["*.ckpt", "checkpoints"]
    local = tmp_path / "local"
    stats = sync_folders(source, local, exclude=exclude)
    assert not any(p.endswith((".ckpt", ".pt")) for p in stats.paths)
    assert not (local / "checkpoints").exists()
    fetched = sync_folders(source, local, exclude=exclude, include_excluded=True)
    assert sorted(fetched.paths) == ["checkpoints/epoch1.pt", "model.ckpt", "sub/deep/best.ckpt"]
    again = sync_folders(source, local, exclude=exclude)
    assert (again.files, again.deleted) == (0, 0)
    assert (local / "model.ckpt").read_text() == "weights", "fetched on demand, then kept"


@pytest.mark.parametrize("pattern, path, excluded", [
    ("*.ckpt", "model.ckpt", True), ("*.ckpt", "a/b/model.ckpt", True),
    ("checkpoints", "checkpoints/x", True), ("checkpoints/", "checkpoints/x", True),
    ("logs/*.txt", "logs/a.txt", True), ("*.ckpt", "ckpt.txt", False),
    ("checkpoints", "old-checkpoints/x", False),
])
def test_exclude_patterns(pattern: str, path: str, excluded: bool) -> None:
    assert is_excluded(path, [pattern]) is excluded


def test_a_missing_sender_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(SyncError, match="is not a folder on this host"):
        sync_folders(tmp_path / "gone", tmp_path / "local")


def test_many_small_files_and_a_large_one(tmp_path: Path) -> None:
    # (1,000 files and 100 MB: test_ssh_sync.py, across the SSH host; smaller here, as /tmp is slow)
    source = tmp_path / "src"
    (source / "many").mkdir(parents=True)
    for i in range(200):
        (source / "many" / f"{i:04}.txt").write_text(str(i))
    big = os.urandom(1 << 20) * 5
    (source / "big.bin").write_bytes(big)
    stats = sync_folders(source, tmp_path / "local")
    assert stats.files == 201
    assert (tmp_path / "local" / "big.bin").read_bytes() == big
    assert len(list((tmp_path / "local" / "many").iterdir())) == 200
    assert sync_folders(source, tmp_path / "local").files == 0


# --- Hostile or broken streams ------------------------------------------------------------------


def tar_stream(*members: tuple[tarfile.TarInfo, bytes], index: bool = True) -> io.BytesIO:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info.size = len(data) if info.isreg() else 0
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
        if index:
            data = json.dumps({"files": [], "links": [], "dirs": []}).encode()
            info = tarfile.TarInfo(INDEX_NAME)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


@pytest.mark.parametrize("bad, cause", [
    (member("/tmp/xpm-absolute-escape"), "not a plain relative path"),
    (member("../escape.txt"), "outside the folder"),
    (member("sub/../../escape.txt"), "outside the folder"),
    (member("evil", tarfile.SYMTYPE, "/etc"), "outside the folder"),
    (member("evil", tarfile.SYMTYPE, "../../etc"), "outside the folder"),
    (member("hard", tarfile.LNKTYPE, "ok.txt"), "hard link"),
    (member("dev", tarfile.CHRTYPE), "device or fifo"),
    (member("pipe", tarfile.FIFOTYPE), "device or fifo"),
    (member(RECORD_NAME), "record of the receiver"),
])
def test_hostile_members_are_refused(tmp_path: Path, bad: tarfile.TarInfo, cause: str) -> None:
    local = tmp_path / "inside" / "local"
    stream = tar_stream((member("ok.txt"), b"fine"), (bad, b"evil"), (member("after.txt"), b"x"))
    with pytest.raises(SyncError, match=cause):
        receive(local, stream, SyncRequest())
    assert (local / "ok.txt").read_bytes() == b"fine", "the members before stay, whole"
    assert not (local / "after.txt").exists()
    assert not (tmp_path / "inside" / "escape.txt").exists() and not (tmp_path / "escape.txt").exists()
    assert not Path("/tmp/xpm-absolute-escape").exists()
    assert sorted(p.name for p in local.iterdir()) == ["ok.txt"]


def test_a_file_through_a_local_link_leading_outside_is_refused(tmp_path: Path) -> None:
    local, outside = tmp_path / "local", tmp_path / "outside"
    local.mkdir()
    outside.mkdir()
    (local / "results").symlink_to(outside)  # already there, e.g. made by hand
    with pytest.raises(SyncError, match="a link leading outside"):
        receive(local, tar_stream((member("results/x.txt"), b"evil")), SyncRequest())
    assert list(outside.iterdir()) == []


def test_a_stream_cut_inside_a_file_leaves_the_old_file_whole(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (local / "big.bin").write_bytes(b"old")
    whole = tar_stream((member("first.txt"), b"1"), (member("big.bin"), b"n" * 100_000)).getvalue()
    with pytest.raises(SyncError, match="broke off|ended before"):
        receive(local, io.BytesIO(whole[:60_000]), SyncRequest())
    assert (local / "big.bin").read_bytes() == b"old"
    assert (local / "first.txt").read_bytes() == b"1"
    assert sorted(p.name for p in local.iterdir()) == ["big.bin", "first.txt"], "no temporary file"


def test_a_stream_without_its_index_is_reported_incomplete(tmp_path: Path) -> None:
    with pytest.raises(SyncError, match="ended before its index"):
        receive(tmp_path / "local", tar_stream((member("a.txt"), b"a"), index=False), SyncRequest())


def test_sender_side_reads_the_request_line(source: Path, tmp_path: Path) -> None:
    local = tmp_path / "local"
    sync_folders(source, local)
    request = scan(local)
    out = io.BytesIO()
    stats = serve_send(source, io.BytesIO(request.to_line()), out)
    assert stats.files == 0
    with pytest.raises(SyncError, match="protocol 99"):
        serve_send(source, io.BytesIO(b'{"xpm-sync": 99}\n'), io.BytesIO())


# --- The job's record ---------------------------------------------------------------------------


def test_remote_record_round_trip_and_bad_record(tmp_path: Path) -> None:
    job = tmp_path / "job"
    assert read_remote_record(job) is None
    record = RemoteCopy("cluster", "/scratch/xpm/jobs/t/abc", python="/opt/venv/bin/python",
                        exclude=("*.ckpt",))
    write_remote_record(job, record)
    assert read_remote_record(job) == record
    assert record.location() == "cluster:/scratch/xpm/jobs/t/abc"
    later = record.synced(123.5)
    write_remote_record(job, later)
    assert read_remote_record(job) == RemoteCopy("cluster", "/scratch/xpm/jobs/t/abc", 123.5,
                                                 "/opt/venv/bin/python", ("*.ckpt",))
    (job / RECORD_NAME).write_text("{not json")
    with pytest.raises(RemoteRecordError, match=r"\.remote\.json is not a valid remote record"):
        read_remote_record(job)


class LocalChannel:
    """A SyncChannel whose 'remote' is a local folder (the sender in a thread over pipes)."""

    def __init__(self) -> None:
        self.roots: list[str] = []

    def sync_streams(self, remote_root: str):
        self.roots.append(remote_root)
        return thread_streams(lambda instream, out: serve_send(remote_root, instream, out))


def test_pull_job_follows_the_record_and_updates_its_time(source: Path, tmp_path: Path) -> None:
    job = tmp_path / "workspace" / "jobs" / "pkg.Learn" / "abc"
    with pytest.raises(SyncError, match="has no .remote.json"):
        pull_job(job, LocalChannel())
    write_remote_record(job, RemoteCopy("cluster", str(source), exclude=("*.json",)))
    channel = LocalChannel()
    before = time.time()
    stats = pull_job(job, channel)  # the record's patterns
    assert channel.roots == [str(source)]
    assert "metrics.json" not in stats.paths and (job / "sub" / "a.txt").read_text() == "a"
    assert read_remote_record(job).synced_at >= before
    assert read_remote_record(job).exclude == ("*.json",)
    assert pull_job(job, channel, include_excluded=True).paths == ["metrics.json"]
    assert pull_job(job, channel, exclude=["*.txt"]).deleted == 0, "excluded now: kept"


def test_jobs_list_and_path_show_the_remote_copy_without_a_connection(tmp_path: Path) -> None:
    from test_cli_jobs import fake_job, invoke

    workdir = tmp_path / "ws"
    remote_job = fake_job(workdir, "pkg.Learn", "a" * 64, marker="done")
    local_job = fake_job(workdir, "pkg.Eval", "b" * 64, marker="done")
    write_remote_record(remote_job, RemoteCopy("cluster", "/scratch/xpm/jobs/pkg.Learn/" + "a" * 64, 12.5))
    listed = json.loads(invoke("jobs", "list", "--workdir", workdir, "--json").output)
    remotes = {entry["typeid"]: entry["remote"] for entry in listed}
    assert remotes == {"pkg.Learn": {"host": "cluster", "path": "/scratch/xpm/jobs/pkg.Learn/" + "a" * 64,
                                     "synced_at": 12.5},
                       "pkg.Eval": None}
    path = invoke("jobs", "path", "--workdir", workdir, "aaaa")
    assert path.output.strip() == str(remote_job)
    remote = invoke("jobs", "path", "--workdir", workdir, "--remote", "aaaa")
    assert remote.output.strip() == "cluster:/scratch/xpm/jobs/pkg.Learn/" + "a" * 64
    local = invoke("jobs", "path", "--workdir", workdir, "--remote", "bbbb")
    assert local.exit_code == 1 and "ran on this machine" in local.output
    (remote_job / RECORD_NAME).write_text("[]")
    broken = invoke("jobs", "path", "--workdir", workdir, "--remote", "aaaa")
    assert broken.exit_code == 1 and "not a valid remote record" in broken.output
    assert local_job.exists()


def test_odd_file_names_round_trip(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    names = [b"bad-\xff-name.txt", b"new\nline.txt", "été.txt".encode(), b"a" * 200 + b".txt", b"sp ace",
             b"back\\slash"]
    for name in names:
        with open(os.path.join(bytes(source), name), "w") as handle:
            handle.write("x")
    local = tmp_path / "local"
    assert sync_folders(source, local).files == len(names)
    assert sorted(os.listdir(bytes(local))) == sorted(names)
    assert sync_folders(source, local).files == 0


def test_files_vanishing_while_the_folder_is_sent_are_left_out(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A running job renames its temporary files while its folder is sent: a file listed, then gone
    # before its turn, is left out instead of failing the sync. The renames happen once the sender
    # has listed the folder and read the first temporary file's size, before it opens it.
    from experimaestro.connectors import sync

    source, local = tmp_path / "src", tmp_path / "local"
    source.mkdir()
    (source / "000-big.bin").write_bytes(b"b" * (1 << 20))  # listed and sent first (sorted)
    temporaries = [source / f"zz-{i}.tmp" for i in range(20)]
    for path in temporaries:
        path.write_text("soon renamed")
    walk = sync._walk

    def walk_then_rename(root: Path, exclude: object):
        for relative, st in walk(root, exclude):
            if relative.startswith("zz-") and temporaries[0].exists():
                for path in temporaries:
                    path.replace(source / "result.txt")
            yield relative, st

    monkeypatch.setattr(sync, "_walk", walk_then_rename)
    for answer in ("stream", "bounded"):
        for path in temporaries:
            path.write_text("soon renamed")
        copy = local / answer
        if answer == "stream":
            stats = sync_folders(source, copy)
        else:
            request = scan(copy)
            stats = receive_bytes(copy, send_bounded(source, request, 1 << 30), request)
        assert not any(p.exists() for p in temporaries)
        assert "000-big.bin" in stats.paths and not any(p.startswith("zz-") for p in stats.paths)
        monkeypatch.setattr(sync, "_walk", walk)
        sync_folders(source, copy)
        assert tree(copy) == tree(source)
        monkeypatch.setattr(sync, "_walk", walk_then_rename)


def test_a_bounded_answer_is_the_same_copy_in_one_piece(source: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bounded"
    request = scan(copy)
    data = send_bounded(source, request, 1 << 20)
    assert data is not None
    stats = receive_bytes(copy, data, request)
    assert tree(copy) == tree(source) and stats.files > 0
    # Nothing changed: the next answer carries no file.
    request = scan(copy)
    assert receive_bytes(copy, send_bounded(source, request, 1 << 20), request).files == 0


def test_a_bounded_answer_over_its_limit_is_refused(source: Path) -> None:
    (source / "big.bin").write_bytes(os.urandom(4096))
    assert send_bounded(source, scan(source / "nothing-here"), 4096) is None  # the files' bytes
    assert send_bounded(source, scan(source / "nothing-here"), 1 << 20) is not None


@pytest.mark.parametrize("name, kind, value, message", [
    ("../escape.txt", "file", 1, "points outside the folder"),
    ("/etc/passwd", "file", 1, "not a plain relative path"),
    (".remote.json", "file", 1, "a record of the receiver"),
    ("up", "link", "../../outside", "outside the folder"),
    ("dev", "a device or fifo", 0, "is never extracted"),
])
def test_a_bounded_answer_is_checked_as_a_tar_stream_is(tmp_path: Path, name: str, kind: str,
                                                        value: object, message: str) -> None:
    import zlib

    from experimaestro.connectors.sync import BUNDLE_MAGIC

    header = {"members": [[name, kind, 0o644, 0, value]], "index": {"files": [], "links": [], "dirs": []}}
    data = zlib.compress(BUNDLE_MAGIC + json.dumps(header).encode() + b"\n" + b"x")
    with pytest.raises(SyncError, match=message):
        receive_bytes(tmp_path / "copy", data, scan(tmp_path / "copy"))
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "copy" / ".remote.json").exists()


def test_a_damaged_bounded_answer_is_a_sync_error(tmp_path: Path) -> None:
    with pytest.raises(SyncError, match="damaged sync answer"):
        receive_bytes(tmp_path / "copy", b"not zlib", scan(tmp_path / "copy"))


@pytest.mark.parametrize("answer", ["stream", "bounded"])
def test_a_file_replaces_a_folder_of_the_same_name(tmp_path: Path, answer: str) -> None:
    source, copy = tmp_path / "src", tmp_path / "copy"
    (copy / "result" / "deep").mkdir(parents=True)
    (copy / "result" / "deep" / "old.txt").write_text("old")
    source.mkdir()
    (source / "result").write_text("now a file")
    if answer == "stream":
        sync_folders(source, copy)
    else:
        request = scan(copy)
        receive_bytes(copy, send_bounded(source, request, 1 << 20), request)
    assert tree(copy) == tree(source)


def test_a_local_file_with_the_same_bytes_is_kept_and_given_the_senders_time(
        source: Path, tmp_path: Path) -> None:
    # E.g. params.json, written here at the job's launch, then on the host: same bytes, other time.
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "metrics.json").write_text((source / "metrics.json").read_text())  # same bytes
    (copy / "run.sh").write_text("#!/bin/zz\n")  # same size, other bytes
    kept, changed = (copy / "metrics.json").stat().st_ino, (copy / "run.sh").stat().st_ino
    request = scan(copy)
    receive_bytes(copy, send_bounded(source, request, 1 << 20), request)
    assert tree(copy) == tree(source)
    assert (copy / "metrics.json").stat().st_ino == kept, "not written again"
    assert (copy / "run.sh").stat().st_ino != changed
    for name in ("metrics.json", "run.sh"):
        assert (copy / name).stat().st_mtime_ns == (source / name).stat().st_mtime_ns
        assert (copy / name).stat().st_mode == (source / name).stat().st_mode
    assert send_bounded(source, scan(copy), 1 << 20) is not None
    request = scan(copy)
    assert receive_bytes(copy, send_bounded(source, request, 1 << 20), request).files == 0
