"""Preemption and memory on the real test cluster: its hidden ``urgent`` partition preempts the
running jobs, and its cgroup profile enforces ``--mem`` (OUT_OF_MEMORY)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import wait_until
from slurm_tasks import Hog
from xpm_tasks import Step, count

from experimaestro import FailedExperiment, experiment
from experimaestro.launchers.jobfiles import JobState
from experimaestro.launchers.slurm import SlurmOptions


def _jobid(job) -> str:  # type: ignore[no-untyped-def]
    return json.loads(job.files.pidfile.read_text())["jobid"]


def _preempt_running_step(cluster, launcher, log: Path, gate: Path, name: str):  # type: ignore[no-untyped-def]
    """Submit a Step that waits on ``gate``; once it runs, a job of the urgent partition takes
    the whole node and preempts it. Returns the step's job and its first Slurm job id."""
    job = Step.C(name=name, log=log, gate=gate).submit(launcher=launcher).__xpm__.job
    wait_until(lambda: count(log, "start", name) == 1, timeout=60, what=f"{name} running")
    first = _jobid(job)
    cluster.sbatch("-p", "urgent", "-c", "8", "--mem=100M", "-o", "/dev/null", "--wrap", "true")
    return job, first


def test_preempted_job_is_submitted_again(tmp_path: Path, plain_slurm_launcher, slurm_plain
                                          ) -> None:
    """Submitted with --no-requeue, a preempted job ends PREEMPTED: the launcher submits it again."""
    launcher = plain_slurm_launcher(options=SlurmOptions(extra=["--no-requeue"]))
    log, gate = tmp_path / "log", tmp_path / "gate"
    with experiment(tmp_path / "ws", "preempt"):
        job, first = _preempt_running_step(slurm_plain, launcher, log, gate, "p")
        wait_until(lambda: _jobid(job) != first, timeout=60, what="a new submission")
        assert slurm_plain.job_state(first) == "PREEMPTED"
        gate.touch()
    assert job.state is JobState.DONE and job.retries == 1
    assert count(log, "start", "p") == 2 and count(log, "end", "p") == 1


def test_job_requeued_by_slurm_runs_again_in_its_folder(tmp_path: Path, plain_slurm_launcher,
                                                        slurm_plain) -> None:
    """With Slurm's own requeue (PreemptMode=REQUEUE) the same job id runs again: the controller
    just waits; the new run clears the old attempt's failure marker."""
    launcher = plain_slurm_launcher()
    log, gate = tmp_path / "log", tmp_path / "gate"
    with experiment(tmp_path / "ws", "requeue"):
        job, jobid = _preempt_running_step(slurm_plain, launcher, log, gate, "r")
        wait_until(lambda: slurm_plain.job_state(jobid) == "PENDING", timeout=60,
                   what="the job back in the queue")
        slurm_plain.run("scontrol", "update", f"JobId={jobid}", "StartTime=now")
        gate.touch()
    assert job.state is JobState.DONE and job.retries == 0
    assert _jobid(job) == jobid
    assert count(log, "start", "r") == 2 and count(log, "end", "r") == 1
    assert job.files.done.exists() and not job.files.failed.exists()


def test_out_of_memory(tmp_path: Path, cgroup_slurm_launcher) -> None:
    """With cgroups, a job over its --mem is killed by the kernel: reason memory."""
    launcher = cgroup_slurm_launcher(options=SlurmOptions(mem="64M"))
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "oom"):
            hog = Hog.C(megabytes=512).submit(launcher=launcher)
    job = hog.__xpm__.job
    assert job.failure.reason == "memory", job.failure
    assert "OUT_OF_MEMORY" in job.failure.message
    assert json.loads(job.files.failed.read_text())["reason"] == "memory"
