"""The job directory protocol (docs/architecture.md, section 3): file names, markers, pid records.

The job writes its own truth into its directory; everything else (controllers, the CLI, the monitor)
only reads it. This module is the single place that knows the file names and formats.

| file             | content                                                            |
|------------------|--------------------------------------------------------------------|
| params.json      | the serialized configuration graph                                 |
| <name>.sh        | the launch script                                                  |
| <name>.pid       | JSON {"type": "local", "pid", "create_time", "host", "started"}    |
| .submit-intent.json | a submission under way, until <name>.pid is written (Slurm)      |
| <name>.out/.err  | stdout and stderr, appended                                        |
| <name>.lock      | held (file lock) while the job runs                                |
| <name>.done      | written atomically when execute() returns                          |
| <name>.failed    | JSON {"code": int, "reason": str, ...}, written atomically          |
| <name>.progress  | JSON {"levels": [{"value", "desc"}], "time"}: progress() in the task |
"""

from __future__ import annotations

import enum
import json
import os
from pathlib import Path
from typing import Any, Optional

from ..connectors.files import atomic_write
from ..connectors.process import PidRecord


#: The runner's exit code when another runner already holds the job's lock (EX_TEMPFAIL).
EXIT_LOCKED = 75
#: The runner's exit code when it could not write the job's marker: no space left on the device.
EXIT_DISK_FULL = 74


class JobState(enum.Enum):
    """The states of a job, as derived from its directory and the scheduler's knowledge."""

    UNSCHEDULED = "unscheduled"
    WAITING = "waiting"  # waiting for dependencies or tokens
    READY = "ready"  # may be launched (waiting for a launcher slot)
    RUNNING = "running"
    DONE = "done"
    ERROR = "error"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.ERROR)


#: The names under which states are shown and filtered (``failed``: the marker's name), by the
#: CLI and the monitor.
STATE_NAMES: dict[JobState, str] = {
    JobState.UNSCHEDULED: "unscheduled",
    JobState.WAITING: "waiting",
    JobState.READY: "ready",
    JobState.RUNNING: "running",
    JobState.DONE: "done",
    JobState.ERROR: "failed",
}


class FailureRecord:
    """The content of ``<name>.failed``."""

    __slots__ = ("code", "reason", "message")

    def __init__(self, code: int, reason: str, message: str = "") -> None:
        self.code = code
        self.reason = reason
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FailureRecord) and (self.code, self.reason, self.message) == (
            other.code, other.reason, other.message
        )

    def __repr__(self) -> str:
        return f"FailureRecord({self.code}, {self.reason!r}, {self.message!r})"

    def to_json(self) -> str:
        return json.dumps({"code": self.code, "reason": self.reason, "message": self.message})

    @staticmethod
    def parse(text: str) -> "FailureRecord":
        """Parse a failure marker; an old plain-integer marker or garbage still reads as a failure."""
        text = text.strip()
        try:
            data: Any = json.loads(text) if text else {}
        except json.JSONDecodeError:
            return FailureRecord(code=1, reason="failed", message=f"unreadable marker: {text[:80]!r}")
        if isinstance(data, int):
            return FailureRecord(code=data, reason="failed")
        if not isinstance(data, dict):
            return FailureRecord(code=1, reason="failed")
        return FailureRecord(
            code=int(data.get("code", 1)),
            reason=str(data.get("reason", "failed")),
            message=str(data.get("message", "")),
        )


