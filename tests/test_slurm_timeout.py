"""The time limit (costs about 90 s on the test cluster: slurmctld checks limits every 30 s):
a resumable task is submitted again and finishes; another task fails with reason timeout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from slurm_tasks import Checkpointed, Hangs, StopsEarly
from xpm_tasks import count

from experimaestro import FailedExperiment, experiment
from experimaestro.launchers.jobfiles import JobState
from experimaestro.launchers.slurm import SlurmOptions


@pytest.mark.timeout(400)
def test_time_limit(tmp_path: Path, plain_slurm_launcher) -> None:  # type: ignore[no-untyped-def]
    launcher = plain_slurm_launcher(options=SlurmOptions(time="1m"), timeout_retries=1,
                                    max_poll_interval=2.0)
    log = tmp_path / "log"
    with pytest.raises(FailedExperiment) as info:
        with experiment(tmp_path / "ws", "timeout"):
            resumable = Checkpointed.C(name="resumable", log=log).submit(launcher=launcher)
            plain = Hangs.C(name="plain", log=log).submit(launcher=launcher)
    assert info.value.jobs == [plain.__xpm__.job]
    job = plain.__xpm__.job
    assert job.failure.reason == "timeout"
    assert json.loads(job.files.failed.read_text())["reason"] == "timeout"
    again = resumable.__xpm__.job
    assert again.state is JobState.DONE and again.retries == 1
    assert count(log, "start", "resumable") == 2 and count(log, "end", "resumable") == 1


def test_graceful_timeout_resubmits_and_remaining_time(tmp_path: Path, plain_slurm_launcher
                                                      ) -> None:  # type: ignore[no-untyped-def]
    """A resumable task that stops on purpose before its limit (GracefulTimeout) is submitted
    again; inside the job, remaining_time() reads Slurm's time limit."""
    launcher = plain_slurm_launcher(options=SlurmOptions(time="10m"), timeout_retries=1)
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "graceful"):
        task = StopsEarly.C(name="g", log=log).submit(launcher=launcher)
    job = task.__xpm__.job
    assert job.state is JobState.DONE and job.retries == 1
    assert count(log, "start", "g") == 2 and count(log, "end", "g") == 1
    remaining = float((job.path / "remaining.txt").read_text())
    assert 500 < remaining <= 600


def test_graceful_timeout_without_retries_fails_with_reason_timeout(
    tmp_path: Path, plain_slurm_launcher  # type: ignore[no-untyped-def]
) -> None:
    launcher = plain_slurm_launcher(options=SlurmOptions(time="10m"))
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "graceful0"):
            task = StopsEarly.C(name="g0", log=tmp_path / "log").submit(launcher=launcher)
    assert task.__xpm__.job.failure.reason == "timeout"
