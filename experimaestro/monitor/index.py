"""One in-memory index of a workspace's jobs, kept up to date from file events while a page is open.

The index is built once by scanning the job folders. While at least one page listens (see
:meth:`JobIndex.acquire`), two recursive watchdog watches (``jobs/`` and ``experiments/``) report
what changes: each event marks one job (or one experiment's links) as dirty, and a refresher thread
re-reads only the dirty jobs, in batches, and publishes what changed to the listeners. When the last
page closes, the watches are dropped after a grace period: a monitor nobody looks at costs nothing,
and the next page to open triggers one rescan (so nothing that happened meanwhile is missed).

Requests read the index under its lock; they never touch the disk for the job list.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

from ..scheduler.workspace import Workspace
from .records import STATES, JobRecord, ParamsInfo, read_params_info

logger = logging.getLogger("experimaestro.monitor")

#: ``controller_state(key) -> {"state": name, "tags": {...}} or None``: what a controller knows of
#: its jobs that the folders do not say (waiting, ready; the tags of a job not launched yet).
ControllerState = Callable[[str], Optional[dict[str, Any]]]
Listener = Callable[[dict[str, Any]], None]

#: How long the watches stay after the last page closed, in seconds.
IDLE_GRACE = 30.0
#: How often running jobs are checked for a process that died without writing a marker (kill -9).
LIVENESS_INTERVAL = 5.0
#: How often the states only a controller knows (waiting, ready) are compared with the index's.
CONTROLLER_INTERVAL = 0.5
#: A batch of events is gathered for this long before the jobs are read (a job writes several
#: files at once when it starts and ends).
COALESCE = 0.02


def _scandir(path: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(path) as entries:
            return list(entries)
    except (FileNotFoundError, NotADirectoryError):
        return []


class JobIndex:
    """The jobs and experiments of a workspace, by ``type id/identifier``."""

    def __init__(
        self, workspace: Workspace, controller_state: Optional[ControllerState] = None
    ) -> None:
        self.workspace = workspace
        self.controller_state = controller_state
        self.lock = threading.RLock()
        self.jobs: dict[str, JobRecord] = {}
        self._params: dict[str, ParamsInfo] = {}
        #: key -> when it was submitted (the time of its experiment link).
        self._submitted: dict[str, float] = {}
        #: experiment name -> keys of its jobs (from its links).
        self.experiments: dict[str, set[str]] = {}
        #: key -> experiments that link to it.
        self.job_experiments: dict[str, set[str]] = {}
        #: key -> keys of the jobs that depend on it.
        self.dependents: dict[str, set[str]] = {}
        #: Set when the index is up to date with the folders (cleared while a rescan catches up).
        self.ready = threading.Event()
        self._listeners: list[Listener] = []
        self._users = 0
        self._last_user = 0.0
        self._dirty_jobs: set[str] = set()
        self._dirty_logs: set[str] = set()
        self._dirty_experiments: set[str] = set()
        self._dirty_all = False
        self._wake = threading.Condition(self.lock)
        self._observer: Any = None
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self.scans = 0
        #: Bumped on every change of the index (what :meth:`listing` caches depends on it).
        self.generation = 0
        self._listings: dict[Optional[str], tuple[int, list[JobRecord], dict[str, list[str]]]] = {}
        self._idle_grace = IDLE_GRACE

    # -- listeners and life --------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        with self.lock:
            self._listeners.append(listener)

    def acquire(self) -> None:
        """A page starts listening: watch the folders (and rescan once) if nobody did."""
        with self.lock:
            self._users += 1
            self._wake_up()

    def ensure_fresh(self, timeout: float = 60.0) -> None:
        """Called by each request: when the folders were not watched (nobody looked for a while),
        watch them again and rescan to catch up (the first time, wait for it; later, the request
        is answered from the index as it was, and the rescan pushes what changed to the pages);
        the watches then stay for :attr:`idle_grace` seconds after the last request or page."""
        with self.lock:
            self._last_user = time.monotonic()
            self._wake_up()
            first = self.scans == 0
        if first:  # later rescans run behind the index as it is, and push what they change
            self.ready.wait(timeout)

    def _wake_up(self) -> None:
        """(under the lock) Watch the folders and run the refresher, if not done already."""
        if self._closed:
            return
        if self._observer is None:
            self._start_watching()
            self._dirty_all = True  # what happened while nobody watched
            self.ready.clear()
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._refresh_loop, name="xpm-monitor-index", daemon=True
            )
            self._thread.start()
        self._wake.notify_all()

    def release(self) -> None:
        """A page stopped listening."""
        with self.lock:
            self._users = max(0, self._users - 1)
            self._last_user = time.monotonic()
            self._wake.notify_all()

    @property
    def idle_grace(self) -> float:
        """How long the watches stay after the last page or request, in seconds."""
        return self._idle_grace

    @idle_grace.setter
    def idle_grace(self, value: float) -> None:
        with self.lock:
            self._idle_grace = value
            self._wake.notify_all()

    @property
    def watching(self) -> bool:
        return self._observer is not None

    def close(self) -> None:
        with self.lock:
            self._closed = True
            self._stop_watching()
            self._wake.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    # -- scanning ------------------------------------------------------------------------------

    def scan(self) -> None:
        """Read every job folder and experiment link (publishes what changed)."""
        keys: dict[str, Path] = {}
        for type_dir in _scandir(self.workspace.jobs):
            if type_dir.is_dir(follow_symlinks=False):
                for job_dir in _scandir(Path(type_dir.path)):
                    if job_dir.is_dir(follow_symlinks=False):
                        keys[f"{type_dir.name}/{job_dir.name}"] = Path(job_dir.path)
        with self.lock:
            gone = [key for key in self.jobs if key not in keys]
        changed = self._refresh_jobs(keys.keys(), known=keys)
        with self.lock:
            for key in gone:
                self._forget(key)
        names = [e.name for e in _scandir(self.workspace.experiments) if e.is_dir()]
        with self.lock:
            for name in list(self.experiments):
                if name not in names:
                    self._set_links(name, set())
                    del self.experiments[name]
        for name in names:
            changed += self._read_links(name)
        with self.lock:
            self.generation += 1
        self.scans += 1
        self.ready.set()
        self._publish_jobs(changed + gone)

    def _read_links(self, name: str) -> list[str]:
        """Read an experiment's job links; returns the keys of jobs that got a row by it (linked,
        with no folder yet: submitted, not launched)."""
        root = self.workspace.experiment(name) / "jobs"
        keys = set()
        times = {}
        for type_dir in _scandir(root):
            if type_dir.is_dir(follow_symlinks=False):
                for link in _scandir(Path(type_dir.path)):
                    key = f"{type_dir.name}/{link.name}"
                    keys.add(key)
                    if key not in self._submitted:
                        try:  # the link is made when the job is submitted
                            times[key] = link.stat(follow_symlinks=False).st_mtime
                        except OSError:
                            pass
        changed = []
        with self.lock:
            self._set_links(name, keys)
            self._submitted.update(times)
            for key in times:
                record = self.jobs.get(key)
                if record is not None and record.submitted != times[key]:
                    record.submitted = times[key]
                    record.version += 1
                    changed.append(key)
            unknown = [key for key in keys if key not in self.jobs]
        return changed + (self._refresh_jobs(unknown) if unknown else [])

    def _set_links(self, name: str, keys: set[str]) -> None:
        old = self.experiments.get(name, set())
        for key in old - keys:
            self.job_experiments.get(key, set()).discard(name)
        for key in keys - old:
            self.job_experiments.setdefault(key, set()).add(name)
        self.experiments[name] = keys

    def _forget(self, key: str) -> None:
        record = self.jobs.pop(key, None)
        self._params.pop(key, None)
        self._submitted.pop(key, None)
        if record is not None:
            for dep in record.dependencies:
                self.dependents.get(dep, set()).discard(key)

    def _refresh_jobs(self, keys: Iterable[str], known: Optional[dict[str, Path]] = None) -> list[str]:
        """Re-read these jobs; returns the keys whose shown values changed (or that went away)."""
        changed = []
        for key in keys:
            path = known[key] if known else self.workspace.jobs / key
            with self.lock:
                record = self.jobs.get(key)
            if not os.path.isdir(path):
                with self.lock:
                    linked = bool(self.job_experiments.get(key))
                if not linked:  # removed (an experiment's job not launched yet keeps a row)
                    if record is not None:
                        with self.lock:
                            self._forget(key)
                        changed.append(key)
                    continue
            new = record is None
            if new:
                typeid, _, identifier = key.partition("/")
                record = JobRecord(typeid=typeid, identifier=identifier, path=path)
            before = None if new else record.shown()
            params = self._params.get(key)
            try:
                mtime = os.stat(os.path.join(path, "params.json")).st_mtime
            except OSError:
                mtime = None
            if mtime is not None and (params is None or params.mtime != mtime):
                params = read_params_info(path / "params.json") or params
            controller = self.controller_state(key) if self.controller_state else None
            record.refresh(params, controller)
            submitted = self._submitted.get(key)
            if submitted is not None:  # when its experiment linked it (params.json: at launch)
                record.submitted = submitted
            with self.lock:
                if params is not None:
                    self._params[key] = params
                if new or record.dependencies != before[3]:
                    for dep in [] if new else before[3]:
                        self.dependents.get(dep, set()).discard(key)
                    for dep in record.dependencies:
                        self.dependents.setdefault(dep, set()).add(key)
                if new:
                    self.jobs[key] = record
                if new or record.shown() != before:
                    record.version += 1
                    changed.append(key)
        return changed

    # -- watching ------------------------------------------------------------------------------

    def _start_watching(self) -> None:
        from watchdog import events
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        index = self

        class _Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                if event.event_type in ("opened", "closed_no_write"):
                    return
                index._on_path(os.fsdecode(event.src_path))
                dest = getattr(event, "dest_path", "")
                if dest:
                    index._on_path(os.fsdecode(dest))

        # Changes only: not the opening and closing of files, which reading the folders (the
        # monitor's own scans included) would otherwise flood the queue with.
        changes = [
            events.FileCreatedEvent, events.FileModifiedEvent, events.FileMovedEvent,
            events.FileDeletedEvent, events.DirCreatedEvent, events.DirMovedEvent,
            events.DirDeletedEvent,
        ]
        observer = Observer()
        observer.daemon = True
        for folder in (self.workspace.jobs, self.workspace.experiments):
            folder.mkdir(parents=True, exist_ok=True)
            try:
                try:
                    observer.schedule(_Handler(), str(folder), recursive=True, event_filter=changes)
                except TypeError:  # watchdog < 4: no filter (the handler ignores opens/closes)
                    observer.schedule(_Handler(), str(folder), recursive=True)
            except OSError as exc:  # inotify limits: say so; the page still works, less live
                logger.warning("monitor: cannot watch %s (%s): updates may be late", folder, exc)
        observer.start()
        self._observer = observer

    def _stop_watching(self) -> None:
        observer, self._observer = self._observer, None
        if observer is not None:
            observer.stop()

    def _on_path(self, text: str) -> None:
        """Mark what a file event touches as dirty (watchdog's thread)."""
        path = Path(text)
        for root, kind in ((self.workspace.jobs, "jobs"), (self.workspace.experiments, "xp")):
            try:
                parts = path.relative_to(root).parts
            except ValueError:
                continue
            with self.lock:
                if kind == "jobs":
                    if len(parts) == 1:  # a type folder: its jobs appear in it
                        self._dirty_all = True
                    elif len(parts) == 2:
                        self._dirty_jobs.add(f"{parts[0]}/{parts[1]}")
                    elif len(parts) == 3:
                        key = f"{parts[0]}/{parts[1]}"
                        if parts[2].endswith((".out", ".err")):
                            self._dirty_logs.add(key)
                        elif not parts[2].startswith("."):
                            self._dirty_jobs.add(key)
                elif parts and (len(parts) == 1 or parts[1] == "jobs"):
                    self._dirty_experiments.add(parts[0])
                else:
                    return
                self._wake.notify_all()
            return

    def _refresh_loop(self) -> None:
        next_liveness = time.monotonic() + LIVENESS_INTERVAL
        interval = CONTROLLER_INTERVAL if self.controller_state else LIVENESS_INTERVAL
        next_sweep = time.monotonic() + interval
        while True:
            with self.lock:
                while not (
                    self._closed or self._dirty_all or self._dirty_jobs or self._dirty_logs
                    or self._dirty_experiments
                ):
                    now = time.monotonic()
                    if self._users == 0 and now - self._last_user >= self.idle_grace:
                        self._stop_watching()
                        self._thread = None
                        return
                    if self._users:
                        wait = next_sweep - now
                    else:
                        wait = max(0.01, self.idle_grace - (now - self._last_user))
                    if wait <= 0:
                        break
                    self._wake.wait(timeout=wait)
                if self._closed:
                    return
            time.sleep(COALESCE)  # gather the other events of the same change
            with self.lock:
                full, self._dirty_all = self._dirty_all, False
                jobs, self._dirty_jobs = self._dirty_jobs, set()
                logs, self._dirty_logs = self._dirty_logs, set()
                experiments, self._dirty_experiments = self._dirty_experiments, set()
            try:
                if full:
                    self.scan()
                changed = [] if full else self._refresh_jobs(jobs)
                for name in experiments:
                    changed += self._read_links(name)
                now = time.monotonic()
                if now >= next_sweep:
                    next_sweep = now + interval
                    changed += self._controller_sweep()
                if now >= next_liveness:  # a process gone without its marker (kill -9)
                    next_liveness = now + LIVENESS_INTERVAL
                    with self.lock:
                        running = [k for k, r in self.jobs.items() if r.state == "running"]
                    changed += self._refresh_jobs(running)
                if changed or experiments:
                    self._publish_jobs(changed, experiments)
                if logs:
                    self._publish({"type": "log", "keys": sorted(logs)})
            except Exception:  # never let the page go silent because of one odd folder
                logger.exception("monitor: refreshing the index failed")

    def _controller_sweep(self) -> list[str]:
        """Re-read the jobs whose state the controller changed without touching their folder
        (unscheduled -> waiting -> ready): a comparison in memory, no disk access for the others."""
        if self.controller_state is None:
            return []
        with self.lock:
            pending = [(k, r.state) for k, r in self.jobs.items()
                       if r.state in ("unscheduled", "waiting", "ready")]
        stale = []
        for key, state in pending:
            info = self.controller_state(key)
            if info is not None and (info.get("state") or "unscheduled") != state:
                stale.append(key)
        return self._refresh_jobs(stale) if stale else []

    # -- publishing ----------------------------------------------------------------------------

    def _publish(self, message: dict[str, Any]) -> None:
        with self.lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener(message)

    def _publish_jobs(self, keys: list[str], experiments: Iterable[str] = ()) -> None:
        with self.lock:
            self.generation += 1
            names = set(experiments)
            jobs = []
            for key in keys:
                names |= self.job_experiments.get(key, set())
                record = self.jobs.get(key)
                if record is not None:
                    row = record.summary()
                    row["experiments"] = sorted(self.job_experiments.get(key, ()))
                    jobs.append(row)
                else:
                    jobs.append({"key": key, "removed": True})
            counts = {name: self.counts(name) for name in names}
        if jobs or counts:
            self._publish({"type": "jobs", "jobs": jobs, "counts": counts})

    # -- queries (under the lock) ----------------------------------------------------------------

    def counts(self, experiment: Optional[str]) -> dict[str, int]:
        """Jobs per state, of an experiment (or of the workspace)."""
        with self.lock:
            keys = self.experiments.get(experiment, set()) if experiment else self.jobs.keys()
            counts = dict.fromkeys(STATES, 0)
            for key in keys:
                record = self.jobs.get(key)
                if record is not None:
                    counts[record.state] = counts.get(record.state, 0) + 1
            return counts

    def experiment_list(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {"name": name, "jobs": len(keys), "counts": self.counts(name)}
                for name, keys in sorted(self.experiments.items())
            ]

    def listing(self, experiment: Optional[str]) -> tuple[list[JobRecord], dict[str, list[str]]]:
        """The jobs of an experiment (or of the workspace), newest submission first, and the tag
        values seen among them (at most 50 a tag); cached until the index changes."""
        with self.lock:
            cached = self._listings.get(experiment)
            if cached is not None and cached[0] == self.generation:
                return cached[1], cached[2]
            generation = self.generation
            records = self.records(experiment)
        records.sort(key=lambda r: (-(r.submitted or 0.0), r.key))
        values: dict[str, set[str]] = {}
        for record in records:
            for key, value in record.tags.items():
                seen = values.setdefault(key, set())
                if len(seen) < 50:
                    seen.add(str(value).lower() if isinstance(value, bool) else str(value))
        tags = {k: sorted(v) for k, v in sorted(values.items())}
        with self.lock:
            self._listings[experiment] = (generation, records, tags)
        return records, tags

    def records(self, experiment: Optional[str]) -> list[JobRecord]:
        with self.lock:
            if experiment:
                keys = self.experiments.get(experiment, set())
                return [self.jobs[k] for k in keys if k in self.jobs]
            return list(self.jobs.values())


__all__ = ["IDLE_GRACE", "JobIndex"]
