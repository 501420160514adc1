"""A configuration graph with a cycle is refused at ``submit()``, with the path of the cycle: it
would hash, but params.json cannot hold it and the job could not rebuild it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest

from experimaestro import Config, Param, Task, ValidationError, experiment


class Left(Config):
    other: Param[Optional["Right"]] = None


class Right(Config):
    other: Param[Optional[Left]] = None


class Holder(Task):
    left: Param[Left]

    def execute(self) -> None:
        pass


def test_cycle_is_refused_at_submit(tmp_path: Path) -> None:
    left, right = Left.C(), Right.C()
    left.other = right
    right.other = left
    with experiment(tmp_path / "ws", "xp") as xp:
        with pytest.raises(ValidationError, match=r"Holder\.left -> Left\.other -> Right\.other -> Left"):
            Holder.C(left=left).submit()
        assert xp.jobs == []
    assert not (tmp_path / "ws" / "jobs").exists() or not any((tmp_path / "ws" / "jobs").iterdir())


def test_shared_values_are_not_cycles(tmp_path: Path) -> None:
    shared = Right.C()
    with experiment(tmp_path / "ws", "xp"):
        job = Holder.C(left=Left.C(other=shared)).submit().__xpm__.job
        Holder.C(left=Left.C(other=Right.C(other=Left.C(other=shared)))).submit()
    assert job.files.done.exists()
