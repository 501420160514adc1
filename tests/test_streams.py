"""recv_reader (experimaestro/connectors/streams.py): a buffered reader over a socket's recv."""

from __future__ import annotations

import socket
import threading

from experimaestro.connectors.streams import recv_reader


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
