"""The job side: ``python -m experimaestro run <jobdir>/params.json``.

Runs one task in its job directory and writes the job's truth there:

1. take ``<name>.lock`` (exit 75 at once if another runner holds it: never two runs of one job);
2. exit 0 at once if ``<name>.done`` exists (a job is done once);
3. load params.json, call ``execute()`` of the init tasks then of the task, cwd = the job directory;
4. write ``<name>.done`` atomically, or ``<name>.failed`` (JSON code + reason) on an error; when
   no marker can be written (a full disk), exit with :data:`EXIT_DISK_FULL` (or the job's code)
   and let the controller record the failure.

Imports are kept minimal: this runs once per job, and its start-up cost is paid by every job.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Optional


class _RunnerJob:
    """What ``task.__xpm__.job`` is inside the job process."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.name = name

    @property
    def stdout(self) -> Path:
        return self.path / f"{self.name}.out"

    @property
    def stderr(self) -> Path:
        return self.path / f"{self.name}.err"


def _on_sigterm(signum: int, frame: Any) -> None:
    from .core.resumable import TaskCancelled

    raise TaskCancelled("received SIGTERM")


def _load(params_path: Path, main: bool = False, post_init: bool = True) -> Any:
    """The task of a job folder's params.json, ready to run: every task of the graph knows its job
    folder, ``__post_init__`` has run, and upstream tasks (stored as references to their own job
    folders) are read from their params.json when first used. For the job's own params.json
    (``main``), the job's environment variables are set first (before any class is imported) and
    its workspace becomes the one of ``@cache`` methods."""
    from .core.config import iter_configs
    from .core.serialization import from_document, parse_document

    path = params_path.parent
    workspace = path.parent.parent.parent

    def load_reference(relpath: str) -> Any:
        return _load(workspace / relpath / "params.json", post_init=post_init)

    document = parse_document(params_path.read_text(), source=str(params_path))
    if main:
        from .core.cache import push_workspace

        os.environ.update(document.environ)
        push_workspace(workspace)
    task = from_document(document, job=path, load_reference=load_reference)
    configs = list(iter_configs(task))
    _attach_jobs(task, configs, path)
    if not post_init:  # configurations, not objects (load_xp_info)
        return task
    for cfg in reversed(configs):
        # A reference runs its __post_init__ when it is read (its own _load).
        post_init = getattr(type(cfg), "__post_init__", None)
        if post_init is not None and cfg.__xpm__.loader is None:
            post_init(cfg)
    return task


def _attach_jobs(task: Any, configs: list[Any], path: Path) -> None:
    """Give each task of the graph its job folder (``jobpath`` works on dependencies too)."""
    from .core.config import Task

    jobs_root = path.parent.parent  # <workspace>/jobs
    for cfg in configs:
        if isinstance(cfg, Task):
            info = cfg.__xpm__
            t = info.xpmtype
            if cfg is task:
                info.job = _RunnerJob(path, t.name)
            else:
                info.job = _RunnerJob(jobs_root / t.typeid / info.identifier.hex(), t.name)


def _print_exception() -> None:
    import traceback  # only on failure: every job pays for the runner's imports

    try:
        traceback.print_exc()
        sys.stderr.flush()
    except (OSError, ValueError):  # the log is on a full disk: the marker says why
        pass


def _banner(text: str) -> None:
    line = f"===== experimaestro: {text} ({time.strftime('%Y-%m-%d %H:%M:%S')}) =====\n"
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.write(line)
            stream.flush()
        except (OSError, ValueError):
            pass


def run(params_path: Path) -> int:
    """Run the job whose params.json is given; returns the process exit code."""
    from .core.resumable import GracefulTimeout, TaskCancelled
    from .launchers.jobfiles import EXIT_DISK_FULL, EXIT_LOCKED, JobFiles

    params_path = params_path.resolve()
    files = JobFiles.of_directory(params_path.parent)
    lock_fd = os.open(files.lock, os.O_RDWR | os.O_CREAT, 0o644)
    # A controller's liveness probe may hold the lock for a few microseconds: retry briefly.
    deadline = time.monotonic() + 2.0
    while True:
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                sys.stderr.write(
                    f"experimaestro: job {files.path} is already running; not starting it\n"
                )
                return EXIT_LOCKED
            time.sleep(0.02)
    if files.done.exists():
        return 0
    # A new attempt in the same folder (e.g. a job that Slurm requeued after a preemption): the
    # previous attempt's failure no longer holds.
    files.failed.unlink(missing_ok=True)
    signal.signal(signal.SIGTERM, _on_sigterm)
    if os.environ.get("SLURM_JOB_ID"):  # ResumableTask.remaining_time() asks Slurm
        from .launchers.slurm.jobside import register_remaining_time

        register_remaining_time()
    _banner(f"job started, pid {os.getpid()}")
    code = 0
    reason = "failed"
    message = ""
    partial_locks: list[int] = []
    from .notifications import end_job, start_job

    try:
        task = _load(params_path, main=True)
        partial_locks = _hold_partials(task, files.path)
        os.chdir(files.path)
        start_job(files.progress)
        for init in task.__xpm__.init_tasks:
            init.execute()
        task.execute()
    except TaskCancelled:
        code, reason, message = 128 + signal.SIGTERM, "cancelled", "received SIGTERM"
    except GracefulTimeout as exc:  # a resumable task stopped before its time limit
        code, reason, message = 1, "timeout", f"GracefulTimeout: {exc.message}"
    except MemoryError:
        code, reason, message = 1, "memory", "MemoryError"
        _print_exception()
    except OSError as exc:
        _print_exception()
        code, message = 1, f"{type(exc).__name__}: {exc}"
        if exc.errno == errno.ENOSPC:
            reason = "disk-full"
    except BaseException as exc:  # the task's own error, whatever it is
        _print_exception()
        code = exc.code if isinstance(exc, SystemExit) and isinstance(exc.code, int) else 1
        if isinstance(exc, SystemExit) and code == 0:
            code = 0
        else:
            code = code or 1
            message = f"{type(exc).__name__}: {exc}"
    end_job()  # the last progress() value, before the marker
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    # The banner first: once the marker exists, the controller may read the logs.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # never leave a job without its marker
    try:
        if code == 0:
            _banner("job done")
            files.write_done()
        else:
            _banner(f"job failed ({reason}, code {code})")
            files.write_failure(code, reason, message)
    except OSError as exc:  # no marker: the exit code tells the controller
        if exc.errno == errno.ENOSPC:
            code = EXIT_DISK_FULL
        else:
            code = code or 1
        _banner(f"job failed: cannot write its marker ({exc})")
    # The job is over: a new attempt, or a job sharing a partial folder, may start even while
    # this process finishes exiting (threads, worker processes...).
    for fd in partial_locks:
        os.close(fd)
    fcntl.flock(lock_fd, fcntl.LOCK_UN)
    return code


