"""Runners standing by: detached processes that have started Python and done a job's imports, and
wait for a job's params.json path on their stdin (``python -m experimaestro run --standby``).

Handing a job to one of them saves the interpreter start-up and imports (about 50 ms of CPU) on the
path from a job's end to its dependent's start. One pool serves the whole process; it only holds
runners started with the current interpreter and environment (a change of ``os.environ``, such as
``CUDA_VISIBLE_DEVICES``, retires the others). A runner exits when its stdin closes: when it is
dismissed, or when the controller ends, however it ends.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from typing import Callable, Hashable, Optional

from ..connectors.base import StartedProcess

logger = logging.getLogger("experimaestro.launchers")


class StandbyPool:
    """Standing-by runners for one (interpreter, environment) at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: Optional[Hashable] = None
        self._spares: deque[StartedProcess] = deque()

    def take(self, key: Hashable, params: str) -> Optional[StartedProcess]:
        """Hand ``params`` to the oldest live runner started for ``key``; None if there is none."""
        with self._lock:
            retired = self._retire_unless(key)
        for started in retired:
            dismiss(started)
        while True:
            with self._lock:
                if not self._spares:
                    return None
                started = self._spares.popleft()
            assert started.popen is not None and started.popen.stdin is not None
            if started.popen.poll() is not None:
                continue
            try:
                started.popen.stdin.write(f"{params}\n".encode())
                started.popen.stdin.close()
            except OSError:  # it died meanwhile: try the next one
                continue
            return started

    def refill(self, key: Hashable, count: int, start: Callable[[], StartedProcess]) -> None:
        """Start runners until ``count`` stand by for ``key`` (best effort: a failure is logged)."""
        while True:
            with self._lock:
                retired = self._retire_unless(key)
                missing = count - len(self._spares)
            for started in retired:
                dismiss(started)
            if missing <= 0:
                return
            try:
                started = start()
            except Exception as exc:
                logger.warning("could not start a standing-by runner: %s", exc)
                return
            with self._lock:
                if self._key == key:
                    self._spares.append(started)
                    continue
            dismiss(started)
            return

    def _retire_unless(self, key: Hashable) -> list[StartedProcess]:
        if self._key == key:
            return []
        self._key = key
        retired = list(self._spares)
        self._spares.clear()
        return retired

    def close(self) -> None:
        """Dismiss every standing-by runner."""
        with self._lock:
            spares = list(self._spares)
            self._spares.clear()
        for started in spares:
            dismiss(started)


def dismiss(started: StartedProcess) -> None:
    """Close a runner's stdin (it exits on end of input) and reap it."""
    if started.popen is not None and started.popen.stdin is not None:
        try:
            started.popen.stdin.close()
            started.popen.wait(timeout=5)
        except Exception:  # already gone, or slow to exit: nothing to do
            pass


#: The pool of this process.
pool = StandbyPool()
atexit.register(pool.close)
