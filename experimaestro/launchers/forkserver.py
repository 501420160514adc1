"""The controller's side of the job fork server (``python -m experimaestro run --forkserver``).

Most of a job's start-up cost is the Python interpreter and the imports that reading params.json
needs (about 50 ms of CPU per job). A fork server pays it once: it is a detached process that has
done these imports, and starts each job by forking itself (see ``runner.forkserver``). A job starts
in about a millisecond and costs only its own work.

One fork server serves the whole controller process; it only starts jobs for the current
interpreter and environment (a change of ``os.environ``, such as ``CUDA_VISIBLE_DEVICES``, retires it
for a new one). Its jobs are in sessions of their own: they outlive the fork server and the
controller. The fork server exits when its stdin closes (the controller ended, however it ended).
If it dies, the jobs it started go on, and their controller watches them through their folders.
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
                    return None
                return self._started.pop(0) if self._started else None

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
    """The fork server of this process, for one (interpreter, environment) at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Optional[Hashable] = None
        self._server: Optional[ForkServer] = None

    def get(self, key: Hashable, start: Callable[[], StartedProcess]) -> Optional[ForkServer]:
        """The live fork server for ``key``, started if needed; None if it cannot be started."""
        with self._lock:
            server = self._server
            if server is not None and self._key == key and server.alive:
                return server
            if server is not None:
                server.close()  # another environment, or dead: retire it
            self._server = None
            self._key = key
            try:
                self._server = ForkServer(start())
            except Exception as exc:
                logger.warning("could not start the job fork server (%s): starting jobs directly",
                               exc)
                return None
            return self._server

    def close(self) -> None:
        with self._lock:
            if self._server is not None:
                self._server.close()
                self._server = None


#: The fork servers of this process.
servers = ForkServers()
atexit.register(servers.close)
