"""Tasks sharing a partial folder (imported by controllers and by job processes)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from polling import poll
from xpm_tasks import record

from experimaestro import Meta, Param, PathGenerator, Task, field, param_group, partial

iter_group = param_group("iter")


class Checkpointed(Task):
    """Writes into its partial folder; refuses to run while another job is inside it."""

    checkpoints = partial(exclude_groups=[iter_group])

    max_iter: Param[int] = field(groups=[iter_group])
    lr: Param[float]
    log: Meta[Path]
    gate: Meta[Optional[Path]] = None
    checkpoint: Meta[Path] = field(
        default_factory=PathGenerator("checkpoint", partial=checkpoints)
    )

    def execute(self) -> None:
        self.checkpoint.mkdir(parents=True, exist_ok=True)
        busy = self.checkpoint / "busy"
        busy.open("x").close()  # FileExistsError: another job is using the folder
        record(self.log, "start", str(self.max_iter))
        if self.gate is not None:
            poll(self.gate.exists, 120)
        (self.checkpoint / f"iter-{self.max_iter}").write_text(str(self.lr))
        busy.unlink()
        record(self.log, "end", str(self.max_iter))
