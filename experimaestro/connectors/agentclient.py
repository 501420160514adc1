"""The controller's side of the remote agent: requests multiplexed on one SSH channel, pushed events.

:func:`agent_for` returns the process-wide :class:`AgentClient` for a connection and a remote Python:
the agent (``python -m experimaestro agent``) is started once, on one channel, and every thread sends
its requests on it; answers are matched by request id, so requests run concurrently. The agent's
version must be the controller's.

When the connection drops, pending requests fail with :class:`ConnectionLost` (idempotent ones are
sent again once the connection is back), the connection is re-made with backoff, the agent started
again, the watches re-established, and subscribers receive ``{"event": "resync"}``: whatever
happened meanwhile was not pushed, so they read the state again.
"""

from __future__ import annotations

import collections
import itertools
import logging
import queue
import shlex
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

import paramiko

from ..version import __version__
from .agentprotocol import OPERATIONS, PROTOCOL, decode, encode, raise_error
from .base import ConnectionLost, ReconnectTimeout  # noqa: F401 (re-exported)
from .sshconnection import HostKeyError, SshConnection, SshConnectError

logger = logging.getLogger("experimaestro.ssh")

EventCallback = Callable[[Dict[str, Any]], None]


#: How to install a version that is not on PyPI (a checkout): said with every install command.
_FROM_CHECKOUT = "or, from a copy of this checkout on the host, `pip install /path/to/the/copy`"


class AgentStartError(SshConnectError):
    """The agent could not start on the host (no such Python, no experimaestro, another version)."""


class _Pending:
    __slots__ = ("done", "message")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.message: Optional[Dict[str, Any]] = None


