"""The worker's buffered read of the frontend's messages gives what TorchServe's own read gives."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

import pytest
from ts.protocol import otf_message_handler

from digit_classifier.bench.protocol import frontend_frame
from digit_classifier.runtime.protocol import CHUNK, FrontendReader, buffer_frontend_reads

HEADERS = [("Host", "127.0.0.1:8080"), ("Content-Type", "multipart/form-data; boundary=x"), ("Empty", "")]

MESSAGES = [
    frontend_frame([b"\x89PNG small", b"", bytes(range(256)) * 3], HEADERS),
    frontend_frame([bytes(3 * CHUNK + 17)], HEADERS, name="data"),
    frontend_frame([b"one"], []),
]


@pytest.fixture()
def frontend() -> Iterator[socket.socket]:
    """The worker's end of a socket whose other end writes ``MESSAGES`` in odd-sized pieces."""
    worker, front = socket.socketpair()
    stream = b"".join(MESSAGES)

    def write() -> None:
        with front, contextlib.suppress(OSError):
            for start in range(0, len(stream), 1000):
                front.sendall(stream[start : start + 1000])

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    yield worker
    worker.close()
    writer.join(timeout=10)


def expected() -> list[tuple[bytes, list[dict]]]:
    """``MESSAGES`` as TorchServe's own reader parses them."""
    worker, front = socket.socketpair()
    writer = threading.Thread(target=lambda: (front.sendall(b"".join(MESSAGES)), front.close()), daemon=True)
    writer.start()
    try:
        return [otf_message_handler.retrieve_msg(worker) for _ in MESSAGES]
    finally:
        writer.join(timeout=10)
        worker.close()


def test_buffered_read_parses_what_torchserve_parses(
    frontend: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = expected()
    monkeypatch.setattr(otf_message_handler, "_retrieve_buffer", otf_message_handler._retrieve_buffer)
    buffer_frontend_reads(otf_message_handler)
    buffer_frontend_reads(otf_message_handler)
    assert isinstance(otf_message_handler._retrieve_buffer, FrontendReader)
    received = [otf_message_handler.retrieve_msg(frontend) for _ in MESSAGES]
    assert received == reference
    assert received[1][1][0]["parameters"][0]["value"] == bytes(3 * CHUNK + 17)
    assert received[0][1][1]["parameters"][0]["value"] == b""


def test_a_closed_frontend_ends_the_worker_as_before(frontend: socket.socket) -> None:
    reader = FrontendReader()
    assert reader(frontend, len(b"".join(MESSAGES))) == b"".join(MESSAGES)
    with pytest.raises(SystemExit):
        reader(frontend, 1)


def test_a_new_connection_starts_with_an_empty_buffer(frontend: socket.socket) -> None:
    reader = FrontendReader()
    assert reader(frontend, 1) == b"I"
    other, front = socket.socketpair()
    with other, front:
        front.sendall(b"L")
        assert reader(other, 1) == b"L"
