"""The launcher's limit (``max_jobs``): never more jobs at once, counting the jobs re-attached after
a restart."""

from __future__ import annotations

import threading
from pathlib import Path

from xpm_tasks import Step, count, executions

from conftest import start_controller, wait_until
from experimaestro import JobState, experiment
from experimaestro.launchers.direct import DirectLauncher
from experimaestro.scheduler.scheduler import Scheduler


def settle() -> None:
    """Return once the scheduler has handled everything posted so far, including the launch
    pass that was under way (a job launched in the same pass as another is launched by then)."""
    for _ in range(2):
        handled = threading.Event()
        Scheduler.instance().post(handled.set)
        assert handled.wait(30)


def test_no_more_jobs_than_the_limit_run_at_once(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    with experiment(tmp_path / "ws", "limit", launcher=DirectLauncher(max_jobs=2)):
        jobs = [
            Step.C(name=f"s{i}", log=log, gate=gate).submit().__xpm__.job for i in range(3)
        ]
        wait_until(lambda: sum(j.state is JobState.RUNNING for j in jobs) >= 2,
                   what="two jobs to start")
        settle()
        states = [j.state for j in jobs]
        assert states.count(JobState.RUNNING) == 2 and states.count(JobState.READY) == 1, states
        gate.touch()
    assert all(j.state is JobState.DONE for j in jobs)


REATTACH = """
from pathlib import Path
from experimaestro import experiment
from experimaestro.launchers.direct import DirectLauncher
from xpm_tasks import Step

root = Path({root!r})
with experiment(root / "ws", "limit", launcher=DirectLauncher(max_jobs=2)):
    for name in ("a", "b"):
        Step.C(name=name, log=root / "log", gate=root / "gate").submit()
"""


def test_jobs_reattached_after_a_restart_count_against_the_limit(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    first = start_controller(REATTACH.format(root=str(tmp_path)), tmp_path)
    wait_until(lambda: count(log, "start", "a") == 1 and count(log, "start", "b") == 1,
               what="a and b to start")
    first.kill()
    first.wait(timeout=10)
    # The rerun finds a and b running (it re-attaches to them) and adds c: with 2 slots, c waits.
    with experiment(tmp_path / "ws", "limit", launcher=DirectLauncher(max_jobs=2)):
        a, b = (Step.C(name=n, log=log, gate=gate).submit().__xpm__.job for n in ("a", "b"))
        c = Step.C(name="c", log=log).submit().__xpm__.job
        wait_until(lambda: a.state is JobState.RUNNING and b.state is JobState.RUNNING,
                   what="a and b to be re-attached")
        settle()
        assert c.state is JobState.READY, c
        assert count(log, "start", "c") == 0
        gate.touch()
    assert all(j.state is JobState.DONE for j in (a, b, c))
    rows = executions(log)
    first_end = min(t for e, n, t, _ in rows if e == "end" and n in ("a", "b"))
    (c_start,) = [t for e, n, t, _ in rows if e == "start" and n == "c"]
    assert c_start >= first_end
