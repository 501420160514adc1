"""The remote agent: ``python -m experimaestro agent``, started by the SSH connector on one channel.

It serves the operations of :data:`~experimaestro.connectors.agentprotocol.OPERATIONS` as JSON lines
on stdin/stdout by calling the code the controller uses locally (the local connector, the job-folder
protocol of ``launchers.jobfiles``, the token store, the folder watcher), and pushes events (a marker
written in a watched folder, a process gone), so that the controller never polls over SSH.

It is a process entry point, like ``runner.py``, and sits above every layer: it may import the
connectors, the launchers' job-folder protocol and the scheduler's tokens and watcher without any
import pointing back up. It exits when its stdin closes (the connection ended); the processes it
started are in sessions of their own and go on; its file locks are released by the system.
"""

from __future__ import annotations

import base64
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, List, Optional

from .connectors.agentprotocol import OPERATIONS, PROTOCOL, decode, encode, error_payload
from .connectors.local import LocalConnector
from .connectors.process import process_alive, wait_gone
from .version import __version__

#: Threads serving the short requests.
WORKERS = 8
#: Requests that may wait for long (a lock held by someone else, a command): each gets a thread of
#: its own, so that any number of them never holds up the short ones.
LONG = frozenset({"lock", "run", "read_from", "launch", "start_job", "reattach", "cancel_job",
                  "host_launcher"})
#: The longest ``read_from`` waits, whatever is asked (the controller asks again).
MAX_WAIT = 60.0
#: How long an agent whose controller is gone waits for the launches under way (seconds).
LAUNCH_GRACE = 60.0


