"""The direct launcher: the job's runner as a detached process of this machine."""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time
from typing import Optional, Union

from ..connectors.base import Connector
from ..connectors.local import LocalConnector
from ..connectors.files import atomic_write
from ..connectors.process import PidRecord
from .jobfiles import JobFiles
from . import forkserver
from .base import Launched, Launcher


def user_python_path() -> str:
    """PYTHONPATH for jobs: the controller's own import folders (the script's folder, the
    project), so that the job imports the same modules; the interpreter's folders are implied."""
    system = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    entries: list[str] = []
    for entry in sys.path:
        path = os.path.realpath(entry or os.getcwd())
        if not os.path.isdir(path) or any(path.startswith(s + os.sep) or path == s for s in system):
            continue
        if path not in entries:
            entries.append(path)
    existing = os.environ.get("PYTHONPATH")
    if existing:
        entries.extend(p for p in existing.split(os.pathsep) if p and p not in entries)
    return os.pathsep.join(entries)


class DirectLauncher(Launcher):
    """Runs each job as a detached process (its own session), so that it outlives the controller.

    At most ``max_jobs`` jobs run at once (default: the number of CPUs); tokens come on top.

    To start jobs fast, jobs are forked from a process that has already done a job's imports (see
    ``forkserver.py``); with ``fork=False``, each job starts a new interpreter.
    """

    def __init__(
        self,
        connector_or_max_jobs: Union[LocalConnector, int, None] = None,
        /,
        *,
        max_jobs: Optional[int] = None,
        python: Optional[str] = None,
        connector: Optional[LocalConnector] = None,
        fork: bool = True,
    ) -> None:
        """The first positional argument is either the connector (as experimaestro 2.x writes
        it: ``DirectLauncher(LocalConnector.instance())``) or ``max_jobs`` (``DirectLauncher(8)``);
        both also go by keyword."""
        first = connector_or_max_jobs
        if isinstance(first, Connector):
            if connector is not None:
                raise TypeError("DirectLauncher: the connector is given twice (positional and connector=)")
            connector = first
        elif isinstance(first, int) and not isinstance(first, bool):
            if max_jobs is not None:
                raise TypeError("DirectLauncher: max_jobs is given twice (positional and max_jobs=)")
            max_jobs = first
        elif first is not None:
            raise TypeError(
                f"DirectLauncher({first!r}): the first argument is a connector "
                f"(LocalConnector.instance()) or the number of jobs run at once (an int)"
            )
        if connector is not None and not isinstance(connector, LocalConnector):
            raise TypeError(
                f"DirectLauncher runs jobs on this machine: give LocalConnector.instance(), "
                f"not {connector!r}"
            )
        if max_jobs is not None and max_jobs < 1:
            raise ValueError(f"DirectLauncher(max_jobs={max_jobs}): give at least 1")
        self.max_jobs = max_jobs or os.cpu_count() or 1
        self.python = python or sys.executable
        self.connector = connector or LocalConnector.instance()
        self._pythonpath: Optional[str] = None
        #: Start jobs from the fork server (False: a new interpreter for each job).
        self.fork = fork

    def command(self, files: JobFiles) -> list[str]:
        return [self.python, "-m", "experimaestro", "run", str(files.params)]

    def script(self, files: JobFiles) -> str:
        """The launch script, written for people (to rerun a job by hand); every value quoted."""
        env = f"PYTHONPATH={shlex.quote(self._env()['PYTHONPATH'])} "
        return (
            "#!/bin/sh\n"
            "# experimaestro launch script (direct launcher)\n"
            f"cd {shlex.quote(str(files.path))} || exit 1\n"
            f"{env}exec {' '.join(shlex.quote(c) for c in self.command(files))}\n"
        )

    def _env(self) -> dict[str, str]:
        if self._pythonpath is None:
            self._pythonpath = user_python_path()
        return {"PYTHONPATH": self._pythonpath}

    def _job_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self._env())
        return env

    def launch(self, files: JobFiles) -> Launched:
        script = files.path / f"{files.name}.sh"
        atomic_write(script, self.script(files))
        os.chmod(script, 0o755)
        env = self._job_env()
        if self.fork:
            server = forkserver.servers.get(
                (self.python, tuple(sorted(env.items()))),
                lambda: self.connector.start_detached(
                    [self.python, "-m", "experimaestro", "run", "--forkserver"], cwd="/",
                    stdout_path=None, stderr_path=None, env=env, stdin_pipe=True,
                    stdout_pipe=True,
                ),
            )
            started = server.start(str(files.params)) if server is not None else None
            if server is not None and started is not None:
                pid, create_time = started
                record = PidRecord(pid, create_time, socket.gethostname(), time.time())
                return Launched(record=record, wait=lambda: server.wait(pid))
        process = self.connector.start_detached(
            self.command(files), cwd=files.path, stdout_path=files.stdout,
            stderr_path=files.stderr, env=env,
        )
        assert process.popen is not None
        return Launched(record=process.record, wait=process.popen.wait)

    def describe(self) -> str:
        return f"local (at most {self.max_jobs} at once)"


_default: Optional[DirectLauncher] = None


def default_launcher() -> DirectLauncher:
    """The process-wide local launcher used when none is given."""
    global _default
    if _default is None:
        max_jobs = os.environ.get("XPM_MAX_JOBS")
        _default = DirectLauncher(int(max_jobs) if max_jobs else None)
    return _default


__all__ = ["DirectLauncher", "default_launcher", "user_python_path"]
