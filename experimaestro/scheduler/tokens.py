"""Counter tokens: named counters shared by every process that uses the same workspace.

A token ``gpu`` of total 2 lets at most two jobs hold one unit each at any time, whatever the number
of experiments (processes) running on the workspace. Its state lives on disk, in
``<workspace>/.experimaestro/tokens/<name>/``:

| file                 | content                                                               |
|----------------------|-----------------------------------------------------------------------|
| ``total``            | the current limit (an integer). Editing it changes the limit live.    |
| ``lock``             | the file lock under which every change is made                        |
| ``holders/<key>.json`` | one file per job holding units: count, job, controller process, ... |

A token created on a remote connector (``SshConnector.createtoken``) lives in the connector's
workspace, on its host: the controller asks the host's agent to run :func:`acquire_all` and
:func:`release_all` there (``scheduler/job_tokens.py``), so that every controller using that
workspace, from any laptop, shares it.

Crash safety: a holder is *stale*, and reclaimed by the next process that takes the lock, when

1. its job has a marker (``.done`` or ``.failed``): the job has ended; or
2. its controller process is gone, **and** the job's recorded process (``.pid``) is gone, **and**
   no runner holds the job's lock (``<name>.lock``).

So a controller killed with ``-9`` whose job still runs keeps its units until the job ends, and
units taken by a controller that died before it launched the job (no ``.pid`` yet, no runner) are
freed at once. The *controller process* is the process that wrote the holder: the controller
itself for a local token; for a remote token, the agent that serves the controller's SSH
connection on the host (it exits when the connection ends, so it lives exactly as long as the
controller can still launch the job). An agent whose controller is gone finishes the launches under
way before it exits, so a job it started is held from then on by its runner's lock, taken as the
job starts (the controller, gone, never wrote its ``.pid``): only the milliseconds between the
fork and that lock, or an agent killed with ``-9`` mid-launch, are not covered. A holder's
``owner`` (the controller's identity, host:pid:start time) is what :func:`release_all` compares,
so a controller that reconnected (a new agent) still releases its own units. Liveness is only
checked for processes of this host: a holder written on another host (shared file system) is only
reclaimed through its job's markers.

This module is imported by the scheduler and the connectors; it must stay light (no
``experimaestro.core`` import).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from filelock import FileLock

from ..connectors.files import atomic_write
from ..connectors.process import process_alive
from ..launchers.jobfiles import JobFiles

logger = logging.getLogger("experimaestro.tokens")

#: How long to wait for a token's file lock. It is held for milliseconds only, so waiting longer
#: means something is wrong (e.g. a file system without ``flock``, where a crashed process can leave
#: a soft lock behind): better an error naming the lock file than a silent hang.
LOCK_TIMEOUT = 60.0

#: Token names become folder names: keep them simple and portable.
_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class CounterToken:
    """A named counter of `total` units, shared by every process that uses the same workspace.

    Create it through a connector (``LocalConnector.instance().createtoken("gpu", 2)``) and use
    it on a task before submitting it: ``token(1, task)`` or
    ``task.add_dependencies(token.dependency(1))``.
    Tokens compare by identity; the scheduler maps a token to its on-disk state with
    :meth:`TokenStore.open`.
    """

    __slots__ = ("name", "total", "connector")

    def __init__(self, name: str, total: int, connector: Any = None) -> None:
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise ValueError(
                f"invalid token name {name!r}: use letters, digits, '_', '-' and '.' "
                f"(not starting with '.' or '-')"
            )
        if isinstance(total, bool) or not isinstance(total, int) or total < 1:
            raise ValueError(f"token {name!r}: the total must be an integer >= 1, got {total!r}")
        self.name: str = name
        self.total: int = total
        #: Where the token lives: None for the job's local workspace, or a remote connector
        #: (``SshConnector.createtoken``) for its workspace on its host.
        self.connector: Any = connector

    def dependency(self, count: int) -> "TokenDependency":
        """A dependency on ``count`` units of this token (``1 <= count <= total``)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(
                f"token {self.name!r}: a job must ask for at least 1 unit, got {count!r}"
            )
        if count > self.total:
            raise ValueError(
                f"token {self.name!r}: a job asks for {count} units but the token's total is "
                f"{self.total}, so it could never run"
            )
        return TokenDependency(self, count)

    def __call__(self, count: int, task: Any) -> Any:
        """``token(2, task)``: make ``task`` hold 2 units while it runs; returns ``task``."""
        task.add_dependencies(self.dependency(count))
        return task

    def __repr__(self) -> str:
        where = "" if self.connector is None else f", on {self.connector!r}"
        return f"CounterToken({self.name!r}, total={self.total}{where})"


