"""Guards that keep one job to one execution, each tested alone:

* the create-time check of a pid record (a reused pid is not the job's process);
* the runner's lock (``<name>.lock``; a second runner of the same job exits with 75).

The controller's launch lock (``.launch.lock``) is tested with two racing controllers in
test_race.py.

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

from conftest import controller_env, run_controller, wait_until
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
        code, out = run_controller(script, tmp_path, env={"XPM_SWEEP_INTERVAL": "0.2"}, timeout=60)
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
        wait_until(lambda: any(r.poll() is not None for r in runners), timeout=30,
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
