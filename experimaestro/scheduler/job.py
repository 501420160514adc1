"""A job: one submitted task, its place in the workspace, and its state."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

from ..core.config import Task
from ..launchers.jobfiles import FailureRecord, JobFiles, JobState

if TYPE_CHECKING:  # pragma: no cover
    from .tokens import TokenDependency


class Job:
    """A submitted task. ``path`` is ``<workspace>/jobs/<type id>/<identifier>``.

    Its state is written only by the scheduler thread; other threads read it, and wait with
    :meth:`wait`.
    """

    def __init__(self, task: Task, workspace: Optional[Path], launcher: Any = None) -> None:
        info = task.__xpm__
        t = info.xpmtype
        self.task = task
        self.identifier: str = info.identifier.hex()
        self.typeid: str = t.typeid
        self.name: str = t.name
        self.relpath = Path("jobs") / self.typeid / self.identifier
        self.workspace = Path(workspace) if workspace is not None else None
        self.launcher = launcher
        self.state = JobState.UNSCHEDULED
        self.failure: Optional[FailureRecord] = None
        self.dependencies: list[Job] = []
        #: Jobs waiting for this one (a dict: ordered, and each dependent once).
        self.dependents: dict[Job, None] = {}
        self.tokens: list["TokenDependency"] = []
        self.pending_dependencies = 0
        self.experiments: list[Any] = []
        self.callbacks: list[Callable[[], Any]] = []
        #: The scheduler that runs the job (None when it was not scheduled: a dry run).
        self.scheduler: Any = None
        #: The params.json text, written when the job is submitted (None for a reused done job).
        self.params: Optional[str] = None
        #: How many times this controller launched the job (events of older attempts are ignored).
        self.attempt = 0
        #: How this job was started (or found again), while it runs: a launcher's ``Launched``.
        self.launched: Any = None
        #: Submissions made again after a time limit or a preemption (``Launcher.*_retries``).
        self.retries = 0
        self.started_at: Optional[float] = None
        self.ended_at: Optional[float] = None
        #: The job's environment variables (set in the job process): the experiment's
        #: (``xp.setenv``), the launcher's, and those that submit hooks add.
        self.environ: dict[str, str] = {}
        self._finished = threading.Event()
        self._files: Optional[JobFiles] = None

    # -- paths -----------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The job directory."""
        if self.workspace is None:
            raise AttributeError(
                f"job {self.typeid}/{self.identifier} has no workspace: submit inside "
                f"`with experiment(...)` or pass submit(workspace=...)"
            )
        return self.workspace / self.relpath

    @property
    def files(self) -> JobFiles:
        """The job's folder where it runs: this one (``path``), or on a remote host for a launcher
        with a remote connector, each operation then going through the connector."""
        if self._files is None:
            job_files = getattr(self.launcher, "job_files", None)
            if job_files is None or self.workspace is None:
                self._files = JobFiles(self.path, self.name)
            else:
                self._files = job_files(self.workspace, self.relpath, self.name)
        return self._files

    def set_launcher(self, launcher: Any) -> None:
        """Run the job with another launcher (a failed job submitted again)."""
        self.launcher = launcher
        self._files = None

    def reused_copy(self) -> bool:
        """Whether the job ran on a remote host and its local copy was synchronised after it
        was done: it is reused from that copy, without asking the host."""
        if self.files.local or self.workspace is None:
            return False
        from ..connectors.remote_record import RECORD_NAME

        local = JobFiles(self.path, self.name)
        return local.done.exists() and (self.path / RECORD_NAME).exists()

    @property
    def stdout(self) -> Path:
        return self.files.stdout

    @property
    def stderr(self) -> Path:
        return self.files.stderr

    def tags(self) -> dict[str, Any]:
        return self.task.tags()

    # -- state -----------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        return self._finished.is_set()

    def set_state(self, state: JobState, failure: Optional[FailureRecord] = None) -> None:
        """Change the state (scheduler thread only); ending states release waiters."""
        self.state = state
        if state is JobState.RUNNING and self.started_at is None:
            self.started_at = time.time()
        if state.finished:
            self.failure = failure
            self.ended_at = time.time()
            self._finished.set()
            for xp in self.experiments:
                xp.job_finished(self)

    def reset(self) -> None:
        """Make an ended job schedulable again (a failed job submitted anew)."""
        self._finished.clear()
        self.state = JobState.UNSCHEDULED
        self.failure = None
        self.started_at = self.ended_at = None

    def add_callback(self, callback: Callable[[], Any]) -> None:
        """Call ``callback()`` once when the job succeeds (at once if it is done already)."""
        if self.scheduler is None:  # not scheduled (dry run): it will never run
            self.callbacks.append(callback)
        else:
            self.scheduler.add_callback(self, callback)

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Block until the job has ended; True when it ended well."""
        if not self._finished.wait(timeout):
            raise TimeoutError(f"job {self} did not end within {timeout} s")
        return self.state is JobState.DONE

    def __repr__(self) -> str:
        return f"Job({self.typeid}/{self.identifier[:12]}, {self.state.value})"
