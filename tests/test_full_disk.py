"""A full disk never leaves a job RUNNING forever: whatever write fails, the job ends (failed, with
reason ``disk-full``) and the experiment finishes."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from conftest import run_controller

CONTROLLER = """
from experimaestro import FailedExperiment, experiment
from xpm_tasks import Filler

try:
    with experiment({workspace!r}, "full"):
        Filler.C(name="filler", then={then!r}).submit()
except FailedExperiment as failed:
    failure = failed.jobs[0].failure
    print("REASON", failure.reason)
    print("MESSAGE", failure.message)
else:
    print("NO FAILURE")
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 1 MiB and 64 inodes (we run as root); skipped where mounting is not allowed,
    except on CI."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,nr_inodes=64", "tmpfs", str(mount)],
        capture_output=True, text=True,
    )
    if done.returncode != 0:
        message = f"cannot mount a small tmpfs here: {done.stderr.strip()}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.mark.parametrize("then", ["fail", "raise", "files"])
def test_job_that_fills_the_disk_ends_and_the_experiment_finishes(
    small_disk: Path, tmp_path: Path, then: str
) -> None:
    # fail: the task's write fails (ENOSPC), then the runner's .failed and the controller's;
    # raise: the task fails for another reason, and no marker can be written;
    # files: no inode left: execute() returns, but nobody can create .done or .failed.
    script = CONTROLLER.format(workspace=str(small_disk / "ws"), then=then)
    code, out = run_controller(script, tmp_path, timeout=60)
    assert code == 0, out
    assert "REASON disk-full" in out, out
    assert "no space left" in out.lower(), out
    jobs = list((small_disk / "ws" / "jobs").glob("xpm_tasks.filler/*"))
    assert len(jobs) == 1 and not (jobs[0] / "filler.done").exists()


TOKEN_CONTROLLER = """
from experimaestro import CounterToken, FailedExperiment, experiment
from xpm_tasks import Filler, Step

try:
    with experiment({workspace!r}, "full"):
        filler = Filler.C(name="filler", then="return").submit()
        step = Step.C(name="b", log={log!r})
        step.add_dependencies(filler, CounterToken("t", 1).dependency(1))
        step.submit()
except FailedExperiment as failed:
    for job in failed.jobs:
        print("FAILED", job.failure.reason, job.failure.message)
else:
    print("NO FAILURE")
"""


def test_job_whose_tokens_cannot_be_written_ends(small_disk: Path, tmp_path: Path) -> None:
    # The filler fills the disk and ends well (its empty .done needs no space); the next job needs
    # a token, whose files cannot be written: it must fail, not stay READY for ever.
    script = TOKEN_CONTROLLER.format(workspace=str(small_disk / "ws"), log=str(tmp_path / "log"))
    code, out = run_controller(script, tmp_path, timeout=60)
    assert code == 0, out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith("FAILED disk-full"), out
    assert "no space left" in failed[0].lower(), out
