"""Tasks used by bench/local.py (must be importable by the job processes)."""

from __future__ import annotations

import json
import os
import time
from typing import Optional

from experimaestro import Config, Param, Task


def _cpu_ms() -> float:
    t = os.times()
    return (t.user + t.system) * 1000.0


class Trivial(Task):
    """Writes a small file; records its own process CPU time (user+sys) at the end of execute."""

    i: Param[int]

    def execute(self) -> None:
        with open("out.txt", "w") as f:
            f.write(f"{self.i}\n")
        with open("cpu.json", "w") as f:
            f.write(json.dumps({"cpu_ms": _cpu_ms()}))


class ChainOut(Config):
    """The output of a chain step: what the next step takes as a parameter."""

    step: Param[int]


class ChainStep(Task):
    """One step of a chain: writes its start/end wall-clock times (first and last thing)."""

    i: Param[int]
    prev: Param[Optional[ChainOut]] = None

    def task_outputs(self, dep):
        return dep(ChainOut.C(step=self.i))

    def execute(self) -> None:
        start = time.time()
        with open("out.txt", "w") as f:
            f.write(f"{self.i}\n")
        end = time.time()
        with open("times.json", "w") as f:
            f.write(json.dumps({"start": start, "end": end, "i": self.i}))


class Sleeper(Task):
    i: Param[int]
    seconds: Param[float]

    def execute(self) -> None:
        time.sleep(self.seconds)
