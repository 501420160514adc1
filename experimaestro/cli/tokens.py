"""``experimaestro tokens list``: the counter tokens of a workspace, their totals and holders."""

from __future__ import annotations

from typing import Any

import click

from .jobs import echo_json, format_table, workdir_option
from ..scheduler.tokens import CounterToken, TokenStore
from ..scheduler.workspace import Workspace


def token_rows(workspace: Workspace) -> list[dict[str, Any]]:
    """Each token of the workspace: name, total (from its file), units in use, and holders.

    Read only: nothing is written or reclaimed (a stale holder is shown with the reason).
    """
    root = workspace.private / "tokens"
    rows = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
        # Only reading methods are used: the placeholder total (1) is never written.
        store = TokenStore(directory, CounterToken(directory.name, 1))
        try:
            total: Any = int(store.total_path.read_text().strip())
        except (OSError, ValueError):
            total = None
        holders = []
        for holder in store.holders():
            stale = holder.stale_reason()
            holders.append(
                {"job": holder.key, "count": holder.count, "controller": holder.controller_pid,
                 "stale": stale}
            )
        used = sum(h["count"] for h in holders if h["stale"] is None)
        rows.append({"name": directory.name, "total": total, "used": used, "holders": holders})
    return rows


@click.group()
def tokens() -> None:
    """Inspect the counter tokens of a workspace."""


@tokens.command("list")
@workdir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
def list_tokens(workspace: Workspace, as_json: bool) -> None:
    """List the tokens: total (edit <workdir>/.experimaestro/tokens/NAME/total to change it
    live), units in use, and the jobs that hold them."""
    rows = token_rows(workspace)
    if as_json:
        echo_json(rows)
        return
    if not rows:
        click.echo(f"no tokens in {workspace.path}")
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
