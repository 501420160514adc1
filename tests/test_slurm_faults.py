"""Ends that the test cluster cannot produce on demand (a node that fails): a fake ``squeue`` on
PATH runs the real one and reports the chosen state for the jobs listed in a file. The job itself is
really cancelled first, as the real event would end it. (Preemption and memory are real:
test_slurm_preemption.py.)"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import wait_until
from xpm_tasks import Step, count

from experimaestro import FailedExperiment, experiment

FAKE_SQUEUE = """#!/bin/sh
# Test double: the real squeue, with the state of the listed jobs (JobID field) rewritten.
out=$({real} "$@"); code=$?
printf '%s\\n' "$out" | awk -F'|' -v OFS='|' -v faults={faults} '
  BEGIN {{ while ((getline line < faults) > 0) {{ split(line, f, " "); state[f[1]] = f[2] }} }}
  ($1 in state) && $4 == "CANCELLED" {{ $4 = state[$1] }}
  {{ print }}'
exit $code
"""


@pytest.fixture(name="fault")
def _fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
           plain_slurm_launcher):
    """``fault(jobid, STATE)``: cancel the job, and make squeue report it in STATE."""
    make = plain_slurm_launcher
    real = shutil.which("squeue")
    assert real is not None
    folder = tmp_path / "fakebin"
    folder.mkdir()
    faults = tmp_path / "faults"
    faults.touch()
    fake = folder / "squeue"
    fake.write_text(FAKE_SQUEUE.format(real=real, faults=str(faults)))
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}:{Path(real).parent}")

    def inject(jobid: str, state: str) -> None:
        with open(faults, "a") as f:
            f.write(f"{jobid} {state}\n")
        subprocess.run(["scancel", jobid], check=True)

    inject.make = make  # type: ignore[attr-defined]
    return inject


def _running_jobid(job, log: Path, name: str) -> str:  # type: ignore[no-untyped-def]
    wait_until(lambda: count(log, "start", name) == 1, timeout=60, what=f"{name} running")
    return json.loads(job.files.pidfile.read_text())["jobid"]


@pytest.mark.parametrize("state, reason", [("NODE_FAIL", "node_failure"),
                                           ("BOOT_FAIL", "node_failure")])
def test_outside_ends_override_the_runners_marker(tmp_path: Path, fault, state: str,  # type: ignore[no-untyped-def]
                                                   reason: str) -> None:
    """The runner, killed, wrote "cancelled"; Slurm's word (a node failure) wins."""
    launcher = fault.make()
    log, gate = tmp_path / "log", tmp_path / "gate"
    with pytest.raises(FailedExperiment):
        with experiment(tmp_path / "ws", "outside"):
            step = Step.C(name="o", log=log, gate=gate).submit(launcher=launcher)
            job = step.__xpm__.job
            fault(_running_jobid(job, log, "o"), state)
    assert job.failure.reason == reason
    assert json.loads(job.files.failed.read_text())["reason"] == reason
    assert state in job.failure.message
