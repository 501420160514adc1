"""Paths inside a job folder, known once the task is submitted (experimaestro 2.x's
``PathGenerator``): ``model: Meta[Path] = field(default_factory=PathGenerator("model.pt"))``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union


class GeneratedPath(os.PathLike):
    """A path relative to the job folder of the task that is submitted with this configuration;
    replaced by the real path when that task is submitted."""

    __slots__ = ("relative",)

    def __init__(self, relative: Union[str, Path]) -> None:
        self.relative = Path(relative)

    def __fspath__(self) -> str:
        raise RuntimeError(
            f"the path {self.relative} inside the job folder is known once the task is submitted "
            f"(read it after submit(), or in execute())"
        )

    def __repr__(self) -> str:
        return f"GeneratedPath({str(self.relative)!r})"


class PathGenerator:
    """A default factory for a path inside the job folder: ``PathGenerator("model.pt")``."""

    __slots__ = ("relative",)

    def __init__(self, relative: Union[str, Path]) -> None:
        self.relative = Path(relative)

    def __call__(self) -> GeneratedPath:
        return GeneratedPath(self.relative)

    def __repr__(self) -> str:
        return f"PathGenerator({str(self.relative)!r})"


#: The lower-case name experimaestro 2.x also offers.
pathgenerator = PathGenerator
