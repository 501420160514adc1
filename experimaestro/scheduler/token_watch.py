"""Telling waiting controllers that units of a token may have become free, without polling.

Used by the SSH agent on the host of remote tokens (``experimaestro/agent.py``): a controller whose
:func:`~.tokens.acquire_all` failed there is told (a pushed ``token_changed`` event) when trying
again may succeed, that is when

* a holder file is removed (a release, a reclaim) or the ``total`` file changes;
* a holder's job writes its marker (``.done``/``.failed``: the holder is stale from then on);
* a process that keeps a holder alive ends: the holder's controller (an agent, on this host) or
  its job's recorded process (see the rule in :mod:`.tokens`).

Folders are watched with file events (watchdog), processes with a pidfd each: nothing runs while
nothing happens. Events may be spurious (the controller then finds no free unit and waits again);
none is missed once :meth:`TokenWatcher.watch` has returned, so a controller watches a token
*before* it tries to take it.
"""

from __future__ import annotations

import logging
import socket
import threading
from pathlib import Path
from typing import Callable, Dict, Set, Tuple

from ..connectors.process import wait_gone
from ..launchers.jobfiles import JobFiles
from .tokens import CounterToken, TokenStore
from .watcher import FolderWatcher

logger = logging.getLogger("experimaestro.tokens")

#: The job-folder files whose appearance ends a holder (markers) or names its process (``.pid``).
_MARKERS = (".done", ".failed")

Notify = Callable[[str, str], None]


class TokenWatcher:
    """Calls ``notify(workspace, name)`` when units of a watched token may have become free."""

    def __init__(self, notify: Notify) -> None:
        self._notify = notify
        self._files = FolderWatcher(self._file_event)
        self._lock = threading.Lock()
        #: token folder -> (workspace as given, store)
        self._tokens: Dict[Path, Tuple[str, TokenStore]] = {}
        #: holders folder -> token folder
        self._holders: Dict[Path, Path] = {}
        #: job folder -> token folders whose holders name a job there
        self._jobs: Dict[Path, Set[Path]] = {}
        #: processes waited for: (pid, create time)
        self._processes: Set[Tuple[int, float]] = set()

    def watch(self, workspace: str, token: CounterToken) -> TokenStore:
        """Watch ``token`` of ``workspace`` (once however often asked); returns its store."""
        store = TokenStore.open(Path(workspace), token)
        with self._lock:
            if store.directory in self._tokens:
                return store
            self._tokens[store.directory] = (workspace, store)
            self._holders[store.holders_dir] = store.directory
        self._files.watch(store.directory)
        self._files.watch(store.holders_dir)
        self._follow_holders(store.directory)
        return store

    def stop(self) -> None:
        self._files.stop()

    # --- events ---

    def _file_event(self, folder: Path, path: Path) -> None:
        if path.name.startswith("."):
            return  # a temporary file of atomic_write (its rename is the event that counts)
        with self._lock:
            token_dir = self._holders.get(folder)
            is_token = folder in self._tokens
            job_tokens = set(self._jobs.get(folder, ()))
        if token_dir is not None:
            self._follow_holders(token_dir)  # a new holder: watch what ends it
            if not path.exists():
                self._tell(token_dir)  # released or reclaimed
        elif is_token:
            if path.name == "total":
                self._tell(folder)
        elif job_tokens:
            if path.name.endswith(_MARKERS):
                for token_dir in job_tokens:
                    self._tell(token_dir)
            elif path.name.endswith(".pid"):
                for token_dir in job_tokens:
                    self._follow_holders(token_dir)

    def _tell(self, token_dir: Path) -> None:
        with self._lock:
            entry = self._tokens.get(token_dir)
        if entry is not None:
            self._notify(entry[0], entry[1].name)

    def _process_gone(self, key: Tuple[int, float]) -> None:
        with self._lock:
            self._processes.discard(key)
            tokens = list(self._tokens)
        for token_dir in tokens:  # rare: tell every token (a spurious event costs one try)
            self._tell(token_dir)

    # --- what keeps each holder alive ---

    def _follow_holders(self, token_dir: Path) -> None:
        """Watch the job folder and the processes of each holder of the token (and stop watching
        the folders of holders that are gone)."""
        with self._lock:
            entry = self._tokens.get(token_dir)
        if entry is None:
            return
        holders = entry[1].holders()
        current = {Path(h.job_prefix).parent for h in holders}
        added, dropped = [], []
        with self._lock:
            for folder in current:
                users = self._jobs.setdefault(folder, set())
                if not users:
                    added.append(folder)
                users.add(token_dir)
            for folder, users in list(self._jobs.items()):
                if token_dir in users and folder not in current:
                    users.discard(token_dir)
                    if not users:
                        del self._jobs[folder]
                        dropped.append(folder)
        for folder in added:
            self._files.watch(folder, files_appearing_only=True)
        # A marker written before its folder was watched: tell now.
        if any(JobFiles(Path(h.job_prefix).parent, Path(h.job_prefix).name).marker_state()
               is not None for h in holders if Path(h.job_prefix).parent in added):
            self._tell(token_dir)
        for folder in dropped:
            self._files.unwatch(folder)
        here = socket.gethostname()
        for holder in holders:
            if holder.host and holder.host != here:
                continue  # processes of another host cannot be waited for from here
            self._wait_process(holder.controller_pid, holder.controller_create_time)
            prefix = Path(holder.job_prefix)
            record = JobFiles(prefix.parent, prefix.name).read_pid()
            if record is not None and record.type == "local":
                self._wait_process(record.pid, record.create_time)

    def _wait_process(self, pid: int, create_time: float) -> None:
        key = (pid, create_time)
        with self._lock:
            if key in self._processes:
                return
            self._processes.add(key)
        threading.Thread(target=self._wait, args=(key,), daemon=True,
                         name=f"xpm-token-pid-{pid}").start()

    def _wait(self, key: Tuple[int, float]) -> None:
        """Block until the process ends, then tell."""
        wait_gone(*key)
        self._process_gone(key)
