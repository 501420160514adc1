"""The abstract connector: where files and processes live (docs/architecture.md, section 5).

A connector knows nothing about configurations or jobs: it only offers file, process, lock and
token operations on its machine. The local connector does them in-process; the SSH connector
forwards them to an agent that runs the same local connector on the remote host. The operations
therefore take and return plain values (paths, strings, small dataclasses) that travel as JSON.

Imports: connectors sit below the launchers and the scheduler, and import neither, with one
exception: ``createtoken`` (part of the public API, ``LocalConnector.instance().createtoken``)
returns the scheduler's :class:`CounterToken`, imported lazily inside the method.
"""

from __future__ import annotations

import abc
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import (
    TYPE_CHECKING, Any, Callable, Dict, Generic, Mapping, Optional, Protocol, Sequence, Tuple,
    TypeVar, Union,
)

from .process import PidRecord

if TYPE_CHECKING:  # pragma: no cover
    from ..scheduler.tokens import CounterToken

#: Guards the tokens each connector declared (:meth:`Connector._declare_token`).
_tokens_lock = threading.Lock()

#: A path on the connector's machine.
PathLike = Union[str, Path]


class ConnectionLost(ConnectionError):
    """The connection to a remote connector's host dropped while a request was pending (it is
    being re-established): whether the request took effect there is unknown."""


class ReconnectTimeout(ConnectionLost):
    """The connection did not come back within the connector's ``reconnect_timeout``."""


class Lock(Protocol):
    """A cross-process lock (``filelock.FileLock`` locally): usable as a context manager."""

    def acquire(self, timeout: Optional[float] = None) -> Any: ...

    def release(self) -> None: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> Any: ...


@dataclass(frozen=True)
class FileStat:
    """What :meth:`Connector.stat_many` tells about one existing path."""

    size: int
    mtime: float
    is_dir: bool


@dataclass
class StartedProcess:
    """A process started by :meth:`Connector.start_detached`.

    ``popen`` is the local handle (None when the process runs on another host); the caller that
    holds it should ``poll()`` it so that the finished process does not stay a zombie. ``record``
    is what goes into the job's ``.pid`` file to find the process again.
    """

    popen: Optional["subprocess.Popen[bytes]"]
    record: PidRecord


class Connector(abc.ABC):
    """Where files and processes live: the operations launchers and the scheduler rely on.

    Paths are paths on the connector's machine. Operations are synchronous; a remote connector
    makes each one a single round trip.
    """

    #: Whether the connector's machine is another host (its jobs' folders live there).
    remote = False

    @abc.abstractmethod
    def resolve(self, path: PathLike) -> Path:
        """The absolute, normalised form of ``path`` on the connector's machine."""

    @abc.abstractmethod
    def read_text(self, path: PathLike) -> str:
        """The content of a text file (raises FileNotFoundError when it is missing)."""

    @abc.abstractmethod
    def write_atomic(self, path: PathLike, data: Union[str, bytes]) -> None:
        """Write a file atomically: readers see the old content or the new one, never a part."""

    @abc.abstractmethod
    def stat_many(self, paths: Sequence[PathLike]) -> list[Optional[FileStat]]:
        """Stat several paths in one call: one entry per path, None for a missing one."""

    @abc.abstractmethod
    def listdir(self, path: PathLike) -> list[str]:
        """The names in a folder, sorted (raises FileNotFoundError when it is missing)."""

    @abc.abstractmethod
    def mkdir(self, path: PathLike, parents: bool = True, exist_ok: bool = True) -> None:
        """Make a folder (and its parents by default)."""

    @abc.abstractmethod
    def run(
        self,
        cmd: Sequence[str],
        cwd: Optional[PathLike] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> "subprocess.CompletedProcess[str]":
        """Run a command to completion, capturing its output as text (no check on the code)."""

    @abc.abstractmethod
    def start_detached(
        self,
        cmd: Sequence[str],
        cwd: PathLike,
        stdout_path: Optional[PathLike],
        stderr_path: Optional[PathLike],
        env: Optional[Mapping[str, str]] = None,
        stdin_pipe: bool = False,
        stdout_pipe: bool = False,
    ) -> StartedProcess:
        """Start a process in its own session, so that it outlives the caller.

        Its stdin is empty (or a pipe with ``stdin_pipe``; likewise ``stdout_pipe``); its stdout
        and stderr are appended to
        the given files (never truncated, so a retry keeps the previous attempt's logs), or go to
        /dev/null when no file is given.
        """

    @abc.abstractmethod
    def lock(self, path: PathLike) -> Lock:
        """A cross-process lock on ``path`` (not taken yet)."""

    @abc.abstractmethod
    def createtoken(self, name: str, total: int) -> "CounterToken":
        """The counter token ``name`` of ``total`` units, shared by every process on this
        connector that uses the same workspace."""

    def _declare_token(self, name: str, total: int, where: Any, workspace: str) -> "CounterToken":
        """The token ``name`` of this connector (``where``: the token's ``connector``).

        Asking again for the same name returns the same token when the total is the same, and
        raises ValueError otherwise: two declarations disagreeing in one process are a mistake (to
        change a limit while jobs run, edit the token's ``total`` file in ``workspace``).
        """
        # Imported here: connectors sit below the scheduler, which also imports this module.
        from ..scheduler.tokens import CounterToken

        with _tokens_lock:
            declared = self.__dict__.setdefault("_declared_tokens", {})
            token = declared.get(name)
            if token is None:
                token = declared[name] = CounterToken(name, total, where)
            elif token.total != total:
                raise ValueError(
                    f"token {name!r} was already created with total {token.total}, not {total} "
                    f"(to change the limit live, edit {workspace}/.experimaestro/tokens/{name}/total)"
                )
            return token

    @abc.abstractmethod
    def copy_to_local(self, path: PathLike, local_path: Path) -> None:
        """Copy the tree at ``path`` (on the connector) into ``local_path``, merging folders."""

    @abc.abstractmethod
    def copy_from_local(self, local_path: Path, path: PathLike) -> None:
        """Copy the local tree at ``local_path`` to ``path`` on the connector, merging folders."""


T = TypeVar("T")


class PerConnector(Generic[T]):
    """``factory(connector)`` made once per connector object, on first use: e.g. the router of a
    connector's pushed events (``launchers/remote.py``, ``scheduler/job_tokens.py``)."""

    def __init__(self, factory: Callable[[Any], T]) -> None:
        self._factory = factory
        self._made: Dict[int, Tuple[Any, T]] = {}
        self._lock = threading.Lock()

    def __call__(self, connector: Any) -> T:
        with self._lock:
            entry = self._made.get(id(connector))
            if entry is None or entry[0] is not connector:
                entry = self._made[id(connector)] = (connector, self._factory(connector))
            return entry[1]
