"""A done job whose params.json is missing or damaged is still reused, with a warning, and its
params.json is written again from the submitted configuration (so ``jobs list`` shows its tags)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from xpm_tasks import Step, count

from conftest import run_controller
from experimaestro import JobState, experiment, tag
from experimaestro.cli.jobs import read_tags


RERUN = """
from pathlib import Path
from experimaestro import experiment, tag
from xpm_tasks import Step

with experiment(Path({root!r}) / "ws", "again"):
    job = Step.C(name=tag("kept"), log=Path({root!r}) / "log").submit().__xpm__.job
print("STATE", job.state.value)
"""


def damage(params: Path, how: str) -> None:
    if how == "missing":
        params.unlink()
    elif how == "garbage":
        params.write_text('{"xpm_format": 1, "objects": [')
    else:  # another job's params.json
        data = json.loads(params.read_text())
        data["identifier"] = "0" * 64
        params.write_text(json.dumps(data))


@pytest.mark.parametrize("how", ["missing", "garbage", "other-job"])
def test_done_job_with_damaged_params_is_reused_and_repaired(tmp_path: Path, how: str) -> None:
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "xp"):
        job = Step.C(name=tag("kept"), log=log).submit().__xpm__.job
    params = job.files.params
    assert read_tags(params) == {"name": "kept"}
    damage(params, how)
    # A rerun of the script (a new process), as a user would do.
    code, out = run_controller(RERUN.format(root=str(tmp_path)), tmp_path)
    assert code == 0 and "STATE done" in out, out
    assert count(log, "start", "kept") == 1  # reused, not run again
    experiment_log = (tmp_path / "ws" / "experiments" / "again" / "experiment.log").read_text()
    assert "writing it again from the submitted configuration" in experiment_log
    assert read_tags(params) == {"name": "kept"}
    assert json.loads(params.read_text())["identifier"] == job.identifier


def test_damaged_params_of_a_job_done_in_this_process_are_repaired(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "log"
    with experiment(tmp_path / "ws", "xp"):
        job = Step.C(name=tag("kept"), log=log).submit().__xpm__.job
    damage(job.files.params, "garbage")
    with experiment(tmp_path / "ws", "again"):
        again = Step.C(name=tag("kept"), log=log).submit().__xpm__.job
    assert again is job and job.state is JobState.DONE
    assert "writing it again from the submitted configuration" in caplog.text
    assert read_tags(job.files.params) == {"name": "kept"}


def test_intact_params_of_a_done_job_are_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with experiment(tmp_path / "ws", "xp"):
        job = Step.C(name="s", log=tmp_path / "log").submit().__xpm__.job
    before = job.files.params.stat().st_mtime_ns
    with experiment(tmp_path / "ws", "again"):
        Step.C(name="s", log=tmp_path / "log").submit()
    assert job.files.params.stat().st_mtime_ns == before
    assert "writing it again" not in caplog.text


def test_params_older_than_the_done_marker_are_not_read(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A rerun of 10,000 done jobs must not read 10,000 files: a params.json older than ``.done``
    (written before the job ran, untouched since) is trusted as it is, even when its bytes were
    damaged without changing its time."""
    with experiment(tmp_path / "ws", "xp"):
        job = Step.C(name="s", log=tmp_path / "log").submit().__xpm__.job
    params = job.files.params
    params.write_text("damaged, but older than the marker")
    older = job.files.done.stat().st_mtime_ns - 1_000_000_000
    os.utime(params, ns=(older, older))
    with experiment(tmp_path / "ws", "again"):
        assert Step.C(name="s", log=tmp_path / "log").submit().__xpm__.job.state is JobState.DONE
    assert "writing it again" not in caplog.text
    assert params.read_text() == "damaged, but older than the marker"
