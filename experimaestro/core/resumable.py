"""Resumable tasks and the exceptions a job raises about its time (experimaestro 2.x names).

A launcher with a time limit (Slurm) treats a :class:`ResumableTask` specially: when its job ends
because its time ran out (the scheduler's time limit, or the task raising
:class:`GracefulTimeout`), the job is not failed but submitted again, and the task resumes from
what it saved in its job folder (its checkpoints), up to a number of retries. A plain
:class:`Task` whose time runs out fails.

Pure: launchers and the runner import these names; nothing here knows about them.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from .config import Task

#: Set by the job side when the launcher knows the job's time limit: returns the seconds left.
_remaining_time: Optional[Callable[[], Optional[float]]] = None


def set_remaining_time(function: Optional[Callable[[], Optional[float]]]) -> None:
    """Register how the running job learns its remaining time (a launcher's job side does it)."""
    global _remaining_time
    _remaining_time = function


class ResumableTask(Task):
    """A task that can stop before its time limit and resume later from its job folder.

    Its ``execute()`` must save its progress in the job folder (which is kept between attempts)
    and start from what it finds there. When its job runs out of time, or raises
    :class:`GracefulTimeout`, a launcher with a time limit submits it again instead of failing it.
    """

    def remaining_time(self) -> Optional[float]:
        """The seconds left before the job's time limit, or None when unknown (no limit, or a
        launcher that cannot tell, or outside a running job)."""
        return _remaining_time() if _remaining_time is not None else None


class GracefulTimeout(Exception):
    """Raised by a :class:`ResumableTask` that stops on purpose before its time limit (after
    saving a checkpoint): the job is then submitted again, not marked as failed."""

    def __init__(self, message: str = "Task stopped gracefully before timeout") -> None:
        super().__init__(message)
        self.message = message


class TaskCancelled(BaseException):
    """Raised in a job told to stop (SIGTERM: ``scancel``, ``experimaestro jobs kill``, a time
    limit that is reached). ``remaining_time`` is the estimated number of seconds before the job
    is killed, when known. The job ends as failed with reason ``cancelled`` (a
    :class:`ResumableTask` whose time ran out is resubmitted by a launcher with a time limit).

    Catch it by name to clean up (``except TaskCancelled: ...; raise``). Unlike 2.x, it is a
    ``BaseException`` (as ``KeyboardInterrupt``): a broad ``except Exception`` in a task cannot
    swallow the stop request by mistake.
    """

    def __init__(
        self, message: str = "Task cancelled by signal", remaining_time: Optional[float] = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.remaining_time = remaining_time

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.remaining_time))


__all__ = ["GracefulTimeout", "ResumableTask", "TaskCancelled", "set_remaining_time"]
