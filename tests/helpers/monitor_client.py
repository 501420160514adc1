"""Talking to a monitor from the tests: plain requests, its live stream, and a controller subprocess
serving one (monitor_tasks.CONTROLLER)."""

from __future__ import annotations

import json
import re
import socket
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

from conftest import start_controller, wait_until
from monitor_tasks import CONTROLLER

URL = re.compile(r"monitor of \S+ at (http://\S+?)/(?:\?token=(\S+?))?(?:#\S*)?$", re.M)


def get(url: str, headers: Optional[dict[str, str]] = None, method: str = "GET") -> tuple[int, Any]:
    """(status, parsed JSON or text) of a request; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, body, kind = response.status, response.read(), response.headers.get("content-type", "")
    except urllib.error.HTTPError as error:
        status, body, kind = error.code, error.read(), error.headers.get("content-type", "")
    text = body.decode()
    return status, json.loads(text) if "json" in kind else text


class Controller:
    """A controller subprocess running monitor_tasks.CONTROLLER, and its monitor's base URL."""

    def __init__(self, tmp_path: Path, workdir: Optional[Path] = None, port: Optional[int] = 0) -> None:
        """``port=None``: the controller serves no monitor (another one shows its workspace)."""
        self.workdir = workdir or tmp_path / "ws"
        self.gates = tmp_path / "gates"
        self.gates.mkdir()
        self.process = start_controller(
            f"import sys; sys.argv[1:] = [{str(self.workdir)!r}, {str(self.gates)!r}, {str(port)!r}]\n"
            + CONTROLLER,
            tmp_path,
        )
        self.url = ""
        if port is None:
            return
        out = tmp_path / "controller.py.out"

        def url() -> Optional[str]:
            match = URL.search(out.read_text()) if out.exists() else None
            return match.group(1) if match else None

        self.url = str(wait_until(url, what="the monitor's URL on the controller's stderr"))

    def jobs(self, **query: str) -> dict[str, Any]:
        params = "&".join(f"{k}={v}" for k, v in {"experiment": "xp", **query}.items())
        return get(f"{self.url}/api/jobs?{params}")[1]

    def job(self, name: str) -> Optional[dict[str, Any]]:
        for job in self.jobs(tag=f"name={name}")["jobs"]:
            if job["typeid"].endswith("gated"):
                return job
        return None

    def open(self, name: str) -> None:
        (self.gates / name).touch()

    def finish(self) -> None:
        for name in ("a", "d"):
            self.open(name)
        assert self.process.wait(timeout=120) == 0


def running_controller(tmp_path: Path) -> Any:
    """(For a fixture) a controller serving its monitor on a free port; its gated jobs are
    released at the end."""
    ctl = Controller(tmp_path)
    yield ctl
    for name in ("a", "d"):
        ctl.open(name)


def page_token(url: str) -> str:
    """The token that the page of a loopback monitor carries (for its POSTs)."""
    _, page = get(url + "/")
    return re.search(r'name="xpm-token" content="([^"]+)"', page).group(1)


class EventStream:
    """Reads a monitor's server-sent events in a thread; ``messages`` holds the parsed ones."""

    def __init__(self, url: str, headers: Optional[dict[str, str]] = None) -> None:
        request = urllib.request.Request(f"{url}/api/events", headers=headers or {})
        self.response = urllib.request.urlopen(request, timeout=60)
        self.messages: list[dict[str, Any]] = []
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        try:
            for line in self.response:
                if line.startswith(b"data: "):
                    self.messages.append(json.loads(line[6:]))
        except (OSError, ValueError, AttributeError):  # closed by the test (close() races a read)
            pass

    def job_states(self) -> dict[str, str]:
        states = {}
        for message in self.messages:
            for job in message.get("jobs", []):
                states[job["key"]] = job.get("state", "removed")
        return states

    def close(self) -> None:
        """Close the connection (as a closed page does: the server sees the socket close)."""
        try:
            self.response.fp.raw._sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            pass
        self.response.close()


