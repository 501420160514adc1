"""Counter tokens: all-or-none acquisition, live totals, crash reclaim, cross-process limits.

Real files and real processes; waits are conditions with a deadline, never fixed sleeps.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Iterator, List

import psutil
import pytest
from conftest import wait_until

from experimaestro.connectors.local import LocalConnector
from experimaestro.connectors.files import atomic_write
from experimaestro.connectors.process import PidRecord
from experimaestro.scheduler.tokens import (
    CounterToken,
    HolderInfo,
    TokenDependency,
    TokenStore,
    acquire_all,
    release_all,
)

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "helpers" / "token_worker.py"


def spawn(*args: str) -> "subprocess.Popen[bytes]":
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, *args], env=env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL
    )


@pytest.fixture
def processes() -> Iterator[List["subprocess.Popen[bytes]"]]:
    """Subprocesses started by a test, killed and reaped at its end whatever happens."""
    started: List["subprocess.Popen[bytes]"] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def me(key: str, tmp_path: Path) -> HolderInfo:
    """A holder whose controller is this (live) test process, with a fresh job directory."""
    jobdir = tmp_path / "jobs" / key
    jobdir.mkdir(parents=True, exist_ok=True)
    return HolderInfo.current_process(key, str(jobdir / "task"))


def test_token_api() -> None:
    token = CounterToken("gpu", 2)
    assert token.dependency(2) == TokenDependency(token, 2)
    with pytest.raises(ValueError, match=r"'gpu'.*3.*2"):
        token.dependency(3)
    with pytest.raises(ValueError):
        token.dependency(0)
    with pytest.raises(ValueError):
        CounterToken("../x", 1)

    class FakeTask:
        def __init__(self) -> None:
            self.deps: list = []

        def add_dependencies(self, *deps: object) -> "FakeTask":
            self.deps.extend(deps)
            return self

    task = FakeTask()
    assert token(1, task) is task
    assert task.deps == [TokenDependency(token, 1)]

    connector = LocalConnector.instance()
    assert connector is LocalConnector.instance()
    t1 = connector.createtoken("test-api-token", 3)
    assert connector.createtoken("test-api-token", 3) is t1
    with pytest.raises(ValueError, match="already created"):
        connector.createtoken("test-api-token", 4)


def test_all_or_none(tmp_path: Path) -> None:
    a = TokenStore.open(tmp_path, CounterToken("A", 2))
    b = TokenStore.open(tmp_path, CounterToken("B", 1))
    assert acquire_all([(a, 1), (b, 1)], me("x", tmp_path))
    assert not acquire_all([(a, 1), (b, 1)], me("y", tmp_path))
    assert [h.key for h in a.holders()] == ["x"]
    assert [h.key for h in b.holders()] == ["x"]
    assert a.available() == 1 and b.available() == 0
    release_all([a, b], "x")
    assert acquire_all([(b, 1), (a, 1)], me("y", tmp_path))


def test_capacity_release_idempotent(tmp_path: Path) -> None:
    store = TokenStore.open(tmp_path, CounterToken("cpu", 3))
    assert TokenStore.open(tmp_path, CounterToken("cpu", 3)) is store
    assert acquire_all([(store, 2)], me("j1", tmp_path))
    assert not acquire_all([(store, 2)], me("j2", tmp_path))
    assert acquire_all([(store, 1)], me("j3", tmp_path))
    assert store.available() == 0
    # Idempotent: j1 already holds its 2 units
    assert acquire_all([(store, 2)], me("j1", tmp_path))
    assert sorted((h.key, h.count) for h in store.holders()) == [("j1", 2), ("j3", 1)]
    release_all([store], "j1")
    release_all([store], "j1")  # releasing twice is harmless
    assert store.available() == 2
    assert acquire_all([(store, 2)], me("j2", tmp_path))
    holder = store.holder_path("j2").read_text()
    for field in ("key", "count", "job_prefix", "controller_pid", "host", "acquired"):
        assert f'"{field}"' in holder


def test_live_total_change(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = TokenStore.open(tmp_path, CounterToken("live", 1))
    assert (store.directory / "total").read_text().strip() == "1"
    assert acquire_all([(store, 1)], me("a", tmp_path))
    assert not acquire_all([(store, 1)], me("b", tmp_path))

    atomic_write(store.directory / "total", "3\n")
    assert store.current_total() == 3 and store.available() == 2
    assert acquire_all([(store, 1)], me("b", tmp_path))

    caplog.set_level(logging.WARNING, logger="experimaestro.tokens")
    atomic_write(store.directory / "total", "lots")
    assert store.current_total() == 1  # the declared total
    assert str(store.directory / "total") in caplog.text


def test_reclaim_after_kill9(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, processes: list
) -> None:
    jobdir = tmp_path / "jobs" / "killed"
    jobdir.mkdir(parents=True)
    store = TokenStore.open(tmp_path, CounterToken("solo", 1))
    proc = spawn(str(WORKER), "hold", str(tmp_path), "solo", "1", "1", "killed", str(jobdir / "t"))
    processes.append(proc)
    wait_until(lambda: store.holders())
    assert not acquire_all([(store, 1)], me("next", tmp_path))  # the controller is alive

    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    caplog.set_level(logging.WARNING, logger="experimaestro.tokens")
    assert acquire_all([(store, 1)], me("next", tmp_path))
    assert [h.key for h in store.holders()] == ["next"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("reclaiming" in m and "killed" in m and "solo" in m for m in warnings)


def test_done_marker_reclaims(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = TokenStore.open(tmp_path, CounterToken("marker", 1))
    holder = me("finished", tmp_path)
    assert acquire_all([(store, 1)], holder)
    assert not acquire_all([(store, 1)], me("other", tmp_path))
    Path(holder.job_prefix + ".done").write_text("")
    assert store.available() == 1
    caplog.set_level(logging.WARNING, logger="experimaestro.tokens")
    assert acquire_all([(store, 1)], me("other", tmp_path))
    assert "task.done" in caplog.text


def test_running_job_keeps_tokens(tmp_path: Path, processes: list) -> None:
    jobdir = tmp_path / "jobs" / "orphan"
    jobdir.mkdir(parents=True)
    prefix = jobdir / "task"
    store = TokenStore.open(tmp_path, CounterToken("orphan", 1))
    controller = spawn(
        str(WORKER), "hold", str(tmp_path), "orphan", "1", "1", "orphan", str(prefix)
    )
    job = spawn("-c", "import time; time.sleep(60)")
    processes.extend([controller, job])
    atomic_write(Path(f"{prefix}.pid"), PidRecord.of_process(job.pid).to_json())
    wait_until(lambda: store.holders())

    controller.send_signal(signal.SIGKILL)
    controller.wait(timeout=10)
    assert not acquire_all([(store, 1)], me("next", tmp_path))  # the job process still runs
    assert [h.key for h in store.holders()] == ["orphan"]

    job.send_signal(signal.SIGKILL)
    job.wait(timeout=10)
    assert acquire_all([(store, 1)], me("next", tmp_path))


def test_a_started_job_without_a_pid_record_keeps_tokens_while_its_runner_holds_its_lock(
    tmp_path: Path, processes: list
) -> None:
    """A holder whose controller died between starting the job and writing its ``.pid``: the
    runner's lock (``<name>.lock``) says the job runs, so its units are not reclaimed."""
    jobdir = tmp_path / "jobs" / "unrecorded"
    jobdir.mkdir(parents=True)
    prefix = jobdir / "task"
    store = TokenStore.open(tmp_path, CounterToken("unrecorded", 1))
    dead = HolderInfo("unrecorded", str(prefix), os.getpid(), 1.0)  # no such process
    assert acquire_all([(store, 1)], dead)
    runner = spawn("-c", "import fcntl, os, sys, time\n"
                   f"fd = os.open({str(prefix) + '.lock'!r}, os.O_RDWR | os.O_CREAT)\n"
                   "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\ntime.sleep(60)")
    processes.append(runner)
    assert runner.stdout is not None and runner.stdout.readline().strip() == b"locked"
    assert not acquire_all([(store, 1)], me("next", tmp_path))  # the runner holds the job's lock
    runner.send_signal(signal.SIGKILL)
    runner.wait(timeout=10)
    assert acquire_all([(store, 1)], me("next", tmp_path))


