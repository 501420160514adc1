"""Running the monitor: the socket is bound in the caller's thread (a taken port is an error there),
then uvicorn serves it from a daemon thread until :meth:`MonitorServer.stop`."""

from __future__ import annotations

import errno
import logging
import socket
import threading
from typing import Any, Optional
from urllib.parse import quote

from ..scheduler.workspace import Workspace
from .app import create_app
from .auth import is_loopback, new_token
from .index import ControllerState, JobIndex

logger = logging.getLogger("experimaestro.monitor")

#: The port of ``experimaestro monitor`` when none is given.
DEFAULT_PORT = 12345


class MonitorError(RuntimeError):
    """The monitor cannot start (its port is taken, its host is not an address of this machine)."""


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free port).

    :raises MonitorError: naming the port and what to do when it is taken
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise MonitorError(
                f"the monitor's port {port} on {host} is taken (another monitor or program uses "
                f"it): pass another port (port=0 picks a free one)"
            ) from None
        raise MonitorError(f"the monitor cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(False)
    return sock


class MonitorServer:
    """The monitor of a workspace, served from a thread.

    :param workspace: the workspace whose job folders are shown
    :param host: the address to bind (127.0.0.1 by default; beyond loopback the token is required)
    :param port: the port (0: a free one; :attr:`port` then tells which)
    :param token: the access token (default: a new random one)
    :param experiment: the experiment shown first
    :param controller_state: what a controller knows of its jobs' states (waiting, ready)
    """

    def __init__(
        self,
        workspace: Workspace,
        *,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        token: Optional[str] = None,
        experiment: Optional[str] = None,
        controller_state: Optional[ControllerState] = None,
    ) -> None:
        self.workspace = workspace
        self.host = host
        self.token = token or new_token()
        self.require_token = not is_loopback(host)
        self.experiment = experiment
        self.index = JobIndex(workspace, controller_state)
        self._socket = bind(host, port)
        self.port: int = self._socket.getsockname()[1]
        self.app, self.hub = create_app(
            self.index, self.token, require_token=self.require_token, port=self.port,
            experiment=experiment,
        )
        self._server: Any = None
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        """The URL to open (with the token when it is required)."""
        host = self.host
        if host in ("0.0.0.0", "::"):
            host = socket.getfqdn()
        elif ":" in host:
            host = f"[{host}]"
        url = f"http://{host}:{self.port}/"
        if self.require_token:
            url += f"?token={self.token}"
        if self.experiment:
            url += f"#/xp/{quote(self.experiment)}"
        return url

    def start(self) -> "MonitorServer":
        """Build the index (in the background) and serve from a daemon thread."""
        import uvicorn

        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", access_log=False,
            timeout_graceful_shutdown=2, ws="none",
        )
        self._server = uvicorn.Server(config)
        # Watch and scan now, so that the first page is quick; with no page, the watches go after
        # the index's idle grace period.
        threading.Thread(target=self.index.ensure_fresh, name="xpm-monitor-scan", daemon=True).start()
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]},
            name="xpm-monitor", daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """End the live streams, stop serving and watching."""
        self.hub.close()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.index.close()
        self._socket.close()

    def wait(self) -> None:
        """Block until the server stops (Ctrl-C stops it)."""
        assert self._thread is not None
        try:
            while self._thread.is_alive():
                self._thread.join(timeout=1.0)
        finally:
            self.stop()


__all__ = ["DEFAULT_PORT", "MonitorError", "MonitorServer", "bind"]
