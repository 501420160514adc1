"""A remote command's stdin and stdout as binary streams over a paramiko connection: the transport
the sync and staging tests (and bench/ssh.py) use, standing for the SSH connector's channel."""

from __future__ import annotations

import contextlib
import shlex
from typing import IO, Iterator, Sequence

import paramiko

from experimaestro.connectors.streams import recv_reader

#: A large channel window keeps a bulk transfer from waiting for window adjustments.
WINDOW = 16 * 2**20


class ExecStreams:
    """Runs commands on one paramiko connection, one channel each (implements ``SyncChannel``)."""

    def __init__(self, client: paramiko.SSHClient, python: str) -> None:
        self.client, self.python = client, python

    @contextlib.contextmanager
    def command(self, argv: Sequence[str]) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
        """``(stdin, stdout)`` of ``argv`` on the remote; raises if it exits with an error."""
        transport = self.client.get_transport()
        assert transport is not None
        channel = transport.open_session(window_size=WINDOW, max_packet_size=2**15)
        try:
            channel.exec_command(shlex.join(argv))
            stdin, stdout = channel.makefile_stdin("wb"), recv_reader(channel.recv)
            yield stdin, stdout
            channel.shutdown_write()
            status = channel.recv_exit_status()
            if status != 0:
                error = channel.makefile_stderr("rb").read().decode(errors="replace")
                raise RuntimeError(f"`{shlex.join(argv)}` failed ({status}): {error.strip()}")
        finally:
            channel.close()

    def sync_streams(self, remote_root: str):
        return self.command([self.python, "-m", "experimaestro", "sync-send", remote_root])

    def stage_streams(self, workspace: str):
        return self.command([self.python, "-m", "experimaestro", "stage-receive", workspace])
