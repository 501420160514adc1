"""Where a job takes its tokens: in its local workspace, or in its remote connector's workspace.

A job holds tokens of the place it runs. A local job's tokens live in its workspace
(:class:`LocalClaim`: :func:`~.tokens.acquire_all` in this process); a job run through a remote
connector (``DirectLauncher(connector=host)``) holds tokens created on that connector
(``host.createtoken("gpu", 2)``), which live in the connector's workspace on its host
(:class:`RemoteClaim`: the host's agent runs the same :func:`~.tokens.acquire_all` there, so every
controller that uses the workspace, from any laptop, shares them). A token made without a connector
(``CounterToken(name, total)``, e.g. the one of a partial folder) goes where its job runs.
:func:`check_tokens` refuses any other mix at ``submit()``.

A controller that could not take a remote token is woken by the host: the agent watches the tokens
it was asked for and pushes ``token_changed`` events when units may have become free
(``scheduler/token_watch.py``); nothing is polled over SSH. After a reconnection (the new agent
watches nothing yet, and a release may have passed unseen) every waiter tries again.
"""

from __future__ import annotations

import abc
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence, Set, Tuple

from ..connectors.base import PerConnector
from .tokens import (
    HolderInfo,
    TokenDependency,
    TokenStore,
    acquire_all,
    controller_identity,
    release_all,
)

logger = logging.getLogger("experimaestro.tokens")

Wake = Callable[[], None]


def _remote(connector: Any) -> bool:
    return bool(getattr(connector, "remote", False))


def _same_host(a: Any, b: Any) -> bool:
    """Whether two remote connectors reach the same workspace on the same host."""
    return a is b or (
        getattr(a, "host", None) == getattr(b, "host", None)
        and str(getattr(a, "workspace", None)) == str(getattr(b, "workspace", None))
    )


def _describe(connector: Any) -> str:
    return f"{getattr(connector, 'host', connector)}:{getattr(connector, 'workspace', '')}"


def check_tokens(tokens: Sequence[TokenDependency], job: Any, task_name: str) -> None:
    """Raise ValueError (at the user's ``submit()``) when a token is not of the place the job runs.

    ``job.files.local`` says whether the job runs here; a remote job's place is its launcher's
    connector.
    """
    runs_remote = not job.files.local
    here = getattr(job.launcher, "connector", None) if runs_remote else None
    for dep in tokens:
        token = dep.token
        where = token.connector
        if where is None:
            continue  # goes where the job runs
        if runs_remote and _remote(where) and _same_host(where, here):
            continue
        if not runs_remote and not _remote(where):
            continue
        if runs_remote:
            raise ValueError(
                f"{task_name}: token {token.name!r} lives "
                + (f"on {_describe(where)}" if _remote(where) else "in the local workspace")
                + f", but the job runs on {_describe(here)}: a job can only hold tokens of the "
                f"place it runs. Create the token on the job's connector: "
                f"host.createtoken({token.name!r}, {token.total})"
            )
        raise ValueError(
            f"{task_name}: token {token.name!r} lives on {_describe(where)} (created with "
            f"SshConnector.createtoken), but the job runs on this machine: a job can only hold "
            f"tokens of the place it runs. Run it with a launcher on that connector "
            f"(DirectLauncher(connector=host)), or use a local token "
            f"(LocalConnector.instance().createtoken({token.name!r}, {token.total}))"
        )


class TokenClaim(abc.ABC):
    """All the units one job asks for, in one place: taken all at once, or none."""

    @abc.abstractmethod
    def acquire(self) -> bool:
        """Take every unit, or none (False: not enough free units now)."""

    @abc.abstractmethod
    def release(self) -> None:
        """Give back what the job holds (holding nothing is fine)."""

    def listen(self, wake: Wake) -> None:
        """Call ``wake()`` (any thread) when units may become free; before :meth:`acquire`, so
        that no release after the try is missed. Local claims do nothing: the scheduler watches
        the folders of :meth:`folders` itself."""
        return None

    def folders(self) -> List[Path]:
        """Local folders whose changes may free units (the scheduler watches them)."""
        return []