@dataclass(frozen=True)
class TokenDependency:
    """A job's need for ``count`` units of ``token`` (all its tokens are taken at once)."""

    token: CounterToken
    count: int


_create_times: Dict[int, float] = {}


def _create_time(pid: int) -> float:
    """The create time of a process (cached: asked once per job start for this process)."""
    value = _create_times.get(pid)
    if value is None:
        import psutil

        value = _create_times[pid] = psutil.Process(pid).create_time()
    return value


@dataclass(frozen=True)
class HolderInfo:
    """Who asks for units: a job, and the controller process that acquires for it."""

    #: The job identifier hex (unique per job): the holder file is ``holders/<key>.json``.
    key: str
    #: ``<jobdir>/<name>``: markers are ``job_prefix + ".done"/".failed"``, pid file ``+ ".pid"``.
    job_prefix: str
    controller_pid: int
    controller_create_time: float
    #: Who releases the units: empty for the controller process itself; for a remote token, the
    #: controller's identity (:func:`controller_identity`), while the process above is its agent.
    owner: str = ""

    @staticmethod
    def current_process(key: str, job_prefix: str, owner: str = "") -> "HolderInfo":
        """A holder whose controller is the calling process (for ``owner``, when given)."""
        pid = os.getpid()
        return HolderInfo(key, str(job_prefix), pid, _create_time(pid), owner)


