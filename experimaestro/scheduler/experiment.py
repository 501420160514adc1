"""``with experiment(workdir, name) as xp:``: the context in which tasks are submitted and run.

On leaving the block normally, the experiment waits for its jobs. If some failed, it prints a summary
(each failed job's folder and the tail of its stderr) and raises :class:`FailedExperiment`, so the
script's exit code says it failed. On an exception inside the block, jobs that have not started are
dropped; jobs already running are left to finish (they are detached processes), and a rerun of the
script re-attaches to them.
"""

from __future__ import annotations

import logging
import os
import shlex
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Optional, Union

from ..connectors.files import tail_lines
from ..core.cache import pop_workspace, push_workspace
from ..core.config import RunMode, Task
from .gitstate import DirtyGitAction, DirtyGitError, dirty_repositories
from .job import Job
from .submission import prepare_job
from ..launchers.jobfiles import JobState
from .workspace import Workspace

logger = logging.getLogger("experimaestro")

_current: list["experiment"] = []
_current_lock = threading.Lock()


def current_experiment() -> Optional["experiment"]:
    """The innermost running experiment of this process, or None."""
    return _current[-1] if _current else None


class Interrupted(KeyboardInterrupt, SystemExit):
    """Ctrl-C in a controller: still a ``KeyboardInterrupt`` for code that catches it, and, left
    uncaught, an exit with code 130 (128 + SIGINT) without a traceback."""

    def __init__(self, message: str) -> None:
        SystemExit.__init__(self, 130)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _interrupted_message(running: int, workdir: Path, name: str) -> str:
    """The one line printed on Ctrl-C: what goes on, and how to re-attach or stop it."""
    if not running:
        return "experimaestro: interrupted; no job is running"
    jobs, them = ("1 job still runs", "it") if running == 1 else (f"{running} jobs still run", "them")
    ws = shlex.quote(str(workdir))
    return (
        f"experimaestro: interrupted; {jobs} (rerun the script to re-attach to {them}; to stop "
        f"{them}: experimaestro jobs kill --workdir {ws} ID, with the IDs of experimaestro jobs "
        f"list --workdir {ws} --experiment {shlex.quote(name)} --state running)"
    )


class FailedExperiment(RuntimeError):
    """Raised on leaving an experiment whose jobs failed; ``.jobs`` lists them."""

    def __init__(self, message: str, jobs: list[Job]) -> None:
        super().__init__(message)
        self.jobs = jobs


def _caller_folders() -> list[Path]:
    """The folder of the first caller that is neither experimaestro nor an installed package
    (the experiment script's, whose repository ``dirty_git`` checks)."""
    skipped = {str(Path(__file__).resolve().parent.parent)}
    skipped.update(os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix))
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith("<"):
            path = os.path.realpath(filename)
            if not any(path.startswith(s + os.sep) for s in skipped):
                return [Path(path).parent]
        frame = frame.f_back  # type: ignore[assignment]
    return []


def _tail(path: Path, lines: int = 10) -> list[str]:
    return tail_lines(path, lines)


