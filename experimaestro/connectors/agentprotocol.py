"""The wire format between the SSH connector and the remote agent (``python -m experimaestro agent``).

One JSON object per line, UTF-8, in both directions on one SSH channel (the agent's stdin/stdout):

- the agent's first line is its greeting, ``{"hello": {"version", "protocol", "host", "python"}}``;
- a request is ``{"id": int, "op": str, "args": {...}}``; the agent answers each request once, in
  any order (requests are served concurrently), with ``{"id": int, "result": value}`` or
  ``{"id": int, "error": {"type": str, "message": str}}``;
- an event, pushed by the agent without a request, is ``{"event": str, ...}`` (see :data:`EVENTS`).

Both ends import this module (the agent sits above everything, the client in the connectors), so
the operation names, their idempotence and the error mapping are written once, here.
"""

from __future__ import annotations

import builtins
import json
from dataclasses import dataclass
from typing import Any, Dict, Optional

#: Bumped when a message changes meaning; the agent and the controller must also share a version.
PROTOCOL = 1


@dataclass(frozen=True)
class Operation:
    """One operation the agent serves."""

    name: str
    #: Safe to send again after a connection was lost mid-request (same effect once or twice).
    idempotent: bool
    doc: str


#: The operations, by name (the agent implements each one in ``experimaestro/agent.py``).
OPERATIONS: Dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("ping", True, "() -> 'pong': a round trip that does nothing"),
        Operation("resolve", True, "(path) -> str: absolute path, ~ expanded, links resolved"),
        Operation("read_text", True, "(path) -> str; FileNotFoundError when missing"),
        Operation("write_atomic", True, "(path, text | base64) -> None: readers never see a part"),
        Operation("stat_many", True, "(paths) -> [[size, mtime, is_dir] | null]: one entry per path"),
        Operation("exists_many", True, "(paths) -> [bool]: the batched existence check"),
        Operation("job_states", True,
                  "(jobs: [[folder, name]]) -> [state]: each job's state from its folder "
                  "(launchers.jobfiles.JobFiles.disk_state: done, error, running, unscheduled)"),
        Operation("sync_send", True,
                  "(folders: [[root, sync request line]], limit) -> [base64 | null]: for each folder "
                  "the zlib-compressed tar stream answering the request (connectors/sync.py "
                  "send_bounded), null when it exceeds limit bytes (sent over a channel instead)"),
        Operation("listdir", True, "(path) -> [name] sorted"),
        Operation("mkdir", True, "(path, parents, exist_ok) -> None"),
        Operation("run", False, "(cmd, cwd, env, timeout) -> {returncode, stdout, stderr}"),
        Operation("start_detached", False,
                  "(cmd, cwd, stdout_path, stderr_path, env) -> pid record (JSON object); "
                  "a 'process_gone' event follows when the process ends"),
        Operation("pids_alive", True, "(records: [pid record]) -> [bool]: pid and create time"),
        Operation("watch_processes", True,
                  "(records) -> None: a 'process_gone' event when each one ends"),
        Operation("lock", False, "(path, timeout) -> lock id | null when the timeout passed"),
        Operation("unlock", False, "(lock) -> None"),
        Operation("token_state", True,
                  "(workspace, name, total) -> {total, available, holders}: the token's files"),
        Operation("token_acquire", True,
                  "(workspace, tokens: [[name, total, count]], key, job_prefix, owner) -> bool: "
                  "scheduler.tokens.acquire_all on the host, all or none; the agent is the "
                  "holder's controller process. The tokens are watched first: a "
                  "'token_changed' event follows whenever units may have become free"),
        Operation("token_release", True,
                  "(workspace, tokens: [[name, total]], key, owner) -> None: "
                  "scheduler.tokens.release_all on the host (only the owner's holder)"),
        Operation("token_list", True,
                  "(workspace) -> [{name, total, used, holders}]: `experimaestro tokens list` "
                  "on the host"),
        Operation("watch", True,
                  "(folder, suffixes) -> None: a 'file' event when a file with one of the "
                  "suffixes is written in folder"),
        Operation("unwatch", True, "(folder) -> None"),
        Operation("job_files", True,
                  "(folder, name, method, args) -> JSON: a method of the job-folder protocol "
                  "(launchers.jobfiles.JobFiles) on the host's folder (launchers/remote.py)"),
        Operation("launch", False,
                  "(spec, jobs: [[folder, name]], after: [record]) -> [record]: start jobs with the "
                  "launcher of spec on the host; a 'job_ended' event follows for each"),
        Operation("start_job", False,
                  "(spec, folder, name, params) -> {outcome: launched | attached | done, record}: "
                  "make the job's folder and, under its launch lock, find the job running (watched "
                  "again) or done, or write params.json and launch it; 'job_ended' follows"),
        Operation("reattach", True,
                  "(spec, folder, name, record) -> bool: watch a job started earlier; False when "
                  "it no longer runs; a 'job_ended' event follows (sent again after a drop: the new "
                  "agent watches it once)"),
        Operation("cancel_job", False, "(spec, folder, name, record) -> None: stop a job"),
        Operation("host_launcher", True,
                  "(spec, method, jobs: [[folder, name]]) -> JSON: the launcher of spec on the "
                  "host: 'check' -> {facts} (its checks, run there), 'summary' -> str, 'recover' "
                  "-> [record | null] (jobs submitted before a crash, found and watched)"),
        Operation("read_from", True,
                  "(path, offset, wait, limit, job: [folder, name] | null) -> {data: base64, offset, "
                  "exists, ended}: up to limit bytes from offset, waiting up to wait s for some "
                  "(the folder watched, no polling); ended: the job no longer runs and all is read"),
    )
}

#: Events the agent pushes:
#: ``{"event": "file", "folder": str, "path": str}``: a watched file (a marker) was written;
#: ``{"event": "process_gone", "pid": int, "create_time": float, "code": int | null}``;
#: ``{"event": "job_ended", "folder": str, "record": pid record, "ending": {code, failure,
#: overrides, lost}}``: a job started or found again by ``launch``/``reattach`` ended;
#: ``{"event": "token_changed", "workspace": str, "name": str}``: units of a token watched by
#: ``token_acquire`` may have become free (try again).
EVENTS = ("file", "process_gone", "job_ended", "token_changed")


class RemoteError(Exception):
    """An error raised on the remote side that has no local exception type of the same name."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}")
        self.type_name = type_name
        self.message = message


#: Remote exception types re-raised as the same local type (the others become RemoteError).
_KNOWN_ERRORS = (
    "FileNotFoundError", "FileExistsError", "NotADirectoryError", "IsADirectoryError",
    "PermissionError", "OSError", "ValueError", "TimeoutError", "KeyError",
)


def encode(message: Dict[str, Any]) -> bytes:
    """One message as one line."""
    return json.dumps(message, separators=(",", ":")).encode("utf-8") + b"\n"


def decode(line: bytes) -> Dict[str, Any]:
    """One line as one message (ValueError when it is not a JSON object)."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError(f"not a protocol message: {line[:200]!r}")
    return message


def error_payload(exc: BaseException) -> Dict[str, str]:
    """What travels for an exception raised while serving a request."""
    return {"type": type(exc).__name__, "message": str(exc)}


def raise_error(payload: Dict[str, Any], where: Optional[str] = None) -> None:
    """Raise the local form of a remote error payload."""
    name, message = str(payload.get("type", "Error")), str(payload.get("message", ""))
    if where:
        message = f"{message} (on {where})"
    if name in _KNOWN_ERRORS:
        raise getattr(builtins, name)(message)
    raise RemoteError(name, message)
