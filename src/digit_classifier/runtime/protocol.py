"""A buffered read of the TorchServe frontend's messages, for the worker that serves us.

TorchServe 0.12's worker reads each batch from the frontend's socket field by field
(``ts.protocol.otf_message_handler._retrieve_buffer``): one ``recv`` system call per length
and per value, about 35 per request with an HTTP client's usual headers. Under load each
of those is a chance for the worker to lose its core to the frontend or the client.
:func:`buffer_frontend_reads` swaps that function for one that takes whatever the socket
holds, up to 64 KiB at a time, and hands the fields out of a buffer: the same bytes in the
same order, in one or two system calls for a batch of small uploads. The upstream project
is archived, so no fix will come from there; ``buffered_frontend_reads: false`` in the
handler section of ``model-config.yaml`` keeps TorchServe's own reads.
"""

from __future__ import annotations

import logging
import socket
import sys
from types import ModuleType

CHUNK = 64 * 1024
"""Bytes asked of the socket at a time (more when one field is larger)."""


class FrontendReader:
    """``_retrieve_buffer(conn, length)`` over a read-ahead buffer of ``conn``.

    The worker reads its socket from one thread and only through this function, so the
    bytes read ahead are always the start of what it asks for next. A new connection (a
    restarted frontend) starts with an empty buffer.
    """

    def __init__(self) -> None:
        self.conn: socket.socket | None = None
        self.buffer = bytearray()
        self.position = 0

    def __call__(self, conn: socket.socket, length: int) -> bytearray:
        if conn is not self.conn:
            self.conn, self.buffer, self.position = conn, bytearray(), 0
        while len(self.buffer) - self.position < length:
            self._fill(conn, length)
        start, self.position = self.position, self.position + length
        return self.buffer[start : self.position]

    def _fill(self, conn: socket.socket, length: int) -> None:
        del self.buffer[: self.position]
        self.position = 0
        chunk = conn.recv(max(CHUNK, length - len(self.buffer)))
        if not chunk:
            logging.info("Frontend disconnected.")
            sys.exit(0)
        self.buffer += chunk


def buffer_frontend_reads(otf_message_handler: ModuleType) -> None:
    """Make this TorchServe worker read the frontend's messages through a :class:`FrontendReader`.

    ``otf_message_handler`` is ``ts.protocol.otf_message_handler`` (passed in, so that the
    runtime imports nothing of TorchServe). Called by the handler as its model loads,
    between two messages, when nothing of the next one has been read yet. Idempotent.
    """
    if not isinstance(otf_message_handler._retrieve_buffer, FrontendReader):
        otf_message_handler._retrieve_buffer = FrontendReader()
