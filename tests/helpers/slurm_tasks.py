"""Tasks of the Slurm tests (imported by controllers and by job processes on the test cluster)."""

from __future__ import annotations

from pathlib import Path

from polling import poll
from xpm_tasks import record

from experimaestro import Meta, Param, ResumableTask, Task


class Checkpointed(ResumableTask):
    """Hangs (until its time limit) on its first run, after writing a checkpoint; a run that finds
    the checkpoint ends at once."""

    name: Param[str]
    log: Meta[Path]

    def execute(self) -> None:
        record(self.log, "start", self.name)
        checkpoint = Path("checkpoint")
        if not checkpoint.exists():
            checkpoint.write_text("half done")
            poll(lambda: False and None, 3600, interval=0.5)  # killed by the time limit
        record(self.log, "end", self.name)


class Hangs(Task):
    """Hangs until its time limit (not resumable)."""

    name: Param[str]
    log: Meta[Path]

    def execute(self) -> None:
        record(self.log, "start", self.name)
        poll(lambda: False and None, 3600, interval=0.5)


class Hog(Task):
    """Takes ``megabytes`` of memory (every page touched), then ends."""

    megabytes: Param[int]

    def execute(self) -> None:
        chunks = []
        for _ in range(self.megabytes):
            chunks.append(bytearray(1 << 20))
            chunks[-1][::4096] = b"x" * len(range(0, 1 << 20, 4096))


class StopsEarly(ResumableTask):
    """Records the time it has left, then stops on purpose (GracefulTimeout) on its first run,
    after a checkpoint; a run that finds the checkpoint ends."""

    name: Param[str]
    log: Meta[Path]

    def execute(self) -> None:
        from experimaestro import GracefulTimeout

        record(self.log, "start", self.name)
        Path("remaining.txt").write_text(str(self.remaining_time()))
        checkpoint = Path("checkpoint")
        if not checkpoint.exists():
            checkpoint.write_text("half done")
            raise GracefulTimeout("stopping before the time limit")
        record(self.log, "end", self.name)
