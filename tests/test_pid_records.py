"""Pid records without a create time (written by experimaestro 2.x): the pid alone is never trusted,
since any process may have taken it; the runner's lock or the command line must confirm it."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest
from xpm_tasks import Step

from conftest import wait_until
from experimaestro import JobState, RunMode, experiment
from experimaestro.launchers.jobfiles import JobFiles


@pytest.fixture
def unrelated() -> Iterator[subprocess.Popen]:
    """A live process that has nothing to do with any job."""
    process = subprocess.Popen(["sleep", "600"])
    yield process
    process.kill()
    process.wait()


def write_2x_record(files: JobFiles, pid: int) -> None:
    files.path.mkdir(parents=True, exist_ok=True)
    files.pidfile.write_text(json.dumps({"type": "local", "pid": pid}))  # 2.x: no create time


def test_2x_record_of_an_unrelated_process_is_not_running(
    tmp_path: Path, unrelated: subprocess.Popen
) -> None:
    files = JobFiles(tmp_path / "jobs" / "m.step" / "abc", "step")
    write_2x_record(files, unrelated.pid)
    assert files.disk_state() is JobState.UNSCHEDULED


def test_2x_record_is_confirmed_by_the_command_line(tmp_path: Path) -> None:
    files = JobFiles(tmp_path / "jobs" / "m.step" / "abc", "step")
    files.path.mkdir(parents=True)
    # What a 2.x job looks like: its script, named by its path in the job folder.
    ready = tmp_path / "ready"
    code = f"import pathlib, time; pathlib.Path({str(ready)!r}).touch(); time.sleep(600)"
    process = subprocess.Popen([sys.executable, "-c", code, str(files.path / "step.py")])
    try:
        # Right after exec, /proc/<pid>/cmdline may still be empty: wait until it runs.
        wait_until(ready.exists, what="the process to start")
        write_2x_record(files, process.pid)
        assert files.disk_state() is JobState.RUNNING
    finally:
        process.kill()
        process.wait()
    assert files.disk_state() is JobState.UNSCHEDULED


def test_2x_record_is_confirmed_by_the_runner_lock(
    tmp_path: Path, unrelated: subprocess.Popen
) -> None:
    files = JobFiles(tmp_path / "jobs" / "m.step" / "abc", "step")
    write_2x_record(files, unrelated.pid)
    fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        # Held by another open file description, as a runner's lock is.
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert files.disk_state() is JobState.RUNNING
    finally:
        os.close(fd)
    assert files.disk_state() is JobState.UNSCHEDULED


def test_controller_runs_a_job_whose_2x_record_names_an_unrelated_process(
    tmp_path: Path, unrelated: subprocess.Popen
) -> None:
    log = tmp_path / "log"
    planned = Step.C(name="s", log=log).submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path / "ws")
    write_2x_record(planned.__xpm__.job.files, unrelated.pid)
    with experiment(tmp_path / "ws", "xp"):
        job = Step.C(name="s", log=log).submit().__xpm__.job
        try:
            assert job.wait(timeout=30), job.failure
        finally:
            unrelated.kill()  # without the fix, lets the controller notice and end
    wait_until(lambda: job.files.done.exists(), what="the job's marker")
