"""The job directory protocol (docs/architecture.md, section 3): file names, markers, pid records.

The job writes its own truth into its directory; everything else (controllers, the CLI, the monitor)
only reads it. This module is the single place that knows the file names and formats.

| file             | content                                                            |
|------------------|--------------------------------------------------------------------|
| params.json      | the serialized configuration graph                                 |
| <name>.py        | the launch script                                                  |
| <name>.pid       | JSON {"type": "local", "pid", "create_time", "host", "started"}    |
| <name>.out/.err  | stdout and stderr, appended                                        |
| <name>.lock      | held (file lock) while the job runs                                |
| <name>.done      | written atomically when execute() returns                          |
| <name>.failed    | JSON {"code": int, "reason": str, ...}, written atomically          |
"""

from __future__ import annotations

import enum
import json
import os
import time
from pathlib import Path
from typing import Any, Optional, Union


#: The runner's exit code when another runner already holds the job's lock (EX_TEMPFAIL).
EXIT_LOCKED = 75


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


def atomic_write(path: Path, data: Union[str, bytes], durable: bool = False) -> None:
    """Write a file atomically: a temporary file in the same folder, then renamed.

    Readers see the old content or the new one, never a part. With ``durable``, the data is also
    flushed to disk before the rename (for markers, which must survive a machine crash).
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else data
    # A name unique to this process and call; O_EXCL never reuses another writer's file.
    tmp = str(path.parent / f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
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


class PidRecord:
    """How to find a job's process again: pid **and** create time (guards against pid reuse)."""

    __slots__ = ("pid", "create_time", "host", "started", "type")

    def __init__(
        self, pid: int, create_time: float, host: str, started: float, type: str = "local"
    ) -> None:
        self.pid = pid
        self.create_time = create_time
        self.host = host
        self.started = started
        self.type = type

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PidRecord) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    def __repr__(self) -> str:
        return f"PidRecord(pid={self.pid}, create_time={self.create_time}, host={self.host!r})"

    def to_json(self) -> str:
        return json.dumps(
            {
                "type": self.type,
                "pid": self.pid,
                "create_time": self.create_time,
                "host": self.host,
                "started": self.started,
            }
        )

    @staticmethod
    def from_json(text: str) -> "PidRecord":
        data = json.loads(text)
        return PidRecord(
            pid=int(data["pid"]),
            create_time=float(data.get("create_time", 0.0)),
            host=str(data.get("host", "")),
            started=float(data.get("started", 0.0)),
            type=str(data.get("type", "local")),
        )

    @staticmethod
    def of_process(pid: int) -> "PidRecord":
        """The record for a live local process."""
        import socket

        import psutil

        return PidRecord(
            pid=pid,
            create_time=psutil.Process(pid).create_time(),
            host=socket.gethostname(),
            started=time.time(),
        )

    def is_alive(self) -> bool:
        """True when the very process recorded here is alive (local processes only)."""
        return process_alive(self.pid, self.create_time)


def process_alive(pid: int, create_time: float) -> bool:
    """Whether process ``pid`` exists, is not a zombie, and was created at ``create_time``."""
    import psutil

    try:
        p = psutil.Process(pid)
        if create_time and abs(p.create_time() - create_time) > 0.05:
            return False
        return p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


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
    def lock(self) -> Path:
        return self._file(".lock")

    @property
    def done(self) -> Path:
        return self._file(".done")

    @property
    def failed(self) -> Path:
        return self._file(".failed")

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
        if record is not None and record.type == "local" and record.is_alive():
            return JobState.RUNNING
        return JobState.UNSCHEDULED

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

    def write_failure(self, code: int, reason: str, message: str = "") -> None:
        atomic_write(self.failed, FailureRecord(code, reason, message).to_json(), durable=True)

    def write_done(self) -> None:
        atomic_write(self.done, "", durable=True)
