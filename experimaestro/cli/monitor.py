"""``experimaestro monitor``: serve the web monitor of a whole workspace, from its job folders alone.

Registered in ``cli/__init__.py`` with ``main.add_command(monitor)``.
"""

from __future__ import annotations

from typing import Optional

import click

from .jobs import workdir_option
from ..scheduler.workspace import Workspace


@click.command("monitor")
@workdir_option
@click.option("--port", type=int, default=12345, show_default=True,
              help="The port to serve on (0: a free one).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="The address to bind. Beyond loopback (e.g. 0.0.0.0), the page needs the access "
                   "token printed on start.")
@click.option("--token", envvar="XPM_MONITOR_TOKEN", show_envvar=True,
              help="The access token (default: a new random one).")
def monitor(workspace: Workspace, port: int, host: str, token: Optional[str]) -> None:
    """Serve a web page showing the experiments and jobs of a workspace, live (Ctrl-C stops it).

    On a remote machine, keep the default host and open an SSH tunnel
    (ssh -L 12345:127.0.0.1:12345 HOST), or use --host 0.0.0.0 and the URL printed, token included.
    """
    from ..monitor import MonitorError, serve_workspace

    try:
        server = serve_workspace(workspace.path, port=port, host=host, token=token)
    except MonitorError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"experimaestro monitor of {workspace.path}: {server.url}", err=True)
    if server.require_token:
        click.echo("(the token in this URL is needed: keep it private)", err=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        click.echo("monitor stopped", err=True)


__all__ = ["monitor"]
