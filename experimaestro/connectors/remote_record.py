"""Where the remote copy of a job lives: ``.remote.json`` in the local job folder.

A job that runs on a remote host keeps a local job folder, into which its remote folder is
synchronised. That local folder holds ``.remote.json``::

    {"host": "cluster", "path": "/scratch/me/xpm/jobs/pkg.Learn/3f2a...", "synced_at": 1795000000.5,
     "python": "/scratch/me/venv/bin/python", "exclude": ["*.ckpt"]}

``host`` is the name given to the connector (an ``~/.ssh/config`` alias or ``user@host``), ``path``
the remote job folder, ``synced_at`` the time (seconds since the epoch) the last synchronisation
ended, or null before the first, ``python`` the remote Python that has experimaestro (to sync again
later without the experiment's script; null if unknown), ``exclude`` the connector's ``sync_exclude``
patterns. Reading it needs no connection, so
``experimaestro jobs list`` and ``jobs path`` work on the laptop alone. The synchronisation never
copies nor deletes this file.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

from .files import atomic_write

#: The record's file name in the local job folder.
RECORD_NAME = ".remote.json"


class RemoteRecordError(Exception):
    """A ``.remote.json`` that cannot be read: the message names the file and the fix."""


@dataclass(frozen=True)
class RemoteCopy:
    """Where a job's remote folder lives, and when it was last synchronised."""

    host: str
    path: str
    synced_at: Optional[float] = None
    python: Optional[str] = None
    #: the connector's ``sync_exclude`` patterns (what stays remote unless fetched on demand)
    exclude: tuple[str, ...] = ()

    def location(self) -> str:
        """``host:path``, as ``scp`` writes it."""
        return f"{self.host}:{self.path}"

    def synced(self, when: Optional[float] = None) -> "RemoteCopy":
        """The same record, synchronised at ``when`` (now by default)."""
        return replace(self, synced_at=time.time() if when is None else when)


def write_remote_record(jobpath: Path, record: RemoteCopy) -> None:
    """Write (atomically) the record of ``jobpath``, creating the folder if needed."""
    jobpath = Path(jobpath)
    text = json.dumps(asdict(record), indent=1) + "\n"
    try:
        atomic_write(jobpath / RECORD_NAME, text)
    except FileNotFoundError:  # the folder is made only when missing (one system call less)
        jobpath.mkdir(parents=True, exist_ok=True)
        atomic_write(jobpath / RECORD_NAME, text)


def read_remote_record(jobpath: Path) -> Optional[RemoteCopy]:
    """The record of ``jobpath``; None for a job that ran locally (no record)."""
    path = Path(jobpath) / RECORD_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
        synced_at = data.get("synced_at")
        record = RemoteCopy(host=data["host"], path=data["path"],
                            synced_at=None if synced_at is None else float(synced_at),
                            python=data.get("python"), exclude=tuple(data.get("exclude", ())))
        texts = (record.host, record.path, record.python or "", *record.exclude)
        if not all(isinstance(v, str) for v in texts):
            raise TypeError("host, path, python and the exclude patterns must be strings")
        return record
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RemoteRecordError(
            f"{path} is not a valid remote record ({exc}): it should hold "
            f'{{"host": ..., "path": ..., "synced_at": ...}}; remove it if the job ran locally, or '
            f"submit the job again to rewrite it") from None
