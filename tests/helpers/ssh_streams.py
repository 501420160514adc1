"""The remote halves of sync and staging over a paramiko connection, as the SSH connector runs them
(``experimaestro.connectors.streams.command_streams``): for the tests and bench/ssh.py."""

from __future__ import annotations

from typing import IO, ContextManager, Sequence

import paramiko

from experimaestro.connectors.streams import command_streams

Streams = ContextManager[tuple[IO[bytes], IO[bytes]]]


class ExecStreams:
    """Commands on one paramiko connection, one channel each (a ``SyncChannel``)."""

    def __init__(self, client: paramiko.SSHClient, python: str) -> None:
        self.client, self.python = client, python

    def command(self, argv: Sequence[str]) -> Streams:
        """``(stdin, stdout)`` of ``argv`` on the remote; raises if it exits with an error."""
        return command_streams(self.client.get_transport(), argv)

    def sync_streams(self, remote_root: str) -> Streams:
        return self.command([self.python, "-m", "experimaestro", "sync-send", remote_root])

    def stage_streams(self, workspace: str) -> Streams:
        return self.command([self.python, "-m", "experimaestro", "stage-receive", workspace])