class JobFiles:
    """The paths of one job directory, and reading its markers."""

    __slots__ = ("path", "name")

    def __init__(self, path: Path, name: str) -> None:
        self.path = Path(path)
        self.name = name

    @staticmethod
    def of_directory(path: Path) -> "JobFiles":
        """The job files of an existing job directory (the name is read from the type folder)."""
        path = Path(path)
        return JobFiles(path, path.parent.name.rsplit(".", 1)[-1])

    def _file(self, ext: str) -> Path:
        return self.path / f"{self.name}{ext}"

    @property
    def params(self) -> Path:
        return self.path / "params.json"

    @property
    def script(self) -> Path:
        return self._file(".py")

    @property
    def pidfile(self) -> Path:
        return self._file(".pid")

    @property
    def stdout(self) -> Path:
        return self._file(".out")

    @property
    def stderr(self) -> Path:
        return self._file(".err")

    @property
    def progress(self) -> Path:
        """Where ``progress()`` writes, from inside the task (experimaestro/notifications.py)."""
        return self._file(".progress")

    @property
    def lock(self) -> Path:
        return self._file(".lock")

    @property
    def done(self) -> Path:
        return self._file(".done")

    @property
    def failed(self) -> Path:
        return self._file(".failed")

    @property
    def submit_intent(self) -> Path:
        """What a launcher is about to submit (written before, removed once ``.pid`` is written):
        a controller killed in between is followed by one that finds the submission again."""
        return self.path / ".submit-intent.json"

    def read_pid(self) -> Optional[PidRecord]:
        try:
            return PidRecord.from_json(self.pidfile.read_text())
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def read_failure(self) -> Optional[FailureRecord]:
        try:
            return FailureRecord.parse(self.failed.read_text())
        except FileNotFoundError:
            return None

    def marker_state(self) -> Optional[JobState]:
        """DONE or ERROR when a marker decides, else None."""
        if self.done.exists():
            return JobState.DONE
        if self.failed.exists():
            return JobState.ERROR
        return None

    def disk_state(self) -> JobState:
        """The state as anyone can read it from the directory alone (rules 1 to 3)."""
        marker = self.marker_state()
        if marker is not None:
            return marker
        record = self.read_pid()
        if record is not None and self.record_runs(record):
            return JobState.RUNNING
        return JobState.UNSCHEDULED

    def record_runs(self, record: PidRecord) -> bool:
        """Whether the job of ``record`` runs, as the files tell (its folder has no marker).

        A local process of this host is checked. A job of a cluster (submitted, so queued or
        running) or a process of another host (a job run over SSH, whose local folder holds a copy
        of its record until it ends and is synchronised) runs as far as the files tell: its
        launcher there knows better (``experimaestro jobs list`` asks Slurm).
        """
        return record.type != "local" or record.elsewhere or self.process_alive(record)

    def process_alive(self, record: PidRecord) -> bool:
        """Whether the local process of ``record`` is alive and is this job's.

        A record with a create time names its process exactly. One without (written by
        experimaestro 2.x) is trusted only when a runner holds the job's lock or the process's
        command line names this job folder: its pid alone may belong to any process by now.
        """
        return record.is_alive(confirm=self._is_job_process)

    def _is_job_process(self, process: Any) -> bool:
        if self.runner_alive():
            return True
        try:
            cmdline = process.cmdline()
        except Exception:  # psutil.Error: gone, or not ours to read
            return False
        folder = str(self.path)
        return any(folder in arg for arg in cmdline)

    def runner_alive(self) -> bool:
        """Whether a runner holds ``<name>.lock`` (it does while the job runs on this machine).

        The probe takes the lock for an instant when it is free; the runner retries for a while,
        so it never mistakes a probe for another runner.
        """
        import fcntl

        try:
            fd = os.open(self.lock, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    def wait_runner(self) -> None:
        """Block until no runner holds ``<name>.lock`` (the lock is taken for an instant, then
        released: a blocking wait, no polling)."""
        import fcntl

        try:
            fd = os.open(self.lock, os.O_RDWR)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def write_failure(self, code: int, reason: str, message: str = "") -> None:
        atomic_write(self.failed, FailureRecord(code, reason, message).to_json(), durable=True)

    def write_done(self) -> None:
        atomic_write(self.done, "", durable=True)

    # -- what a controller does to the folder (RemoteJobFiles does each through its connector) --

    #: Whether the folder is on this machine (file events and local processes apply to it).
    local = True

    def missing_paths(self, paths: list[str]) -> list[str]:
        """Those of the data paths a job names that its host lacks: a remote host is asked
        (RemoteJobFiles); here, the job reads what the user's script sees, unchecked."""
        return []

    def exists(self) -> bool:
        """Whether the job folder exists."""
        return self.path.is_dir()

    def make(self) -> bool:
        """Create the folder (and its parents if missing): True if this call made it (one
        ``mkdir`` when the type folder exists already, instead of a stat and a mkdir)."""
        try:
            os.mkdir(self.path)
        except FileExistsError:
            return False
        except FileNotFoundError:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            return self.make()
        return True

    def remove_tree(self) -> None:
        """Remove the whole folder (a folder made for a launch that failed)."""
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)

    def launch_lock(self) -> Any:
        """The job's launch lock (``.launch.lock``), not taken yet: a context manager."""
        from ..connectors.flock import FdLock

        return FdLock(self.path / ".launch.lock")

    def is_done(self) -> bool:
        return self.done.exists()

    def mtime_ns(self, which: str) -> Optional[int]:
        """The modification time of ``params`` or ``done`` (None when missing)."""
        try:
            return os.stat(self.params if which == "params" else self.done).st_mtime_ns
        except OSError:
            return None

    def read_params(self) -> str:
        return self.params.read_text(encoding="utf-8")

    def write_params(self, text: str) -> None:
        atomic_write(self.params, text)

    def write_pid(self, record: PidRecord) -> None:
        atomic_write(self.pidfile, record.to_json())

    def start_local_copy(self, local_path: Path, record: PidRecord, params: Optional[str]) -> None:
        """Make the folder ``local_path`` show the job while it runs (launched or found again
        with ``record``). Nothing to do here: this folder is the local one. A remote folder's
        (``RemoteJobFiles``) writes its params, ``.remote.json`` and a copy of ``record`` there."""

    def remove(self, which: str) -> None:
        """Remove ``pid``, ``failed`` or ``submit_intent`` if it is there."""
        path = {"pid": self.pidfile, "failed": self.failed, "submit_intent": self.submit_intent}[which]
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
