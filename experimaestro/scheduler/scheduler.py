"""The scheduler: one per process, an event loop in a background thread.

For each job it walks these steps (docs/architecture.md, section 4):

1. done: reuse it;  2. running elsewhere: wait on it, never launch a second copy;
3. wait for its dependencies;  4. a failed dependency fails it with reason "dependency";
5. take all its tokens or none;  6. launch it (under the job's launch lock) and watch it;
7. when it ends: release its tokens, fire its callbacks, wake its dependents.

Only the scheduler thread changes job states. Other threads post events (callables) to its queue.
Watching costs nothing while nothing happens: a launched job is reaped by a thread blocked in
``wait()``, a job started by another controller is watched with file events, and a slow sweep
checks liveness.
"""

from __future__ import annotations

import errno
import itertools
import json
import logging
import os
import queue
import signal
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, Callable, Iterable, Optional


from ..core.config import (
    RunMode,
    resolve_generated_paths,
    resource_dependencies,
    task_dependencies,
)
from ..core.serialization import ParamsFormatError, absolute_paths, dumps, parse_document
from ..core.types import ValidationError
from ..connectors.base import ConnectionLost
from .dependency_errors import dependency_problem
from .job import Job
from ..launchers.base import Ending, Launched, Markers, attach_record, record_alive
from ..launchers.jobfiles import EXIT_DISK_FULL, EXIT_LOCKED, FailureRecord, JobState
from .partials import partial_tokens
from .job_tokens import TokenClaim, check_tokens, claim_for
from .tokens import TokenDependency
from .watcher import FolderWatcher

logger = logging.getLogger("experimaestro.scheduler")


def _disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def _params_problem(text: str, identifier: str) -> Optional[str]:
    """What is wrong with the params.json text of job ``identifier`` (None: nothing, or a file
    written by experimaestro 2.x, which is left as it is)."""
    try:
        data = json.loads(text)
    except ValueError:
        return "its params.json is damaged (not JSON)"
    if isinstance(data, dict) and "xpm_format" not in data and "objects" in data:
        return None  # experimaestro 2.x's format
    try:
        document = parse_document(text)
    except ParamsFormatError as exc:
        return f"its params.json is damaged ({exc})"
    if document.identifier != identifier:
        return f"its params.json holds another job ({document.identifier})"
    return None


def _sweep_interval() -> float:
    return float(os.environ.get("XPM_SWEEP_INTERVAL", "5"))


