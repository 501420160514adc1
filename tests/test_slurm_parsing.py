"""Reading Slurm's output (squeue, sacct, sbatch, scontrol) and telling failures apart; no cluster
needed: the texts are those printed by Slurm 22.05."""

from __future__ import annotations

from pathlib import Path

import pytest

from experimaestro.launchers.jobfiles import JobFiles
from experimaestro.launchers.slurm.commands import (
    SlurmJobInfo,
    expand_tasks,
    parse_config,
    parse_sacct,
    parse_sbatch,
    parse_squeue,
)
from experimaestro.launchers.slurm.endings import classify

# squeue -h -t all -O SQUEUE_FORMAT, as printed by Slurm 22.05 (an array whose tasks 0-2 ran,
# a pending array range, a failed job, a job cancelled on a failed dependency).
SQUEUE = """\
4|1|0|COMPLETED|None|0|
5|1|1|FAILED|NonZeroExitCode|256|
1|1|2|FAILED|NonZeroExitCode|512|
10|10|0-3%2|PENDING|None|0|
6|6|N/A|FAILED|NonZeroExitCode|768|
7|7|N/A|CANCELLED|DependencyNeverSatisfied|0|
12|12|N/A|RUNNING|None|0|
13|13|N/A|CANCELLED|None|15|
"""


def test_squeue() -> None:
    jobs = parse_squeue(SQUEUE)
    assert jobs["1_0"] == SlurmJobInfo("1_0", "COMPLETED", "None", 0, 0)
    assert jobs["1_1"].exit_code == 1 and jobs["1_2"].exit_code == 2
    assert [jobs[f"10_{i}"].state for i in range(4)] == ["PENDING"] * 4
    assert jobs["6"].exit_code == 3 and not jobs["6"].active
    assert jobs["7"].reason == "DependencyNeverSatisfied"
    assert jobs["12"].active and jobs["10_3"].active
    assert jobs["13"].signal == 15
    assert "10" not in jobs and "1" not in jobs


def test_expand_tasks() -> None:
    assert expand_tasks("0-3%2") == ["0", "1", "2", "3"]
    assert expand_tasks("[1,4-5]") == ["1", "4", "5"]
    assert expand_tasks("0-6:3") == ["0", "3", "6"]


def test_sacct() -> None:
    text = "3|FAILED|1:0\n4_0|COMPLETED|0:0\n4_1|CANCELLED by 0|0:15\n5_[2-3]|PENDING|0:0\n"
    jobs = parse_sacct(text)
    assert jobs["3"].state == "FAILED" and jobs["3"].exit_code == 1
    assert jobs["4_1"].state == "CANCELLED" and jobs["4_1"].signal == 15
    assert jobs["5_2"].active and jobs["5_3"].active


def test_sbatch() -> None:
    assert parse_sbatch("123\n") == "123"
    assert parse_sbatch("123;cluster\n") == "123"
    with pytest.raises(ValueError):
        parse_sbatch("sbatch: error: nope\n")


def test_config() -> None:
    text = "Configuration data as of 2026\nMaxArraySize            = 1001\nMinJobAge = 300 sec\n"
    assert parse_config(text)["MaxArraySize"] == "1001"


@pytest.mark.parametrize(
    "state, reason, expected, overrides",
    [
        ("TIMEOUT", "TimeLimit", "timeout", True),
        ("DEADLINE", "", "timeout", True),
        ("OUT_OF_MEMORY", "OutOfMemory", "memory", True),
        ("NODE_FAIL", "NodeDown", "node_failure", True),
        ("BOOT_FAIL", "", "node_failure", True),
        ("PREEMPTED", "", "preempted", True),
        ("CANCELLED", "None", "cancelled", False),
        ("CANCELLED", "DependencyNeverSatisfied", "dependency", False),
        ("FAILED", "NonZeroExitCode", "failed", False),
    ],
)
def test_failures_told_apart(tmp_path: Path, state: str, reason: str, expected: str,
                             overrides: bool) -> None:
    files = JobFiles(tmp_path, "learn")
    ending = classify("42", SlurmJobInfo("42", state, reason, 3, 0), files)
    assert ending.failure is not None and ending.failure.reason == expected
    assert ending.overrides is overrides
    assert "42" in ending.failure.message


def test_completed_lets_the_marker_decide(tmp_path: Path) -> None:
    ending = classify("42", SlurmJobInfo("42", "COMPLETED", "None", 0, 0), JobFiles(tmp_path, "x"))
    assert ending.failure is None and ending.code == 0


def test_failure_before_the_runner_shows_the_script_output(tmp_path: Path) -> None:
    files = JobFiles(tmp_path, "learn")
    files.stderr.write_text("banner\nbash: line 12: module: command not found\n")
    ending = classify("42", SlurmJobInfo("42", "FAILED", "NonZeroExitCode", 127, 0), files)
    assert ending.failure is not None
    assert ending.failure.code == 127
    assert "FAILED (NonZeroExitCode)" in ending.failure.message
    assert "module: command not found" in ending.failure.message


def test_lost(tmp_path: Path) -> None:
    ending = classify("42", None, JobFiles(tmp_path, "x"), lost=True)
    assert ending.lost and ending.failure is not None and ending.failure.reason == "lost"
