"""``progress()`` inside a task: written into the job folder, rate-limited, last value kept, and
shown by ``experimaestro jobs list``."""

from __future__ import annotations

import json
import time
from pathlib import Path

from click.testing import CliRunner
from conftest import start_controller, wait_until

from experimaestro import progress
from experimaestro.cli import main
from experimaestro.notifications import ProgressWriter, read_progress


def test_a_tight_loop_writes_a_few_times_and_the_last_value_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "job.progress"
    writer = ProgressWriter(path, min_interval=0.25)
    start = time.monotonic()
    for i in range(100_000):
        writer.update(i / 100_000, f"step {i}", 0)
    elapsed = time.monotonic() - start
    # At most one write per interval (plus the first one); the loop itself stays cheap.
    assert writer.writes <= 2 + elapsed / 0.25
    assert elapsed < 5
    writer.flush()
    assert read_progress(path) == [{"value": 0.99999, "desc": "step 99999"}]


def test_a_value_given_between_writes_is_written_soon_without_another_call(tmp_path: Path) -> None:
    path = tmp_path / "job.progress"
    writer = ProgressWriter(path, min_interval=0.2)
    writer.update(0.1, None, 0)
    writer.update(0.5, "later", 0)  # within the interval: kept, written by the timer
    assert read_progress(path)[0]["value"] == 0.1
    wait_until(lambda: read_progress(path)[0]["value"] == 0.5, timeout=5, what="the pending value")
    assert writer.writes == 2


def test_levels_and_the_2x_signature(tmp_path: Path) -> None:
    path = tmp_path / "job.progress"
    writer = ProgressWriter(path, min_interval=0)
    writer.update(0.5, "epochs", 0)
    writer.update(0.25, "batches", 1)
    assert [lv["desc"] for lv in read_progress(path)] == ["epochs", "batches"]
    writer.update(0.75, "epochs", 0)  # a new value at level 0 ends level 1
    assert read_progress(path) == [{"value": 0.75, "desc": "epochs"}]
    progress(0.3, 1)  # experimaestro 2.x: progress(value, level); outside a job: nothing happens


TASK = '''
from pathlib import Path
from polling import poll
from experimaestro import Param, Task, progress


class Train(Task):
    gate: Param[str]

    def execute(self):
        for i in range(10_000):
            progress(i / 10_000)
        progress(0.42, "epoch 3/10")
        poll(Path(self.gate).exists, 120)
'''

CONTROLLER = '''
import sys
from experimaestro import experiment
from progress_tasks import Train

with experiment(sys.argv[1], "xp"):
    Train.C(gate=sys.argv[2]).submit()
'''


def test_progress_reaches_jobs_list(tmp_path: Path) -> None:
    (tmp_path / "progress_tasks.py").write_text(TASK)
    workdir, gate = tmp_path / "ws", tmp_path / "gate"
    process = start_controller(
        f"import sys; sys.argv[1:] = [{str(workdir)!r}, {str(gate)!r}]\n"
        f"sys.path.insert(0, {str(tmp_path)!r})\n" + CONTROLLER,
        tmp_path,
    )
    runner = CliRunner()

    def listed() -> str:
        result = runner.invoke(main, ["jobs", "list", "--workdir", str(workdir)])
        return result.output if "running 42% (epoch 3/10)" in result.output else ""

    wait_until(listed, what="the progress in jobs list")
    result = runner.invoke(main, ["jobs", "list", "--workdir", str(workdir), "--json"])
    assert json.loads(result.output)[0]["progress"] == [{"value": 0.42, "desc": "epoch 3/10"}]
    # A tight loop of 10,000 calls wrote the file a handful of times at most: its tmp files are
    # gone, and the job ran on.
    job = next((workdir / "jobs").glob("*/*"))
    assert not list(job.glob(".*.tmp"))
    gate.touch()
    assert process.wait(timeout=120) == 0
