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
import json
import contextlib
import logging
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, ContextManager, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import paramiko

from .agentclient import AgentClient, EventCallback, agent_for
from .agentprotocol import RemoteError
from .base import ConnectionLost, Connector, FileStat, PathLike, StartedProcess
from .process import PidRecord
from .remote_record import RECORD_NAME, RemoteCopy, write_remote_record
from .sshconnection import DEFAULT_CONNECT_TIMEOUT, SshConnection, connection_for
from .streams import command_streams
from .staging import DEFAULT_LIMIT, STAGED_CODE_VARIABLE, stage, take_snapshot
from .sync import SyncError, SyncRequest, pull, pull_jobs, serve_send

logger = logging.getLogger("experimaestro.ssh")

#: The job-folder markers whose writing the agent pushes by default (launchers/jobfiles.py names).
MARKER_SUFFIXES = (".done", ".failed")


#: How many times :meth:`SshConnector.fetch_job` tries a sync cut by a lost connection.
FETCH_ATTEMPTS = 3

#: A job folder whose sync-back answer (compressed) is at most this size comes in the agent's
#: answer to one request; a bigger one through ``sync-send`` on a channel of its own.
SYNC_INLINE_LIMIT = 4 << 20
#: How many small folders one ``sync_send`` request asks for at most.
SYNC_BATCH = 256

#: The most :meth:`SshConnector.read_from` returns at once (bytes).
READ_LIMIT = 1 << 20