class experiment:  # noqa: N801 - the public name users write
    """An experiment: a name in a workspace, the jobs it submits, and its results folder.

    :param workdir: the workspace folder (created if needed), shared by every experiment
    :param name: the experiment's name (its folder under ``<workdir>/experiments/``)
    :param port: serve the web monitor on this port while the experiment runs (0: a free port;
        ``xp.monitor.url`` says where); see docs/monitor.md
    :param host: the monitor's address (default 127.0.0.1; any other needs the printed token)
    :param token: the monitor's access token (default: a new random one)
    :param run_mode: NORMAL, GENERATE_ONLY (write job folders only) or DRY_RUN (write nothing)
    :param launcher: the default launcher of submitted tasks (default: the local launcher)
    :param dirty_git: when the project's git repository (the one holding the calling script, or
        each of ``project_paths``) has uncommitted changes: ``"warn"`` (the default: a warning in
        the log), ``"error"`` (:class:`DirtyGitError` on entering the block) or ``"ignore"``
    :param project_paths: the folders whose repositories ``dirty_git`` checks

    Accepted for experimaestro 2.x code and without effect here: ``no_db`` (2.x's own database,
    which we never had), ``no_environmental_impact`` (2.x's carbon tracking, which we do not do),
    ``register_signals`` (Ctrl-C is always handled: see docs/running.md) and ``wait_for_quit``.
    """

    def __init__(
        self,
        workdir: Union[str, Path],
        name: str,
        *,
        port: Optional[int] = None,
        run_mode: Optional[RunMode] = None,
        launcher: Any = None,
        dirty_git: Union[DirtyGitAction, str] = DirtyGitAction.WARN,
        project_paths: Optional[list[Path]] = None,
        host: Optional[str] = None,
        token: Optional[str] = None,
        no_db: bool = False,
        no_environmental_impact: bool = False,
        register_signals: bool = True,
        wait_for_quit: bool = False,
    ) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"experiment name {name!r} must be a plain folder name")
        try:
            self.dirty_git = DirtyGitAction(dirty_git)
        except ValueError:
            raise ValueError(
                f"experiment(dirty_git={dirty_git!r}): give one of ignore, warn, error"
            ) from None
        run_mode = RunMode.NORMAL if run_mode is None else RunMode(run_mode)
        self.workspace = Workspace(workdir, run_mode=run_mode, launcher=launcher)
        self.name = name
        self.port = port
        self.host = host
        self._token = token
        #: The web monitor (a ``MonitorServer``) while the experiment runs with a port, else None.
        self.monitor: Any = None
        self.run_mode = run_mode
        self._launcher = launcher
        self.project_paths = (
            [Path(p) for p in project_paths] if project_paths is not None else _caller_folders()
        )
        #: Services added with :meth:`add_service`, by id.
        self.services: dict[str, Any] = {}
        self._jobs: dict[str, Job] = {}
        #: Jobs not finished yet (guarded by the scheduler's condition).
        self._pending: set[Job] = set()
        self._scheduler: Any = None
        #: True between entering and leaving the ``with`` block.
        self.open = False
        self._log_handler: Optional[logging.Handler] = None

    # -- places ------------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The experiment's folder, ``<workdir>/experiments/<name>``."""
        return self.workspace.experiment(self.name)

    @property
    def workdir(self) -> Path:
        """The experiment's folder (2.x's name): ``xp.workdir / "results"`` is ``xp.resultspath``.
        2.x makes one folder per run inside it; here, runs share this folder."""
        return self.path

    @staticmethod
    def current() -> "experiment":
        """The innermost running experiment of this process (an error when there is none)."""
        xp = current_experiment()
        if xp is None:
            raise RuntimeError(
                "experiment.current(): no experiment is running; call it inside "
                "`with experiment(workdir, name) as xp:`"
            )
        return xp

    def setenv(self, name: str, value: str, override: bool = True) -> None:
        """Set an environment variable in every job this experiment submits afterwards (a
        launcher's own variables and a job's win over it). With ``override=False``, a variable
        already set is kept."""
        if override or name not in self.workspace.env:
            self.workspace.env[name] = str(value)

    def add_service(self, service: Any) -> Any:
        """Add a service (2.x's ``Service``: a TensorBoard server...) to the experiment, by its
        ``id``; returns it. Its ``set_experiment(xp)`` is called when it has one, and its
        ``stop()`` when the experiment ends. The web monitor will list them; nothing else uses
        them yet."""
        service_id = getattr(service, "id", None)
        if service_id is None:
            raise TypeError(f"add_service({service!r}): a service needs an `id` attribute")
        existing = self.services.get(service_id)
        if existing is not None and existing is not service:
            logger.warning("service %s replaced by another one with the same id", service_id)
        self.services[service_id] = service
        set_experiment = getattr(service, "set_experiment", None)
        if callable(set_experiment):
            set_experiment(self)
        return service

    @property
    def resultspath(self) -> Path:
        """The experiment's results folder, ``<workdir>/experiments/<name>/results``."""
        return self.path / "results"

    @property
    def jobspath(self) -> Path:
        """The folder of links to this experiment's jobs."""
        return self.path / "jobs"

    @property
    def jobs(self) -> list[Job]:
        return list(self._jobs.values())

    # -- context -------------------------------------------------------------------------------

    def __enter__(self) -> "experiment":
        from ..core import serialization

        if serialization.loading_script is not None:
            raise RuntimeError(
                f"{serialization.loading_script} starts an experiment when it is imported: a job "
                f"process imports the script to find its classes, so put the experiment under "
                f"`if __name__ == \"__main__\":` (or move the classes into a module)"
            )
        self._check_git()
        if self.run_mode is not RunMode.DRY_RUN:
            if self.port is not None:
                self._start_monitor()  # first: a taken port leaves nothing written
            self.workspace.create()
            self.resultspath.mkdir(parents=True, exist_ok=True)
            self.jobspath.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(self.path / "experiment.log")
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
            )
            self._log_handler = handler
            root = logging.getLogger("experimaestro")
            root.addHandler(handler)
            if root.level == logging.NOTSET or root.level > logging.INFO:
                root.setLevel(logging.INFO)
            logger.info("experiment %s started in %s (pid %d)", self.name, self.path, os.getpid())
        with _current_lock:
            _current.append(self)
        push_workspace(self.workspace.path)
        self.open = True
        return self

    def _check_git(self) -> None:
        if self.dirty_git is DirtyGitAction.IGNORE:
            return
        for repo in dirty_repositories(self.project_paths):
            message = f"experiment {self.name}: the project repository {repo} has uncommitted changes"
            if self.dirty_git is DirtyGitAction.ERROR:
                raise DirtyGitError(
                    f"{message} (dirty_git=error): commit them, or pass dirty_git='warn'"
                )
            logger.warning(message)

    def __exit__(
        self,
        exc_type: Optional[type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        try:
            if exc is not None:
                self._abort(exc)
                return
            if self.run_mode is RunMode.DRY_RUN:
                return
            try:
                self.wait()
            except BaseException as error:  # Ctrl-C while waiting: an abort like any other
                self._abort(error)
                raise
            if self.run_mode is RunMode.NORMAL:
                outcome = self.outcome()
                sys.stderr.write(outcome + "\n")
                logger.info(outcome)
            self._log_launcher_summaries()
            failed = [j for j in self._jobs.values() if j.state is JobState.ERROR]
            if failed:
                summary = self._failure_summary(failed)
                sys.stderr.write(summary + "\n")
                logger.error(summary)
                raise FailedExperiment(
                    f"experiment {self.name}: {len(failed)} of {len(self._jobs)} jobs failed "
                    f"(summary above)", failed
                )
        finally:
            self.open = False
            pop_workspace(self.workspace.path)
            self._stop_services()
            if self.monitor is not None:
                self.monitor.stop()
                self.monitor = None
            with _current_lock:
                if self in _current:
                    _current.remove(self)
            if self._log_handler is not None:
                logging.getLogger("experimaestro").removeHandler(self._log_handler)
                self._log_handler.close()
                self._log_handler = None

    def _stop_services(self) -> None:
        for service in self.services.values():
            stop = getattr(service, "stop", None)
            if callable(stop):
                try:
                    stop()
                except Exception:  # a service that fails to stop must not hide the outcome
                    logger.exception("service %s failed to stop", getattr(service, "id", service))

    def _start_monitor(self) -> None:
        """Serve the web monitor (experimaestro.monitor: the one place where the scheduler layer
        reaches up, as the monitor belongs to the experiment; imported only when asked for)."""
        from ..monitor import MonitorError, serve_experiment

        try:
            self.monitor = serve_experiment(self, self.port, self.host or "127.0.0.1", self._token)
        except MonitorError as exc:
            raise MonitorError(f"experiment({self.name!r}, port={self.port}): {exc}") from None
        sys.stderr.write(f"experimaestro: monitor of {self.name} at {self.monitor.url}\n")
        # Not the token: the log file stays in the workspace, which others may read.
        logger.info("monitor at %s", self.monitor.url.split("?token=")[0])

    def _abort(self, exc: BaseException) -> None:
        """Leave after an exception: drop the jobs not started; running jobs go on. Ctrl-C
        says so in one line and raises :class:`Interrupted` (exit code 130, no traceback)."""
        pending = [j for j in self._jobs.values() if not j.finished]
        if pending and self._scheduler is not None:
            self._scheduler.cancel_pending(pending, self)
        logger.error(
            "experiment %s stopped by %s: jobs not started are dropped, running jobs go on "
            "(rerun the script to re-attach to them)", self.name, type(exc).__name__,
        )
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Interrupted):
            running = sum(1 for j in self._jobs.values() if j.state is JobState.RUNNING)
            message = _interrupted_message(running, self.workspace.path, self.name)
            sys.stderr.write(message + "\n")
            raise Interrupted(message) from None

    # -- jobs ----------------------------------------------------------------------------------

    @property
    def scheduler(self) -> Any:
        if self._scheduler is None:
            from .scheduler import Scheduler

            self._scheduler = Scheduler.instance()
        return self._scheduler

    def submit(self, task: Task, *, launcher: Any = None, run_mode: Optional[RunMode] = None) -> Job:
        """Schedule a sealed task (called by ``task.submit()``)."""
        if launcher is None:
            launcher = self._launcher
        if launcher is None:
            from ..launchers.direct import default_launcher

            launcher = default_launcher()
        job = Job(task, self.workspace.path, launcher=launcher)
        prepare_job(job, self.workspace.env)
        job = self.scheduler.submit(job, run_mode or self.run_mode)
        with self.scheduler.changed:
            if job.identifier not in self._jobs:
                self._jobs[job.identifier] = job
                job.experiments.append(self)
                new = True
            else:
                new = False
            if not job.finished:
                self._pending.add(job)
        if new:
            self._link(job)
        return job

    def job_finished(self, job: Job) -> None:
        """Called (scheduler thread) when one of this experiment's jobs ends."""
        with self.scheduler.changed:
            self._pending.discard(job)
            if not self._pending:
                self.scheduler.changed.notify_all()

    def _link(self, job: Job) -> None:
        link = self.jobspath / job.typeid / job.identifier
        try:
            os.symlink(job.path, link)
        except FileExistsError:
            pass
        except FileNotFoundError:
            link.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.symlink(job.path, link)
            except FileExistsError:
                pass

    def token(self, name: str, count: int) -> Any:
        """A counter token of this workspace: ``xp.token("gpu", 2)``."""
        from ..connectors.local import LocalConnector

        return LocalConnector.instance().createtoken(name, count)

    def counts(self) -> dict[str, int]:
        """How many of this experiment's jobs are done, running, waiting and failed."""
        counts = {"done": 0, "running": 0, "waiting": 0, "failed": 0}
        for job in self._jobs.values():
            state = job.state
            if state is JobState.DONE:
                counts["done"] += 1
            elif state is JobState.ERROR:
                counts["failed"] += 1
            elif state is JobState.RUNNING:
                counts["running"] += 1
            else:
                counts["waiting"] += 1
        return counts

    def outcome(self) -> str:
        """One line said when the experiment ends: ``experiment NAME: N jobs: X reused, Y ran,
        Z failed`` (reused: done before this run, so never started by it)."""
        reused = ran = failed = 0
        for job in self._jobs.values():
            if job.state is JobState.ERROR:
                failed += 1
            elif job.started_at is None:
                reused += 1
            else:
                ran += 1
        total = len(self._jobs)
        return (f"experiment {self.name}: {total} job{'s' if total != 1 else ''}: {reused} "
                f"reused, {ran} ran, {failed} failed")

    def wait(self) -> bool:
        """Block until every submitted job has ended; True when all ended well.

        On a terminal, a one-line progress display is kept up to date.
        """
        scheduler = self.scheduler
        with scheduler.changed:
            if not self._pending:
                return all(j.state is JobState.DONE for j in self._jobs.values())
        show = sys.stderr.isatty()
        last = ""
        while True:
            with scheduler.changed:
                if self._pending:
                    scheduler.changed.wait(timeout=1.0 if show else None)
                pending = bool(self._pending)
            if show:
                c = self.counts()
                line = (
                    f"[{self.name}] done {c['done']} | running {c['running']} | "
                    f"waiting {c['waiting']} | failed {c['failed']}"
                )
                if line != last:
                    sys.stderr.write("\r" + line + "\x1b[K")
                    sys.stderr.flush()
                    last = line
            if not pending:
                break
        if show:
            sys.stderr.write("\n")
        return all(j.state is JobState.DONE for j in self._jobs.values())

    def _log_launcher_summaries(self) -> None:
        """Each launcher's closing line (e.g. how many Slurm queries were made)."""
        seen: set[int] = set()
        for job in self._jobs.values():
            launcher = job.launcher
            if launcher is None or id(launcher) in seen:
                continue
            seen.add(id(launcher))
            summary = getattr(launcher, "summary", None)
            line = summary() if summary is not None else None
            if line:
                logger.info("experiment %s: %s", self.name, line)

    def _failure_summary(self, failed: list[Job]) -> str:
        lines = [f"experiment {self.name}: {len(failed)} job(s) failed"]
        for job in failed:
            reason = job.failure.reason if job.failure else "failed"
            message = f" - {job.failure.message}" if job.failure and job.failure.message else ""
            lines.append(f"- {job.typeid} [{reason}]{message}")
            lines.append(f"  folder: {job.path}")
            if reason != "dependency":
                tail = _tail(job.stderr)
                if tail:
                    lines.append(f"  last lines of {job.stderr.name}:")
                    lines.extend(f"    {line}" for line in tail)
        return "\n".join(lines)


__all__ = [
    "DirtyGitAction",
    "DirtyGitError",
    "FailedExperiment",
    "Interrupted",
    "current_experiment",
    "experiment",
]
