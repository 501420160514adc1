"""Slurm jobs outlive their controller: re-attach without submitting twice, chains that advance
(and fail cleanly) while no controller runs, racing controllers, and records Slurm forgot."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import start_controller, wait_until
from xpm_tasks import Step, count, executions

from experimaestro import RunMode, experiment
from experimaestro.launchers.jobfiles import JobState

#: The start of the controllers of these tests (and of test_slurm_submit_crash.py); the body goes
#: inside ``with experiment(...) as xp:``.
PROLOGUE = """
import sys
from pathlib import Path
from experimaestro import RunMode, experiment
from experimaestro.launchers.direct import DirectLauncher
from experimaestro.launchers.jobfiles import JobState
from experimaestro.launchers.slurm import SlurmLauncher
from xpm_tasks import Step

root = Path({root!r})
log, gate = root / "log", root / "gate"
if __name__ == "__main__":
    launcher = SlurmLauncher(poll_interval=0.1, max_poll_interval=0.5)
    with experiment(root / "ws", "crash", launcher=launcher) as xp:
"""

CONTROLLER = PROLOGUE + """\
        a = Step.C(name="a", log=log, gate=gate).submit()
        b = Step.C(name="b", log=log, after=a).submit()
        c = Step.C(name="c", log=log, after=b).submit()
        d = Step.C(name="d", log=log, gate=gate).submit()
        e = Step.C(name="e", log=log, gate=gate, fail={fail!r}).submit()
        f = Step.C(name="f", log=log, after=e).submit()
    print("CONTROLLER DONE")