def _hold_partials(task: Any, job_path: Path) -> list[int]:
    """Lock the task's partial folders (core/partial.py), waiting while another job holds one:
    jobs that share a partial folder (checkpoints...) never run at the same time. The folders are
    created; the locks (``<folder>/.lock``) go with the process, even when it is killed."""
    from .core.config import task_partial_paths

    fds: list[int] = []
    for folder in sorted(task_partial_paths(task, job_path)):
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        fds.append(fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _banner(f"waiting for the partial folder {folder} (another job uses it)")
            fcntl.flock(fd, fcntl.LOCK_EX)
    return fds


def _redirect_output(files: Any) -> None:
    """Send this process's stdout and stderr to the job's log files (appended)."""
    for path, fd in ((files.stdout, 1), (files.stderr, 2)):
        target = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(target, fd)
        os.close(target)


def forkserver() -> int:
    """Start jobs by forking this process, which has already done a job's imports.

    The direct launcher keeps one such process per controller (see launchers/forkserver.py), so
    that a job does not pay for the interpreter start-up and imports. One line each way:

    * stdin: the path of a job's params.json;
    * stdout: ``started <pid> <create time>`` once the job's process exists, then
      ``ended <pid> <exit code>`` when it ends (a negative code: killed by that signal).

    Each job process is in its own session and outlives this one. End of input: exit at once
    (running jobs go on).
    """
    import psutil

    from .core import serialization  # noqa: F401 - the imports are the point of forking from here
    from .launchers.jobfiles import JobFiles

    def report(line: str) -> None:
        # One write() of a short line on a pipe is atomic: safe from the signal handler too.
        os.write(1, line.encode())

    starting = False  # between a fork and its "started" line: reaping waits (create time)
    deferred = False

    def reap(signum: int, frame: Any) -> None:
        nonlocal deferred
        if starting:
            deferred = True
            return
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            report(f"ended {pid} {os.waitstatus_to_exitcode(status)}\n")

    signal.signal(signal.SIGCHLD, reap)
    for line in sys.stdin:
        params = line.strip()
        if not params:
            continue
        # No reaping between the fork and the report: the child's create time must be readable.
        starting = True
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # the job's own subprocesses need it
            sys.argv = [sys.argv[0], "run", params]
            os._exit(_run_forked(Path(params), JobFiles))
        try:
            create_time = psutil.Process(pid).create_time()
        except psutil.Error:
            create_time = 0.0
        report(f"started {pid} {create_time}\n")
        starting = False
        if deferred:
            deferred = False
            reap(signal.SIGCHLD, None)
    return 0


def _run_forked(params: Path, job_files: Any) -> int:
    """The job side of a fork: a session of its own, the job's logs, then the job."""
    code = 1
    try:
        os.setsid()
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        sys.stdin = open(os.devnull)  # not the server's buffer of job paths
        _redirect_output(job_files.of_directory(params.resolve().parent))
        code = run(params)
    except BaseException:
        _print_exception()
    finally:
        import atexit
        import threading

        # What a normal interpreter exit does (as multiprocessing does for its forked children):
        # join non-daemon threads (and executors' workers), then the atexit functions.
        threading._shutdown()  # type: ignore[attr-defined]
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
    return code


def main(argv: Optional[list[str]] = None) -> int:
    """Entry point of ``python -m experimaestro run (PARAMS | --forkserver)``."""
    argv = sys.argv[1:] if argv is None else argv
    if argv == ["--forkserver"]:
        return forkserver()
    if len(argv) != 1:
        sys.stderr.write("usage: python -m experimaestro run <jobdir>/params.json\n")
        return 2
    return run(Path(argv[0]))
