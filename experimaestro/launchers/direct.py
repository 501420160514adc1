"""The direct launcher: the job's runner as a detached process of this machine."""

from __future__ import annotations

import os
import shlex
import socket
import sys
import time
from typing import Optional, Sequence, Union

from ..connectors.base import Connector
from ..connectors.local import LocalConnector
from ..connectors.files import atomic_write
from ..connectors.process import PidRecord
from ..connectors.pythonpath import user_python_path
from .jobfiles import JobFiles
from . import forkserver
from .base import Launched, Launcher


class DirectLauncher(Launcher):
    """Runs each job as a detached process (its own session), so that it outlives the controller.

    At most ``max_jobs`` jobs run at once (default: the number of CPUs); tokens come on top.

    To start jobs fast, jobs are forked from a process that has already done a job's imports (see
    ``forkserver.py``); with ``fork=False``, each job starts a new interpreter.
    """

    def __init__(
        self,
        connector_or_max_jobs: Union[Connector, int, None] = None,
        /,
        *,
        max_jobs: Optional[int] = None,
        python: Optional[str] = None,
        connector: Optional[Connector] = None,
        fork: bool = True,
    ) -> None:
        """The first positional argument is either the connector (as experimaestro 2.x writes
        it: ``DirectLauncher(LocalConnector.instance())``) or ``max_jobs`` (``DirectLauncher(8)``);
        both also go by keyword.

        With a remote connector (``DirectLauncher(connector=SshConnector(...))``), jobs run on its
        host, started there by the same launcher (``launchers/remote.py``); ``max_jobs`` defaults
        to the host's CPUs and ``python`` to the connector's."""
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
        if connector is not None and not isinstance(connector, Connector):
            raise TypeError(
                f"DirectLauncher(connector={connector!r}): give LocalConnector.instance() or a "
                f"remote connector (SshConnector(...))"
            )
        if max_jobs is not None and max_jobs < 1:
            raise ValueError(f"DirectLauncher(max_jobs={max_jobs}): give at least 1")
        self.connector = connector or LocalConnector.instance()
        if self.remote:
            self.max_jobs = max_jobs or self.connector.cpu_count()
            self.python = python or self.connector.python
        else:
            self.max_jobs = max_jobs or os.cpu_count() or 1
            self.python = python or sys.executable
        #: Start jobs from the fork server (False: a new interpreter for each job).
        self.fork = fork

    def command(self, files: JobFiles) -> list[str]:
        return [self.python, "-m", "experimaestro", "run", str(files.params)]

    def script(self, files: JobFiles) -> str:
        """The launch script, written for people (to rerun a job by hand); every value quoted."""
        env = "".join(f"{name}={shlex.quote(value)} " for name, value in self.code_environment().items())
        return (
            "#!/bin/sh\n"
            "# experimaestro launch script (direct launcher)\n"
            f"cd {shlex.quote(str(files.path))} || exit 1\n"
            f"{env}exec {' '.join(shlex.quote(c) for c in self.command(files))}\n"
        )

    def _job_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.code_environment())
        return env

    def spec(self) -> dict:
        """Rebuilds this launcher on a remote host (see ``launchers/remote.py``), with the staged
        code on ``PYTHONPATH`` there."""
        return {"type": "direct", "python": self.python, "fork": self.fork, "env": self.code_environment()}

    def check(self) -> None:
        """A remote host: with a workspace, reachable, running our experimaestro, and the user's
        code staged there (an error at the ``submit()`` line otherwise, before any job folder
        is made)."""
        self.check_host()

    def launch_many(self, files: Sequence[JobFiles], after: Sequence[Launched] = ()
                    ) -> list[Launched]:
        if self.remote:
            from . import remote

            return remote.launch(self, files, after)
        return super().launch_many(files, after)

    def launch(self, files: JobFiles) -> Launched:
        if self.remote:
            return self.launch_many([files])[0]
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
        if self.remote:
            return f"direct on {self.connector.host} (at most {self.max_jobs} at once)"
        return f"local (at most {self.max_jobs} at once)"


def from_spec(spec: dict) -> DirectLauncher:
    """The launcher of :meth:`DirectLauncher.spec`, on this host (the SSH agent's side); it has
    no limit of its own (the controller counts the jobs)."""
    launcher = DirectLauncher(max_jobs=1 << 30, python=spec.get("python") or sys.executable,
                              fork=bool(spec.get("fork", True)))
    launcher.__dict__["_code_env"] = dict(spec.get("env") or {})
    return launcher


_default: Optional[DirectLauncher] = None


def default_launcher() -> DirectLauncher:
    """The process-wide local launcher used when none is given."""
    global _default
    if _default is None:
        max_jobs = os.environ.get("XPM_MAX_JOBS")
        _default = DirectLauncher(int(max_jobs) if max_jobs else None)
    return _default


__all__ = ["DirectLauncher", "default_launcher", "user_python_path"]