"""


def _pids(root: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in (root / "ws" / "jobs").glob("*/*/*.pid")}


def _experiment_log(root: Path) -> str:
    return (root / "ws" / "experiments" / "crash" / "experiment.log").read_text()


def test_rerun_reattaches_and_submits_nothing(tmp_path: Path, slurm_launcher) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    script = CONTROLLER.format(root=str(tmp_path), fail=False)
    first = start_controller(script, tmp_path)
    wait_until(lambda: len(_pids(tmp_path)) == 6 and count(log, "start", "a") == 1
               and count(log, "start", "d") == 1, timeout=60, what="all submitted, a and d running")
    first.kill()
    first.wait(timeout=10)
    records = _pids(tmp_path)

    second = start_controller(script, tmp_path, name="rerun.py")
    wait_until(lambda: _experiment_log(tmp_path).count("was submitted earlier") == 6,
               what="the rerun to find the six jobs")
    gate.touch()
    assert second.wait(timeout=120) == 0, (tmp_path / "rerun.py.out").read_text()
    assert _pids(tmp_path) == records  # no job was submitted again
    for name in "abcdef":
        assert count(log, "start", name) == 1 and count(log, "end", name) == 1, executions(log)
    last = [line for line in _experiment_log(tmp_path).splitlines() if "Slurm commands run" in line]
    assert last and "sbatch" not in last[-1], last


def test_chain_advances_and_fails_cleanly_without_controller(tmp_path: Path,
                                                             slurm_launcher) -> None:
    """Kill the controller once everything is queued: the chain a -> b -> c still runs; f, after
    the failing e, is cancelled by Slurm itself (never left PENDING)."""
    log, gate = tmp_path / "log", tmp_path / "gate"
    script = CONTROLLER.format(root=str(tmp_path), fail=True)
    first = start_controller(script, tmp_path)
    wait_until(lambda: len(_pids(tmp_path)) == 6, timeout=60, what="all six submitted")
    first.kill()
    first.wait(timeout=10)
    gate.touch()
    wait_until(lambda: count(log, "end", "c") == 1 and count(log, "fail", "e") == 1,
               timeout=60, what="the chain to end without a controller")
    launcher = slurm_launcher()
    f_record = next(json.loads(text) for name, text in _pids(tmp_path).items()
                    if json.loads(text) and _name_of(tmp_path, name) == "f")
    wait_until(lambda: launcher.cluster.commands.squeue([f_record["jobid"]])[f_record["jobid"]]
               .state == "CANCELLED", timeout=30, what="f cancelled by Slurm")
    assert count(log, "start", "f") == 0

    second = start_controller(script, tmp_path, name="rerun.py")
    assert second.wait(timeout=120) == 1
    out = (tmp_path / "rerun.py.out").read_text()
    assert "[dependency]" in out and "FailedExperiment" in out


def _name_of(root: Path, identifier: str) -> str:
    folder = next((root / "ws" / "jobs").glob(f"*/{identifier}"))
    document = json.loads((folder / "params.json").read_text())
    return document["objects"][document["root"]]["fields"]["name"]


def test_two_controllers_racing_submit_each_job_once(tmp_path: Path,
                                                      slurm_launcher) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    gate.touch()
    script = CONTROLLER.format(root=str(tmp_path), fail=False)
    one = start_controller(script, tmp_path, name="one.py")
    two = start_controller(script, tmp_path, name="two.py")
    assert one.wait(timeout=120) == 0, (tmp_path / "one.py.out").read_text()
    assert two.wait(timeout=120) == 0, (tmp_path / "two.py.out").read_text()
    for folder in (tmp_path / "ws" / "jobs").glob("*/*"):
        err = (folder / "step.err").read_text()
        assert err.count("batch script of slurm job") == 1, err
    for name in "abcdef":
        assert count(log, "start", name) == 1, executions(log)


def test_record_forgotten_by_slurm_runs_the_job(tmp_path: Path, slurm_launcher) -> None:
    """A .pid naming a job Slurm does not know, and no marker: after ``lost_after``, the job runs
    (instead of waiting forever, or failing as lost)."""
    launcher = slurm_launcher(lost_after=1.0)
    log = tmp_path / "log"
    planned = Step.C(name="x", log=log).submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path / "ws")
    folder = planned.__xpm__.job.path
    folder.mkdir(parents=True)
    stale = launcher.record("99999999")
    (folder / "step.pid").write_text(stale.to_json())
    with experiment(tmp_path / "ws", "lost"):
        step = Step.C(name="x", log=log).submit(launcher=launcher)
    job = step.__xpm__.job
    assert job.path == folder and job.state is JobState.DONE
    assert count(log, "end", "x") == 1
    assert json.loads((folder / "step.pid").read_text())["jobid"] != "99999999"


def test_second_submission_waits_for_the_runner_at_work(tmp_path: Path, slurm_launcher) -> None:
    """A job submitted twice (e.g. a controller killed between sbatch and its record): the second
    runner finds the job's lock taken and exits (75); the controller waits for the runner at work
    instead of failing the job."""
    import fcntl
    import os

    launcher = slurm_launcher()
    log = tmp_path / "log"
    planned = Step.C(name="x", log=log).submit(run_mode=RunMode.DRY_RUN, workspace=tmp_path / "ws")
    folder = planned.__xpm__.job.path
    folder.mkdir(parents=True)
    lock = os.open(folder / "step.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(lock, fcntl.LOCK_EX)  # the runner at work (the first submission)
    try:
        with experiment(tmp_path / "ws", "twice"):
            job = Step.C(name="x", log=log).submit(launcher=launcher).__xpm__.job
            wait_until(lambda: job.files.pidfile.exists(), what="submitted")
            key = json.loads(job.files.pidfile.read_text())["jobid"]
            wait_until(lambda: job.files.stderr.exists()
                       and "already running" in job.files.stderr.read_text()
                       and launcher.cluster.watcher.state(key) is None, timeout=60,
                       what="the second runner to give up, and the poller to see it")
            assert not job.finished
            job.files.write_done()  # the first runner ends
            fcntl.flock(lock, fcntl.LOCK_UN)
    finally:
        os.close(lock)
    assert job.state is JobState.DONE