@dataclass(frozen=True)
class LogChunk:
    """An answer of :meth:`SshConnector.read_from`."""

    data: bytes  #: what was read
    offset: int  #: where the next read starts
    exists: bool  #: whether the file exists
    ended: bool  #: the job has ended and everything it wrote was read (only with ``job``)


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
    :param code: the local folders whose Python files jobs import, staged into the remote
        workspace (``"auto"``, the default: the controller's import folders, what the local
        launcher puts on ``PYTHONPATH``); None relies on what is installed on the host
    :param code_exclude: patterns of folders or files not to stage (``fnmatch``)
    :param code_limit: the most bytes of Python files staged (an error past it says what to exclude)
    :param sync_exclude: patterns of the files of a job folder that stay on the host when the job
        ends (``["*.ckpt"]``); ``experimaestro jobs sync --all ID`` fetches them on demand
    """

    #: Jobs run on another host: their folders are reached through this connector.
    remote = True

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
        code: Union[str, Sequence[PathLike], None] = "auto",
        code_exclude: Sequence[str] = (),
        code_limit: Optional[int] = DEFAULT_LIMIT,
        sync_exclude: Sequence[str] = (),
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
        if isinstance(code, str) and code != "auto":
            raise ValueError(f"SshConnector(code={code!r}): give \"auto\", a list of local folders, "
                             "or None (jobs import what is installed on the host)")
        self.code = code
        self.code_exclude = tuple(code_exclude)
        self.code_limit = code_limit
        self.sync_exclude = tuple(sync_exclude)
        self._staged: Dict[str, str] = {}
        self._existing: set = set()
        self._roots: Dict[str, List[Tuple[str, str]]] = {}
        self._stage_lock = threading.Lock()
        self.connection: SshConnection = connection_for(
            host, user=user, port=port, connect_timeout=connect_timeout, config_file=ssh_config
        )
        self.agent: AgentClient = agent_for(self.connection, python, reconnect_timeout)
        if connect:
            self.connect()

    @classmethod
    def of_record(cls, record: RemoteCopy, **options: Any) -> "SshConnector":
        """The connector to the host of a job's remote copy (its ``.remote.json``), with the
        recorded Python (connecting now unless ``connect=False``)."""
        return cls(record.host, python=record.python or "python3", **options)

    def __repr__(self) -> str:
        workspace = None if self.workspace is None else str(self.workspace)
        return f"SshConnector({self.host!r}, workspace={workspace!r}, python={self.python!r})"

    def connect(self) -> None:
        """Connect and start the agent now, if not done yet (its errors are raised here: an
        unreachable host, a refused key or host key, no or another experimaestro on the host)."""
        self.agent.start()

    def _call(self, op: str, **args: Any) -> Any:
        return self.agent.request(op, args)

    def call(self, op: str, **args: Any) -> Any:
        """One operation of the agent (``connectors/agentprotocol.py``), in one round trip: the
        launchers' remote side (``launchers/remote.py``) speaks to the agent through this."""
        return self.agent.request(op, args)

    # --- the workspace on the host ---

    def job_folder(self, relpath: PathLike) -> Path:
        """``relpath`` (``jobs/<type id>/<identifier>``) in the remote workspace."""
        if self.workspace is None:
            raise ValueError(
                f"{self!r} has no workspace: jobs need one on the host, e.g. "
                f"SshConnector({self.host!r}, workspace='/scratch/me/xpm')")
        return Path(str(self.workspace / str(relpath)))

    def cpu_count(self) -> int:
        """The host's number of CPUs (from the agent's greeting)."""
        self.agent.start()
        return int(self.agent.hello.get("cpus") or 1)

    def code_environment(self) -> Dict[str, str]:
        """The environment a job on the host needs to import the user's code: ``PYTHONPATH`` (the
        staged folders) and ``XPM_STAGED_CODE`` (each local import folder and its staged copy, so
        that classes of a script run as ``__main__`` are found in the copy); empty with
        ``code=None``."""
        pythonpath = self.stage_code()
        if pythonpath is None:
            return {}
        return {"PYTHONPATH": pythonpath, STAGED_CODE_VARIABLE: json.dumps(self._roots[pythonpath])}

    def stage_code(self) -> Optional[str]:
        """Stage the user's Python files (see ``code``) into the remote workspace and return the
        jobs' ``PYTHONPATH`` there (None with ``code=None``). Only files the host lacks are sent;
        an unchanged snapshot costs one scan and no round trip after the first time."""
        if self.code is None:
            return None
        if self.workspace is None:
            self.job_folder("")  # the error that says to give a workspace
        if self.code == "auto":
            from .pythonpath import user_python_path

            folders: Sequence[PathLike] = [p for p in user_python_path().split(os.pathsep) if p]
        else:
            folders = list(self.code)  # type: ignore[arg-type]
        snapshot = take_snapshot(folders, self.code_exclude, self.code_limit)
        with self._stage_lock:
            staged = self._staged.get(snapshot.digest)
            if staged is None:
                with self.stage_streams(str(self.workspace)) as (to_remote, from_remote):
                    result = stage(snapshot, to_remote, from_remote)
                staged = result.pythonpath_value()
                self._staged[snapshot.digest] = staged
                self._roots[staged] = list(zip(snapshot.folders, result.pythonpath))
            return staged

    def fetch_job(self, remote_folder: PathLike, local_folder: Path) -> None:
        """Copy a job folder from the host into ``local_folder`` (incrementally, as one tar
        stream; ``sync_exclude`` stays remote) and record where the remote copy lives
        (``.remote.json``): ``jobs list``, ``jobs path`` and ``jobs sync`` work from it later."""
        self.fetch_jobs([(remote_folder, local_folder)])

    def fetch_jobs(self, folders: Sequence[Tuple[PathLike, Path]]) -> None:
        """:meth:`fetch_job` for many ``(remote folder, local folder)`` pairs: small folders come
        many in one round trip to the agent (:meth:`sync_bounded`), big ones each as a tar
        stream over a channel of its own. A copy cut by a dropped connection (or started while
        it was down) is made again once the connection is back: files already copied are not
        sent twice. Any other error, or the connection not back within reconnect_timeout, is
        raised."""
        records = [self.remote_copy(remote) for remote, _ in folders]
        locals_ = [Path(local) for _, local in folders]
        try:
            for attempt in range(FETCH_ATTEMPTS):
                generation = self.connection.generation
                try:
                    pull_jobs(locals_, self, records=records)  # each record written once copied
                    return
                except Exception:
                    if attempt + 1 == FETCH_ATTEMPTS or (
                        self.connection.is_active() and self.connection.generation == generation
                    ):
                        raise
                logger.warning("the copy of %d folder(s) from %s was cut by a lost connection: "
                               "copying it again once the connection is back", len(folders), self.host)
                self.agent.wait_running()
        except BaseException:
            # Where the copy failed, the record still says where the job lives (`jobs sync`).
            for local, record in zip(locals_, records):
                if not (local / RECORD_NAME).exists():
                    write_remote_record(local, record)
            raise

    def sync_bounded(self, requests: Sequence[Tuple[str, SyncRequest]]) -> Iterator[Optional[bytes]]:
        """The sync answers (:func:`.sync.send_bounded`) of many remote folders, made by the agent
        (no process started on the host), :data:`SYNC_BATCH` folders per round trip, in order;
        None for a folder whose answer exceeds :data:`SYNC_INLINE_LIMIT`. The next batch is
        asked for while the caller extracts the current one (the host and this side both work)."""
        chunks = [requests[i:i + SYNC_BATCH] for i in range(0, len(requests), SYNC_BATCH)]
        if len(chunks) <= 1:
            for chunk in chunks:
                yield from self._sync_chunk(chunk)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="xpm-sync") as pool:
            pending = pool.submit(self._sync_chunk, chunks[0])
            for chunk in chunks[1:]:
                answers = pending.result()
                pending = pool.submit(self._sync_chunk, chunk)
                yield from answers
            yield from pending.result()

    def _sync_chunk(self, chunk: Sequence[Tuple[str, SyncRequest]]) -> List[Optional[bytes]]:
        try:
            encoded = self._call("sync_send", limit=SYNC_INLINE_LIMIT, folders=[
                [str(root), request.to_line().decode("ascii").rstrip("\n")] for root, request in chunk])
        except RemoteError as exc:
            if exc.type_name == "SyncError":  # e.g. the remote folder was removed
                raise SyncError(f"{exc.message} (on {self.host})") from None
            raise
        return [None if a is None else base64.b64decode(a) for a in encoded]

    def remote_copy(self, remote_folder: PathLike) -> RemoteCopy:
        """The ``.remote.json`` record of a job folder on this host (not synchronised yet)."""
        return RemoteCopy(host=self.host, path=str(remote_folder), python=self.python,
                          exclude=self.sync_exclude)

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

    def missing_paths(self, paths: Sequence[PathLike]) -> List[str]:
        """Those of ``paths`` that do not exist on the host, in one round trip (paths found once
        are remembered: the data many jobs share is asked about once)."""
        asked = [str(p) for p in paths if str(p) not in self._existing]
        if not asked:
            return []
        missing = []
        for path, exists in zip(asked, self.exists_many(asked)):
            if exists:
                self._existing.add(path)
            else:
                missing.append(path)
        return missing

    def job_states(self, jobs: Sequence[Tuple[PathLike, str]]) -> List[str]:
        """The state of each job folder (``done``, ``error``, ``running``, ``unscheduled``) as
        ``launchers.jobfiles.JobFiles.disk_state`` reads it on the host, in one round trip."""
        return self._call("job_states", jobs=[[str(folder), name] for folder, name in jobs])

    def listdir(self, path: PathLike) -> List[str]:
        return self._call("listdir", path=str(path))

    def mkdir(self, path: PathLike, parents: bool = True, exist_ok: bool = True) -> None:
        self._call("mkdir", path=str(path), parents=parents, exist_ok=exist_ok)

    def copy_to_local(self, path: PathLike, local_path: Path) -> None:
        """Copy the file or tree at ``path`` on the host into ``local_path``, merging folders: a
        tree goes as one tar stream (:func:`.sync.pull` without deleting; files already there with
        the same size and modification time are not sent again), a single file through SFTP.
        Either way each file is written under a temporary name and renamed (never half written).
        FileNotFoundError when ``path`` does not exist on the host."""
        st = self._stat_existing(path)
        local_path = Path(local_path)
        if st.is_dir:
            with self.sync_streams(str(path)) as (to_sender, from_sender):
                pull(local_path, to_sender, from_sender, delete=False)
            return
        if local_path.is_dir():
            local_path = local_path / PurePosixPath(str(path)).name
        local_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = local_path.with_name(f".{local_path.name}.{os.getpid()}.xpm-copy")
        try:
            with self._sftp() as sftp:
                sftp.get(str(path), str(tmp))
                attrs = sftp.stat(str(path))
            os.chmod(tmp, (attrs.st_mode or 0o644) & 0o777)
            os.utime(tmp, (attrs.st_atime or 0, attrs.st_mtime or 0))
            os.replace(tmp, local_path)
        finally:
            tmp.unlink(missing_ok=True)

    def copy_from_local(self, local_path: Path, path: PathLike) -> None:
        """Copy the local file or tree ``local_path`` to ``path`` on the host, merging folders: a
        tree goes as one tar stream into ``python -m experimaestro sync-receive`` (which refuses
        links leading outside it), a single file through SFTP; each file is renamed into place."""
        local_path = Path(local_path)
        if local_path.is_dir():
            with self.receive_streams(str(path)) as (to_receiver, from_receiver):
                serve_send(local_path, from_receiver, to_receiver)
            return
        if not local_path.exists():
            raise FileNotFoundError(f"copy_from_local: {local_path} does not exist")
        remote = PurePosixPath(str(path))
        target = self.stat_many([remote])[0]
        if target is not None and target.is_dir:
            remote = remote / local_path.name
        self.mkdir(remote.parent)
        tmp = str(remote.parent / f".{remote.name}.{os.getpid()}.xpm-copy")
        st = local_path.stat()
        with self._sftp() as sftp:
            try:
                sftp.put(str(local_path), tmp)
                sftp.chmod(tmp, st.st_mode & 0o777)
                sftp.utime(tmp, (st.st_atime, st.st_mtime))
                sftp.posix_rename(tmp, str(remote))
            except BaseException:
                with contextlib.suppress(OSError):
                    sftp.remove(tmp)
                raise

    def _stat_existing(self, path: PathLike) -> FileStat:
        st = self.stat_many([path])[0]
        if st is None:
            raise FileNotFoundError(f"{path} does not exist on {self.host}")
        return st

    def _sftp(self) -> paramiko.SFTPClient:
        """An SFTP session on the shared connection (close it after use)."""
        return paramiko.SFTPClient.from_transport(self.connection.transport())

    # --- bulk transfers: one remote command on its own channel of the shared connection ---

    def command_streams(self, argv: Sequence[str]) -> ContextManager[Tuple[IO[bytes], IO[bytes]]]:
        """``(stdin, stdout)`` of ``argv`` run on the host on a channel of its own
        (:func:`.streams.command_streams`: leaving the block raises if the command failed)."""
        return command_streams(self.connection.transport(), argv)

    def _experimaestro(self, command: str, path: PathLike) -> ContextManager[Tuple[IO[bytes], IO[bytes]]]:
        return self.command_streams([self.python, "-m", "experimaestro", command, str(path)])

    def sync_streams(self, remote_root: str) -> ContextManager[Tuple[IO[bytes], IO[bytes]]]:
        """The sender of the folder ``remote_root`` (``sync-send``): ``(to it, from it)``, for
        :func:`.sync.pull` and :func:`.sync.pull_job` (a :class:`.sync.SyncChannel`)."""
        return self._experimaestro("sync-send", remote_root)

    def receive_streams(self, remote_root: str) -> ContextManager[Tuple[IO[bytes], IO[bytes]]]:
        """The receiver merging into ``remote_root`` (``sync-receive``): ``(to it, from it)``, for
        :func:`.sync.serve_send` run locally."""
        return self._experimaestro("sync-receive", remote_root)

    def stage_streams(self, workspace: PathLike) -> ContextManager[Tuple[IO[bytes], IO[bytes]]]:
        """The code store of the remote ``workspace`` (``stage-receive``): ``(to it, from it)``,
        for :func:`.staging.stage`."""
        return self._experimaestro("stage-receive", workspace)

    def read_from(self, path: PathLike, offset: int, job: Optional[Tuple[PathLike, str]] = None,
                  wait: float = 0.0, limit: int = READ_LIMIT) -> LogChunk:
        """What the file ``path`` on the host holds from ``offset`` on (at most ``limit`` bytes),
        in one round trip. With ``wait``, the agent waits up to that many seconds for something
        to read (the file's folder watched on the host: nothing travels while nothing happens).
        With ``job`` (its folder and name), the answer says whether the job has ended (marker
        written, or no live process) and everything it wrote was read: following a log stops then."""
        result = self._call("read_from", path=str(path), offset=offset, wait=wait, limit=limit,
                            job=None if job is None else [str(job[0]), job[1]])
        return LogChunk(data=base64.b64decode(result["data"]), offset=result["offset"],
                        exists=result["exists"], ended=result["ended"])

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
        """The counter token ``name`` of ``total`` units in the connector's workspace on the host,
        shared by every controller that uses that workspace, from any machine
        (``task.add_dependencies(token.dependency(1))``; jobs that hold it must run on this
        connector). The scheduler takes and releases its units through the agent, which runs the
        same token code on the host (``scheduler/job_tokens.py``). Asking again for the same name
        returns the same token (ValueError for another total)."""
        where = self.job_folder("")  # the error that says to give a workspace
        return self._declare_token(name, total, self, str(where))

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
        """Release the lock. When the connection dropped since it was taken, there is nothing to
        do: the agent that held it exited and the system released it (and the new agent's lock ids
        name other locks: the request goes to the agent that took it, or nowhere)."""
        if self._id is None:
            return
        lock_id, self._id = self._id, None
        try:
            self.connector.agent.request("unlock", {"lock": lock_id}, agent=self._agent_start)
        except ConnectionLost:
            pass  # that agent is gone, and its locks with it

    @property
    def is_locked(self) -> bool:
        return self._id is not None and self._agent_start == self.connector.agent.starts

    def __enter__(self) -> "RemoteLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()
