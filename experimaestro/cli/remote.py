"""The remote halves of the SSH connector's transfers, run on the remote host over one channel.

``experimaestro sync-send ROOT`` reads a sync request on stdin and writes the tar stream of the
folder ``ROOT`` on stdout (:mod:`experimaestro.connectors.sync`); ``experimaestro sync-receive ROOT``
is the other way round (request on stdout, tar on stdin, merged into ``ROOT``); ``experimaestro stage-receive
WORKSPACE`` receives the user's code into the workspace's code store
(:mod:`experimaestro.connectors.staging`). Neither is meant to be typed by a user (hidden from
``--help``). Errors go to stderr, with exit code 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import IO, Callable

import click

from ..connectors.staging import StagingError, serve_stage
from ..connectors.sync import SyncError, serve_receive, serve_send


def _serve(serve: Callable[[Path, IO[bytes], IO[bytes]], object], path: Path) -> None:
    """Run a remote half on stdin and stdout; its errors as a message on stderr, exit code 1."""
    try:
        serve(path, sys.stdin.buffer, sys.stdout.buffer)
    except (SyncError, StagingError, OSError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("sync-send", hidden=True)
@click.argument("root", type=click.Path(path_type=Path))
def sync_send(root: Path) -> None:
    """Send the changed files of ROOT as a tar stream (request on stdin, tar on stdout)."""
    _serve(serve_send, root)


@click.command("sync-receive", hidden=True)
@click.argument("root", type=click.Path(path_type=Path))
def sync_receive(root: Path) -> None:
    """Merge a tar stream into ROOT (request on stdout, tar on stdin): ``copy_from_local``."""
    _serve(serve_receive, root)


@click.command("stage-receive", hidden=True)
@click.argument("workspace", type=click.Path(path_type=Path))
def stage_receive(workspace: Path) -> None:
    """Receive a snapshot of the user's code into WORKSPACE's code store (stdin/stdout)."""
    _serve(serve_stage, workspace)
