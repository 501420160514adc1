"""Tasks used by the scheduler tests (imported by controllers and by job processes).

Every execution appends one line to an execution log (one ``write`` on an O_APPEND descriptor, so
concurrent lines never interleave): ``<event> <name> <time> <pid>``. Tests count executions and
read start/end times from it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Optional

from polling import poll, work

from experimaestro import Config, Meta, Param, PathGenerator, Task, field


def record(log: Path, event: str, name: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {name} {time.time():.6f} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def wait_for_file(path: Path, timeout: float = 120.0) -> None:
    """Block (in the job) until ``path`` exists; fail after ``timeout`` seconds."""
    poll(path.exists, timeout)


class Step(Task):
    """A job that records its start and end; it may wait for a gate file, sleep, or fail."""

    name: Param[str]
    log: Meta[Path]
    after: Param[Optional["Step"]] = None
    fail: Param[bool] = False
    gate: Meta[Optional[Path]] = None
    duration: Meta[float] = 0.0

    def execute(self) -> None:
        record(self.log, "start", self.name)
        if self.gate is not None:
            wait_for_file(self.gate)
        if self.duration:
            work(self.duration)
        if self.fail:
            record(self.log, "fail", self.name)
            raise RuntimeError(f"step {self.name} fails on purpose")
        Path("output.txt").write_text(self.name)
        record(self.log, "end", self.name)


class Result(Config):
    """The output of a Producer."""

    value: Param[int]
    producer: Param["Producer"]


class Producer(Task):
    """Writes ``value`` into its job folder; its output is a ``Result``."""

    value: Param[int]
    log: Meta[Path]

    def execute(self) -> None:
        record(self.log, "start", f"producer{self.value}")
        Path("value.txt").write_text(str(self.value))
        record(self.log, "end", f"producer{self.value}")

    def task_outputs(self, dep):  # type: ignore[no-untyped-def]
        return dep(Result.C(value=self.value, producer=self))


class Consumer(Task):
    """Reads the producer's file through its Result."""

    result: Param[Result]
    log: Meta[Path]

    def execute(self) -> None:
        record(self.log, "start", "consumer")
        value = (self.result.producer.jobpath / "value.txt").read_text()
        Path("seen.txt").write_text(value)
        record(self.log, "end", "consumer")


def executions(log: Path) -> list[tuple[str, str, float, int]]:
    """The parsed lines of an execution log."""
    if not log.exists():
        return []
    rows = []
    for line in log.read_text().splitlines():
        event, name, stamp, pid = line.split()
        rows.append((event, name, float(stamp), int(pid)))
    return rows


def count(log: Path, event: str, name: str) -> int:
    return sum(1 for e, n, _, _ in executions(log) if e == event and n == name)




class ChainReader(Task):
    """Walks a chain of Steps through their ``after`` parameters (upstream jobs' own values)."""

    last: Param[Step]

    def execute(self) -> None:
        names, step = [], self.last
        while step is not None:
            names.append(f"{step.name}:{(step.jobpath / 'output.txt').read_text()}")
            step = step.after
        Path("chain.txt").write_text(" ".join(names))


class Anything(Task):
    """Holds any value outside the identifier (to test values that params.json cannot hold)."""

    value: Meta[object]

    def execute(self) -> None:
        pass


class Saver(Task):
    """Writes into a path of its job folder given by a PathGenerator (experimaestro 2.x style)."""

    value: Param[int]
    model: Meta[Path] = field(default_factory=PathGenerator("model/weights.txt"))

    def execute(self) -> None:
        self.model.parent.mkdir(parents=True, exist_ok=True)
        self.model.write_text(str(self.value))


class Forked(Task):
    """Checks what a job forked from the fork server must have: fresh random numbers, working
    subprocesses (SIGCHLD handled by default), its own session."""

    name: Param[str]
    gate: Meta[Optional[Path]] = None

    def execute(self) -> None:
        import random
        import subprocess

        if self.gate is not None:
            wait_for_file(self.gate)
        code = subprocess.run(["true"]).returncode

        def late() -> None:  # a non-daemon thread: the job process waits for it, as Python does
            work(0.2)
            Path("thread.txt").write_text("joined")

        threading.Thread(target=late).start()
        Path("report.txt").write_text(
            f"{random.random()} {code} {os.getsid(0) == os.getpid()}"
        )


class Filler(Task):
    """Fills the disk of its job folder, then: ``fail`` lets the OSError (ENOSPC) end the job,
    ``raise`` raises another error, ``files`` (filling inodes, not bytes) returns normally."""

    name: Param[str]
    then: Param[str] = "fail"

    def execute(self) -> None:
        import errno

        try:
            if self.then == "files":
                for n in range(1_000_000):
                    os.close(os.open(f"file{n}", os.O_WRONLY | os.O_CREAT, 0o644))
            else:
                fd = os.open("fill", os.O_WRONLY | os.O_CREAT, 0o644)
                try:
                    while True:
                        os.write(fd, b"x" * 65536)
                finally:
                    os.close(fd)
        except OSError as exc:
            if self.then == "fail" or exc.errno != errno.ENOSPC:
                raise
        if self.then == "raise":
            raise RuntimeError("an error after the disk filled up")
