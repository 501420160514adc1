"""An exclusive ``flock(2)`` held through one open file descriptor: the launch lock of a job folder.

``filelock.FileLock`` probes each new folder for flock support and tracks forks and threads, which
costs more than the lock itself when a controller launches a thousand jobs at once (one lock per
job folder). This lock is one ``open`` and one ``flock`` call; it is interoperable with
``FileLock`` on the same file (both use ``flock``), and crash-safe the same way: the kernel drops
it when the descriptor closes, so a killed controller never leaves a folder locked.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Optional, Union


class FdLock:
    """An exclusive lock on ``path`` (created if missing); blocks until it is free.

    Locks held through two descriptors exclude each other, also within one process.
    Not reentrant: acquire it once, release it once.
    """

    __slots__ = ("path", "_fd")

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = str(path)
        self._fd: Optional[int] = None

    def acquire(self) -> "FdLock":
        """Take the lock (blocking)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock (closing the descriptor releases it); a no-op if not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> "FdLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
