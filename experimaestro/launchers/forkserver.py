"""The controller's side of the job fork server (``python -m experimaestro run --forkserver``).

Most of a job's start-up cost is the Python interpreter and the imports that reading params.json
needs (about 50 ms of CPU per job). A fork server pays it once: it is a detached process that has
done these imports, and starts each job by forking itself (see ``runner.forkserver``). A job starts
in about a millisecond and costs only its own work.

A controller keeps one fork server per interpreter and environment (two launchers that set
``CUDA_VISIBLE_DEVICES`` differently use two). Its jobs are in sessions of their own: they outlive
the fork server and the controller. The fork server exits when its stdin closes (the controller
ended, however it ended). If it dies, the jobs it started go on, and their controller watches them
through their folders.
"""

from __future__ import annotations

import atexit
import logging
import threading
from typing import Callable, Hashable, Optional

from ..connectors.base import StartedProcess

logger = logging.getLogger("experimaestro.launchers")

#: How long to wait for the fork server to report a started job (it takes milliseconds).
START_TIMEOUT = 30.0


class ForkServer:
    """One running fork server: start jobs, and learn how they end."""

    def __init__(self, started: StartedProcess) -> None:
        assert started.popen is not None
        assert started.popen.stdin is not None and started.popen.stdout is not None
        self.process = started
        self._stdin = started.popen.stdin
        self._launch_lock = threading.Lock()
        self._state = threading.Condition()
        self._started: list[tuple[int, float]] = []
        self._ended: dict[int, int] = {}
        #: The pids of the jobs it started.
        self.jobs: set[int] = set()
        self.alive = True
        self._reader = threading.Thread(target=self._read, name="xpm-forkserver", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.popen is not None and self.process.popen.stdout is not None
        for raw in self.process.popen.stdout:
            words = raw.decode(errors="replace").split()
            with self._state:
                if len(words) == 3 and words[0] == "started":
                    self._started.append((int(words[1]), float(words[2])))
                elif len(words) == 3 and words[0] == "ended":
                    self._ended[int(words[1])] = int(words[2])
                self._state.notify_all()
        with self._state:
            self.alive = False
            self._state.notify_all()
        self.process.popen.wait()

    def start(self, params: str) -> Optional[tuple[int, float]]:
        """Start the job of ``params``; its (pid, create time), or None if the server is gone."""
        with self._launch_lock:
            with self._state:
                if not self.alive:
                    return None
            try:
                self._stdin.write(f"{params}\n".encode())
                self._stdin.flush()
            except (OSError, ValueError):
                return None
            with self._state:
                if not self._state.wait_for(lambda: self._started or not self.alive, START_TIMEOUT):
                    # Unresponsive: never use it again (a late answer would pair with another job).
                    logger.warning("the job fork server did not answer: retiring it")
                    self.alive = False
                    self._state.notify_all()
                    self.close()
                    return None
                if not self._started:
                    return None
                pid, create_time = self._started.pop(0)
                self.jobs.add(pid)
                return pid, create_time

    def wait(self, pid: int) -> Optional[int]:
        """Block until job ``pid`` ends: its exit code, or None if the server died first (the job
        may still run: its controller then watches its folder)."""
        with self._state:
            self._state.wait_for(lambda: pid in self._ended or not self.alive)
            return self._ended.pop(pid, None)

    def close(self) -> None:
        """Close its stdin: it exits at once (its running jobs go on)."""
        try:
            self._stdin.close()
        except OSError:
            pass


class ForkServers:
    """The fork servers of this process: one per (interpreter, environment), a few at most.

    Launchers with different environments (one per GPU, say) each keep their own server. Beyond
    ``limit`` environments, the least recently used server is retired: it exits, and its running
    jobs go on, watched through their folders.
    """

    def __init__(self, limit: int = 8) -> None:
        self._lock = threading.Lock()
        self._servers: dict[Hashable, ForkServer] = {}
        self.limit = limit

    def get(self, key: Hashable, start: Callable[[], StartedProcess]) -> Optional[ForkServer]:
        """The live fork server for ``key``, started if needed; None if it cannot be started."""
        with self._lock:
            server = self._servers.pop(key, None)
            if server is not None and server.alive:
                self._servers[key] = server  # most recently used last
                return server
            while len(self._servers) >= self.limit:
                oldest = next(iter(self._servers))
                self._servers.pop(oldest).close()
            try:
                server = ForkServer(start())
            except Exception as exc:
                logger.warning(
                    "could not start the job fork server (%s): starting jobs directly", exc
                )
                return None
            self._servers[key] = server
            return server

    def running(self) -> list[ForkServer]:
        """The fork servers started so far (alive or not)."""
        with self._lock:
            return list(self._servers.values())

    def close(self) -> None:
        with self._lock:
            servers = list(self._servers.values())
            self._servers.clear()
        for server in servers:
            server.close()


#: The fork servers of this process.
servers = ForkServers()
atexit.register(servers.close)
