"""recv_reader (experimaestro/connectors/streams.py): a buffered reader over a socket's recv."""

from __future__ import annotations

import socket
import threading

import pytest

from experimaestro.connectors.streams import recv_reader, thread_streams


def test_reads_what_is_there_without_waiting_for_a_full_buffer() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        reader = recv_reader(ours.recv, buffer_size=1 << 20)
        theirs.sendall(b'{"missing": []}\nrest')
        # The peer keeps the connection open: a reader that filled its whole buffer would block here.
        assert reader.readline() == b'{"missing": []}\n'
        assert reader.read(4) == b"rest"
        def send() -> None:
            theirs.sendall(b"x" * 3_000_000)
            theirs.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        assert reader.read() == b"x" * 3_000_000
        sender.join()
        assert reader.read(10) == b""


def test_thread_streams_raise_the_serving_sides_failure_not_its_consequence() -> None:
    def failing(instream, out) -> None:
        instream.readline()
        raise ValueError("the real cause")

    with pytest.raises(ValueError, match="the real cause"):
        with thread_streams(failing) as (to_it, from_it):
            to_it.write(b"request\n")
            to_it.flush()
            if from_it.read() == b"":  # nothing came back: the caller fails too
                raise EOFError("no answer")

    def chatty(instream, out) -> None:
        while True:
            out.write(b"x" * 65536)

    with pytest.raises(KeyError, match="the caller's own"):  # not the server's broken pipe
        with thread_streams(chatty) as (_, from_it):
            from_it.read(10)
            raise KeyError("the caller's own")
