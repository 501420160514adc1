"""Finding a process again: its pid **and** its create time (a reused pid is not mistaken for it)."""

from __future__ import annotations

import functools
import json
import os
import socket
import time
from typing import Any, Callable, Dict, Optional


@functools.lru_cache(maxsize=1)
def this_host() -> str:
    """This machine's host name, as pid records write it (``socket.gethostname()``)."""
    return socket.gethostname()


class PidRecord:
    """How to find a job's process again: pid **and** create time (guards against pid reuse)."""

    __slots__ = ("pid", "create_time", "host", "started", "type", "extra")

    def __init__(
        self, pid: int, create_time: float, host: str, started: float, type: str = "local",
        extra: Optional[dict[str, Any]] = None,
    ) -> None:
        self.pid = pid
        self.create_time = create_time
        self.host = host
        self.started = started
        #: "local" (a process of ``host``), or the launcher that can find the job ("slurm").
        self.type = type
        #: What a non-local launcher needs to find its job again (e.g. ``{"jobid": "123_4"}``).
        self.extra = dict(extra or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PidRecord) and all(
            getattr(self, name) == getattr(other, name) for name in self.__slots__
        )

    def __repr__(self) -> str:
        return f"PidRecord(pid={self.pid}, create_time={self.create_time}, host={self.host!r})"

    @property
    def elsewhere(self) -> bool:
        """Whether the record names a process of another host (a job run over SSH, or by a
        controller of another machine): its pid means nothing here. A record without a host
        (experimaestro 2.x) counts as this host's."""
        return bool(self.host) and self.host != this_host()

    def to_dict(self) -> Dict[str, Any]:
        """The record as a JSON-ready dict (the ``.pid`` file's content, and the SSH agent's)."""
        if self.type != "local":
            return {"type": self.type, **self.extra, "host": self.host, "started": self.started}
        return {
            "type": self.type,
            "pid": self.pid,
            "create_time": self.create_time,
            "host": self.host,
            "started": self.started,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @staticmethod
    def from_dict(data: Dict[str, Any]) -> "PidRecord":
        kind = str(data.get("type", "local"))
        if kind != "local":
            extra = {k: v for k, v in data.items() if k not in ("type", "host", "started")}
            return PidRecord(0, 0.0, str(data.get("host", "")), float(data.get("started", 0.0)),
                             kind, extra)
        return PidRecord(
            pid=int(data["pid"]),
            create_time=float(data.get("create_time", 0.0)),
            host=str(data.get("host", "")),
            started=float(data.get("started", 0.0)),
            type=kind,
        )

    @staticmethod
    def from_json(text: str) -> "PidRecord":
        return PidRecord.from_dict(json.loads(text))

    @staticmethod
    def of_process(pid: int) -> "PidRecord":
        """The record for a live local process."""
        import psutil

        return PidRecord(
            pid=pid,
            create_time=psutil.Process(pid).create_time(),
            host=this_host(),
            started=time.time(),
        )

    def is_alive(self, confirm: Optional[Callable[[Any], bool]] = None) -> bool:
        """True when the very process recorded here is alive (local processes only: a record of
        another kind is never alive here; ask its launcher, ``launchers.base.record_alive``); see
        :func:`process_alive` for ``confirm``."""
        return self.type == "local" and process_alive(self.pid, self.create_time, confirm)


def process_alive(
    pid: int, create_time: float, confirm: Optional[Callable[[Any], bool]] = None
) -> bool:
    """Whether process ``pid`` exists, is not a zombie, and was created at ``create_time``.

    Without a create time (the records of experimaestro 2.x), the pid alone could name any process
    that took it since: the process counts only when ``confirm(process)`` (a ``psutil.Process``)
    says it is the one, and never without ``confirm``.
    """
    import psutil

    try:
        p = psutil.Process(pid)
        if create_time:
            if abs(p.create_time() - create_time) > 0.05:
                return False
        elif confirm is None or not confirm(p):
            return False
        return p.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def wait_gone(pid: int, create_time: float) -> None:
    """Block until the process ``pid`` created at ``create_time`` has ended, without polling (a
    pidfd becomes readable then); at once if it is gone already. For processes that are not our
    children (``waitpid`` cannot wait for them)."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except OSError:
        return
    try:
        if process_alive(pid, create_time):  # the pid may already name another process
            select.select([fd], [], [])
    finally:
        os.close(fd)
