"""The three guards that keep one job to one execution and one true pid record, each tested alone:

* the create-time check of a pid record (a reused pid is not the job's process);
* the runner's lock (``<name>.lock``; a second runner of the same job exits with 75);
* the controller's launch lock (``.launch.lock``; two controllers never both launch a job, so the
  ``.pid`` file names the process that runs it).

Real processes and real races; waits are conditions with a deadline.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from xpm_tasks import Step, count, executions

from conftest import controller_env, run_controller, start_controller, wait_until
from experimaestro import RunMode, experiment
from experimaestro.connectors.process import PidRecord
from experimaestro.launchers.jobfiles import EXIT_LOCKED


def generate(tmp_path: Path, **params: object) -> Step:
    """A Step whose job folder (params.json) is written, but which is not run."""
    with experiment(tmp_path / "ws", "generate", run_mode=RunMode.GENERATE_ONLY):
        return Step.C(log=tmp_path / "log", **params).submit()


# --- pid reuse ----------------------------------------------------------------------------------


def test_a_reused_pid_is_not_the_recorded_process() -> None:
    me = psutil.Process()
    assert PidRecord.of_process(me.pid).is_alive()
    reused = PidRecord(me.pid, me.create_time() - 3600, "host", time.time())
    assert not reused.is_alive()


def test_job_whose_pid_was_reused_is_run_not_waited_on(tmp_path: Path) -> None:
    """A job folder whose .pid names a live process that is not the job (its pid was reused: same
    pid, another create time), with no marker and no runner: the controller runs the job instead
    of waiting on that process forever."""
    step = generate(tmp_path, name="reused")
    impostor = psutil.Process()  # alive, and certainly not the job
    record = PidRecord(impostor.pid, impostor.create_time() - 3600, "host", time.time() - 3600)
    (step.jobpath / "step.pid").write_text(record.to_json())
    script = f"""
    from pathlib import Path
    from experimaestro import experiment
    from xpm_tasks import Step
    with experiment({str(tmp_path / "ws")!r}, "rerun"):
        Step.C(name="reused", log=Path({str(tmp_path / "log")!r})).submit()
    """
    try:
        code, out = run_controller(script, tmp_path, env={"XPM_SWEEP_INTERVAL": "0.2"}, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("the controller waited on the process of a reused pid instead of running the job")
    assert code == 0, out
    assert count(tmp_path / "log", "end", "reused") == 1
    assert (step.jobpath / "step.done").exists()


# --- the runner's lock ------------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_two_runners_of_one_job_run_it_once(tmp_path: Path, round_: int) -> None:
    """Two runners started at once on one job folder (no controller, so no launch lock): one runs
    the job, the other exits with 75 while the first still runs."""
    gate = tmp_path / "gate"
    step = generate(tmp_path, name=f"twice{round_}", gate=gate)
    command = [sys.executable, "-m", "experimaestro", "run", str(step.jobpath / "params.json")]
    runners = [
        subprocess.Popen(command, env=controller_env(), cwd=tmp_path,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(2)
    ]
    try:
        wait_until(lambda: any(r.poll() is not None for r in runners), timeout=15,
                   what="one of the two runners to give way (both run the job)")
        (loser,) = [r for r in runners if r.poll() is not None]
        (winner,) = [r for r in runners if r is not loser]
        assert loser.returncode == EXIT_LOCKED
        assert winner.poll() is None  # still running the job, behind its gate
        wait_until(lambda: count(tmp_path / "log", "start", f"twice{round_}") == 1,
                   what="the job to start")
        gate.touch()
        assert winner.wait(timeout=30) == 0
    finally:
        gate.touch()
        for runner in runners:
            if runner.poll() is None:
                runner.kill()
            runner.wait()
    log = tmp_path / "log"
    assert count(log, "start", f"twice{round_}") == 1, executions(log)
    assert count(log, "end", f"twice{round_}") == 1, executions(log)
    assert (step.jobpath / "step.done").exists()


# --- the launch lock ----------------------------------------------------------------------------

RACER = """
from pathlib import Path
from polling import poll
from experimaestro import experiment
from experimaestro.launchers.direct import DirectLauncher
from xpm_tasks import Step

root = Path({root!r})
poll((root / "go").exists, 60, 0.001)  # both controllers submit at the same moment
with experiment(root / "ws", {xp!r}, launcher=DirectLauncher(max_jobs=8)):
    for i in range({n}):
        Step.C(name=f"{prefix}{{i}}", log=root / "log", gate=root / "gate").submit()
"""


@pytest.mark.parametrize("round_", range(3))
def test_two_controllers_launching_one_job_leave_its_true_pid(tmp_path: Path, round_: int) -> None:
    """Two controllers start the same jobs at once. Each job runs once, and its ``.pid`` file names
    the process that runs it (not a second runner that gave way): ``jobs kill`` and token reclaim
    read that file."""
    n = 8
    controllers = [
        start_controller(
            RACER.format(root=str(tmp_path), xp=xp, n=n, prefix=f"p{round_}-"), tmp_path, f"{xp}.py"
        )
        for xp in ("left", "right")
    ]
    (tmp_path / "go").touch()
    log = tmp_path / "log"
    wait_until(lambda: sum(1 for e, *_ in executions(log) if e == "start") == n, timeout=60,
               what="all the jobs to start")
    # Both controllers now wait on the running jobs (the gate is closed): every .pid file is final.
    started = {name: pid for event, name, _, pid in executions(log) if event == "start"}
    jobs = tmp_path / "ws" / "jobs" / "xpm_tasks.step"
    recorded = {
        name: PidRecord.from_json(
            (jobs / Step.C(name=name, log=log).__xpm__.identifier.hex() / "step.pid").read_text()
        ).pid
        for name in started
    }
    (tmp_path / "gate").touch()
    for c in controllers:
        assert c.wait(timeout=60) == 0
    for i in range(n):
        name = f"p{round_}-{i}"
        assert count(log, "start", name) == 1, executions(log)
        assert recorded[name] == started[name], (name, recorded, started)
