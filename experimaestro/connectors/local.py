"""The local connector: files and processes of this machine, handled in-process."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Optional, Sequence, Union

from filelock import FileLock

from .files import atomic_write
from .process import PidRecord
from .base import Connector, FileStat, PathLike, StartedProcess

if TYPE_CHECKING:  # pragma: no cover
    from ..scheduler.tokens import CounterToken


class LocalConnector(Connector):
    """The local machine. Use :meth:`instance` (one connector per process)."""

    _instance: ClassVar[Optional["LocalConnector"]] = None
    _instance_lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def instance(cls) -> "LocalConnector":
        """The process-wide local connector."""
        with cls._instance_lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    # --- files ---

    def resolve(self, path: PathLike) -> Path:
        """The absolute path, with ``~`` expanded and symbolic links resolved."""
        return Path(path).expanduser().resolve()

    def read_text(self, path: PathLike) -> str:
        """The content of a UTF-8 text file."""
        return Path(path).read_text(encoding="utf-8")

    def write_atomic(self, path: PathLike, data: Union[str, bytes]) -> None:
        """Write a file atomically (temporary file, fsync, rename)."""
        atomic_write(Path(path), data)

    def stat_many(self, paths: Sequence[PathLike]) -> list[Optional[FileStat]]:
        """Stat each path (following links); None for a missing one."""
        result: list[Optional[FileStat]] = []
        for path in paths:
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                result.append(None)
                continue
            result.append(FileStat(size=st.st_size, mtime=st.st_mtime, is_dir=os.path.isdir(path)))
        return result

    def listdir(self, path: PathLike) -> list[str]:
        """The sorted names in a folder."""
        return sorted(os.listdir(path))

    def mkdir(self, path: PathLike, parents: bool = True, exist_ok: bool = True) -> None:
        """Make a folder."""
        Path(path).mkdir(parents=parents, exist_ok=exist_ok)

    def copy_to_local(self, path: PathLike, local_path: Path) -> None:
        """Copy a file or tree (locally, a plain copy that merges into existing folders)."""
        _copy(Path(path), Path(local_path))

    def copy_from_local(self, local_path: Path, path: PathLike) -> None:
        """Copy a file or tree (locally, a plain copy that merges into existing folders)."""
        _copy(Path(local_path), Path(path))

    # --- processes ---

    def run(
        self,
        cmd: Sequence[str],
        cwd: Optional[PathLike] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> "subprocess.CompletedProcess[str]":
        """Run ``cmd`` (no shell) and capture its output. ``env`` replaces the environment."""
        return subprocess.run(
            list(cmd),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

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
        """Start ``cmd`` in a new session (it survives the controller), output appended to files.

        ``env`` replaces the environment (None: inherit this process's). The returned ``popen``
        must be polled by its owner so that the ended process is reaped. A missing output path
        means /dev/null; with ``stdin_pipe`` (``stdout_pipe``), ``popen.stdin`` (``popen.stdout``)
        is a pipe to (from) the process.
        """
        with _append_or_null(stdout_path) as out, _append_or_null(stderr_path) as err:
            popen = subprocess.Popen(
                list(cmd),
                cwd=cwd,
                env=dict(env) if env is not None else None,
                stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
                stdout=subprocess.PIPE if stdout_pipe else out,
                stderr=err,
                start_new_session=True,
                close_fds=True,
            )
        # Not reaped yet, so even a process that already ended still has its create time.
        return StartedProcess(popen=popen, record=PidRecord.of_process(popen.pid))

    # --- locks and tokens ---

    def lock(self, path: PathLike) -> FileLock:
        """A file lock on ``path`` (``with connector.lock(p): ...``)."""
        return FileLock(str(path))

    def createtoken(self, name: str, total: int) -> "CounterToken":
        """The counter token ``name`` with ``total`` units.

        Asking again for the same name returns the same token when the total is the same, and
        raises ValueError otherwise: two declarations disagreeing in one process are a mistake (to
        change a limit while jobs run, edit the token's ``total`` file in the workspace).
        """
        return self._declare_token(name, total, self, "<workspace>")

    def __repr__(self) -> str:
        return "LocalConnector()"


def _copy(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True, symlinks=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _append_or_null(path: Optional[PathLike]) -> Any:
    """A file opened for appending, or /dev/null when no path is given."""
    return open(path if path is not None else os.devnull, "ab")
