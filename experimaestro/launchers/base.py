"""The launcher interface: start a job's runner somewhere, and say how to watch it."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Callable, Optional

from ..connectors.process import PidRecord
from .jobfiles import JobFiles


@dataclass
class Launched:
    """A started job process.

    ``wait`` blocks until the process ends and returns its exit code (negative: killed by that
    signal), when the launcher can know it; it returns None when it cannot know any more (the job
    may still run); without ``wait``, the scheduler watches the job's files only.
    """

    record: PidRecord
    wait: Optional[Callable[[], Optional[int]]] = None


class Launcher(abc.ABC):
    """Starts ``python -m experimaestro run <jobdir>/params.json`` for a job (public as
    ``experimaestro.Launcher``, the base class of every launcher)."""

    #: How many jobs this launcher runs at once (None: no limit of its own).
    max_jobs: Optional[int] = None

    @abc.abstractmethod
    def launch(self, files: JobFiles) -> Launched:
        """Write the launch script and start the job; params.json is already in place."""

    def describe(self) -> str:
        return type(self).__name__

    @property
    def environ(self) -> dict[str, str]:
        """Environment variables of the jobs this launcher starts (2.x: ``launcher.environ``);
        a job's own (``job.environ``, submit hooks) and the experiment's (``xp.setenv``) come with
        them, the job's first, then the launcher's, then the experiment's."""
        env = self.__dict__.get("_environ")
        if env is None:
            env = self.__dict__["_environ"] = {}
        return env

    def setenv(self, key: str, value: str) -> None:
        """Set an environment variable for the jobs this launcher starts."""
        self.environ[key] = value
