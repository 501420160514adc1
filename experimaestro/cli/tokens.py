"""``experimaestro tokens list``: the counter tokens of a workspace, their totals and holders (of a
workspace on this machine, or of a remote workspace with ``--host``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click

from .jobs import _workspace_callback, echo_json, format_table
from ..scheduler.tokens import token_rows


@click.group()
def tokens() -> None:
    """Inspect the counter tokens of a workspace."""


def remote_token_rows(host: str, workdir: str, python: str) -> list[dict[str, Any]]:
    """The tokens of the workspace ``workdir`` on ``host`` (read there by the agent)."""
    from ..connectors.agentclient import close_agents
    from ..connectors.ssh import SshConnector
    from ..connectors.sshconnection import ConnectionLost, SshConnectError, close_all

    try:
        connector = SshConnector(host, workspace=workdir, python=python)
        return connector.call("token_list", workspace=workdir)
    except (SshConnectError, ConnectionLost) as exc:
        raise click.ClickException(f"cannot list the tokens on {host}: {exc}") from None
    except ValueError as exc:  # e.g. a relative --workdir
        raise click.ClickException(str(exc)) from None
    finally:
        close_agents()
        close_all()


@tokens.command("list")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), envvar="XPM_WORKDIR",
              default=".", show_envvar=True,
              help="The workspace (the folder given to experiment(...)); with --host, the remote "
                   "workspace (SshConnector(workspace=...)). Default: the current folder.")
@click.option("--host", default=None,
              help="An SSH host (a Host of ~/.ssh/config): list the tokens of the workspace "
                   "--workdir on that host, those created with SshConnector.createtoken.")
@click.option("--python", default="python3", show_default=True,
              help="With --host: the Python on the host that has experimaestro "
                   "(SshConnector(python=...)).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_context
def list_tokens(ctx: click.Context, workdir: Path, host: Optional[str], python: str,
                as_json: bool) -> None:
    """List the tokens: total (edit <workdir>/.experimaestro/tokens/NAME/total to change it
    live), units in use, and the jobs that hold them."""
    if host is None:
        param = next(p for p in ctx.command.params if p.name == "workdir")
        where = str(workdir)
        rows = token_rows(_workspace_callback(ctx, param, workdir).path)
    else:
        where = f"{host}:{workdir}"
        rows = remote_token_rows(host, str(workdir), python)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no tokens in {where}")
        return
    table = []
    for row in rows:
        holders = ", ".join(
            f"{h['job'][:12]}x{h['count']}" + (f" (stale: {h['stale']})" if h["stale"] else "")
            for h in row["holders"]
        )
        total = "?" if row["total"] is None else str(row["total"])
        table.append([row["name"], total, str(row["used"]), holders or "-"])
    click.echo(format_table(["TOKEN", "TOTAL", "USED", "HOLDERS"], table))
