"""Binary streams over a socket-like ``recv``: fast reads for the bulk transfers (sync, staging).

A paramiko channel's ``makefile("rb")`` hands out data in small pieces, with locking on every call:
about 14 MB/s when tarfile reads it 10 KB at a time, against more than 100 MB/s for ``recv`` with
large sizes on loopback. :func:`recv_reader` gives a standard :class:`io.BufferedReader` that calls
``recv`` with large sizes and returns as soon as data is there (no read-ahead that would wait for
more than the peer sends). :func:`command_streams` runs a remote command on its own channel of a
paramiko transport and gives its stdin and stdout (what the SSH connector uses for ``sync-send`` and
``stage-receive``).
"""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import threading
from typing import IO, Any, Callable, Iterator, Sequence

#: Default buffer of :func:`recv_reader`.
BUFFER = 1 << 20


class _Recv(io.RawIOBase):
    def __init__(self, recv: Callable[[int], bytes]) -> None:
        self._recv = recv

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:  # type: ignore[override]
        data = self._recv(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def recv_reader(recv: Callable[[int], bytes], buffer_size: int = BUFFER) -> io.BufferedReader:
    """A buffered binary reader over ``recv(n)`` (e.g. ``paramiko.Channel.recv``), which returns
    up to ``n`` bytes as soon as some are there, and ``b""`` at the end."""
    return io.BufferedReader(_Recv(recv), buffer_size)


#: The channel window of :func:`command_streams`: a bulk transfer never waits for window adjustments.
WINDOW = 16 * 2**20


class StreamEnded(Exception):
    """The peer's data ended early or was not what it should be: when the peer is a command that
    failed, :func:`command_streams` raises the command's error instead (its cause)."""


class RemoteCommandError(Exception):
    """A remote command of :func:`command_streams` exited with an error (its stderr in the message)."""


@contextlib.contextmanager
def command_streams(transport: Any, argv: Sequence[str],
                    window: int = WINDOW) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """Run ``argv`` (quoted) on a new channel of a connected ``paramiko.Transport``: ``(its stdin,
    its stdout)``, the latter through :func:`recv_reader`. Leaving the block closes stdin, waits for
    the exit status and raises :class:`RemoteCommandError` if it is not 0 (also when the block fails
    because the channel broke or the data ended early, :class:`StreamEnded`: the command's error is
    the cause then); the channel is closed in every case. E.g. ``[python, "-m", "experimaestro",
    "sync-send", remote_job_folder]``."""
    channel = transport.open_session(window_size=window, max_packet_size=2**15)
    command = shlex.join(argv)
    try:
        channel.exec_command(command)
        try:
            yield channel.makefile_stdin("wb"), recv_reader(channel.recv)
        except (OSError, EOFError, StreamEnded) as exc:
            # The channel broke or the data ended early: if the command failed, its error is the cause.
            if channel.status_event.wait(STATUS_WAIT) and channel.recv_exit_status() != 0:
                raise _failure(channel, command) from exc
            raise
        channel.shutdown_write()
        if channel.recv_exit_status() != 0:
            raise _failure(channel, command)
    finally:
        channel.close()


#: Seconds :func:`command_streams` waits for the exit status of a command whose channel broke.
STATUS_WAIT = 5.0


def _failure(channel: Any, command: str) -> RemoteCommandError:
    status = channel.recv_exit_status()
    error = channel.makefile_stderr("rb").read().decode(errors="replace").strip()
    return RemoteCommandError(f"`{command}` failed on the remote host ({status}): {error}")


@contextlib.contextmanager
def thread_streams(serve: Callable[[IO[bytes], IO[bytes]], Any]) -> Iterator[tuple[IO[bytes], IO[bytes]]]:
    """Run ``serve(its input, its output)`` in a thread over two pipes: ``(to it, from it)``, as a
    remote command's stdin and stdout would be (the remote halves run locally, e.g. for a local
    copy). On leaving, the pipes are closed and the thread joined; an error of ``serve`` is raised
    then, in place of the caller's (the serving side's failure is the cause), unless it is only the
    broken pipe of a caller that stopped reading."""
    request_r, request_w = os.pipe()
    reply_r, reply_w = os.pipe()
    failure: list[BaseException] = []

    def run() -> None:
        try:
            with open(request_r, "rb") as instream, open(reply_w, "wb") as out:
                serve(instream, out)
        except BaseException as exc:  # closing ``out`` can fail too (a broken pipe)
            failure.append(exc)

    thread = threading.Thread(target=run, name="xpm-streams", daemon=True)
    thread.start()
    try:
        with open(request_w, "wb") as to_it, open(reply_r, "rb") as from_it:
            yield to_it, from_it
    except BaseException:
        thread.join()  # the pipes are closed: the thread cannot block any more
        if failure and not isinstance(failure[0], BrokenPipeError):  # else it stopped because we did
            raise failure[0] from None
        raise
    thread.join()
    if failure:
        raise failure[0]
