"""File events on folders (watchdog), so that waiting on jobs costs nothing while nothing happens."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

logger = logging.getLogger("experimaestro.scheduler")


class _DropStoppedEmitterNoise(logging.Filter):
    """watchdog (7.x) logs an *error* when a folder is unwatched while its emitter thread is
    reading an event ("queue_events() called when the thread is inactive"). Unwatching a job's
    folder when it ends is routine here and the event is of no use any more: drop the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "called when the thread is inactive" not in record.getMessage()


logging.getLogger("watchdog.observers.inotify").addFilter(_DropStoppedEmitterNoise())


class FolderWatcher:
    """Calls ``callback(folder, path)`` when a file in a watched folder is created, changed or moved.

    Folders are watched non-recursively, and each folder once however often it is asked for
    (a count of users per folder).
    """

    def __init__(self, callback: Callable[[Path, Path], None]) -> None:
        self._callback = callback
        self._observer: Any = None
        self._watches: dict[Path, tuple[Any, int]] = {}
        self._lock = threading.Lock()

    def _ensure_observer(self) -> Any:
        if self._observer is None:
            from watchdog.observers import Observer

            self._observer = Observer()
            self._observer.daemon = True
            self._observer.start()
        return self._observer

    def watch(self, folder: Path, *, files_appearing_only: bool = False) -> None:
        """Watch ``folder``. With ``files_appearing_only``, only files that appear (created,
        renamed into place, or closed after writing) are reported, and the kernel is asked for
        nothing else: a job appending to its open log files then costs the controller nothing.
        A folder is watched with the options of its first ``watch`` call."""
        if os.environ.get("XPM_FILE_EVENTS", "1") == "0":
            return  # file events off (tests of what must work without them; the sweep remains)
        from watchdog.events import FileSystemEventHandler

        watcher = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                path = Path(getattr(event, "dest_path", "") or event.src_path)
                watcher._callback(folder, path)

        with self._lock:
            entry = self._watches.get(folder)
            if entry is not None:
                self._watches[folder] = (entry[0], entry[1] + 1)
                return
            try:
                handle = self._ensure_observer().schedule(
                    _Handler(), str(folder), recursive=False,
                    event_filter=_appearing_events() if files_appearing_only else None,
                )
            except OSError as exc:  # e.g. inotify limits: the slow sweep still covers the folder
                logger.warning("cannot watch %s (%s); relying on the periodic sweep", folder, exc)
                handle = None
            self._watches[folder] = (handle, 1)

    def unwatch(self, folder: Path) -> None:
        """Stop watching ``folder`` once every ``watch`` call for it has been matched."""
        with self._lock:
            entry = self._watches.get(folder)
            if entry is None:
                return
            handle, count = entry
            if count > 1:
                self._watches[folder] = (handle, count - 1)
                return
            del self._watches[folder]
            if handle is not None and self._observer is not None:
                try:
                    self._observer.unschedule(handle)
                except (KeyError, ValueError, OSError):
                    pass

    def stop(self) -> None:
        with self._lock:
            if self._observer is not None:
                self._observer.stop()
                self._observer = None
            self._watches.clear()


def _appearing_events() -> Optional[Sequence[type]]:
    """The watchdog event types of a file appearing: markers are renamed into place
    (``atomic_write``); a marker written in place by another tool is seen when it is closed."""
    from watchdog.events import FileClosedEvent, FileCreatedEvent, FileMovedEvent

    return [FileCreatedEvent, FileMovedEvent, FileClosedEvent]
