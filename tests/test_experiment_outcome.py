"""Every experiment ends by saying what happened to its jobs: ``experiment NAME: N jobs: X reused,
Y ran, Z failed`` (on stderr and in experiment.log), so that a rerun shows it reused everything.
The three counts split the jobs: a failed job counts as failed, whether it ran now or not."""

from __future__ import annotations

from pathlib import Path

from conftest import run_controller

CONTROLLER = """
from pathlib import Path
from experimaestro import FailedExperiment, experiment
from xpm_tasks import Step
log = Path({log!r})
try:
    with experiment({ws!r}, "outcome"):
        Step.C(name="good", log=log).submit()
        Step.C(name="bad", log=log, fail=True).submit()
        Step.C(name="other", log=log).submit()
except FailedExperiment:
    print("FAILED AS EXPECTED")
"""


def test_outcome_line_counts_reused_ran_and_failed(tmp_path: Path) -> None:
    script = CONTROLLER.format(log=str(tmp_path / "log"), ws=str(tmp_path / "ws"))
    code, out = run_controller(script, tmp_path)
    assert code == 0 and "FAILED AS EXPECTED" in out, out
    assert "experiment outcome: 3 jobs: 0 reused, 2 ran, 1 failed" in out

    code, out = run_controller(script, tmp_path, name="again.py")
    assert code == 0 and "FAILED AS EXPECTED" in out, out
    # The done jobs are reused; the failed one runs again (and fails again).
    assert "experiment outcome: 3 jobs: 2 reused, 0 ran, 1 failed" in out
    starts = (tmp_path / "log").read_text().split("\n")
    assert [line.split()[1] for line in starts if line.startswith("start")].count("bad") == 2
    log = (tmp_path / "ws" / "experiments" / "outcome" / "experiment.log").read_text()
    assert "3 jobs: 0 reused, 2 ran, 1 failed" in log  # the first run
    assert "3 jobs: 2 reused, 0 ran, 1 failed" in log
