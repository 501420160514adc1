"""Crash safety: a controller killed with SIGKILL loses nothing, and no job ever runs twice."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from conftest import run_controller, start_controller, wait_until
from xpm_tasks import count, executions

CONTROLLER = """
from pathlib import Path
from experimaestro import experiment
from experimaestro.launchers.direct import DirectLauncher
from xpm_tasks import Step

root = Path({root!r})
log, gate = root / "log", root / "gate"
with experiment(root / "ws", "crash", launcher=DirectLauncher(max_jobs=2)) as xp:
    quick = Step.C(name="quick", log=log).submit()
    slow = Step.C(name="slow", log=log, gate=gate).submit()
    after_slow = Step.C(name="after_slow", log=log, after=slow).submit()
    after_quick = Step.C(name="after_quick", log=log, after=quick, gate=gate).submit()
    queued = Step.C(name="queued", log=log).submit()  # runs when `quick` frees its slot
print("CONTROLLER DONE")
"""


def test_sigkill_controller_then_rerun(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    script = CONTROLLER.format(root=str(tmp_path))
    first = start_controller(script, tmp_path)
    # Kill once `quick` and `queued` are done, and `slow` and `after_quick` are running (both
    # launcher slots taken); `after_slow` never ran.
    wait_until(
        lambda: count(log, "end", "quick") == 1
        and count(log, "end", "queued") == 1
        and count(log, "start", "slow") == 1
        and count(log, "start", "after_quick") == 1,
        what="quick done, slow and after_quick running",
    )
    first.kill()
    first.wait(timeout=10)
    assert count(log, "start", "after_slow") == 0

    # The jobs outlived their controller; a new controller re-attaches, then the gate opens.
    second = start_controller(script, tmp_path, name="rerun.py")
    experiment_log = tmp_path / "ws" / "experiments" / "crash" / "experiment.log"
    wait_until(lambda: experiment_log.read_text().count("started") == 2,
               what="the rerun to start")
    gate.touch()
    assert second.wait(timeout=60) == 0, (tmp_path / "rerun.py.out").read_text()
    assert "CONTROLLER DONE" in (tmp_path / "rerun.py.out").read_text()
    for name in ("quick", "slow", "after_slow", "after_quick", "queued"):
        assert count(log, "start", name) == 1, (name, executions(log))
        assert count(log, "end", name) == 1, (name, executions(log))


def test_rerun_of_finished_experiment_starts_nothing(tmp_path: Path) -> None:
    script = CONTROLLER.format(root=str(tmp_path))
    (tmp_path / "gate").touch()
    code, out = run_controller(script, tmp_path)
    assert code == 0, out
    before = executions(tmp_path / "log")
    code, out = run_controller(script, tmp_path, name="again.py")
    assert code == 0, out
    assert executions(tmp_path / "log") == before


def test_job_killed_with_sigkill_fails_with_reason(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    script = f"""
    from pathlib import Path
    from experimaestro import experiment
    from xpm_tasks import Step
    with experiment({str(tmp_path / "ws")!r}, "kill"):
        Step.C(name="victim", log=Path({str(log)!r}), gate=Path({str(gate)!r})).submit()
    """
    controller = start_controller(script, tmp_path)
    wait_until(lambda: count(log, "start", "victim") == 1, what="the job to start")
    pidfile = next((tmp_path / "ws" / "jobs").glob("xpm_tasks.step/*/step.pid"))
    os.kill(json.loads(pidfile.read_text())["pid"], signal.SIGKILL)
    assert controller.wait(timeout=60) != 0
    failed = json.loads((pidfile.parent / "step.failed").read_text())
    assert failed["reason"] == "killed" and "signal 9" in failed["message"]


def test_attached_job_killed_is_noticed_by_the_sweep(tmp_path: Path) -> None:
    """A job started by a dead controller, then killed: the new controller must not wait forever."""
    log, gate = tmp_path / "log", tmp_path / "gate"
    script = f"""
    from pathlib import Path
    from experimaestro import experiment
    from xpm_tasks import Step
    with experiment({str(tmp_path / "ws")!r}, "lost"):
        Step.C(name="orphan", log=Path({str(log)!r}), gate=Path({str(gate)!r})).submit()
    """
    first = start_controller(script, tmp_path)
    wait_until(lambda: count(log, "start", "orphan") == 1, what="the job to start")
    first.kill()
    first.wait(timeout=10)
    second = start_controller(script, tmp_path, name="second.py", env={"XPM_SWEEP_INTERVAL": "0.2"})
    pidfile = next((tmp_path / "ws" / "jobs").glob("xpm_tasks.step/*/step.pid"))
    experiment_log = tmp_path / "ws" / "experiments" / "lost" / "experiment.log"
    wait_until(lambda: "already running: waiting on it" in experiment_log.read_text(),
               what="the second controller to attach")
    os.kill(json.loads(pidfile.read_text())["pid"], signal.SIGKILL)
    assert second.wait(timeout=60) != 0
    failed = json.loads((pidfile.parent / "step.failed").read_text())
    assert failed["reason"] == "lost"
