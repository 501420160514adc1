"""Who may use the monitor: the access token, the cookie that carries it, and checks on POSTs.

* Bound to a loopback address, the monitor answers any local request whose ``Host`` header names a
  loopback address (a web page elsewhere cannot reach it through DNS rebinding).
* Bound beyond (``--host 0.0.0.0``), every request, the live stream included, needs the token: the
  URL printed on start carries it (``?token=...``), which the monitor turns into a cookie (and
  redirects to the URL without it).
* Every POST (an action) needs the token in the ``X-XPM-Token`` header, whatever the binding: the
  page reads it from its own HTML, which another site's page cannot, so a forged cross-site form or
  request is refused (CSRF).
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]

#: The header that carries the token on POSTs.
TOKEN_HEADER = "x-xpm-token"


def new_token() -> str:
    """A fresh access token (URL-safe, 192 bits)."""
    return secrets.token_urlsafe(24)


def is_loopback(host: str) -> bool:
    """Whether binding to ``host`` keeps the monitor on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The host of a ``Host`` header, without its port."""
    if header.startswith("["):
        return header[1 : header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


class TokenGate:
    """ASGI middleware applying the rules of this module."""

    def __init__(self, app: ASGIApp, token: str, require_token: bool, port: int) -> None:
        self.app = app
        self.token = token
        self.require_token = require_token
        #: Cookies are per host, not per port: the name tells two monitors of one host apart.
        self.cookie = f"xpm_token_{port}"

    def _valid(self, value: str) -> bool:
        return bool(value) and secrets.compare_digest(value.encode(), self.token.encode())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response: Any = None
        if not self.require_token:
            host = _host_name(request.headers.get("host", ""))
            if not is_loopback(host):
                response = PlainTextResponse(
                    f"refused: this monitor serves only local pages (Host {host!r}); open it as "
                    f"http://127.0.0.1:{scope['server'][1] if scope.get('server') else ''}/",
                    status_code=403,
                )
        elif not self._valid(request.cookies.get(self.cookie, "")):
            given = request.query_params.get("token", "")
            if self._valid(given) and request.method == "GET":
                query = urlencode([(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode())
                                   if k != "token"])
                response = RedirectResponse(request.url.path + (f"?{query}" if query else ""), 303)
                response.set_cookie(self.cookie, self.token, httponly=True, samesite="strict")
            else:
                response = PlainTextResponse(
                    "refused: this monitor needs its access token; open the URL printed when it "
                    "started (it ends with ?token=...)",
                    status_code=403,
                )
        if response is None and request.method not in ("GET", "HEAD"):
            if not self._valid(request.headers.get(TOKEN_HEADER, "")):
                response = PlainTextResponse(
                    f"refused: an action needs the monitor's token in the {TOKEN_HEADER} header",
                    status_code=403,
                )
        if response is not None:
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


__all__ = ["TOKEN_HEADER", "TokenGate", "is_loopback", "new_token"]
