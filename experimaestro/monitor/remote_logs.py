"""The log of a job that runs on another host (over SSH), for the job's page.

Such a job's local folder holds ``.remote.json`` (where its folder is on the host) and no marker
until it ends and its folder is copied back; its log grows on the host. The page reads it there
through the connection to that host that this process has open (a controller serving its monitor,
``experiment(..., port=N)``): one ``read_from`` request, which with ``wait`` waits on the host for
the log to grow (nothing travels while nothing happens). The monitor never opens a connection itself
(no passphrase prompt nor connect timeout in a web request): without one, the answer says where the
log is and how to follow it (``experimaestro jobs log -f ID``). Once the job has ended and its
folder is copied back, its log is read locally like any other.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

from ..connectors.remote_record import RemoteCopy, RemoteRecordError, read_remote_record
from ..launchers.jobfiles import JobFiles

logger = logging.getLogger("experimaestro.monitor")

#: The longest a page's request for more of a remote log waits on the host, in seconds.
FOLLOW_WAIT = 20.0


def running_remotely(files: JobFiles) -> Optional[RemoteCopy]:
    """The remote copy of a job that runs on another host and has not been copied back ended
    (None: its log is read locally)."""
    try:
        record = read_remote_record(files.path)
    except RemoteRecordError:
        return None
    if record is None or files.marker_state() is not None:
        return None
    return record


def open_connector(record: RemoteCopy) -> Any:
    """A connector to the record's host through a connection this process has open, else None."""
    from ..connectors.ssh import SshConnector

    try:
        connector = SshConnector.of_record(record, connect=False)
    except Exception as exc:  # e.g. an unreadable ~/.ssh/config: said on the page as no connection
        logger.debug("no connector for %s: %s", record.host, exc)
        return None
    return connector if connector.connection.is_active() else None


def remote_log(files: JobFiles, record: RemoteCopy, stream: str, full_id: str,
               offset: Optional[int], limit: int, wait: bool) -> dict[str, Any]:
    """A chunk of the log ``stream`` (stdout or stderr) of a job running on ``record.host``, in
    the shape of ``views.read_log`` plus ``remote`` (host:path), ``follow`` (ask again, with
    ``wait``: the job runs) and, when it cannot be read, ``message`` (why, and how to follow it)."""
    remote = JobFiles(Path(record.path), files.name)
    path = getattr(remote, stream)
    answer: dict[str, Any] = {"offset": 0, "next": 0, "size": None, "text": "",
                              "remote": record.location(), "follow": False}
    follow = f"experimaestro jobs log -f {full_id}" + ("" if stream == "stderr" else " --stdout")
    connector = open_connector(record)
    if connector is None:
        answer["message"] = (f"This job runs on {record.host}: its {stream} is there ({path}) and is "
                             f"copied here when the job ends. Follow it with `{follow}`.")
        return answer
    try:
        if offset is None:  # the end of the log, as for a local one
            stat = connector.stat_many([path])[0]
            offset = max(0, stat.size - limit) if stat is not None else 0
        chunk = connector.read_from(path, offset, job=(remote.path, remote.name),
                                    wait=FOLLOW_WAIT if wait else 0.0, limit=limit)
    except Exception as exc:  # a lost connection, the host's error: said on the page
        answer["message"] = (f"This job runs on {record.host}: its {stream} ({path}) cannot be read "
                             f"there now ({type(exc).__name__}: {exc}). Follow it with `{follow}`.")
        return answer
    answer.update(offset=offset, next=chunk.offset, size=chunk.offset if chunk.exists else None,
                  text=chunk.data.decode("utf-8", errors="replace"), follow=not chunk.ended)
    return answer


__all__ = ["FOLLOW_WAIT", "open_connector", "remote_log", "running_remotely"]
