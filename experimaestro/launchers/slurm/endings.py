"""How a Slurm job ended: Slurm's last word on it, turned into the scheduler's ``Ending``.

The job's own marker decides, except where Slurm knows better (a job killed from outside: time
limit, memory, node failure, preemption), and except when the job left no marker (it died before
its runner started): then the failure says what Slurm said, with the end of the job's stderr.
"""

from __future__ import annotations

from typing import Optional

from ...connectors.files import tail_lines
from ..base import Ending
from ..jobfiles import FailureRecord, JobFiles
from .commands import SlurmJobInfo


#: Slurm end states that the job's own marker cannot tell: (reason, message).
_OUTSIDE_ENDS = {
    "TIMEOUT": ("timeout", "the job reached its time limit (Slurm state TIMEOUT)"),
    "DEADLINE": ("timeout", "the job reached its deadline (Slurm state DEADLINE)"),
    "OUT_OF_MEMORY": ("memory", "the job ran out of memory (Slurm state OUT_OF_MEMORY)"),
    "NODE_FAIL": ("node_failure", "the job's node failed (Slurm state NODE_FAIL)"),
    "BOOT_FAIL": ("node_failure", "the job's node failed to boot (Slurm state BOOT_FAIL)"),
    "PREEMPTED": ("preempted", "the job was preempted (Slurm state PREEMPTED)"),
}


def classify(key: str, info: Optional[SlurmJobInfo], files: JobFiles, lost: bool = False) -> Ending:
    """How a Slurm job ended, for the scheduler (the marker decides unless ``overrides``)."""
    if lost or info is None:
        if lost:
            return Ending(None, FailureRecord(
                1, "lost", f"Slurm no longer knows job {key}, and it left no marker"), lost=True)
        return Ending(None)  # forgotten by Slurm, but its marker is there: it decides
    state = info.state
    code = info.exit_code
    if info.signal:
        code = -info.signal
    if state in _OUTSIDE_ENDS:
        reason, message = _OUTSIDE_ENDS[state]
        return Ending(code, FailureRecord(1 if not code or code < 0 else code, reason,
                                          f"{message}; Slurm job {key}"), overrides=True)
    if state == "CANCELLED":
        if info.reason == "DependencyNeverSatisfied":
            return Ending(code, FailureRecord(
                1, "dependency", f"a dependency failed: Slurm cancelled job {key}"))
        return Ending(code, FailureRecord(
            143, "cancelled", f"Slurm job {key} was cancelled (scancel) before its runner ended"))
    if state == "COMPLETED":
        return Ending(0 if code is None else code)
    # FAILED and the rest: the marker decides; without one, the job died before its runner
    # started or ended (a bad setup line, no Python on the node): say what Slurm and the script said.
    shown = code if code is not None else "?"
    tail = "\n".join(tail_lines(files.stderr, 15, 4096))
    message = (
        f"Slurm job {key} ended {state}"
        f"{f' ({info.reason})' if info.reason and info.reason != 'None' else ''} with exit code "
        f"{shown} before its runner wrote a marker (a failing setup line?)"
        + (f"; last lines of {files.stderr}:\n{tail}" if tail else "")
    )
    return Ending(code, FailureRecord(code if code and code > 0 else 1, "failed", message))
