"""``progress(0.42, "epoch 3/10")``: a running task reports how far it is.

The value is written into the job folder (``<name>.progress``, JSON, atomically), so that the monitor
and ``experimaestro jobs list`` show it whatever launched the job (locally, over SSH, on Slurm) and
after a controller restart. Writes are rate-limited: at most one every :data:`MIN_INTERVAL` seconds;
a value given in between is kept and written when the interval ends (by a timer), and the last value
is always written when the task ends. A call in a tight loop therefore costs a lock and a comparison.

Job side, and light: imported by the runner of every job.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, Optional, Union

from .connectors.files import atomic_write

#: The shortest time between two writes of the progress file, in seconds.
MIN_INTERVAL = 0.25


class ProgressWriter:
    """Writes the progress of one job into ``path`` (``<job folder>/<name>.progress``)."""

    def __init__(self, path: Path, min_interval: float = MIN_INTERVAL) -> None:
        self.path = Path(path)
        self.min_interval = min_interval
        self._lock = threading.Lock()
        #: One entry per nesting level: ``{"value": float, "desc": str | None}``.
        self._levels: list[dict[str, Any]] = []
        self._dirty = False
        self._next_write = 0.0
        self._timer: Optional[threading.Timer] = None
        self.writes = 0

    def update(self, value: float, desc: Optional[str], level: int) -> None:
        """Record a value; write it now if the last write is old enough, else soon."""
        now = time.monotonic()
        with self._lock:
            entry = {"value": value, "desc": desc}
            if level < len(self._levels):
                self._levels[level:] = [entry]  # a new value ends the deeper levels
            else:
                self._levels.extend({"value": 0.0, "desc": None} for _ in range(level - len(self._levels)))
                self._levels.append(entry)
            self._dirty = True
            if now >= self._next_write:
                self._write_locked(now)
            elif self._timer is None:
                self._timer = threading.Timer(self._next_write - now, self._on_timer)
                self._timer.daemon = True
                self._timer.start()

    def _on_timer(self) -> None:
        with self._lock:
            self._timer = None
            if self._dirty:
                self._write_locked(time.monotonic())

    def _write_locked(self, now: float) -> None:
        self._dirty = False
        self._next_write = now + self.min_interval
        data = {"levels": self._levels, "time": time.time()}
        try:
            atomic_write(self.path, json.dumps(data))
            self.writes += 1
        except OSError:  # a full disk must not fail the task: progress is only shown
            pass

    def flush(self) -> None:
        """Write the last value if it is not written yet (called when the task ends)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._dirty:
                self._write_locked(time.monotonic())


#: The writer of the job running in this process (set by the runner), or None.
_writer: Optional[ProgressWriter] = None


def start_job(path: Path) -> ProgressWriter:
    """Called by the runner before ``execute()``: progress goes to ``path``."""
    global _writer
    _writer = ProgressWriter(path)
    return _writer


def end_job() -> None:
    """Called by the runner after ``execute()``: the last value is written."""
    global _writer
    if _writer is not None:
        _writer.flush()
        _writer = None


def progress(
    value: float,
    desc: Union[str, int, None] = None,
    *,
    level: int = 0,
    console: bool = False,
) -> None:
    """Report how far the running task is: ``progress(0.42, "epoch 3/10")``.

    :param value: between 0 and 1 (clamped)
    :param desc: what is being done (shown next to the bar); an int here is taken as the ``level``,
        as experimaestro 2.x's ``progress(value, level, desc)`` has it
    :param level: nesting level (0: the task; 1: a loop inside it...); a value at one level ends the
        deeper ones
    :param console: also print the value on the job's stderr

    Outside a job (in the controller, or a test calling ``execute()`` directly) this does nothing.
    """
    if isinstance(desc, int) and not isinstance(desc, bool):
        level, desc = desc, None
    try:
        value = min(1.0, max(0.0, float(value)))
    except (TypeError, ValueError):
        raise TypeError(f"progress(value) needs a number between 0 and 1, not {value!r}") from None
    if console:
        import sys

        sys.stderr.write(f"progress: {value:.1%}{' ' + desc if desc else ''}\n")
    writer = _writer
    if writer is not None:
        writer.update(value, None if desc is None else str(desc), level)


def read_progress(path: Path) -> Optional[list[dict[str, Any]]]:
    """The levels recorded in a progress file, or None when there is none (or it is unreadable)."""
    try:
        data = json.loads(Path(path).read_text())
        levels = data["levels"]
        return [{"value": float(lv["value"]), "desc": lv.get("desc")} for lv in levels]
    except (OSError, ValueError, KeyError, TypeError):
        return None


__all__ = ["MIN_INTERVAL", "ProgressWriter", "end_job", "progress", "read_progress", "start_job"]