class Scheduler:
    """Schedules the jobs of every experiment of this process."""

    _instance: Optional["Scheduler"] = None
    _instance_lock = threading.Lock()

    @classmethod
    def instance(cls) -> "Scheduler":
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def __init__(self) -> None:
        self._events: "queue.SimpleQueue[Callable[[], None]]" = queue.SimpleQueue()
        #: Jobs by folder (one identifier may live in several workspaces).
        self._jobs: dict[Path, Job] = {}
        self._jobs_lock = threading.Lock()
        #: Jobs ready to start, in submission order, one queue per (launcher, token names): a queue
        #: blocked on a launcher slot or on its tokens is skipped as a whole (no rescans).
        self._ready: dict[tuple[int, tuple[str, ...]], deque[Job]] = {}
        self._running: set[Job] = set()
        self._attached: set[Job] = set()
        self._load: Counter[int] = Counter()
        #: (job, attempt) of jobs watched through ``Launched.subscribe`` that hold a launcher slot.
        self._slots: dict[tuple[Job, int], object] = {}
        self._held: dict[Job, TokenClaim] = {}
        self._watched_tokens: set[Path] = set()
        self._dirty = False
        self._watcher = FolderWatcher(self._on_file_event)
        self._watched_jobs: dict[Path, Job] = {}
        #: Remote jobs submitted whose folders are read together (see _read_remote_later).
        self._remote_reads: list[Job] = []
        #: Notified on every job state change (progress displays, ``Experiment.wait``).
        self.changed = threading.Condition()
        self.sweep_interval = _sweep_interval()
        self._thread = threading.Thread(target=self._loop, name="xpm-scheduler", daemon=True)
        self._thread.start()

    # -- from other threads --------------------------------------------------------------------

    def post(self, event: Callable[[], None]) -> None:
        """Run ``event()`` in the scheduler thread."""
        self._events.put(event)

    def submit(self, job: Job, run_mode: RunMode = RunMode.NORMAL) -> Job:
        """Register a job (caller's thread); returns the job that represents it in this process.

        Errors (an unsupported dependency, a value that cannot be written to params.json) are
        raised here, at the user's ``submit()`` line, before anything is registered or written.
        """
        task = job.task
        dependencies: list[Job] = []
        for dep in task_dependencies(task):
            problem = dependency_problem(task, dep, run_mode)
            if problem is not None:
                raise ValidationError(problem)
            dependencies.append(dep.__xpm__.job)
        tokens: list[TokenDependency] = []
        for dep in resource_dependencies(task):
            if not isinstance(dep, TokenDependency):
                raise TypeError(
                    f"{type(task).__qualname__}.add_dependencies: unsupported dependency {dep!r} "
                    f"(give tasks, task outputs or token.dependency(n))"
                )
            tokens.append(dep)
        tokens.extend(partial_tokens(task, job.path))
        if tokens:
            check_tokens(tokens, job, type(task).__qualname__)  # of the place the job runs
        callbacks = list(task.__xpm__.completion_callbacks)
        job.scheduler = self
        check = getattr(job.launcher, "check", None)
        if check is not None and run_mode is RunMode.NORMAL:
            check()  # e.g. no sbatch, an unknown partition: an error at the submit() line
        with self._jobs_lock:
            existing = self._jobs.get(job.path)
            if existing is not None:
                return self._submit_again(existing, job, callbacks, run_mode)
        resolve_generated_paths(task, job.path)
        # A remote job's folder is read by the scheduler thread, many jobs in one round trip
        # (its local copy, when synchronised after the job was done, answers at once).
        done_at = job.files.mtime_ns("done") if job.files.local else None
        done = done_at is not None or job.reused_copy()
        if done:
            self._repair_params(job, done_at)
        else:
            # Written now so that a value params.json cannot hold fails at the submit() line.
            job.params = dumps(task, job=job.path, workspace=job.workspace, environ=job.environ)
            if run_mode is RunMode.NORMAL and not job.files.local:
                self._check_remote_paths(job)
        job.dependencies = dependencies
        job.tokens = tokens
        job.callbacks = callbacks
        with self._jobs_lock:
            existing = self._jobs.get(job.path)
            if existing is not None:  # registered by another thread meanwhile
                return self._submit_again(existing, job, callbacks, run_mode)
            self._jobs[job.path] = job
        if run_mode is RunMode.GENERATE_ONLY:
            if not done:
                self._write_job_directory(job)
            job.set_state(JobState.UNSCHEDULED)
            job._finished.set()
            return job
        # Fast path (no thread hop): a done job is reused at once (a remote one from its copy).
        if done:
            self.post(lambda: self._finish(job, JobState.DONE, copied=True))
        elif not job.files.local:
            self._read_remote_later(job)
        else:
            self.post(lambda: self._schedule(job))
        return job

    def _check_remote_paths(self, job: Job) -> None:
        """A job that runs on another host reads its data there: absolute paths it names must
        exist there, or it would fail an hour into the run (one round trip for all of them)."""
        assert job.params is not None
        missing = job.files.missing_paths(absolute_paths(job.params))
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            raise ValidationError(
                f"{type(job.task).__qualname__}: {len(missing)} path(s) given as parameters do not "
                f"exist on {job.files.location.split(':', 1)[0]}, where the job runs: {shown}. Copy the "
                f"data there (or give paths of the host), or run the job with a local launcher"
            )

    def _read_remote_later(self, job: Job) -> None:
        """(Caller's thread.) Schedule a remote job once its folder is read: the folders of the
        jobs submitted meanwhile are read together, in one round trip per host."""
        with self._jobs_lock:
            self._remote_reads.append(job)
            first = len(self._remote_reads) == 1
        if first:
            self.post(self._read_remote_folders)

    def _read_remote_folders(self) -> None:
        """Schedule the remote jobs submitted since the last call, knowing the state of their
        folders (one ``job_states`` round trip per host); the done ones are reused, their folders
        copied back together (small ones many per round trip)."""
        from ..launchers.remote import fetch_folders, read_states

        with self._jobs_lock:
            jobs, self._remote_reads = self._remote_reads, []
        try:
            states = read_states([job.files for job in jobs])
        except Exception as exc:  # each job reads its folder on its own (and fails alone)
            logger.warning("cannot read %d remote job folders at once: %s", len(jobs), exc)
            for job in jobs:
                self._schedule(job)
            return
        done = [job for job, state in zip(jobs, states) if state is JobState.DONE]
        if done:
            try:
                fetch_folders([(job.files, job.path) for job in done])
            except Exception as exc:
                logger.warning("%d done remote jobs are reused, but their folders could not be "
                               "copied back: %s (run `experimaestro jobs sync ID` later)",
                               len(done), exc)
        for job, state in zip(jobs, states):
            if state is JobState.DONE:
                self._finish(job, JobState.DONE, copied=True)
            else:
                self._schedule(job, known=state)

    def _repair_params(self, job: Job, done_at: Optional[int] = None) -> None:
        """A done job is reused as it is, but its params.json must stay true (``jobs list`` reads
        its tags there): when it is missing, damaged or holds another identifier, warn and write
        it again from the submitted configuration (whose identifier names the folder).

        Reading every reused job's params.json would cost a third of a rerun's time: a file older
        than the job's ``.done`` was written before the job ran and not touched since, so only a
        missing file, or one changed after the job ended, is read and checked (``done_at``: the
        mtime of ``.done`` in ns, when the caller has it).
        """
        files = job.files
        if not files.local:
            return  # the local copy of a remote job is what the job wrote there
        if done_at is None:
            done_at = files.mtime_ns("done")
        params_at = files.mtime_ns("params")
        if done_at is not None and params_at is not None and params_at < done_at:
            return
        try:
            text = files.read_params()
        except FileNotFoundError:
            problem = "its params.json is missing"
        except (OSError, UnicodeDecodeError) as exc:
            problem = f"its params.json cannot be read ({exc})"
        else:
            problem = _params_problem(text, job.identifier)
        if problem is None:
            return
        logger.warning(
            "%s is done but %s: writing it again from the submitted configuration", job, problem
        )
        try:
            files.write_params(dumps(job.task, job=job.path, workspace=job.workspace,
                                     environ=job.environ))
        except OSError as exc:
            logger.warning("cannot write %s: %s", files.params, exc)

    def _submit_again(
        self, existing: Job, job: Job, callbacks: list[Callable[[], object]], run_mode: RunMode
    ) -> Job:
        """The job is known in this process already: share it (and run it again if it ended
        without success, with the new submission's launcher)."""
        if job.task is not existing.task and callbacks:
            self.post(lambda: self._add_callbacks(existing, callbacks))
        if existing.state is JobState.DONE:
            self._repair_params(existing)
        if run_mode is not RunMode.GENERATE_ONLY and existing.finished and (
            existing.state is not JobState.DONE
        ):
            existing.reset()
            existing.set_launcher(job.launcher)
            existing.environ = job.environ
            if existing.params is None:
                existing.params = dumps(existing.task, job=existing.path,
                                        workspace=existing.workspace, environ=existing.environ)
            self.post(lambda: self._schedule(existing))
        return existing

    def add_callback(self, job: Job, callback: Callable[[], object]) -> None:
        """An ``on_completed`` callback registered after ``submit()``: it runs once when the job
        succeeds, or before this returns when the job is done already."""
        if threading.current_thread() is self._thread:  # from another callback
            self._add_callbacks(job, [callback])
            return
        added = threading.Event()

        def add() -> None:
            try:
                self._add_callbacks(job, [callback])
            finally:
                added.set()

        self.post(add)
        added.wait()

    def _add_callbacks(self, job: Job, callbacks: list[Callable[[], object]]) -> None:
        if job.finished and job.state is JobState.DONE:  # ended already: call them now
            self._call(job, callbacks)
        else:
            job.callbacks.extend(callbacks)

    def cancel_pending(self, jobs: Iterable[Job], aborted: object) -> None:
        """Drop jobs that have not started (an experiment left by an exception); returns once
        the scheduler has done it."""
        pending = list(jobs)
        done = threading.Event()

        def cancel() -> None:
            try:
                self._cancel(pending, aborted)
            finally:
                done.set()

        self.post(cancel)
        done.wait()

    def jobs(self) -> list[Job]:
        with self._jobs_lock:
            return list(self._jobs.values())

    # -- the loop --------------------------------------------------------------------------------

    def _loop(self) -> None:
        next_sweep = time.monotonic() + self.sweep_interval
        while True:
            timeout = max(0.0, next_sweep - time.monotonic())
            try:
                event = self._events.get(timeout=timeout)
            except queue.Empty:
                event = None
            if event is not None:
                self._run(event)
                # Drain what is queued before deciding what to launch.
                while True:
                    try:
                        event = self._events.get_nowait()
                    except queue.Empty:
                        break
                    self._run(event)
            if time.monotonic() >= next_sweep:
                self._run(self._sweep)
                next_sweep = time.monotonic() + self.sweep_interval
            if self._dirty:
                self._dirty = False
                self._run(self._launch_ready)

    def _run(self, event: Callable[[], None]) -> None:
        try:
            event()
        except Exception:  # the loop must survive any single failure
            logger.exception("internal error in the scheduler")

    def _notify(self) -> None:
        with self.changed:
            self.changed.notify_all()

    # -- steps -------------------------------------------------------------------------------------

    def _schedule(self, job: Job, known: Optional[JobState] = None) -> None:
        try:
            self._schedule_job(job, known)
        except Exception as exc:  # e.g. an unreadable job folder: end the job, never hang
            self._end_on_error(job, "cannot schedule", exc)

    def _end_on_error(self, job: Job, what: str, exc: Exception) -> None:
        logger.exception("%s %s", what, job)
        self._finish(job, JobState.ERROR, FailureRecord(1, "error", f"{type(exc).__name__}: {exc}"))

    def _schedule_job(self, job: Job, known: Optional[JobState] = None) -> None:
        """``known``: the state of the job's folder when the caller has just read it (a batch of
        remote folders read in one round trip): UNSCHEDULED skips reading it again."""
        if job.finished:
            return
        files = job.files
        if known is not JobState.UNSCHEDULED and (known is not None or files.exists()):
            record = files.read_pid()
            if record is not None and files.marker_state() is None:
                if self._found_running(job, record):
                    return
            if files.is_done():
                self._finish(job, JobState.DONE)
                return
        pending = 0
        for dep in job.dependencies:
            if dep.state is JobState.ERROR and dep.finished:
                self._fail_dependents_of(dep, [job])
                return
            if dep.state is not JobState.DONE:
                pending += 1
                dep.dependents[job] = None
        job.pending_dependencies = pending
        if pending and not self._can_submit_after(job):
            job.set_state(JobState.WAITING)
            self._notify()
        else:
            self._make_ready(job)

    def _can_submit_after(self, job: Job) -> bool:
        """Whether the launcher can start ``job`` now, after its unfinished dependencies (all
        launched by a launcher it can depend on, e.g. queued on the same Slurm cluster)."""
        can_depend_on = getattr(job.launcher, "can_depend_on", None)
        if can_depend_on is None:
            return False
        for dep in job.dependencies:
            if dep.state is JobState.DONE:
                continue
            if dep.finished or dep.launched is None or not can_depend_on(dep.launched):
                return False
        return True

    def _upstream(self, job: Job) -> Optional[list[Launched]]:
        """The launched dependencies ``job`` must start after; None when one is not launched."""
        after = []
        for dep in job.dependencies:
            if dep.state is JobState.DONE:
                continue
            if dep.finished or dep.launched is None:
                return None
            after.append(dep.launched)
        return after

    def _promote_dependents(self, job: Job) -> None:
        """``job`` was launched: dependents that its launcher can chain on it are ready now."""
        for dependent in list(job.dependents):
            if (
                not dependent.finished
                and dependent.state is JobState.WAITING
                and self._can_submit_after(dependent)
            ):
                self._make_ready(dependent)

    def _make_ready(self, job: Job) -> None:
        job.set_state(JobState.READY)
        key = (id(job.launcher), tuple(sorted({dep.token.name for dep in job.tokens})))
        queue = self._ready.get(key)
        if queue is None:
            queue = self._ready[key] = deque()
        queue.append(job)
        self._dirty = True
        self._notify()

    def _launch_ready(self) -> None:
        #: Jobs of batching launchers (Slurm: one array), launched together below.
        batches: dict[int, list[Job]] = {}
        for key in list(self._ready):
            queue = self._ready[key]
            while queue:
                job = queue[0]
                if job.finished or job.state is not JobState.READY:  # failed or cancelled
                    queue.popleft()
                    continue
                launcher = job.launcher
                batched = getattr(launcher, "batches", False)
                planned = len(batches.get(id(launcher), ())) if batched else 0
                limit = launcher.max_jobs
                if limit is not None and self._load[id(launcher)] + planned >= limit:
                    break
                if job.tokens:
                    try:
                        taken = self._take_tokens(job)
                    except Exception as exc:  # e.g. a full disk: end the job, never leave it READY
                        queue.popleft()
                        self._launch_failed(job, exc)
                        continue
                    if not taken:
                        break
                queue.popleft()
                if batched:
                    batches.setdefault(id(launcher), []).append(job)
                else:
                    self._launch(job)
            if not queue:
                del self._ready[key]
        for jobs in batches.values():
            self._launch_batch(jobs)

    def _take_tokens(self, job: Job) -> bool:
        assert job.workspace is not None
        claim = claim_for(job)  # in the job's workspace, or on its connector's host
        claim.listen(self._wake_soon)
        job.files.make()
        try:
            acquired = claim.acquire()
        except Exception:
            # Some holder files may be written already (a full disk stops the next one): drop
            # them, or their units stay taken while this controller lives.
            try:
                claim.release()
            except Exception as exc:
                logger.warning("cannot release the tokens of %s: %s", job, exc)
            raise
        if acquired:
            self._held[job] = claim
            return True
        logger.debug("%s waits for its tokens", job)
        for folder in claim.folders():
            if folder not in self._watched_tokens:
                self._watched_tokens.add(folder)
                self._watcher.watch(folder)
        return False

    def _wake_soon(self) -> None:
        """Units of a remote token may be free (an event from its host; any thread)."""
        self.post(self._wake)

    def _release_tokens(self, job: Job) -> None:
        claim = self._held.pop(job, None)
        if claim is not None:
            claim.release()
            self._dirty = True

    def _write_job_directory(self, job: Job) -> None:
        job.files.make()
        assert job.params is not None
        job.files.write_params(job.params)

    def _launch(self, job: Job) -> None:
        try:
            self._start(job)
        except Exception as exc:  # a launch failure must end the job, never leave it READY
            self._launch_failed(job, exc)

    def _launch_failed(self, job: Job, exc: Exception, fresh: bool = False) -> None:
        """End a job that could not be launched. A folder made for this launch (``fresh``) is
        removed: no half-made job folder is left, and the error is in the failure summary."""
        if isinstance(exc, ConnectionLost):
            self._launch_cut(job, exc)
            return
        logger.error("could not launch %s: %s", job, exc)
        reason = "disk-full" if _disk_full(exc) else "launch"
        failure = FailureRecord(1, reason, f"{type(exc).__name__}: {exc}")
        if fresh:
            job.files.remove_tree()
        else:
            failure = self._write_failure(job, failure)
        self._finish(job, JobState.ERROR, failure)

    def _launch_cut(self, job: Job, exc: ConnectionLost) -> None:
        """The connection to the job's host dropped during its launch (docs/ssh.md): whether the
        job started there is unknown, so nothing is written nor removed. Once the connection is
        back its folder decides, as for a first launch: a job that started is found by its record
        or its runner's lock (never run twice), the others are launched. A host away for longer
        than the connector's ``reconnect_timeout`` ends the job here only (ReconnectTimeout,
        at once for every request once the outage is that long): a rerun finds it."""
        self._release_tokens(job)
        logger.warning("%s: %s; looking at its folder again once the connection is back", job, exc)
        self._schedule(job)

    def _write_failure(self, job: Job, failure: FailureRecord) -> FailureRecord:
        """Write ``.failed`` for a job that ended without one. A write that fails never keeps
        the job from ending: the failure is then known to this controller only (and a rerun
        runs the job again); a full disk becomes the reason."""
        try:
            job.files.make()
            job.files.write_failure(failure.code, failure.reason, failure.message)
        except OSError as exc:
            logger.error("cannot write the failure marker of %s: %s", job, exc)
            if _disk_full(exc) and failure.reason != "disk-full":
                return FailureRecord(
                    failure.code, "disk-full",
                    f"{failure.message} (and no space left on the device for {job.files.failed})",
                )
        return failure

    def _launch_batch(self, jobs: list[Job]) -> None:
        """Launch jobs of one batching launcher together: jobs with the same upstream jobs go as
        one submission (a Slurm array), each under its own launch lock."""
        launcher = jobs[0].launcher
        locks: list[Any] = []
        groups: dict[tuple[int, ...], tuple[list[Launched], list[Job]]] = {}
        fresh: set[Job] = set()
        candidates: list[tuple[Job, list[Launched]]] = []
        try:
            # Locks in one global order (by folder): two controllers launching overlapping
            # batches never wait on each other in a cycle.
            for job in sorted(jobs, key=lambda j: str(j.path)):
                try:
                    after = self._upstream(job)
                    if after is None:  # an upstream job is no longer launched (resubmitted)
                        self._release_tokens(job)
                        self._schedule_job(job)
                        continue
                    files = job.files
                    if files.make():
                        fresh.add(job)
                    locks.append(files.launch_lock().acquire())
                    if not self._started_elsewhere(job):
                        candidates.append((job, after))
                except Exception as exc:
                    self._launch_failed(job, exc)
            # Submitted by a controller killed before it wrote their .pid (one query for all)
            recover = getattr(launcher, "recover", None)
            try:
                found = recover([j.files for j, _ in candidates]) if recover else []
            except Exception as exc:
                for job, _ in candidates:
                    self._launch_failed(job, exc)
                candidates = []
            for (job, after), launched in itertools.zip_longest(candidates, found):
                try:
                    files = job.files
                    if launched is not None:
                        files.write_pid(launched.record)
                        files.remove("submit_intent")
                        self._release_tokens(job)
                        self._attach_launched(job, launched)
                        continue
                    files.remove("failed")
                    assert job.params is not None
                    files.write_params(job.params)
                    key = tuple(sorted(id(a) for a in after))
                    groups.setdefault(key, (after, []))[1].append(job)
                except Exception as exc:
                    self._launch_failed(job, exc)
            for after, group in groups.values():
                try:
                    launched = launcher.launch_many([j.files for j in group], after)
                except Exception as exc:
                    for job in group:
                        self._launch_failed(job, exc, fresh=job in fresh)
                    continue
                for job, one in zip(group, launched):
                    try:
                        job.files.write_pid(one.record)
                        job.files.remove("submit_intent")  # the .pid says it now
                    except OSError as exc:
                        logger.error("cannot write %s: %s", job.files.pidfile, exc)
                    self._started(job, launcher, one)
        finally:
            for lock in locks:
                lock.release()

    def _started_elsewhere(self, job: Job) -> bool:
        """Under the launch lock: the job runs already (attach to it) or is done (reuse it)."""
        files = job.files
        # Order matters: a dead process has written its marker before it died.
        record = files.read_pid()
        if record is not None and files.marker_state() is None:
            if self._found_running(job, record, release=True):
                return True
        if files.is_done():
            self._release_tokens(job)
            self._finish(job, JobState.DONE)
            return True
        return False

    def _found_running(self, job: Job, record: Any, release: bool = False) -> bool:
        """A folder with a ``.pid`` record and no marker: watch the job if it still runs (True),
        releasing the tokens taken for a launch that is not needed with ``release``."""
        files = job.files
        if not files.local:
            # On another host: its launcher there finds it again and tells when it ends.
            launched = job.launcher.reattach(files, record)
            local_process = False
        else:
            local_process = files.process_alive(record)
            launched = None if local_process else attach_record(record, files, job.launcher)
        if not local_process and launched is None:
            return False
        if release:
            self._release_tokens(job)
        if local_process:
            self._attach(job)
        else:
            self._attach_launched(job, launched)
        return True

    def _start(self, job: Job) -> None:
        files = job.files
        if not files.local:
            self._start_remote(job)
            return
        files.make()
        with files.launch_lock():
            if self._started_elsewhere(job):
                return
            files.remove("failed")
            self._write_job_directory(job)
            launcher = job.launcher
            launched = launcher.launch(files)
            files.write_pid(launched.record)
        self._started(job, launcher, launched)

    def _start_remote(self, job: Job) -> None:
        """:meth:`_start` on a remote host, in one round trip: the host does the same steps
        under the job's launch lock (``launchers/remote.py``: ``start``)."""
        from ..launchers import remote

        assert job.params is not None
        outcome, launched = remote.start(job.launcher, job.files, job.params)
        if outcome == "done":
            self._release_tokens(job)
            self._finish(job, JobState.DONE)
        elif outcome == "attached":
            assert launched is not None
            self._release_tokens(job)
            self._attach_launched(job, launched)
        else:
            assert launched is not None
            self._started(job, job.launcher, launched)

    def _started(self, job: Job, launcher: object, launched: Launched) -> None:
        """A job was launched: count its slot, and watch it."""
        job.attempt += 1
        job.launched = launched
        job.files.start_local_copy(job.path, launched.record, job.params)
        if launched.subscribe is not None:
            attempt = job.attempt
            self._slots[(job, attempt)] = launcher
            self._load[id(launcher)] += 1
            self._running.add(job)
            job.set_state(JobState.RUNNING)
            self._notify()
            launched.subscribe(
                lambda ending: self.post(lambda: self._launcher_ended(job, attempt, ending))
            )
            # Its launcher tells when it ends (no file events: a cluster's job writes its
            # markers from another host). Dependents its launcher can chain on it go now.
            self._promote_dependents(job)
            return
        attempt = job.attempt
        self._load[id(launcher)] += 1
        self._running.add(job)
        job.set_state(JobState.RUNNING)
        self._notify()
        wait = launched.wait
        if wait is not None:

            def reap() -> None:
                code = wait()
                self.post(lambda: self._process_ended(job, attempt, launcher, code))

            threading.Thread(target=reap, name=f"xpm-reap-{job.identifier[:8]}", daemon=True).start()
        else:
            # Not our child: the liveness sweep notices if it dies without a marker.
            self._attached.add(job)
        # Its marker is seen (file event) before the process has finished tearing down, so that
        # dependents start at once; the launcher slot is freed when the process is reaped.
        self._watch_job(job)

    def _launcher_ended(self, job: Job, attempt: int, ending: Ending) -> None:
        """A launcher told how a job it watches ended (``Launched.subscribe``)."""
        try:
            self._conclude_ending(job, attempt, ending)
        except Exception as exc:  # e.g. its host away past reconnect_timeout: end it, never hang
            self._end_on_error(job, "cannot conclude", exc)

    def _conclude_ending(self, job: Job, attempt: int, ending: Ending) -> None:
        launcher = self._slots.pop((job, attempt), None)
        if launcher is not None:
            self._load[id(launcher)] -= 1
            self._dirty = True
        if attempt != job.attempt or job.finished:
            return
        self._running.discard(job)
        launched, job.launched = job.launched, None
        files = job.files
        markers = ending.markers  # read by a remote host's launcher when the job ended
        state = files.marker_state() if markers is None else markers.state
        if state is JobState.DONE:
            self._finish(job, JobState.DONE)
            return
        if ending.code == EXIT_LOCKED and state is None:
            # Its runner found another runner at work on the job (a second submission of it):
            # wait for that one, through the job's folder.
            logger.info("%s is run by another runner: waiting on it", job)
            self._release_tokens(job)
            self._attach(job)
            return
        if ending.lost and launcher is None and state is None:
            # Found through an old record that its launcher no longer knows: it never ran, or
            # ended long ago without a marker. It may run (again), under the launch lock.
            with files.launch_lock():
                if launched is not None and files.read_pid() == launched.record:
                    files.remove("pid")
            logger.info("%s: its recorded job is unknown to its launcher; running it again", job)
            job.set_state(JobState.UNSCHEDULED)
            self._schedule(job)
            return
        failure = ending.failure
        if failure is not None and (ending.overrides or state is None):
            if self._retry(job, failure):
                return
            self._finish(job, JobState.ERROR, self._write_failure(job, failure))
            return
        marker = None
        if state is JobState.ERROR:
            marker = files.read_failure() if markers is None else markers.failure
        if marker is not None and self._retry(job, marker):  # e.g. GracefulTimeout
            return
        self._conclude_from_files(job, ending.code, markers)

    def _retry(self, job: Job, failure: FailureRecord) -> bool:
        """Submit again a job that hit its time limit (a resumable task) or was preempted, while
        its launcher allows retries."""
        from ..core.resumable import ResumableTask

        launcher = job.launcher
        if failure.reason == "timeout" and isinstance(job.task, ResumableTask):
            limit = getattr(launcher, "timeout_retries", 0)
        elif failure.reason == "preempted":
            limit = getattr(launcher, "preempt_retries", 0)
        else:
            return False
        if job.retries >= limit:
            return False
        job.retries += 1
        # The marker first: the ended submission is never mistaken for a running one.
        self._write_failure(job, failure)
        logger.warning("%s: %s; submitting it again (retry %d of %d)", job, failure.message,
                       job.retries, limit)
        self._release_tokens(job)
        # Dependents queued after the ended submission would be cancelled by the cluster:
        # take them back; they are submitted again after the new one.
        self._recall_dependents(job)
        self._make_ready(job)
        return True

    def _withdraw(self, job: Job) -> None:
        """Stop a launched job that must not run (cancel it); its ending is then ignored."""
        launched, job.launched = job.launched, None
        if launched is not None and launched.cancel is not None:
            try:
                launched.cancel()
            except Exception as exc:
                logger.warning("cannot cancel %s: %s", job, exc)
        launcher = self._slots.pop((job, job.attempt), None)
        if launcher is not None:
            self._load[id(launcher)] -= 1
            self._dirty = True
        job.attempt += 1
        self._running.discard(job)
        self._release_tokens(job)

    def _recall_dependents(self, job: Job) -> None:
        """Withdraw the launched (queued) dependents of ``job``, transitively; they wait again."""
        work = list(job.dependents)
        while work:
            dependent = work.pop()
            if dependent.finished or dependent.launched is None:
                continue
            self._withdraw(dependent)
            try:
                dependent.files.remove("pid")
            except OSError:
                pass
            dependent.pending_dependencies = sum(
                dep.state is not JobState.DONE for dep in dependent.dependencies
            )
            dependent.set_state(JobState.WAITING)
            work.extend(dependent.dependents)
        self._notify()

    def _attach_launched(self, job: Job, launched: Launched) -> None:
        """Watch a job that its launcher found again from its record (started earlier)."""
        logger.info("%s was submitted earlier: waiting on it", job)
        job.launched = launched
        job.files.start_local_copy(job.path, launched.record, job.params)
        attempt = job.attempt
        if not job.files.local and job not in self._running:
            # It runs on a remote host's launcher: it takes a slot there until it ends.
            self._slots[(job, attempt)] = job.launcher
            self._load[id(job.launcher)] += 1
        self._running.add(job)
        job.set_state(JobState.RUNNING)
        self._notify()
        assert launched.subscribe is not None
        launched.subscribe(lambda ending: self.post(lambda: self._launcher_ended(job, attempt, ending)))
        self._promote_dependents(job)

    def _process_ended(
        self, job: Job, attempt: int, launcher: object, code: Optional[int]
    ) -> None:
        files = job.files
        if (
            code is None
            and attempt == job.attempt
            and not job.finished
            and files.marker_state() is None
            and self._alive_elsewhere(job)
        ):
            # The launcher lost track of a process that still runs: watch its folder; it keeps
            # its launcher slot until it ends (see _finish).
            self._attach(job)
            return
        self._load[id(launcher)] -= 1
        self._dirty = True
        if attempt != job.attempt or job.finished:
            # An earlier attempt's process, or one whose marker was already seen.
            if attempt == job.attempt:
                self._running.discard(job)
            return
        self._running.discard(job)
        if code == EXIT_LOCKED and files.marker_state() is None:
            logger.info("%s is run by another runner: waiting on it", job)
            self._release_tokens(job)
            self._attach(job)
            return
        self._conclude_from_files(job, code)

    def _conclude_from_files(self, job: Job, code: Optional[int],
                             markers: Optional[Markers] = None) -> None:
        """The process is gone: its marker decides; without one, write why it failed.
        ``markers``: the folder's markers as just read (by a remote host's launcher)."""
        if job.finished:
            return
        files = job.files
        state = files.marker_state() if markers is None else markers.state
        if state is JobState.DONE:
            self._finish(job, JobState.DONE)
            return
        failure = files.read_failure() if markers is None else markers.failure
        if failure is None:
            if code is None:
                failure = FailureRecord(1, "lost", "the job process ended without a marker")
            elif code == EXIT_DISK_FULL:
                failure = FailureRecord(
                    code, "disk-full", "the job could not write its marker: no space left on "
                    f"the device of {files.path}",
                )
            elif code == -signal.SIGTERM:
                failure = FailureRecord(
                    128 - code, "cancelled", "the job process was terminated (SIGTERM)"
                )
            elif code < 0:
                failure = FailureRecord(
                    128 - code, "killed", f"the job process was killed by signal {-code}"
                )
            else:
                failure = FailureRecord(
                    code or 1,
                    "failed",
                    f"the job process exited with code {code} before writing a marker "
                    f"(see {files.stderr})",
                )
            failure = self._write_failure(job, failure)
        self._finish(job, JobState.ERROR, failure)

    # -- jobs run by someone else ----------------------------------------------------------------

    def _attach(self, job: Job) -> None:
        logger.info("%s is already running: waiting on it", job)
        self._attached.add(job)
        if job not in self._running:
            # It runs on this machine (an earlier run of the script, another controller): it
            # takes a launcher slot until it ends, like a job this controller started.
            self._running.add(job)
            self._load[id(job.launcher)] += 1
        job.set_state(JobState.RUNNING)
        self._watch_job(job)
        self._notify()
        # The marker may have appeared before the watch started.
        self._check_markers(job)

    def _watch_job(self, job: Job) -> None:
        if job.path not in self._watched_jobs:
            self._watched_jobs[job.path] = job
            self._watcher.watch(job.path, files_appearing_only=True)

    def _on_file_event(self, folder: Path, path: Path) -> None:
        # Watchdog thread: hand over to the scheduler thread.
        job = self._watched_jobs.get(folder)
        if job is not None:
            if path.name in (f"{job.name}.done", f"{job.name}.failed"):
                self.post(lambda: self._check_markers(job))
        elif folder.name == "holders" or path.name == "total":
            self.post(self._wake)

    def _wake(self) -> None:
        self._dirty = True

    def _check_markers(self, job: Job) -> None:
        if not job.finished and job.files.marker_state() is not None:
            self._conclude_from_files(job, None)

    def _alive_elsewhere(self, job: Job) -> bool:
        files = job.files
        record = files.read_pid()
        if record is not None and record.type != "local":
            # Its launcher knows (e.g. one squeue call), where the job runs: never a Slurm
            # command here for a job on a remote host.
            alive = record_alive(record) if files.local else files.record_alive(record)
            return True if alive is None or alive else files.runner_alive()
        if record is not None and files.process_alive(record):
            return True
        return files.runner_alive()

    def _sweep(self) -> None:
        """The slow liveness sweep: attached jobs that died without a marker, token releases."""
        for job in list(self._attached):
            if job.finished:
                continue
            if job.files.marker_state() is not None:
                self._conclude_from_files(job, None)
            elif not self._alive_elsewhere(job) and job.files.marker_state() is None:
                logger.warning("%s: its process is gone without a marker", job)
                self._conclude_from_files(job, None)
        if self._ready:
            self._dirty = True

    # -- endings ---------------------------------------------------------------------------------

    def _finish(self, job: Job, state: JobState, failure: Optional[FailureRecord] = None,
                copied: bool = False) -> None:
        """End a job. A remote job's folder is copied back first, unless ``copied`` (its local
        copy is up to date: reused from it, or just fetched)."""
        if job.finished:
            return
        job.launched = None
        self._release_tokens(job)
        if job in self._attached:
            self._attached.discard(job)
            if job in self._running:  # its launcher cannot tell when it ends: free its slot
                self._running.discard(job)
                self._load[id(job.launcher)] -= 1
        if self._watched_jobs.pop(job.path, None) is not None:
            self._watcher.unwatch(job.path)
        if not job.files.local and not copied:
            self._sync_back(job)
        job.set_state(state, failure)
        if state is JobState.DONE:
            self._call(job, job.callbacks)
            ready = []
            for dependent in job.dependents:
                if dependent.finished or dependent.state is not JobState.WAITING:
                    continue
                dependent.pending_dependencies -= 1
                if dependent.pending_dependencies == 0:
                    ready.append(dependent)
            for dependent in ready:
                self._make_ready(dependent)
        else:
            logger.warning(
                "%s failed (%s)%s", job, failure.reason if failure else "error",
                f": {failure.message}" if failure and failure.message else "",
            )
            self._fail_dependents_of(job, list(job.dependents))
        job.dependents = {}
        self._dirty = True
        self._notify()

    def _sync_back(self, job: Job) -> None:
        """Copy an ended remote job's folder into its local folder (``job.path``), before anyone
        is told that it ended: ``out.jobpath`` holds its files then. A copy that fails is said
        (``experimaestro jobs sync`` fetches it later); the job's state does not change."""
        try:
            job.files.fetch(job.path)
        except FileNotFoundError:
            pass  # never made on the remote (its launch failed there)
        except Exception as exc:
            logger.warning("%s ended, but its folder could not be copied back from %s: %s "
                           "(run `experimaestro jobs sync %s` later)", job, job.files.location,
                           exc, job.identifier)

    def _call(self, job: Job, callbacks: list[Callable[[], object]]) -> None:
        """Run ``on_completed`` callbacks: one that raises is reported and changes nothing else."""
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("on_completed callback of %s raised", job)

    def _forget(self, job: Job) -> None:
        """A job that will not run: its dependencies no longer wait to wake it."""
        for dep in job.dependencies:
            dep.dependents.pop(job, None)

    def _fail_dependents_of(self, failed: Job, dependents: list[Job]) -> None:
        """Fail (transitively) the jobs that wait for a failed one, with reason "dependency"."""
        work = [(failed, d) for d in dependents]
        while work:
            cause, job = work.pop()
            if job.finished:
                continue
            if job.launched is not None and job.launched.subscribe is not None and (
                job in self._running
            ):
                # Queued after the failed job (a Slurm dependency): cancel it, never leave it
                # pending forever.
                self._withdraw(job)
            self._forget(job)
            message = f"dependency {cause.typeid}/{cause.identifier} failed"
            self._write_failure(job, FailureRecord(1, "dependency", message))
            job.set_state(JobState.ERROR, FailureRecord(1, "dependency", message))
            work.extend((job, d) for d in job.dependents)
            job.dependents = {}
        self._notify()

    def _cancel(self, jobs: list[Job], aborted: object) -> None:
        """Drop the jobs of an aborted experiment that have not started, unless another open
        experiment of this process needs them."""
        cancelled = []
        for job in jobs:
            if job.finished or job.state is JobState.RUNNING:
                continue
            if any(xp is not aborted and getattr(xp, "open", False) for xp in job.experiments):
                continue
            self._forget(job)
            job.set_state(JobState.ERROR, FailureRecord(1, "cancelled", "experiment aborted"))
            cancelled.append(job)
        # Jobs of other experiments that waited for a cancelled one cannot run either.
        for job in cancelled:
            self._fail_dependents_of(job, list(job.dependents))
            job.dependents = {}
        self._notify()
