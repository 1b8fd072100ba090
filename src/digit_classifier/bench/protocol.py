"""What reading a batch from TorchServe's frontend costs a worker, in one process.

The frontend frames a batch as ``b"I"``, then per request its id, its HTTP headers and its
form fields, each a length-prefixed value, each list ending in ``-1``
(``ts.protocol.otf_message_handler``). :func:`frontend_frame` builds that frame;
:func:`read_costs_us` writes it into a socket and reads it back with TorchServe's
``retrieve_msg``, once with TorchServe's own field-by-field reads and once through
:class:`~digit_classifier.runtime.protocol.FrontendReader`, beside the cost of writing the
frame and taking it in one ``recv`` (what any reader pays).
"""

from __future__ import annotations

import logging
import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from ts.protocol import otf_message_handler

from digit_classifier.bench.inference import microseconds_per_call
from digit_classifier.bench.load import CONTENT_TYPE
from digit_classifier.runtime.protocol import FrontendReader

CLIENT_HEADERS = (
    ("Host", "127.0.0.1:8080"),
    ("Accept", "*/*"),
    ("Accept-Encoding", "gzip, deflate"),
    ("User-Agent", "Python/3.11 aiohttp/3.10"),
    ("Content-Length", "700"),
    ("Content-Type", CONTENT_TYPE),
)
"""The headers the benchmark's aiohttp client sends, which the frontend passes on."""

END = struct.pack("!i", -1)


def _field(value: bytes) -> bytes:
    return struct.pack("!i", len(value)) + value


def frontend_frame(
    payloads: Sequence[bytes], headers: Sequence[tuple[str, str]] = CLIENT_HEADERS, name: str = "file"
) -> bytes:
    """A batch of PNG uploads (form field ``name``) as the frontend sends it to a worker."""
    frame = b"I"
    for number, payload in enumerate(payloads):
        frame += _field(f"request-{number:04d}-0000-0000-0000".encode())
        frame += b"".join(_field(key.encode()) + _field(value.encode()) for key, value in headers) + END
        frame += _field(name.encode()) + _field(b"image/png") + _field(payload) + END
    return frame + END


@contextmanager
def _quiet_worker_log() -> Iterator[None]:
    """``retrieve_msg`` logs a line per batch, which the handler drops (``drop_batch_log_lines``)."""
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def read_costs_us(payloads: Sequence[bytes], seconds: float) -> dict[str, float]:
    """Microseconds per batch of ``payloads``: writing its frame and reading it back."""
    frame = frontend_frame(payloads)
    front, worker = socket.socketpair()
    stock = otf_message_handler._retrieve_buffer

    def read_with(reader: Callable[[socket.socket, int], bytearray]) -> Callable[[], object]:
        def write_and_read() -> object:
            front.sendall(frame)
            otf_message_handler._retrieve_buffer = reader
            try:
                return otf_message_handler.retrieve_msg(worker)
            finally:
                otf_message_handler._retrieve_buffer = stock

        return write_and_read

    def write_and_take() -> None:
        front.sendall(frame)
        worker.recv(len(frame), socket.MSG_WAITALL)

    with front, worker, _quiet_worker_log():
        costs = {
            "write_and_one_recv_us": microseconds_per_call(write_and_take, seconds),
            "torchserve_read_us": microseconds_per_call(read_with(stock), seconds),
            "buffered_read_us": microseconds_per_call(read_with(FrontendReader()), seconds),
        }
    return {"batch": len(payloads), "frame_bytes": len(frame), **{k: round(v, 1) for k, v in costs.items()}}
