"""Two controllers on one workspace: never two executions of a job, a true .pid file (the launch
lock); tokens shared by both."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Optional

import pytest
from conftest import start_controller, wait_until
from xpm_tasks import Step, count, executions

from experimaestro.connectors.process import PidRecord

RACER = """
from pathlib import Path
from polling import poll
from experimaestro import experiment
from experimaestro.launchers.direct import DirectLauncher
from xpm_tasks import Step

root = Path({root!r})
poll((root / "go").exists, 60, 0.001)  # both controllers start submitting at the same moment
with experiment(root / "ws", {xp!r}, launcher=DirectLauncher(max_jobs={n})):
    for i in range({n}):
        Step.C(name=f"{prefix}{{i}}", log=root / "log", gate={gate}).submit()
"""


def start_racers(tmp_path: Path, prefix: str, n: int, gate: Optional[Path] = None) -> list:
    """Two controllers that submit the same ``n`` jobs at the same moment (after a go file)."""
    controllers = [
        start_controller(
            RACER.format(root=str(tmp_path), xp=xp, n=n, prefix=prefix,
                         gate=None if gate is None else f"Path({str(gate)!r})"),
            tmp_path, f"{xp}.py",
        )
        for xp in ("left", "right")
    ]
    (tmp_path / "go").touch()
    return controllers


@pytest.mark.parametrize("round_", range(4))
def test_two_controllers_race_to_start_the_same_jobs(tmp_path: Path, round_: int) -> None:
    n = 8
    for c in start_racers(tmp_path, f"r{round_}-", n):
        assert c.wait(timeout=120) == 0
    log = tmp_path / "log"
    for i in range(n):
        assert count(log, "start", f"r{round_}-{i}") == 1, executions(log)
        assert count(log, "end", f"r{round_}-{i}") == 1


@pytest.mark.parametrize("round_", range(3))
def test_two_controllers_launching_one_job_leave_its_true_pid(tmp_path: Path, round_: int) -> None:
    """Two controllers start the same jobs at once (the launch lock, ``.launch.lock``, is what
    orders them). Each job runs once, and its ``.pid`` file names the process that runs it, not a
    second runner that gave way: ``jobs kill`` and token reclaim read that file."""
    n, log, gate = 8, tmp_path / "log", tmp_path / "gate"
    controllers = start_racers(tmp_path, f"p{round_}-", n, gate)
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
    gate.touch()
    for c in controllers:
        assert c.wait(timeout=60) == 0
    for i in range(n):
        name = f"p{round_}-{i}"
        assert count(log, "start", name) == 1, executions(log)
        assert recorded[name] == started[name], (name, recorded, started)


TOKEN_USER = """
from pathlib import Path
from experimaestro import experiment
from experimaestro.connectors.local import LocalConnector
from experimaestro.launchers.direct import DirectLauncher
from xpm_tasks import Step

root = Path({root!r})
token = LocalConnector.instance().createtoken("tk", {total})
with experiment(root / "ws", {xp!r}, launcher=DirectLauncher(max_jobs=4)):
    for i in range({n}):
        step = Step.C(name=f"{xp}{{i}}", log=root / "log", duration={duration}, gate={gate})
        token(1, step)
        step.submit()
"""


def _max_overlap(log: Path) -> int:
    events = sorted(
        (stamp, 1 if event == "start" else -1) for event, _, stamp, _ in executions(log)
        if event in ("start", "end")
    )
    current = peak = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


TOKEN_RACER = """
import time
from pathlib import Path
from polling import poll
from experimaestro import experiment
from experimaestro.connectors.local import LocalConnector
from experimaestro.launchers.direct import DirectLauncher
from xpm_tasks import Step

root = Path({root!r})
token = LocalConnector.instance().createtoken("tk", 2)
poll((root / "go").exists, 60, 0.001)  # both controllers submit at the same moment
began = time.time()
with experiment(root / "ws", {xp!r}, launcher=DirectLauncher(max_jobs=4)):
    for i in range(3):
        step = Step.C(name=f"{xp}{{i}}", log=root / "log", gate=root / "gate", duration=0.1)
        token(1, step)
        step.submit()
    (root / "{xp}.submitted").touch()