class LocalClaim(TokenClaim):
    """Tokens of the job's local workspace, taken by this process."""

    def __init__(self, workspace: Path, tokens: Sequence[TokenDependency], holder: HolderInfo) -> None:
        self.stores = [TokenStore.open(workspace, dep.token) for dep in tokens]
        self.counts = [dep.count for dep in tokens]
        self.holder = holder

    def acquire(self) -> bool:
        return acquire_all(list(zip(self.stores, self.counts)), self.holder)

    def release(self) -> None:
        release_all(self.stores, self.holder.key, self.holder)

    def folders(self) -> List[Path]:
        result = []
        for store in self.stores:
            store.holders_dir.mkdir(parents=True, exist_ok=True)
            result += [store.holders_dir, store.directory]
        return result


class RemoteClaim(TokenClaim):
    """Tokens of a remote connector's workspace, taken on its host by the agent."""

    def __init__(self, connector: Any, tokens: Sequence[TokenDependency], key: str,
                 job_prefix: str) -> None:
        self.connector = connector
        self.workspace = str(connector.workspace)
        self.tokens = [(dep.token.name, dep.token.total, dep.count) for dep in tokens]
        self.key = key
        self.job_prefix = job_prefix
        self.owner = controller_identity()

    def acquire(self) -> bool:
        return bool(self.connector.call(
            "token_acquire", workspace=self.workspace, tokens=[list(t) for t in self.tokens],
            key=self.key, job_prefix=self.job_prefix, owner=self.owner))

    def release(self) -> None:
        try:
            self.connector.call("token_release", workspace=self.workspace,
                                tokens=[[name, total] for name, total, _ in self.tokens],
                                key=self.key, owner=self.owner)
        except Exception as exc:  # e.g. the host unreachable for longer than reconnect_timeout
            # Safe to leave: the holder is stale once the job's marker is written (tokens.py).
            logger.warning("cannot release the units of job %s on %s: %s (they are reclaimed "
                           "when its marker is seen)", self.key, self.connector.host, exc)

    def listen(self, wake: Wake) -> None:
        token_events(self.connector).listen(self.workspace, [name for name, _, _ in self.tokens],
                                            wake)


def claim_for(job: Any) -> TokenClaim:
    """The claim of ``job``'s tokens (``job.tokens``), where the job runs."""
    files = job.files
    prefix = str(files.path / job.name)
    if files.local:
        assert job.workspace is not None
        return LocalClaim(job.workspace, job.tokens,
                          HolderInfo.current_process(job.identifier, prefix))
    return RemoteClaim(job.launcher.connector, job.tokens, job.identifier, prefix)


class TokenEvents:
    """The ``token_changed`` events of one connector's agent, routed to the controllers' wake
    callbacks. After a reconnection every waiter is woken: units may have been released while no
    event could come, and its next try watches the token on the new agent (``token_acquire``
    watches before it tries)."""

    def __init__(self, connector: Any) -> None:
        self.connector = connector
        self._lock = threading.Lock()
        #: (workspace, token name) -> wake callbacks
        self._waiting: Dict[Tuple[str, str], Set[Wake]] = {}
        connector.subscribe(self._event)

    def listen(self, workspace: str, names: Sequence[str], wake: Wake) -> None:
        with self._lock:
            for name in names:
                self._waiting.setdefault((workspace, name), set()).add(wake)

    def _event(self, event: Dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "token_changed":
            with self._lock:
                wakes = set(self._waiting.get((str(event.get("workspace")), str(event.get("name"))),
                                              ()))
        elif kind == "resync":
            with self._lock:
                wakes = set().union(*self._waiting.values())
        else:
            return
        for wake in wakes:
            wake()


#: The :class:`TokenEvents` of a connector (one per connector object).
token_events: "PerConnector[TokenEvents]" = PerConnector(TokenEvents)