def controller_identity() -> str:
    """This process as the owner of remote holders: ``host:pid:start time`` (unique)."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_create_time(pid)}"


@dataclass(frozen=True)
class Holder:
    """One holder file, as read from disk."""

    key: str
    count: int
    job_prefix: str
    controller_pid: int
    controller_create_time: float
    host: str
    acquired: float
    owner: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "key": self.key,
                "count": self.count,
                "job_prefix": self.job_prefix,
                "controller_pid": self.controller_pid,
                "controller_create_time": self.controller_create_time,
                "host": self.host,
                "acquired": self.acquired,
                "owner": self.owner,
            },
            indent=1,
        )

    @staticmethod
    def from_json(text: str) -> "Holder":
        """Parse a holder file; raises ValueError (or KeyError/TypeError) when it is corrupt."""
        data = json.loads(text)
        holder = Holder(
            key=str(data["key"]),
            count=int(data["count"]),
            job_prefix=str(data["job_prefix"]),
            controller_pid=int(data["controller_pid"]),
            controller_create_time=float(data["controller_create_time"]),
            host=str(data.get("host", "")),
            acquired=float(data.get("acquired", 0.0)),
            owner=str(data.get("owner", "")),
        )
        if holder.count < 1:
            raise ValueError(f"invalid count {holder.count}")
        return holder

    def stale_reason(self) -> Optional[str]:
        """Why this holder no longer holds its units, or None while it does (see module doc)."""
        prefix = Path(self.job_prefix)
        files = JobFiles(prefix.parent, prefix.name)
        if files.done.exists():
            return f"the job is done ({files.done} exists)"
        if files.failed.exists():
            return f"the job failed ({files.failed} exists)"
        if self.host and self.host != socket.gethostname():
            return None  # processes of another host cannot be checked from here
        if process_alive(self.controller_pid, self.controller_create_time):
            return None
        record = files.read_pid()
        if record is not None and (record.type != "local" or files.process_alive(record)):
            return None
        if files.runner_alive():
            return None  # started, its record not written yet (or lost): the runner holds its lock
        if record is None:
            return (
                f"its controller (pid {self.controller_pid}) is dead and no job process is "
                f"recorded in {files.pidfile}"
            )
        return (
            f"its controller (pid {self.controller_pid}) and its job process (pid {record.pid}) "
            f"are dead"
        )


class TokenStore:
    """One token inside one workspace: ``<workspace>/.experimaestro/tokens/<name>/``.

    Obtain it with :meth:`open` (one instance per workspace and token name in a process). Reading
    methods (:meth:`current_total`, :meth:`holders`, :meth:`available`) take no lock; changes go
    through :func:`acquire_all`, :func:`release_all` and :meth:`reclaim`, under the file lock.
    """

    _cache: Dict[Tuple[str, str], "TokenStore"] = {}
    _cache_lock = threading.Lock()

    def __init__(self, directory: Path, token: CounterToken) -> None:
        #: The folder the scheduler watches to learn about releases by other processes.
        self.directory: Path = directory
        self.token: CounterToken = token
        self.total_path: Path = directory / "total"
        self.holders_dir: Path = directory / "holders"
        self._filelock = FileLock(str(directory / "lock"), timeout=LOCK_TIMEOUT)
        self._declared: Optional[int] = None
        self._bad_total: Optional[str] = None  # last corrupt content warned about

    @staticmethod
    def open(workspace: Path, token: CounterToken) -> "TokenStore":
        """The store of ``token`` in ``workspace``, created if needed.

        The first open in this process (or an open with a token declaring another total) writes
        the declared total into the ``total`` file when it is missing or differs.
        """
        directory = Path(workspace).absolute() / ".experimaestro" / "tokens" / token.name
        cache_key = (str(directory), token.name)
        with TokenStore._cache_lock:
            store = TokenStore._cache.get(cache_key)
            if store is None:
                directory.mkdir(parents=True, exist_ok=True)
                (directory / "holders").mkdir(exist_ok=True)
                store = TokenStore(directory, token)
                TokenStore._cache[cache_key] = store
            else:
                store.token = token
            if store._declared != token.total:
                store._declare(token.total)
        return store

    def _declare(self, total: int) -> None:
        """Write the declared total into the ``total`` file if it is missing or differs."""
        previous = self._read_total_text()
        if previous is None or previous.strip() != str(total):
            if previous is not None:
                logger.info(
                    "Token %s: total changed from %s to %d (declared by the script), in %s",
                    self.token.name,
                    previous.strip() or "<empty>",
                    total,
                    self.total_path,
                )
            atomic_write(self.total_path, f"{total}\n")
        self._declared = total

    def _read_total_text(self) -> Optional[str]:
        try:
            return self.total_path.read_text()
        except FileNotFoundError:
            return None

    @property
    def name(self) -> str:
        """The token's name."""
        return self.token.name

    def current_total(self) -> int:
        """The live limit, read from the ``total`` file (the declared total if it is unreadable)."""
        try:
            text = self._read_total_text()
        except OSError as exc:
            text = f"<{exc}>"
        if text is None:
            return self.token.total
        try:
            value = int(text.strip())
            if value < 0:
                raise ValueError(value)
        except ValueError:
            if self._bad_total != text:  # warn once per bad content, not on every read
                self._bad_total = text
                logger.warning(
                    "Token %s: cannot read a total (a non-negative integer) in %s (content %r); "
                    "using the declared total %d",
                    self.token.name,
                    self.total_path,
                    text[:40],
                    self.token.total,
                )
            return self.token.total
        self._bad_total = None
        return value

    def _holder_files(self) -> Iterator[Path]:
        try:
            entries = list(os.scandir(self.holders_dir))
        except FileNotFoundError:
            return
        for entry in entries:
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                yield Path(entry.path)

    def holder_path(self, key: str) -> Path:
        """The holder file of job ``key``."""
        return self.holders_dir / f"{key}.json"

    def _read_holders(self) -> Tuple[List[Holder], List[Path]]:
        """The readable holders, and the paths of corrupt holder files."""
        holders: List[Holder] = []
        corrupt: List[Path] = []
        for path in self._holder_files():
            try:
                holders.append(Holder.from_json(path.read_text()))
            except FileNotFoundError:
                continue  # released meanwhile
            except (ValueError, KeyError, TypeError, OSError):
                corrupt.append(path)
        return holders, corrupt

    def holders(self) -> List[Holder]:
        """The holders recorded on disk (stale ones included, corrupt files skipped)."""
        return self._read_holders()[0]

    def available(self) -> int:
        """Units free now: the current total minus the units of live holders (may be negative
        when the total was lowered below what is held)."""
        used = sum(h.count for h in self.holders() if h.stale_reason() is None)
        return self.current_total() - used

    def reclaim(self) -> int:
        """Remove stale and corrupt holder files (under the lock); returns the units freed."""
        with self._filelock:
            return self._reclaim_locked()[1]

    def _reclaim_locked(self) -> Tuple[List[Holder], int]:
        """Reclaim stale holders (the lock must be held): returns the live holders, units freed."""
        holders, corrupt = self._read_holders()
        for path in corrupt:
            logger.warning(
                "Token %s: removing the unreadable holder file %s (its units are reclaimed)",
                self.token.name,
                path,
            )
            _unlink(path)
        live: List[Holder] = []
        freed = 0
        for holder in holders:
            reason = holder.stale_reason()
            if reason is None:
                live.append(holder)
                continue
            logger.warning(
                "Token %s: reclaiming %d unit(s) held by job %s (%s): %s",
                self.token.name,
                holder.count,
                holder.key,
                holder.job_prefix,
                reason,
            )
            _unlink(self.holder_path(holder.key))
            freed += holder.count
        return live, freed

    def __repr__(self) -> str:
        return f"TokenStore({self.token.name!r}, {str(self.directory)!r})"


