"""The SSH connector: files and processes of a remote host, through one shared connection and agent.

``SshConnector("cluster", workspace="/scratch/me/xpm", python="/scratch/me/venv/bin/python")``
resolves ``cluster`` through ``~/.ssh/config``, connects (host key checked against known_hosts;
see :mod:`.sshconnection`) and starts ``python -m experimaestro agent`` on the host (see
:mod:`.agentclient` and ``experimaestro/agent.py``). Every operation is one round trip to the agent,
which runs the same code as the local connector; batched operations (:meth:`SshConnector.stat_many`,
:meth:`SshConnector.exists_many`, :meth:`SshConnector.job_states`) take any number of paths in one
round trip. Two connectors for the same host share the connection, and for the same Python the agent.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from .agentclient import AgentClient, EventCallback, agent_for
from .base import Connector, FileStat, PathLike, StartedProcess
from .process import PidRecord
from .sshconnection import DEFAULT_CONNECT_TIMEOUT, SshConnection, connection_for

#: The job-folder markers whose writing the agent pushes by default (launchers/jobfiles.py names).
MARKER_SUFFIXES = (".done", ".failed")


class SshConnector(Connector):
    """A host reached over SSH.

    :param host: a ``Host`` of ``~/.ssh/config`` or a host name
    :param workspace: the experimaestro workspace on the host (an absolute path there)
    :param python: the Python on the host that has experimaestro (same version as here)
    :param connect_timeout: seconds to connect, read the banner and authenticate (each)
    :param user: overrides ``User`` of the ssh config
    :param port: overrides ``Port`` of the ssh config
    :param reconnect_timeout: how long an operation waits for a lost connection to come back
    :param ssh_config: the ssh config file (default ``~/.ssh/config``)
    :param connect: connect now (the default), so that a bad host is an error at this line
    """

    def __init__(
        self,
        host: str,
        workspace: Optional[PathLike] = None,
        python: str = "python3",
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        user: Optional[str] = None,
        port: Optional[int] = None,
        reconnect_timeout: float = 60.0,
        ssh_config: Optional[str] = None,
        connect: bool = True,
    ) -> None:
        if workspace is not None and not PurePosixPath(str(workspace)).is_absolute():
            raise ValueError(
                f"SshConnector(workspace={str(workspace)!r}): the remote workspace must be an absolute "
                f"path on {host} (e.g. '/scratch/me/xpm')"
            )
        self.host = host
        self.workspace: Optional[PurePosixPath] = (
            PurePosixPath(str(workspace)) if workspace is not None else None
        )
        self.python = python
        self.connection: SshConnection = connection_for(
            host, user=user, port=port, connect_timeout=connect_timeout, config_file=ssh_config
        )
        self.agent: AgentClient = agent_for(self.connection, python, reconnect_timeout)
        if connect:
            self.agent.start()

    def __repr__(self) -> str:
        return f"SshConnector({self.host!r}, workspace={str(self.workspace)!r}, python={self.python!r})"

    def _call(self, op: str, **args: Any) -> Any:
        return self.agent.request(op, args)

    # --- files ---

    def resolve(self, path: PathLike) -> Path:
        """The absolute path on the host (``~`` is the remote user's HOME)."""
        return Path(self._call("resolve", path=str(path)))

    def read_text(self, path: PathLike) -> str:
        return self._call("read_text", path=str(path))

    def write_atomic(self, path: PathLike, data: Union[str, bytes]) -> None:
        if isinstance(data, str):
            self._call("write_atomic", path=str(path), text=data)
        else:
            self._call("write_atomic", path=str(path), base64data=base64.b64encode(data).decode())

    def stat_many(self, paths: Sequence[PathLike]) -> List[Optional[FileStat]]:
        """Stat any number of paths in one round trip."""
        return [None if st is None else FileStat(size=st[0], mtime=st[1], is_dir=st[2])
                for st in self._call("stat_many", paths=[str(p) for p in paths])]

    def exists_many(self, paths: Sequence[PathLike]) -> List[bool]:
        """Which of the paths exist, in one round trip (e.g. the ``.done`` markers of 10,000 jobs)."""
        return self._call("exists_many", paths=[str(p) for p in paths])

    def job_states(self, jobs: Sequence[Tuple[PathLike, str]]) -> List[str]:
        """The state of each job folder (``done``, ``error``, ``running``, ``unscheduled``) as
        ``launchers.jobfiles.JobFiles.disk_state`` reads it on the host, in one round trip."""
        return self._call("job_states", jobs=[[str(folder), name] for folder, name in jobs])

    def listdir(self, path: PathLike) -> List[str]:
        return self._call("listdir", path=str(path))

    def mkdir(self, path: PathLike, parents: bool = True, exist_ok: bool = True) -> None:
        self._call("mkdir", path=str(path), parents=parents, exist_ok=exist_ok)

    def copy_to_local(self, path: PathLike, local_path: Path) -> None:
        raise NotImplementedError(
            "SshConnector.copy_to_local: copying files back is the sync-back's work "
            "(experimaestro/connectors/sync.py), not wired into the connector yet"
        )

    def copy_from_local(self, local_path: Path, path: PathLike) -> None:
        raise NotImplementedError(
            "SshConnector.copy_from_local: sending files is the code staging's work "
            "(experimaestro/connectors/staging.py), not wired into the connector yet"
        )

    # --- processes ---

    def run(
        self,
        cmd: Sequence[str],
        cwd: Optional[PathLike] = None,
        env: Optional[Mapping[str, str]] = None,
        timeout: Optional[float] = None,
    ) -> "subprocess.CompletedProcess[str]":
        """Run a command on the host (no shell) and capture its output."""
        result = self._call("run", cmd=list(cmd), cwd=None if cwd is None else str(cwd),
                            env=None if env is None else dict(env), timeout=timeout)
        return subprocess.CompletedProcess(list(cmd), result["returncode"], result["stdout"],
                                           result["stderr"])

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
        """Start a process on the host in its own session; a ``process_gone`` event follows when it
        ends (see :meth:`subscribe`). Pipes to a remote process are not offered."""
        if stdin_pipe or stdout_pipe:
            raise ValueError("SshConnector.start_detached: pipes to a remote process are not supported")
        record = self._call(
            "start_detached", cmd=list(cmd), cwd=str(cwd),
            stdout_path=None if stdout_path is None else str(stdout_path),
            stderr_path=None if stderr_path is None else str(stderr_path),
            env=None if env is None else dict(env),
        )
        self.agent.follow(record)
        return StartedProcess(popen=None, record=PidRecord.from_dict(record))

    def pids_alive(self, records: Sequence[PidRecord]) -> List[bool]:
        """Whether each recorded process (pid and create time) is alive on the host, in one round
        trip."""
        return self._call("pids_alive", records=[r.to_dict() for r in records])

    # --- locks and tokens ---

    def lock(self, path: PathLike) -> "RemoteLock":
        """A file lock on the host, held by the agent (released by the system if the connection
        drops: the agent exits then)."""
        return RemoteLock(self, str(path))

    def createtoken(self, name: str, total: int) -> Any:
        raise NotImplementedError(
            "SshConnector.createtoken: remote tokens need the scheduler to go through connectors "
            "(issue 8, job folders on the remote); use token_state() to read a remote token"
        )

    def token_state(self, name: str, total: int) -> Dict[str, int]:
        """The counter token ``name`` in the remote workspace: ``{total, available, holders}``
        (declared with ``total`` if new), read by the agent with the scheduler's TokenStore."""
        if self.workspace is None:
            raise ValueError(f"{self!r}: token_state needs the connector's workspace")
        return self._call("token_state", workspace=str(self.workspace), name=name, total=total)

    # --- events ---

    def subscribe(self, callback: EventCallback) -> None:
        """Receive the agent's pushed events: ``{"event": "file", "folder", "path"}``,
        ``{"event": "process_gone", "pid", "create_time", "code"}``, and ``{"event": "resync"}``
        after a reconnection (events may have been missed: read the state again)."""
        self.agent.subscribe(callback)

    def unsubscribe(self, callback: EventCallback) -> None:
        self.agent.unsubscribe(callback)

    def watch(self, folder: PathLike, suffixes: Sequence[str] = MARKER_SUFFIXES) -> None:
        """Have the host push a ``file`` event when a file ending with one of ``suffixes`` (the
        job markers by default) is written in ``folder``."""
        self.agent.watch(str(folder), tuple(suffixes))

    def unwatch(self, folder: PathLike) -> None:
        self.agent.unwatch(str(folder))

    def watch_processes(self, records: Sequence[PidRecord]) -> None:
        """Have the host push a ``process_gone`` event when each process ends."""
        self.agent.watch_processes([r.to_dict() for r in records])


class RemoteLock:
    """A file lock on the remote host, held by the agent (``with connector.lock(path): ...``)."""

    def __init__(self, connector: SshConnector, path: str) -> None:
        self.connector = connector
        self.path = path
        self._id: Optional[int] = None
        self._agent_start = 0

    def acquire(self, timeout: Optional[float] = None) -> "RemoteLock":
        """Take the lock, waiting at most ``timeout`` seconds (None: as long as needed);
        TimeoutError when it is still held by someone else."""
        lock_id = self.connector._call("lock", path=self.path, timeout=timeout)
        if lock_id is None:
            raise TimeoutError(f"the lock {self.path} on {self.connector.host} is held by another "
                               f"process (waited {timeout} s)")
        self._id, self._agent_start = lock_id, self.connector.agent.starts
        return self

    def release(self) -> None:
        if self._id is None:
            return
        lock_id, self._id = self._id, None
        if self._agent_start != self.connector.agent.starts:
            return  # the agent that held it has exited: the system released it
        self.connector._call("unlock", lock=lock_id)

    @property
    def is_locked(self) -> bool:
        return self._id is not None and self._agent_start == self.connector.agent.starts

    def __enter__(self) -> "RemoteLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
