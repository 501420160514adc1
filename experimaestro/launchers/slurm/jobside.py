"""The job side of a Slurm job: how much time it has left (``ResumableTask.remaining_time()``).

Imported by the runner only inside a Slurm job (``SLURM_JOB_ID`` set). The end time is asked of
Slurm once (``squeue -o %L``: the time left) and computed from the clock afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from typing import Optional

_TIME_LEFT = re.compile(r"^(?:(\d+)-)?(?:(\d+):)?(\d+):(\d+)$")


def parse_time_left(text: str) -> Optional[float]:
    """Seconds from squeue's ``%L`` (``D-HH:MM:SS``, ``HH:MM:SS``, ``MM:SS``); None if unlimited."""
    match = _TIME_LEFT.match(text.strip())
    if not match:
        return None
    days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
    return float(((days * 24 + hours) * 60 + minutes) * 60 + seconds)


def register_remaining_time() -> None:
    """Make ``ResumableTask.remaining_time()`` answer from Slurm's time limit."""
    from ...core.resumable import set_remaining_time

    end: list[Optional[float]] = []

    def remaining() -> Optional[float]:
        if not end:
            try:
                out = subprocess.run(
                    ["squeue", "-h", "-j", os.environ["SLURM_JOB_ID"], "-o", "%L"],
                    capture_output=True, text=True, timeout=30,
                ).stdout
            except (OSError, subprocess.SubprocessError):
                return None
            left = parse_time_left(out.strip().splitlines()[0] if out.strip() else "")
            end.append(time.time() + left if left is not None else None)
        return None if end[0] is None else max(0.0, end[0] - time.time())

    set_remaining_time(remaining)
