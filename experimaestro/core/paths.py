"""Paths inside a job folder, known once the task is submitted (experimaestro 2.x's
``PathGenerator``): ``model: Meta[Path] = field(default_factory=PathGenerator("model.pt"))``.

With ``partial=``, the path is inside the task's partial folder instead (``core/partial.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

if TYPE_CHECKING:  # pragma: no cover
    from .partial import Partial


class GeneratedPath(os.PathLike):
    """A path relative to the job folder of the task that is submitted with this configuration;
    replaced by the real path when that task is submitted."""

    __slots__ = ("relative", "partial")

    def __init__(self, relative: Union[str, Path], partial: Optional["Partial"] = None) -> None:
        self.relative = Path(relative)
        #: When set, the path is inside this partial folder of the task, not its job folder.
        self.partial = partial

    def __fspath__(self) -> str:
        raise RuntimeError(
            f"the path {self.relative} inside the job folder is known once the task is submitted "
            f"(read it after submit(), or in execute())"
        )

    def __repr__(self) -> str:
        return f"GeneratedPath({str(self.relative)!r})"


class PathGenerator:
    """A default factory for a path inside the job folder: ``PathGenerator("model.pt")``
    (``PathGenerator()`` is the folder itself).

    ``PathGenerator("checkpoint", partial=checkpoints)`` is a path inside the task's partial folder
    ``checkpoints``, shared by the tasks that differ only in parameters the partial leaves out.
    """

    __slots__ = ("relative", "partial")

    def __init__(
        self, relative: Union[str, Path] = "", *, partial: Optional["Partial"] = None
    ) -> None:
        from .partial import Partial

        if partial is not None and not isinstance(partial, Partial):
            raise TypeError(f"PathGenerator(partial=...) takes a partial(...), got {partial!r}")
        self.relative = Path(relative)
        self.partial = partial

    def __call__(self) -> GeneratedPath:
        return GeneratedPath(self.relative, self.partial)

    def __repr__(self) -> str:
        if self.partial is not None:
            return f"PathGenerator({str(self.relative)!r}, partial={self.partial!r})"
        return f"PathGenerator({str(self.relative)!r})"


#: The lower-case name experimaestro 2.x also offers.
pathgenerator = PathGenerator