def test_corrupt_holder_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = TokenStore.open(tmp_path, CounterToken("corrupt", 1))
    bad = store.holders_dir / "garbage.json"
    bad.write_text("{not json")
    caplog.set_level(logging.WARNING, logger="experimaestro.tokens")
    assert acquire_all([(store, 1)], me("x", tmp_path))
    assert not bad.exists()
    assert "garbage.json" in caplog.text


def test_cross_process_limit(tmp_path: Path, processes: list) -> None:
    log = tmp_path / "events.log"
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    TokenStore.open(tmp_path, CounterToken("shared", 2))
    for worker in range(8):
        args = ["loop", str(tmp_path), "shared", "2", "5", str(log), str(worker), str(jobs)]
        processes.append(spawn(str(WORKER), *args))
    for proc in processes:
        assert proc.wait(timeout=30) == 0

    # Lines are in the order of the (atomic, O_APPEND) writes: "enter" is written while holding,
    # "exit" before releasing, so the running count never exceeds what is held.
    inside, peak, enters = 0, 0, 0
    for line in log.read_text().splitlines():
        kind = line.split()[0]
        inside += 1 if kind == "enter" else -1
        enters += kind == "enter"
        peak = max(peak, inside)
    assert enters == 40 and inside == 0
    assert peak == 2


