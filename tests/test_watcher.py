"""The folder watcher: job folders report markers appearing, not log writes."""

from __future__ import annotations

import threading
from pathlib import Path

from conftest import wait_until

from experimaestro.connectors.files import atomic_write
from experimaestro.scheduler.watcher import FolderWatcher


def test_a_job_writing_its_log_is_not_reported_but_its_marker_is(tmp_path: Path) -> None:
    """A chatty job (its stdout open, written line by line) must cost the controller nothing:
    the watch on its folder reports the marker renamed into place and nothing of the log."""
    seen: list[str] = []
    lock = threading.Lock()

    def on_event(folder: Path, path: Path) -> None:
        with lock:
            seen.append(path.name)

    watcher = FolderWatcher(on_event)
    try:
        with open(tmp_path / "job.out", "a") as out:  # opened before the watch, as a job's log is
            watcher.watch(tmp_path, files_appearing_only=True)
            for i in range(200):
                out.write(f"line {i}\n")
                out.flush()
            atomic_write(tmp_path / "job.done", "", durable=True)
            wait_until(lambda: "job.done" in seen, timeout=10, what="the marker's event")
            # Events come in order: had the writes been reported, they would be in by now.
            with lock:
                assert "job.out" not in seen, seen
    finally:
        watcher.stop()


def test_a_marker_written_in_place_is_seen(tmp_path: Path) -> None:
    """A marker written by another tool without a rename is seen when it is closed."""
    seen: list[str] = []
    watcher = FolderWatcher(lambda folder, path: seen.append(path.name))
    try:
        (tmp_path / "job.failed").touch()  # exists before: only its close after writing counts
        watcher.watch(tmp_path, files_appearing_only=True)
        with open(tmp_path / "job.failed", "w") as f:
            f.write('{"code": 1}')
        wait_until(lambda: "job.failed" in seen, timeout=10, what="the in-place marker's event")
    finally:
        watcher.stop()
