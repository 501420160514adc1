"""Tasks of the monitor tests (imported by controllers and job processes): a job that reports its
progress, prints a line, then waits for a gate file (and may fail)."""

from __future__ import annotations

from pathlib import Path

from polling import poll

from experimaestro import Meta, Param, Task, progress


class Gated(Task):
    """Prints ``hello <name>``, reports progress 0.42, waits for ``gate`` (if given), may fail."""

    name: Param[str]
    gate: Meta[str] = ""
    fail: Param[bool] = False

    def execute(self) -> None:
        print(f"hello {self.name}", flush=True)
        progress(0.42, "epoch 3/10")
        if self.gate:
            poll(Path(self.gate).exists, 120)
        if self.fail:
            raise RuntimeError(f"{self.name} fails on purpose")


class Downstream(Task):
    """Depends on a Gated job."""

    upstream: Param[Gated]

    def execute(self) -> None:
        print("downstream")


#: A controller: ``python controller.py WORKDIR GATE_DIR PORT`` (PORT: "None" for no monitor);
#: jobs a and d (gated), b (fails), a downstream job of a.
CONTROLLER = """
import sys
from experimaestro import FailedExperiment, experiment, tag
from monitor_tasks import Downstream, Gated

workdir, gates, port = sys.argv[1], sys.argv[2], eval(sys.argv[3])
try:
    with experiment(workdir, "xp", port=port) as xp:
        a = Gated.C(name=tag("a"), gate=gates + "/a").submit()
        Gated.C(name=tag("b"), fail=True).submit()
        Downstream.C(upstream=a).submit()
        Gated.C(name=tag("d"), gate=gates + "/d").submit()
except FailedExperiment:
    pass
"""