class Agent:
    """Serves requests read from ``source`` and writes answers and events to ``sink``."""

    def __init__(self, source: BinaryIO, sink: BinaryIO) -> None:
        self._source = source
        self._sink = sink
        self._write_lock = threading.Lock()
        self._local = LocalConnector.instance()
        self._locks: Dict[int, Any] = {}
        self._next_lock = 0
        self._watcher: Any = None
        self._suffixes: Dict[str, tuple] = {}
        self._tail_watcher: Any = None
        self._tails: Dict[str, List[threading.Event]] = {}
        self._state_lock = threading.Lock()
        self._launchers: Any = None
        self._token_watcher: Any = None
        #: Threads serving ``launch`` requests: finished before the agent exits (see serve).
        self._launches: List[threading.Thread] = []
        self.handlers: Dict[str, Callable[..., Any]] = {
            name: getattr(self, f"op_{name}") for name in OPERATIONS
        }

    # --- the loop ---

    def send(self, message: Dict[str, Any]) -> None:
        """Write one message (answers and events come from several threads)."""
        data = encode(message)
        with self._write_lock:
            try:
                self._sink.write(data)
                self._sink.flush()
            except (BrokenPipeError, ValueError, OSError):
                pass  # the controller is gone; stdin's end stops the loop

    def serve(self) -> None:
        """Greet, then serve requests until stdin closes."""
        self.send({"hello": {
            "version": __version__,
            "protocol": PROTOCOL,
            "host": socket.gethostname(),
            "python": sys.executable,
            "pid": os.getpid(),
            "cpus": os.cpu_count() or 1,
        }})
        pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="xpm-agent")
        for line in iter(self._source.readline, b""):
            try:
                request = decode(line)
            except ValueError as exc:
                self.send({"id": None, "error": error_payload(exc)})
                continue
            if request.get("op") in LONG:
                thread = threading.Thread(target=self._answer, args=(request,), daemon=True)
                thread.start()
                if request.get("op") == "launch":
                    with self._state_lock:
                        self._launches = [t for t in self._launches if t.is_alive()] + [thread]
            else:
                pool.submit(self._answer, request)
        # The controller is gone: nobody waits for the requests still running, but a launch under
        # way is finished, so that its job starts while this agent, the controller process of its
        # token holders, lives (scheduler/tokens.py); the job's runner lock keeps them afterwards.
        with self._state_lock:
            launches = list(self._launches)
        for thread in launches:
            thread.join(LAUNCH_GRACE)
        pool.shutdown(wait=False, cancel_futures=True)
        for watcher in (self._watcher, self._tail_watcher, self._token_watcher):
            if watcher is not None:
                watcher.stop()

    def _answer(self, request: Dict[str, Any]) -> None:
        rid = request.get("id")
        handler = self.handlers.get(str(request.get("op")))
        try:
            if handler is None:
                raise ValueError(f"unknown operation {request.get('op')!r} (agent {__version__})")
            result = handler(**(request.get("args") or {}))
        except Exception as exc:  # every error goes back to the caller, none ends the agent
            self.send({"id": rid, "error": error_payload(exc)})
        else:
            self.send({"id": rid, "result": result})

    # --- operations (one per name in OPERATIONS; documented there) ---

    def op_ping(self) -> str:
        return "pong"

    def op_resolve(self, path: str) -> str:
        return str(self._local.resolve(path))

    def op_read_text(self, path: str) -> str:
        return self._local.read_text(path)

    def op_write_atomic(self, path: str, text: Optional[str] = None, base64data: Optional[str] = None
                        ) -> None:
        data: Any = text if text is not None else base64.b64decode(base64data or "")
        self._local.write_atomic(path, data)

    def op_stat_many(self, paths: List[str]) -> List[Optional[list]]:
        return [None if st is None else [st.size, st.mtime, st.is_dir]
                for st in self._local.stat_many(paths)]

    def op_exists_many(self, paths: List[str]) -> List[bool]:
        return [os.path.exists(p) for p in paths]

    def op_job_states(self, jobs: List[List[str]]) -> List[str]:
        from .launchers.jobfiles import JobFiles

        return [JobFiles(Path(folder), name).disk_state().value for folder, name in jobs]

    def op_job_files(self, folder: str, name: str, method: str, args: Dict[str, Any]) -> Any:
        from .launchers.remote import serve_job_files

        return serve_job_files(folder, name, method, args or {})

    def _host_launchers(self) -> Any:
        from .launchers.remote import HostLaunchers

        with self._state_lock:
            if self._launchers is None:
                self._launchers = HostLaunchers(self.send, self._follow_progress)
            return self._launchers

    def _follow_progress(self, files: Any) -> Callable[[], None]:
        """Push a ``file`` event at each write of a running job's progress file (and now, if it
        was written already); returns what stops it (called when the job ends)."""
        folder = str(files.path)
        self.op_watch(folder, [files.progress.name])
        if files.progress.exists():
            self.send({"event": "file", "folder": folder, "path": str(files.progress)})
        return lambda: self.op_unwatch(folder)

    def op_launch(self, spec: Dict[str, Any], jobs: List[List[str]], after: List[Dict[str, Any]]
                  ) -> List[Dict[str, Any]]:
        return self._host_launchers().launch(spec, jobs, after or [])

    def op_start_job(self, spec: Dict[str, Any], folder: str, name: str, params: str
                     ) -> Dict[str, Any]:
        return self._host_launchers().start(spec, folder, name, params)

    def op_reattach(self, spec: Dict[str, Any], folder: str, name: str, record: Dict[str, Any]
                    ) -> bool:
        return self._host_launchers().reattach(spec, folder, name, record)

    def op_cancel_job(self, spec: Dict[str, Any], folder: str, name: str, record: Dict[str, Any]
                      ) -> None:
        self._host_launchers().cancel(spec, folder, name, record)

    def op_sync_send(self, folders: List[List[str]], limit: int) -> List[Optional[str]]:
        from .connectors.sync import SyncRequest, send_bounded

        answers = []
        for root, line in folders:
            data = send_bounded(root, SyncRequest.from_line(line.encode("utf-8")), int(limit))
            answers.append(None if data is None else base64.b64encode(data).decode("ascii"))
        return answers

    def op_host_launcher(self, spec: Dict[str, Any], method: str, jobs: List[List[str]]) -> Any:
        return self._host_launchers().call(spec, method, jobs or [])

    def op_listdir(self, path: str) -> List[str]:
        return self._local.listdir(path)

    def op_mkdir(self, path: str, parents: bool = True, exist_ok: bool = True) -> None:
        self._local.mkdir(path, parents=parents, exist_ok=exist_ok)

    def op_run(self, cmd: List[str], cwd: Optional[str] = None, env: Optional[Dict[str, str]] = None,
               timeout: Optional[float] = None) -> Dict[str, Any]:
        done = self._local.run(cmd, cwd=cwd, env=env, timeout=timeout)
        return {"returncode": done.returncode, "stdout": done.stdout, "stderr": done.stderr}

    def op_start_detached(self, cmd: List[str], cwd: str, stdout_path: Optional[str] = None,
                          stderr_path: Optional[str] = None, env: Optional[Dict[str, str]] = None
                          ) -> Dict[str, Any]:
        started = self._local.start_detached(cmd, cwd, stdout_path, stderr_path, env=env)
        record, popen = started.record, started.popen
        assert popen is not None

        def reap() -> None:  # a child of the agent: waitpid, no polling
            code = popen.wait()
            self.send({"event": "process_gone", "pid": record.pid, "create_time": record.create_time,
                       "code": code})

        threading.Thread(target=reap, daemon=True, name=f"xpm-agent-reap-{record.pid}").start()
        return record.to_dict()

    def op_pids_alive(self, records: List[Dict[str, Any]]) -> List[bool]:
        return [process_alive(int(r["pid"]), float(r.get("create_time", 0.0))) for r in records]

    def op_watch_processes(self, records: List[Dict[str, Any]]) -> None:
        for r in records:
            pid, create_time = int(r["pid"]), float(r.get("create_time", 0.0))
            threading.Thread(target=self._wait_gone, args=(pid, create_time), daemon=True,
                             name=f"xpm-agent-pid-{pid}").start()

    def _wait_gone(self, pid: int, create_time: float) -> None:
        """Block until the process ends, then push the event."""
        wait_gone(pid, create_time)
        self.send({"event": "process_gone", "pid": pid, "create_time": create_time, "code": None})

    def op_lock(self, path: str, timeout: Optional[float] = None) -> Optional[int]:
        from filelock import Timeout

        lock = self._local.lock(path)
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout:
            return None
        with self._state_lock:
            self._next_lock += 1
            self._locks[self._next_lock] = lock
            return self._next_lock

    def op_unlock(self, lock: int) -> None:
        with self._state_lock:
            held = self._locks.pop(int(lock), None)
        if held is None:
            raise ValueError(f"lock {lock} is not held by this agent")
        held.release()

    def op_token_state(self, workspace: str, name: str, total: int) -> Dict[str, int]:
        from .scheduler.tokens import CounterToken, TokenStore

        store = TokenStore.open(Path(workspace), CounterToken(name, total))
        return {"total": store.current_total(), "available": store.available(),
                "holders": len(store.holders())}

    def _tokens(self, workspace: str, tokens: List[List[Any]]) -> List[Any]:
        """Watch the tokens (``[[name, total, ...]]``) of ``workspace``; their stores."""
        from .scheduler.tokens import CounterToken
        from .scheduler.token_watch import TokenWatcher

        with self._state_lock:
            if self._token_watcher is None:
                self._token_watcher = TokenWatcher(self._token_changed)
        return [self._token_watcher.watch(workspace, CounterToken(str(t[0]), int(t[1])))
                for t in tokens]

    def _token_changed(self, workspace: str, name: str) -> None:
        self.send({"event": "token_changed", "workspace": workspace, "name": name})

    def op_token_acquire(self, workspace: str, tokens: List[List[Any]], key: str, job_prefix: str,
                         owner: str) -> bool:
        from .scheduler.tokens import HolderInfo, acquire_all

        # Watched before trying: a release after this try is then told to the controller.
        stores = self._tokens(workspace, tokens)
        holder = HolderInfo.current_process(key, job_prefix, owner)
        return acquire_all([(s, int(t[2])) for s, t in zip(stores, tokens)], holder)

    def op_token_release(self, workspace: str, tokens: List[List[Any]], key: str, owner: str
                         ) -> None:
        from .scheduler.tokens import CounterToken, HolderInfo, TokenStore, release_all

        stores = [TokenStore.open(Path(workspace), CounterToken(str(t[0]), int(t[1])))
                  for t in tokens]
        release_all(stores, key, HolderInfo(key, "", 0, 0.0, owner))

    def op_token_list(self, workspace: str) -> List[Dict[str, Any]]:
        from .scheduler.tokens import token_rows

        return token_rows(Path(workspace))

    def op_watch(self, folder: str, suffixes: List[str]) -> None:
        from .scheduler.watcher import FolderWatcher

        with self._state_lock:
            if self._watcher is None:
                self._watcher = FolderWatcher(self._file_event)
            self._suffixes[str(Path(folder))] = tuple(suffixes)
        # Markers appear (renamed into place): the job's log writes are not even asked of the kernel.
        self._watcher.watch(Path(folder), files_appearing_only=True)

    def op_unwatch(self, folder: str) -> None:
        with self._state_lock:
            self._suffixes.pop(str(Path(folder)), None)
        if self._watcher is not None:
            self._watcher.unwatch(Path(folder))

    def op_read_from(self, path: str, offset: int, wait: float = 0.0, limit: int = 1 << 20,
                     job: Optional[List[str]] = None) -> Dict[str, Any]:
        files = None
        if job is not None:
            from .launchers.jobfiles import JobFiles

            files = JobFiles(Path(job[0]), job[1])
        if wait <= 0:
            return _read_chunk(path, offset, limit, files)
        # Watch the folder first (every change in it, the log's writes included), then read: a
        # write between the two wakes us up. Its own watcher: the marker watches see appearing
        # files only.
        folder = str(Path(path).parent)
        changed = threading.Event()
        with self._state_lock:
            if self._tail_watcher is None:
                from .scheduler.watcher import FolderWatcher

                self._tail_watcher = FolderWatcher(self._tail_event)
            self._tails.setdefault(folder, []).append(changed)
        self._tail_watcher.watch(Path(folder))
        try:
            deadline = time.monotonic() + min(wait, MAX_WAIT)
            while True:
                changed.clear()
                chunk = _read_chunk(path, offset, limit, files)
                remaining = deadline - time.monotonic()
                if chunk["data"] or chunk["ended"] or remaining <= 0:
                    return chunk
                changed.wait(remaining)
        finally:
            self._tail_watcher.unwatch(Path(folder))
            with self._state_lock:
                self._tails[folder].remove(changed)
                if not self._tails[folder]:
                    del self._tails[folder]

    def _tail_event(self, folder: Path, path: Path) -> None:
        with self._state_lock:
            waiting = list(self._tails.get(str(folder), ()))
        for changed in waiting:
            changed.set()

    def _file_event(self, folder: Path, path: Path) -> None:
        suffixes = self._suffixes.get(str(folder))
        if suffixes is not None and path.name.endswith(suffixes) and path.exists():
            self.send({"event": "file", "folder": str(folder), "path": str(path)})


