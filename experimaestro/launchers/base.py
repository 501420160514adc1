"""The launcher interface: start a job's runner somewhere, and say how to watch it."""

from __future__ import annotations

import abc
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..connectors.process import PidRecord
from ..connectors.pythonpath import user_python_path
from .jobfiles import FailureRecord, JobFiles, JobState


@dataclass
class Ending:
    """How a job ended, as its launcher tells it (``Launched.subscribe``).

    ``code`` is the exit code when known. ``failure`` is what the launcher knows of the end:
    with ``overrides`` it supersedes the job's own marker (a job killed from outside: time limit,
    preemption, out of memory, node failure, where the runner may have written "cancelled");
    otherwise it is used only when the job left no marker (e.g. it died before its runner started).
    ``lost``: the launcher no longer knows the job at all.
    """

    code: Optional[int] = None
    failure: Optional[FailureRecord] = None
    overrides: bool = False
    lost: bool = False
    #: The job's markers as its launcher read them once the job had ended (a remote host's
    #: launcher sends them with the ending, so reading them costs no round trip); None: not read.
    markers: Optional["Markers"] = None


@dataclass(frozen=True)
class Markers:
    """What a job's folder said when it ended: ``JobFiles.marker_state()`` and, with ERROR,
    ``JobFiles.read_failure()``."""

    state: Optional[JobState]
    failure: Optional[FailureRecord] = None

    @staticmethod
    def read(files: JobFiles) -> "Markers":
        state = files.marker_state()
        return Markers(state, files.read_failure() if state is JobState.ERROR else None)


@dataclass
class Launched:
    """A started (or submitted) job.

    Exactly one way to learn its end, or none:

    * ``wait`` blocks until the process ends and returns its exit code (negative: killed by that
      signal), or None when it cannot know any more (the job may still run): one thread per job;
    * ``subscribe(callback)`` registers ``callback(Ending)``, called once (from any thread) when
      the job ends: the launcher watches all its jobs together (e.g. one Slurm poller);
    * neither: the scheduler watches the job's files only.

    ``cancel`` stops the job (e.g. ``scancel``), when the launcher can. ``connector`` is the
    remote connector whose agent started (or found again) the job and watches it; None when it
    was launched from this machine.
    """

    record: PidRecord
    wait: Optional[Callable[[], Optional[int]]] = None
    subscribe: Optional[Callable[[Callable[[Ending], None]], None]] = None
    cancel: Optional[Callable[[], None]] = None
    connector: Any = None


class Launcher(abc.ABC):
    """Starts ``python -m experimaestro run <jobdir>/params.json`` for a job (public as
    ``experimaestro.Launcher``, the base class of every launcher)."""

    #: How many jobs this launcher runs at once (None: no limit of its own).
    max_jobs: Optional[int] = None
    #: Whether jobs ready together should be given to :meth:`launch_many` as one batch.
    batches: bool = False
    #: How many times a job of a resumable task that hit its time limit is submitted again.
    timeout_retries: int = 0
    #: How many times a preempted job is submitted again.
    preempt_retries: int = 0

    #: Where the jobs run: None or a local connector for this machine; a remote connector
    #: (``SshConnector``) runs them on its host, with the same launcher there.
    connector: Any = None

    @property
    def remote(self) -> bool:
        """Whether jobs run on another host (their folders are reached through the connector)."""
        return bool(getattr(self.connector, "remote", False))

    def spec(self) -> dict[str, Any]:
        """The options that rebuild this launcher on a remote host (``from_spec`` in its module):
        JSON values only. Launchers that cannot run remotely raise."""
        raise NotImplementedError(f"{self.describe()} cannot run jobs on a remote host")

    def code_environment(self) -> dict[str, str]:
        """What jobs need to import the user's code: ``PYTHONPATH`` (the controller's import
        folders here; on a remote host, the user's code staged there by the connector, and where
        the staged copy of each local import folder is; empty with ``code=None``: what is
        installed there). Computed once."""
        env = self.__dict__.get("_code_env")
        if env is None:
            env = (self.connector.code_environment() if self.remote
                   else {"PYTHONPATH": user_python_path()})
            self.__dict__["_code_env"] = env
        return env

    def check_host(self) -> None:
        """For a remote connector: with a workspace, reachable, running our experimaestro, and
        the user's code staged there (an error at the ``submit()`` line otherwise)."""
        if self.remote:
            self.connector.job_folder("")
            self.connector.connect()
            self.code_environment()

    def job_files(self, workspace: Path, relpath: Path, name: str) -> JobFiles:
        """The folder of a job this launcher runs: ``workspace/relpath`` here, or the same place in
        the remote connector's workspace."""
        if self.remote:
            from .remote import RemoteJobFiles

            return RemoteJobFiles(self.connector, self.connector.job_folder(relpath), name)
        return JobFiles(workspace / relpath, name)

    def reattach(self, files: JobFiles, record: PidRecord) -> Optional[Launched]:
        """Watch again a job of a remote folder that was started earlier (None: it no longer runs).
        Local jobs are found again by the scheduler (their process, or :func:`attach_record`)."""
        if not self.remote:
            return None
        from . import remote

        return remote.reattach(self, files, record)

    @abc.abstractmethod
    def launch(self, files: JobFiles) -> Launched:
        """Write the launch script and start the job; params.json is already in place."""

    def launch_many(
        self, files: Sequence[JobFiles], after: Sequence[Launched] = ()
    ) -> list[Launched]:
        """Start several jobs (one submission where the launcher can: a Slurm array).

        ``after``: jobs that must end successfully first (only when :meth:`can_depend_on` said so
        for each). The default starts them one by one.
        """
        if after:
            raise NotImplementedError(f"{self.describe()} cannot start a job after another")
        return [self.launch(f) for f in files]

    def can_depend_on(self, launched: Launched) -> bool:
        """Whether this launcher can start a job after ``launched`` succeeds, without the
        controller (a Slurm dependency)."""
        return False

    def check(self) -> None:
        """Raise a clear error when this launcher cannot work (called at submit, once)."""
        return None

    def summary(self) -> Optional[str]:
        """A line for the experiment's log at its end (e.g. how many queries were made)."""
        return None

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

def attach_record(record: PidRecord, files: JobFiles, launcher: Optional[Launcher] = None
                  ) -> Optional[Launched]:
    """Watch again a job recorded by a launcher of ``record.type`` (a controller restarted, or
    another one submitted it); None when no launcher of that kind is known.

    The module ``experimaestro.launchers.<type>`` handles records of its type with
    ``attach_record(record, files, launcher)``.
    """
    if record.type == "local":
        return None
    try:
        module = importlib.import_module(f"{__package__}.{record.type}")
    except ImportError:
        return None
    attach = getattr(module, "attach_record", None)
    return attach(record, files, launcher) if attach is not None else None


def record_alive(record: PidRecord) -> Optional[bool]:
    """Whether the job of a record still runs (or waits in a queue); None when no one can tell."""
    if record.type == "local":
        return record.is_alive()
    try:
        module = importlib.import_module(f"{__package__}.{record.type}")
    except ImportError:
        return None
    alive = getattr(module, "record_alive", None)
    return alive(record) if alive is not None else None