def token_rows(workspace: Path) -> List[Dict[str, Any]]:
    """Each token of ``workspace``: name, total (from its file), units in use, and holders
    (``experimaestro tokens list``; the agent's ``token_list`` for a remote workspace).

    Read only: nothing is written or reclaimed (a stale holder is shown with the reason).
    """
    root = Path(workspace) / ".experimaestro" / "tokens"
    rows: List[Dict[str, Any]] = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        # Only reading methods are used: the placeholder total (1) is never written.
        store = TokenStore(directory, CounterToken(directory.name, 1))
        try:
            total: Any = int(store.total_path.read_text().strip())
        except (OSError, ValueError):
            total = None
        holders = []
        for holder in store.holders():
            stale = holder.stale_reason()
            holders.append(
                {"job": holder.key, "count": holder.count, "controller": holder.controller_pid,
                 "host": holder.host, "stale": stale}
            )
        used = sum(h["count"] for h in holders if h["stale"] is None)
        rows.append({"name": directory.name, "total": total, "used": used, "holders": holders})
    return rows


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def acquire_all(requests: Sequence[Tuple[TokenStore, int]], holder: HolderInfo) -> bool:
    """Take ALL the requested counts or none; True when ``holder`` now holds them all.

    The stores' locks are taken in sorted name order (so two processes cannot deadlock), stale
    holders are reclaimed, and capacity is checked against each store's live total. Then one holder
    file per store is written (atomically). A key that already holds at least the requested count
    in a store counts as holding it (re-acquiring is idempotent, even if the total was lowered
    meanwhile); its holder file is refreshed with the new controller. On failure nothing changes
    (except reclaimed stale holders).
    """
    wanted: Dict[TokenStore, int] = {}
    for store, count in requests:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"token {store.name!r}: invalid count {count!r}")
        wanted[store] = wanted.get(store, 0) + count
    ordered = sorted(wanted, key=lambda s: (s.name, str(s.directory)))

    locked: List[TokenStore] = []
    try:
        for store in ordered:
            store._filelock.acquire()
            locked.append(store)

        for store in ordered:
            live, _ = store._reclaim_locked()
            count = wanted[store]
            mine = next((h for h in live if h.key == holder.key), None)
            if mine is not None and not _same_controller(mine, holder):
                # Another live controller holds the units of this very job (it is starting it):
                # this one must wait, not share them.
                return False
            if mine is not None and mine.count >= count:
                continue
            used = sum(h.count for h in live if h.key != holder.key)
            if used + count > store.current_total():
                return False

        host = socket.gethostname()
        now = time.time()
        for store in ordered:
            record = Holder(
                key=holder.key,
                count=wanted[store],
                job_prefix=str(holder.job_prefix),
                controller_pid=holder.controller_pid,
                controller_create_time=holder.controller_create_time,
                host=host,
                acquired=now,
                owner=holder.owner,
            )
            atomic_write(store.holder_path(holder.key), record.to_json())
        return True
    finally:
        for store in reversed(locked):
            store._filelock.release()


def _same_controller(held: "Holder", holder: HolderInfo) -> bool:
    if held.owner or holder.owner:
        return held.owner == holder.owner
    return (
        held.controller_pid == holder.controller_pid
        and abs(held.controller_create_time - holder.controller_create_time) < 0.05
    )


def release_all(
    stores: Sequence[TokenStore], key: str, owner: Optional[HolderInfo] = None
) -> None:
    """Release whatever job ``key`` holds in ``stores`` (holding nothing is fine).

    With ``owner``, only a holder written by that controller is removed: a controller never
    releases units that another controller took for the same job.
    """
    for store in stores:
        with store._filelock:
            path = store.holder_path(key)
            if owner is not None:
                try:
                    held = Holder.from_json(path.read_text())
                except (OSError, ValueError, KeyError, TypeError):
                    held = None
                if held is not None and not _same_controller(held, owner):
                    continue
            _unlink(path)
