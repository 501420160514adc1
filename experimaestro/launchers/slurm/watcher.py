"""One poller thread per cluster that learns when tracked Slurm jobs end.

Each interval it makes **one** ``squeue`` call for every tracked job together (``-t all``: queued,
running and lately ended jobs), plus, only for jobs that left the queue, **one** ``sacct`` call when
the cluster keeps accounting. Without accounting, a job that ``squeue`` no longer shows is decided by
its own marker files. Slurm jobs never rely on file events: their markers are written by another
host, over a shared file system where inotify sees nothing.

A job missing from every answer is "ask again", not failed (sacct lags a second or two behind the
end of a job): it is reported lost only after ``lost_after`` seconds of absence without a marker.
A job that Slurm says ended (COMPLETED or FAILED) without a visible marker is reported only once its
marker shows, or after ``marker_grace`` seconds: over NFS, another host's new file may stay invisible
here for a while (attribute caching).
The interval grows while nothing changes and comes back to its minimum when something does (or when
a job is submitted). Calls are counted by the commands object.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..jobfiles import JobFiles
from .commands import AccountingDisabled, SlurmCommandError, SlurmCommands, SlurmJobInfo

logger = logging.getLogger("experimaestro.slurm")

#: Seconds a tracked job may be missing from squeue and sacct (and have no marker) before it is lost.
LOST_AFTER = 30.0
#: Seconds to wait for the marker of a job that Slurm says ended (NFS attribute caching).
MARKER_GRACE = 30.0
#: Ends after which the job's runner wrote a marker, unless it died before (then: wait for it).
_MARKED_ENDS = frozenset({"COMPLETED", "FAILED"})


@dataclass
class SlurmEnd:
    """How a tracked job ended, as the poller learned it.

    ``info`` is Slurm's last word on it (None when Slurm no longer knows the job: then the job's
    markers decided, or ``lost`` is true).
    """

    key: str
    info: Optional[SlurmJobInfo]
    lost: bool = False


@dataclass
class _Tracked:
    key: str
    files: JobFiles
    callback: Callable[[SlurmEnd], None]
    state: str = "UNKNOWN"
    missing_since: Optional[float] = None
    ended_since: Optional[float] = None
    seen: bool = False
    extra: dict = field(default_factory=dict)


class SlurmWatcher:
    """Tracks jobs of one cluster and calls back once when each ends."""

    def __init__(self, commands: SlurmCommands, min_interval: float = 1.0,
                 max_interval: float = 30.0, backoff: float = 1.5,
                 lost_after: float = LOST_AFTER, marker_grace: float = MARKER_GRACE) -> None:
        self.commands = commands
        self.lost_after = lost_after
        self.marker_grace = marker_grace
        self.min_interval = min_interval
        self.max_interval = max(max_interval, min_interval)
        self.backoff = backoff
        self.interval = min_interval
        #: None: not known yet; False: sacct says accounting is disabled.
        self.accounting: Optional[bool] = None
        self._jobs: dict[str, _Tracked] = {}
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: Optional[threading.Thread] = None
        #: Number of polls made (each one squeue, plus at most one sacct).
        self.polls = 0

    # -- tracking ------------------------------------------------------------------------------

    def track(self, key: str, files: JobFiles, callback: Callable[[SlurmEnd], None]) -> None:
        """Call ``callback`` (from the poller thread) once, when job ``key`` has ended."""
        with self._lock:
            self._jobs[key] = _Tracked(key, files, callback)
            self.interval = self.min_interval
            self._wake.notify_all()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="xpm-slurm-poller", daemon=True)
                self._thread.start()

    def untrack(self, key: str) -> None:
        with self._lock:
            self._jobs.pop(key, None)

    def state(self, key: str) -> Optional[str]:
        """The last Slurm state seen for a tracked job."""
        with self._lock:
            tracked = self._jobs.get(key)
            return tracked.state if tracked else None

    def tracked(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    # -- polling -------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._thread = None
                    return
                deadline = time.monotonic() + self.interval
                while True:  # woken early by track() (interval reset), else wait the interval
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    self._wake.wait(remaining)
                    deadline = min(deadline, time.monotonic() + self.interval)
            try:
                changed = self.poll()
            except SlurmCommandError as exc:  # the cluster did not answer: ask again later
                logger.warning("Slurm did not answer (%s); asking again in %.0f s", exc, self.interval)
                changed = False
            except Exception:
                logger.exception("internal error in the Slurm poller")
                changed = False
            with self._lock:
                if changed:
                    self.interval = self.min_interval
                else:
                    self.interval = min(self.max_interval, self.interval * self.backoff)

    def configure(self, min_interval: float, max_interval: float, lost_after: float,
                  marker_grace: float) -> None:
        """Change the intervals (the last launcher created for a cluster sets them)."""
        with self._lock:
            self.min_interval = min_interval
            self.max_interval = max(max_interval, min_interval)
            self.lost_after = lost_after
            self.marker_grace = marker_grace
            self.interval = min(self.interval, self.min_interval)
            self._wake.notify_all()

    def reset(self) -> None:
        """Come back to the shortest interval (a job was submitted: it will change soon)."""
        with self._lock:
            self.interval = self.min_interval
            self._wake.notify_all()

    def poll(self) -> bool:
        """One round of queries; returns True when some tracked job changed state."""
        with self._lock:
            jobs = list(self._jobs.values())
        if not jobs:
            return False
        self.polls += 1
        infos = self.commands.squeue([j.key.split("_", 1)[0] for j in jobs])
        gone = [j for j in jobs if j.key not in infos]
        if gone and self.accounting is not False:
            try:
                infos.update(self.commands.sacct([j.key.split("_", 1)[0] for j in gone]))
                self.accounting = True
            except AccountingDisabled:
                logger.info("Slurm accounting is disabled: ended jobs are read from their files")
                self.accounting = False
        changed = False
        now = time.monotonic()
        for job in jobs:
            info = infos.get(job.key)
            if info is not None:
                job.missing_since = None
                if info.state != job.state:
                    changed = True
                    job.state = info.state
                job.seen = True
                if info.active:
                    continue
                if info.state in _MARKED_ENDS and job.files.marker_state() is None:
                    # Its marker may not be visible here yet (NFS): ask again, for a while.
                    if job.ended_since is None:
                        job.ended_since = now
                    if now - job.ended_since < self.marker_grace:
                        changed = True  # keep the short interval: the marker is due
                        continue
                self._ended(job, SlurmEnd(job.key, info))
                continue
            # Unknown to Slurm: forgotten by the controller (and sacct lags, or is disabled).
            if job.files.marker_state() is not None:
                changed = True
                self._ended(job, SlurmEnd(job.key, None))
                continue
            if job.missing_since is None:
                job.missing_since = now
            elif now - job.missing_since >= self.lost_after:
                changed = True
                self._ended(job, SlurmEnd(job.key, None, lost=True))
        return changed

    def _ended(self, job: _Tracked, end: SlurmEnd) -> None:
        with self._lock:
            if self._jobs.get(job.key) is not job:
                return
            del self._jobs[job.key]
        try:
            job.callback(end)
        except Exception:
            logger.exception("callback of Slurm job %s raised", job.key)