def _read_chunk(path: str, offset: int, limit: int, files: Any) -> Dict[str, Any]:
    """Up to ``limit`` bytes of ``path`` from ``offset`` (from 0 if the file is now shorter: it was
    rewritten); ``ended`` when the job of ``files`` no longer runs and nothing is left to read.
    The state is read first: what the job wrote before its marker is then read too."""
    from .launchers.jobfiles import JobState

    finished = files is not None and files.disk_state() is not JobState.RUNNING
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size < offset:
                offset = 0
            handle.seek(offset)
            data = handle.read(limit)
        exists = True
    except FileNotFoundError:
        data, size, exists = b"", 0, False
    offset += len(data)
    return {"data": base64.b64encode(data).decode("ascii"), "offset": offset, "exists": exists,
            "ended": finished and offset >= size}


def main(argv: List[str]) -> int:
    """Serve on this process's stdin/stdout; anything else printed goes to stderr."""
    if argv:
        print(f"usage: python -m experimaestro agent (no arguments, got {argv})", file=sys.stderr)
        return 2
    sink = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # a stray print must not corrupt the protocol
    Agent(sys.stdin.buffer, sink).serve()
    # Exit now, without joining the threads of requests still running (a long command, a lock
    # wait): their answers have nobody to go to. File locks are released with the process.
    sys.stderr.flush()
    os._exit(0)