class AgentClient:
    """The agent on one host for one remote Python. Obtain it with :func:`agent_for`."""

    def __init__(self, connection: SshConnection, python: str, reconnect_timeout: float = 60.0) -> None:
        self.connection = connection
        self.python = python
        self.reconnect_timeout = reconnect_timeout
        #: The agent's greeting (version, host, pid...), once started.
        self.hello: Dict[str, Any] = {}
        self._channel: Optional[paramiko.Channel] = None
        self._ids = itertools.count(1)
        self._pending: Dict[int, _Pending] = {}
        self._state = "stopped"  # stopped -> running -> reconnecting -> running ... | closed | failed
        self._failure: Optional[BaseException] = None
        #: When the connection was last lost (time.monotonic()).
        self._lost_at = 0.0
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._subscribers: List[EventCallback] = []
        self._events: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        self._watches: Dict[str, Tuple[str, ...]] = {}
        self._processes: Dict[Tuple[int, float], Dict[str, Any]] = {}
        self._stderr: Deque[str] = collections.deque(maxlen=50)
        #: How many times the agent was (re)started.
        self.starts = 0
        #: How many requests were sent (each one is one round trip).
        self.requests = 0
        threading.Thread(target=self._dispatch, daemon=True, name="xpm-agent-events").start()

    # --- starting ---

    def start(self) -> None:
        """Start the agent if it is not running (connecting first); errors are raised."""
        with self._cond:
            if self._state == "running":
                return
            if self._state == "closed":
                raise SshConnectError(f"the agent on {self.connection.spec} was closed")
            self._start_locked()

    def _start_locked(self) -> None:
        spec = self.connection.spec
        timeout = self.connection.connect_timeout
        transport = self.connection.transport()
        try:
            channel = transport.open_session(timeout=timeout)
            channel.exec_command(f"exec {shlex.quote(self.python)} -m experimaestro agent")
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise ConnectionLost(f"cannot open a channel to {spec}: {exc}") from None
        channel.settimeout(timeout)
        stdout = channel.makefile("rb")
        try:
            line = stdout.readline()
        except (OSError, EOFError):  # socket.timeout is an OSError
            line = b""
        hello: Any = None
        if line:
            try:
                hello = decode(line).get("hello")
            except ValueError:
                hello = None
        if not isinstance(hello, dict):
            error = self._start_error(channel, line)
            channel.close()
            raise error
        if hello.get("version") != __version__ or hello.get("protocol") != PROTOCOL:
            channel.close()
            raise AgentStartError(
                f"{spec} runs experimaestro {hello.get('version')} with {self.python}, and this "
                f"controller runs {__version__}: the versions must match. Install the same version "
                f"there: `{shlex.quote(self.python)} -m pip install experimaestro=={__version__}` "
                f"({_FROM_CHECKOUT})."
            )
        channel.settimeout(None)
        self.hello = hello
        self._channel = channel
        self._state = "running"
        self.starts += 1
        self._cond.notify_all()
        threading.Thread(target=self._read, args=(channel, stdout), daemon=True,
                         name=f"xpm-agent-read-{spec.alias}").start()
        threading.Thread(target=self._drain_stderr, args=(channel,), daemon=True,
                         name=f"xpm-agent-stderr-{spec.alias}").start()
        # What the previous agent was doing for us: its watches and the processes we wait for.
        for folder, suffixes in list(self._watches.items()):
            self._send(next(self._ids), "watch", {"folder": folder, "suffixes": list(suffixes)})
        if self._processes:
            self._send(next(self._ids), "watch_processes", {"records": list(self._processes.values())})
        logger.info("agent started on %s (pid %s)", spec, hello.get("pid"))

    def _start_error(self, channel: paramiko.Channel, line: bytes) -> AgentStartError:
        """Why the agent did not greet us, with the fix."""
        spec, python, quoted = self.connection.spec, self.python, shlex.quote(self.python)
        code = channel.recv_exit_status() if channel.status_event.wait(5) else None
        err = b""
        while channel.recv_stderr_ready():
            err += channel.recv_stderr(65536)
        stderr = err.decode("utf-8", "replace").strip()
        install = f"`{quoted} -m pip install experimaestro=={__version__}` ({_FROM_CHECKOUT})"
        if code == 127 or "No such file or directory" in stderr or "not found" in stderr:
            return AgentStartError(
                f"{python} was not found on {spec}: SshConnector(python=...) must name a Python on "
                f"that host with experimaestro {__version__}, for instance a venv made there with "
                f"`python3 -m venv ~/xpm-venv && ~/xpm-venv/bin/pip install experimaestro=={__version__}`"
                f" ({stderr[-300:]})"
            )
        if "No module named experimaestro" in stderr:
            return AgentStartError(
                f"experimaestro is not installed for {python} on {spec}: install it there with "
                f"{install}."
            )
        if "No such command" in stderr:
            return AgentStartError(
                f"the experimaestro of {python} on {spec} has no agent (an older version), and this "
                f"controller runs {__version__}: install the same version there with {install}."
            )
        return AgentStartError(
            f"the agent `{python} -m experimaestro agent` did not start on {spec} "
            f"(exit code {code}, first line {line[:200]!r}): {stderr[-1000:] or 'no error output'}"
        )

    # --- requests ---

    def request(self, op: str, args: Optional[Dict[str, Any]] = None,
                timeout: Optional[float] = None, agent: Optional[int] = None) -> Any:
        """Send one request and wait for its answer (its error is raised here).

        An idempotent operation interrupted by a lost connection is sent again once the connection
        is back; any other raises :class:`ConnectionLost`. With ``agent`` (a value of
        :attr:`starts`), the request goes to that agent only: :class:`ConnectionLost` at once when
        it is no longer the running one (e.g. releasing a lock it held: its exit released it, and
        the new agent's lock ids name other locks).
        """
        operation = OPERATIONS[op]
        while True:
            try:
                return self._request_once(op, args or {}, timeout, agent)
            except ReconnectTimeout:
                raise
            except ConnectionLost:
                if not operation.idempotent:
                    raise
                logger.info("%s interrupted by a lost connection to %s: sending it again", op,
                            self.connection.spec)

    def _request_once(self, op: str, args: Dict[str, Any], timeout: Optional[float],
                      agent: Optional[int] = None) -> Any:
        if agent is None:
            self.wait_running()
        rid = next(self._ids)
        pending = _Pending()
        with self._cond:
            if self._state != "running" or (agent is not None and agent != self.starts):
                raise ConnectionLost(f"the connection to {self.connection.spec} was lost")
            self._pending[rid] = pending
            self.requests += 1
        try:
            self._send(rid, op, args)
            if not pending.done.wait(timeout):
                raise TimeoutError(f"{op} on {self.connection.spec}: no answer within {timeout} s")
        finally:
            with self._cond:
                self._pending.pop(rid, None)
        message = pending.message
        if message is None:
            raise ConnectionLost(
                f"the connection to {self.connection.spec} was lost during {op} (reconnecting)"
            )
        if "error" in message:
            raise_error(message["error"], where=str(self.connection.spec))
        return message.get("result")

    def wait_running(self) -> None:
        """Block until the agent runs (starting it, or waiting for a reconnection until the
        connection has been lost for ``reconnect_timeout``: :class:`ReconnectTimeout` then, at
        once for the requests made later in the same outage)."""
        with self._cond:
            deadline = (self._lost_at if self._state == "reconnecting" else time.monotonic()
                        ) + self.reconnect_timeout
            while self._state != "running":
                if self._state == "stopped":
                    self._start_locked()
                    continue
                if self._state == "closed":
                    raise SshConnectError(f"the agent on {self.connection.spec} was closed")
                if self._state == "failed":
                    assert self._failure is not None
                    raise self._failure
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ReconnectTimeout(
                        f"the connection to {self.connection.spec} has been lost for more than "
                        f"{self.reconnect_timeout} s (reconnection goes on in the background)"
                    )
                self._cond.wait(remaining)

    def _send(self, rid: int, op: str, args: Dict[str, Any]) -> None:
        channel = self._channel
        data = encode({"id": rid, "op": op, "args": args})
        try:
            with self._send_lock:
                assert channel is not None
                channel.sendall(data)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            self._lost(channel)
            raise ConnectionLost(f"the connection to {self.connection.spec} was lost: {exc}") from None

    # --- events ---

    def subscribe(self, callback: EventCallback) -> None:
        """Call ``callback(event)`` for each pushed event (in a thread of its own, in order), and
        with ``{"event": "resync"}`` after a reconnection."""
        self._subscribers.append(callback)

    def unsubscribe(self, callback: EventCallback) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    def watch(self, folder: str, suffixes: Tuple[str, ...]) -> None:
        """Have the agent push ``file`` events for files with these suffixes in ``folder``
        (re-established after a reconnection)."""
        self._watches[folder] = tuple(suffixes)
        self.request("watch", {"folder": folder, "suffixes": list(suffixes)})

    def unwatch(self, folder: str) -> None:
        self._watches.pop(folder, None)
        self.request("unwatch", {"folder": folder})

    def follow(self, record: Dict[str, Any]) -> None:
        """Remember a process the agent started (it pushes ``process_gone`` when it ends), so that a
        new agent after a reconnection watches it too."""
        self._processes[(int(record["pid"]), float(record["create_time"]))] = record

    def watch_processes(self, records: List[Dict[str, Any]]) -> None:
        """Have the agent push ``process_gone`` when each process ends (re-established too)."""
        for record in records:
            self.follow(record)
        self.request("watch_processes", {"records": records})

    def _dispatch(self) -> None:
        while True:
            event = self._events.get()
            if event is None:
                return
            if event.get("event") == "process_gone":
                self._processes.pop((int(event["pid"]), float(event["create_time"])), None)
            for callback in list(self._subscribers):
                try:
                    callback(event)
                except Exception:  # a subscriber's bug must not stop the others
                    logger.exception("event callback %r failed on %r", callback, event)

    # --- the channel's readers, the loss and the reconnection ---

    def _read(self, channel: paramiko.Channel, stdout: Any) -> None:
        try:
            for line in iter(stdout.readline, b""):
                try:
                    message = decode(line)
                except ValueError:
                    logger.warning("agent on %s sent garbage: %r", self.connection.spec, line[:200])
                    continue
                if "event" in message:
                    self._events.put(message)
                    continue
                with self._cond:
                    pending = self._pending.get(message.get("id"))  # type: ignore[arg-type]
                if pending is not None:
                    pending.message = message
                    pending.done.set()
        except (OSError, EOFError, paramiko.SSHException):
            pass
        self._lost(channel)

    def _drain_stderr(self, channel: paramiko.Channel) -> None:
        try:
            for raw in iter(channel.makefile_stderr("rb").readline, b""):
                text = raw.decode("utf-8", "replace").rstrip()
                self._stderr.append(text)
                logger.debug("agent on %s: %s", self.connection.spec, text)
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def _lost(self, channel: Optional[paramiko.Channel]) -> None:
        """The channel ended: fail what is pending and reconnect in the background."""
        with self._cond:
            if channel is not self._channel or self._state != "running":
                return
            self._state = "reconnecting"
            self._lost_at = time.monotonic()
            self._channel = None
            for pending in self._pending.values():
                pending.done.set()  # no message: ConnectionLost
            self._cond.notify_all()
        try:
            channel.close()  # type: ignore[union-attr]
        except Exception:
            pass
        logger.warning("lost the agent on %s; reconnecting%s", self.connection.spec,
                       "".join(f"\n  agent: {text}" for text in self._stderr))
        threading.Thread(target=self._reconnect, daemon=True,
                         name=f"xpm-agent-reconnect-{self.connection.spec.alias}").start()

    def _reconnect(self) -> None:
        delay = 0.2
        while True:
            try:
                self.connection.transport()  # one attempt; the backoff is below
                with self._cond:
                    if self._state != "reconnecting":
                        return
                    self._start_locked()
                break
            except (AgentStartError, HostKeyError) as exc:  # the host changed under us: not retried
                with self._cond:
                    self._state, self._failure = "failed", exc
                    self._cond.notify_all()
                return
            except (SshConnectError, ConnectionLost) as exc:
                if self._state != "reconnecting":
                    return
                if self.connection.closed:  # closed on purpose: stop trying
                    with self._cond:
                        self._state, self._failure = "failed", exc
                        self._cond.notify_all()
                    return
                logger.warning("reconnecting to %s: %s; retrying in %.1f s", self.connection.spec,
                               exc, delay)
                time.sleep(delay)  # backoff between attempts
                delay = min(2 * delay, 10.0)
        self._events.put({"event": "resync"})

    def close(self) -> None:
        """Stop the agent (its channel closes; it exits)."""
        with self._cond:
            self._state = "closed"
            channel, self._channel = self._channel, None
            for pending in self._pending.values():
                pending.done.set()
            self._cond.notify_all()
        if channel is not None:
            channel.close()
        self._events.put(None)


_agents: Dict[Tuple[SshConnection, str], AgentClient] = {}
_agents_lock = threading.Lock()


def agent_for(connection: SshConnection, python: str, reconnect_timeout: float = 60.0) -> AgentClient:
    """The process-wide agent for this connection and remote Python (started on first request)."""
    with _agents_lock:
        key = (connection, python)
        agent = _agents.get(key)
        if agent is None or agent._state == "closed":
            agent = AgentClient(connection, python, reconnect_timeout)
            _agents[key] = agent
        return agent


def close_agents() -> None:
    """Stop every agent (tests; the process's end stops them anyway)."""
    with _agents_lock:
        agents = list(_agents.values())
        _agents.clear()
    for agent in agents:
        agent.close()
