"""Tasks run on the SSH test host (tests/test_ssh_experiment.py, tests/test_ssh_slurm.py): staged
there with the user's code, so this module imports experimaestro only."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Optional

from polling import poll, work

from experimaestro import Meta, Param, PathGenerator, Task, field


def wait_released(path: str, timeout: float = 120) -> None:
    """Wait until a test creates ``path`` on this host, with a deadline: past it the job fails.
    (``polling`` is staged with the tests' other helpers: the job imports it on the host.)"""
    try:
        poll(Path(path).exists, timeout)
    except TimeoutError:
        raise SystemExit(f"{path} never appeared within {timeout} s") from None


class Add(Task):
    """Writes ``x + y`` and the host it ran on into ``result.json`` in its job folder."""

    x: Param[int]
    y: Param[int] = 0
    result: Meta[Path] = field(default_factory=PathGenerator("result.json"))

    def execute(self) -> None:
        self.result.write_text(json.dumps({"sum": self.x + self.y, "host": socket.gethostname(),
                                           "cwd": os.getcwd()}))


class Total(Task):
    """Reads the results of upstream ``Add`` jobs (their folders on the same host)."""

    parts: Param[list[Add]]
    result: Meta[Path] = field(default_factory=PathGenerator("total.json"))

    def execute(self) -> None:
        total = sum(json.loads(p.result.read_text())["sum"] for p in self.parts)
        self.result.write_text(json.dumps({"total": total}))


class Fails(Task):
    """Exits with an error."""

    code: Param[int] = 3

    def execute(self) -> None:
        raise SystemExit(self.code)


class WaitsForFile(Task):
    """Runs until ``path`` exists on its host (a test creates it there), then writes ``out.txt``."""

    path: Param[str]
    tag: Param[str] = ""
    out: Meta[Path] = field(default_factory=PathGenerator("out.txt"))

    def execute(self) -> None:
        print(f"waiting for {self.path}", flush=True)
        wait_released(self.path)
        self.out.write_text("released")


class ReadsData(Task):
    """Reads a data file given by its absolute path (it must exist where the job runs)."""

    data: Param[Path]

    def execute(self) -> None:
        print(self.data.read_text())


class CountedWait(Task):
    """Counts its runs and runs until released, in the folder ``marks`` of its host: each run
    appends its pid to ``marks/runs``, waits for ``marks/go`` (a test creates it), then writes
    ``out.txt``. A job run twice leaves two lines."""

    marks: Param[str]
    out: Meta[Path] = field(default_factory=PathGenerator("out.txt"))

    def execute(self) -> None:
        marks = Path(self.marks)
        marks.mkdir(parents=True, exist_ok=True)
        with open(marks / "runs", "a") as runs:
            runs.write(f"{os.getpid()}\n")
        wait_released(str(marks / "go"))
        self.out.write_text(f"released {os.getpid()}")


class Holds(Task):
    """Appends ``start NAME TIME`` to ``log`` (a file on its host), runs until ``gate`` exists
    there (when given) and ``duration`` seconds more, then appends ``end NAME TIME``: the tests of
    remote tokens read when each job held its units."""

    name: Param[str]
    log: Param[str]
    gate: Param[str] = ""
    duration: Param[float] = 0.0

    def _say(self, event: str) -> None:
        with open(self.log, "a") as log:  # one short append per line: lines never interleave
            log.write(f"{event} {self.name} {time.time()}\n")

    def execute(self) -> None:
        self._say("start")
        if self.gate:
            wait_released(self.gate)
        work(self.duration)
        self._say("end")


class Gated(Task):
    """Waits until ``gate`` exists on its host (when given), then fails (``fail``) or writes into
    ``value.json`` its ``value`` plus its upstream job's total, its host and its Slurm job id
    (tests/test_ssh_slurm.py: chains, arrays, re-attached jobs)."""

    value: Param[int]
    upstream: Param[Optional["Gated"]] = None
    fail: Param[bool] = False
    gate: Meta[str] = ""
    out: Meta[Path] = field(default_factory=PathGenerator("value.json"))

    def execute(self) -> None:
        if self.gate:
            wait_released(self.gate)
        if self.fail:
            raise SystemExit(3)
        upstream = json.loads(self.upstream.out.read_text())["total"] if self.upstream else 0
        self.out.write_text(json.dumps({
            "total": self.value + upstream, "host": socket.gethostname(),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
            "slurm_array_job": os.environ.get("SLURM_ARRAY_JOB_ID"),
        }))


class ReportsProgress(Task):
    """Reports ``progress(0.42, "epoch 3/10")``, then runs until ``path`` exists on its host."""

    path: Param[str]

    def execute(self) -> None:
        from experimaestro import progress

        progress(0.42, "epoch 3/10")
        wait_released(self.path)