def test_local_connector_files_and_processes(tmp_path: Path) -> None:
    connector = LocalConnector.instance()
    connector.mkdir(tmp_path / "a" / "b")
    connector.write_atomic(tmp_path / "a" / "f.txt", "hello")
    assert connector.read_text(tmp_path / "a" / "f.txt") == "hello"
    assert connector.listdir(tmp_path / "a") == ["b", "f.txt"]
    stats = connector.stat_many([tmp_path / "a" / "f.txt", tmp_path / "a" / "b", tmp_path / "nope"])
    assert stats[0] is not None and stats[0].size == 5 and not stats[0].is_dir
    assert stats[1] is not None and stats[1].is_dir
    assert stats[2] is None
    assert connector.run([sys.executable, "-c", "print('hi')"]).stdout == "hi\n"

    out = tmp_path / "job.out"
    out.write_text("previous\n")
    started = connector.start_detached(
        [sys.executable, "-c", "import os; print(os.getsid(0) == os.getpid())"],
        cwd=tmp_path,
        stdout_path=out,
        stderr_path=tmp_path / "job.err",
    )
    assert started.record.pid == started.popen.pid
    assert started.popen.wait(timeout=10) == 0
    assert out.read_text() == "previous\nTrue\n"  # appended, in its own session

    with connector.lock(tmp_path / "x.lock"):
        pass
    connector.copy_to_local(tmp_path / "a", tmp_path / "copy")
    assert (tmp_path / "copy" / "f.txt").read_text() == "hello"


def test_units_are_never_shared_by_two_controllers_for_one_job(tmp_path: Path) -> None:
    """Two controllers asking for the same job: the second waits, and cannot release the first's
    units."""
    token = CounterToken("shared", 1)
    store = TokenStore.open(tmp_path, token)
    job_dir = tmp_path / "job"
    job_dir.mkdir()
    mine = HolderInfo.current_process("job", str(job_dir / "task"))
    # Another live controller (our parent process stands for it).
    parent = psutil.Process(os.getppid())
    theirs = HolderInfo("job", str(job_dir / "task"), parent.pid, parent.create_time())
    assert acquire_all([(store, 1)], theirs)
    assert not acquire_all([(store, 1)], mine)
    release_all([store], "job", mine)
    assert store.available() == 0
    release_all([store], "job", theirs)
    assert store.available() == 1