(root / "{xp}.window").write_text(f"{{began}} {{time.time()}}")
"""


def test_token_limit_across_two_controllers(tmp_path: Path) -> None:
    """Two controllers, alive at the same time, share a token of 2 units for their 6 jobs: while
    the first two jobs hold both units (their gate is closed), both controllers are alive with all
    their jobs submitted, so one controller's jobs wait for units the other's hold; and never more
    than 2 jobs run at once."""
    controllers = {
        xp: start_controller(TOKEN_RACER.format(root=str(tmp_path), xp=xp), tmp_path, f"{xp}.py")
        for xp in ("a", "b")
    }
    (tmp_path / "go").touch()
    log = tmp_path / "log"

    def started() -> list[str]:
        return [name for event, name, *_ in executions(log) if event == "start"]

    wait_until(
        lambda: all((tmp_path / f"{xp}.submitted").exists() for xp in controllers)
        and len(started()) >= 2,
        timeout=60, what="both controllers to submit, and two jobs to take the units",
    )
    assert len(started()) == 2, started()  # the gate is closed: no third job may start
    assert all(c.poll() is None for c in controllers.values())  # both controllers alive
    holders = tmp_path / "ws" / ".experimaestro" / "tokens" / "tk" / "holders"
    holding = [json.loads(path.read_text())["controller_pid"] for path in holders.glob("*.json")]
    assert len(holding) == 2 and set(holding) <= {c.pid for c in controllers.values()}
    (tmp_path / "gate").touch()
    for c in controllers.values():
        assert c.wait(timeout=120) == 0
    assert sum(1 for e, *_ in executions(log) if e == "end") == 6
    # Never more than 2 at once, and the token is used fully (jobs not serialised needlessly).
    assert _max_overlap(log) == 2
    # The two controllers' lives overlapped, from submission to their last job's end.
    windows = [
        tuple(map(float, (tmp_path / f"{xp}.window").read_text().split())) for xp in controllers
    ]
    assert max(begin for begin, _ in windows) < min(end for _, end in windows)


def test_token_total_edited_live(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    controller = start_controller(
        TOKEN_USER.format(root=str(tmp_path), xp="live", total=1, n=3, duration=0,
                          gate=f"Path({str(gate)!r})"),
        tmp_path,
    )
    wait_until(lambda: sum(1 for e, *_ in executions(log) if e == "start") == 1,
               what="the first job")
    total = tmp_path / "ws" / ".experimaestro" / "tokens" / "tk" / "total"
    total.write_text("3\n")
    wait_until(lambda: sum(1 for e, *_ in executions(log) if e == "start") == 3,
               what="all three jobs to run at once after the edit")
    gate.touch()
    assert controller.wait(timeout=60) == 0


def test_token_of_killed_controller_and_job_is_reclaimed(tmp_path: Path) -> None:
    log, gate = tmp_path / "log", tmp_path / "gate"
    first = start_controller(
        TOKEN_USER.format(root=str(tmp_path), xp="dead", total=1, n=1, duration=0,
                          gate=f"Path({str(gate)!r})"),
        tmp_path, "dead.py",
    )
    wait_until(lambda: count(log, "start", "dead0") == 1, what="the token holder to start")
    pidfile = next((tmp_path / "ws" / "jobs").glob("xpm_tasks.step/*/step.pid"))
    first.kill()
    first.wait(timeout=10)
    os.kill(json.loads(pidfile.read_text())["pid"], signal.SIGKILL)
    gate.touch()
    second = start_controller(
        TOKEN_USER.format(root=str(tmp_path), xp="alive", total=1, n=1, duration=0, gate=None),
        tmp_path, "alive.py",
    )
    assert second.wait(timeout=60) == 0
    assert count(log, "end", "alive0") == 1
    experiment_log = (tmp_path / "ws" / "experiments" / "alive" / "experiment.log").read_text()
    assert "reclaim" in experiment_log.lower()


def test_tokens_list_shows_totals_and_holders(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from experimaestro.cli import main

    log, gate = tmp_path / "log", tmp_path / "gate"
    controller = start_controller(
        TOKEN_USER.format(root=str(tmp_path), xp="listed", total=2, n=1, duration=0,
                          gate=f"Path({str(gate)!r})"),
        tmp_path,
    )
    wait_until(lambda: count(log, "start", "listed0") == 1, what="the token holder")
    result = CliRunner().invoke(main, ["tokens", "list", "--workdir", str(tmp_path / "ws"),
                                       "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.output)
    assert (row["name"], row["total"], row["used"]) == ("tk", 2, 1)
    assert row["holders"][0]["stale"] is None
    gate.touch()
    assert controller.wait(timeout=60) == 0
    result = CliRunner().invoke(main, ["tokens", "list", "--workdir", str(tmp_path / "ws")])
    assert result.output.split("\n")[1].split() == ["tk", "2", "0", "-"]
