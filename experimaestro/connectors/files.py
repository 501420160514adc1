"""Atomic file writes (readers see the old content or the new one, never a part), and reading the
end of a log."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Union


def atomic_write(path: Path, data: Union[str, bytes], durable: bool = False, mode: int = 0o644
                 ) -> None:
    """Write a file atomically: a temporary file in the same folder, then renamed.

    Readers see the old content or the new one, never a part. With ``durable``, the data is also
    flushed to disk before the rename (for markers, which must survive a machine crash). ``mode``
    is the new file's permissions (before the umask), e.g. ``0o755`` for a script.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    # A name unique to this process and call; O_EXCL never reuses another writer's file.
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def tail_lines(path: Path, lines: int = 10, max_bytes: int = 8192) -> list[str]:
    """The last ``lines`` lines of a text file (read from its last ``max_bytes``); [] if unreadable."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - max_bytes))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]
