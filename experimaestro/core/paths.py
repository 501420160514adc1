"""Paths inside a job folder, known once the task is submitted (experimaestro 2.x's
``PathGenerator``): ``model: Meta[Path] = field(default_factory=PathGenerator("model.pt"))``.

With ``partial=``, the path is inside the task's partial folder instead (``core/partial.py``).

The relative path may also be a function ``(job, config) -> relative path``, called at submit with
the job's :class:`JobContext`: ``PathGenerator(STDOUT)`` is the job's standard output file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple, Optional, Union

if TYPE_CHECKING:  # pragma: no cover
    from .partial import Partial


class JobContext(NamedTuple):
    """What a path function receives about the job: its folder and its name (the file prefix of
    ``<name>.out``, ``<name>.err``...)."""

    path: Path
    name: str


#: A relative path, or a function of (job context, configuration) that returns one.
RelativePath = Union[str, Path, Callable[[JobContext, Any], Union[str, Path]]]


def STDOUT(job: JobContext, config: Any) -> str:  # noqa: N802 - the 2.x name
    """``PathGenerator(STDOUT)``: the job's standard output file, ``<name>.out``."""
    return f"{job.name}.out"


def STDERR(job: JobContext, config: Any) -> str:  # noqa: N802 - the 2.x name
    """``PathGenerator(STDERR)``: the job's standard error file, ``<name>.err``."""
    return f"{job.name}.err"


def _relative(relative: RelativePath) -> Union[Path, Callable[[JobContext, Any], Any]]:
    if isinstance(relative, (str, os.PathLike)):
        return Path(relative)
    if callable(relative):
        return relative
    raise TypeError(
        f"PathGenerator({relative!r}): give a relative path (str or Path) or a function "
        f"(job, config) -> relative path"
    )


class GeneratedPath(os.PathLike):
    """A path relative to the job folder of the task that is submitted with this configuration;
    replaced by the real path when that task is submitted."""

    __slots__ = ("relative", "partial")

    def __init__(self, relative: RelativePath, partial: Optional["Partial"] = None) -> None:
        self.relative = _relative(relative)
        #: When set, the path is inside this partial folder of the task, not its job folder.
        self.partial = partial

    def relative_path(self, job_path: Path, job_name: str, config: Any) -> Path:
        """The relative path, for the job of folder ``job_path`` named ``job_name``."""
        relative = self.relative
        if isinstance(relative, Path):
            return relative
        return Path(relative(JobContext(job_path, job_name), config))

    def __fspath__(self) -> str:
        raise RuntimeError(
            f"the path {self.relative} inside the job folder is known once the task is submitted "
            f"(read it after submit(), or in execute())"
        )

    def __repr__(self) -> str:
        return f"GeneratedPath({str(self.relative)!r})"


class PathGenerator:
    """A default factory for a path inside the job folder: ``PathGenerator("model.pt")``
    (``PathGenerator()`` is the folder itself; ``PathGenerator(STDOUT)``, the job's stdout file).

    ``PathGenerator("checkpoint", partial=checkpoints)`` is a path inside the task's partial folder
    ``checkpoints``, shared by the tasks that differ only in parameters the partial leaves out.
    """

    __slots__ = ("relative", "partial")

    def __init__(self, relative: RelativePath = "", *, partial: Optional["Partial"] = None) -> None:
        from .partial import Partial

        if partial is not None and not isinstance(partial, Partial):
            raise TypeError(f"PathGenerator(partial=...) takes a partial(...), got {partial!r}")
        self.relative = _relative(relative)
        self.partial = partial

    def __call__(self) -> GeneratedPath:
        return GeneratedPath(self.relative, self.partial)

    def __repr__(self) -> str:
        if self.partial is not None:
            return f"PathGenerator({str(self.relative)!r}, partial={self.partial!r})"
        return f"PathGenerator({str(self.relative)!r})"


#: The lower-case name experimaestro 2.x also offers.
pathgenerator = PathGenerator
