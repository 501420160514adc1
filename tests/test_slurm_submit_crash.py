"""A controller killed between ``sbatch`` returning and the ``.pid`` being written: the rerun finds
the job by the ``--comment`` recorded in its folder before sbatch, and never submits it again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import start_controller, wait_until
from test_slurm_crash import PROLOGUE, _experiment_log
from xpm_tasks import count, executions

from experimaestro.launchers.slurm.launcher import HOLD_AFTER_SBATCH

CONTROLLER = PROLOGUE + """\
        # A local upstream job: the Slurm jobs become ready together (one array if several)
        up = Step.C(name="up", log=log).submit(launcher=DirectLauncher())
        for name in {names!r}:
            Step.C(name=name, log=log, gate=gate, after=up).submit()
    print("CONTROLLER DONE")
"""


def _slurm_pids(root: Path) -> dict[str, dict]:
    records = {p.parent.name: json.loads(p.read_text())
               for p in (root / "ws" / "jobs").glob("*/*/*.pid")}
    return {k: r for k, r in records.items() if r["type"] == "slurm"}


@pytest.mark.parametrize("names", [["a"], ["a", "b"]], ids=["lone", "array"])
def test_killed_after_sbatch_rerun_reattaches(tmp_path: Path, plain_slurm_launcher,
                                              names: list[str]) -> None:
    log, gate, hold = tmp_path / "log", tmp_path / "gate", tmp_path / "hold"
    script = CONTROLLER.format(root=str(tmp_path), names=names)
    first = start_controller(script, tmp_path, env={HOLD_AFTER_SBATCH: str(hold)})
    reached = Path(f"{hold}.reached")
    wait_until(reached.exists, timeout=60, what="the first controller's sbatch to return")
    jobid = reached.read_text()
    first.kill()  # after sbatch, before any .pid: the crash window
    first.wait(timeout=10)
    assert _slurm_pids(tmp_path) == {}

    second = start_controller(script, tmp_path, name="rerun.py")
    wait_until(lambda: _experiment_log(tmp_path).count("was submitted earlier") == len(names),
               timeout=60, what="the rerun to find the submitted jobs")
    gate.touch()
    assert second.wait(timeout=120) == 0, (tmp_path / "rerun.py.out").read_text()
    expected = {jobid} if len(names) == 1 else {f"{jobid}_{i}" for i in range(len(names))}
    assert {r["jobid"] for r in _slurm_pids(tmp_path).values()} == expected
    for name in names:
        assert count(log, "start", name) == 1 and count(log, "end", name) == 1, executions(log)
    last = [line for line in _experiment_log(tmp_path).splitlines() if "Slurm commands run" in line]
    assert last and "sbatch" not in last[-1], last
