"""Receiving uploaded audio: the body read in large pieces straight into one buffer sized by Content-Length and
hashed (SHA-256) piece by piece as it arrives, so that a repeat upload costs one pass over its bytes, and the
cache lookup needs nothing else. Nothing is decoded here: the bytes reach the decoder only on a cache miss.

Under gunicorn the body is read from the connection's socket with recv_into, past gunicorn's own buffering (which
copies every piece several times over: 4-5 ms of a 488 KB repeat upload's CPU went there). Anything else (another
WSGI server, the test client, a chunked body, a multipart form's file) is read from its stream in large pieces,
with readinto where the stream has it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, BinaryIO

from flask import request
from werkzeug.exceptions import RequestEntityTooLarge

from backend.web.errors import ApiError

PIECE = 1 << 20  # bytes per read when the size is unknown


@dataclass(frozen=True)
class ReceivedAudio:
    """Uploaded bytes and their SHA-256 (hex). `data` is the receive buffer itself (no copy)."""

    data: bytearray
    sha256: str

    def __len__(self) -> int:
        return len(self.data)


def receive_body(max_bytes: int) -> ReceivedAudio:
    """The request body, hashed while it is received; 413 past `max_bytes`, 400 if the client stops half-way."""
    length = request.content_length
    if length is not None and length > max_bytes:
        raise RequestEntityTooLarge()
    if length:
        direct = _gunicorn_body_source(request.environ, length)
        if direct is not None:
            return _receive_from_socket(*direct, length)
    return receive_stream(request.stream, max_bytes, size_hint=length)


def receive_stream(stream: BinaryIO, max_bytes: int, *, size_hint: int | None = None) -> ReceivedAudio:
    """Everything `stream` holds, hashed while read: into one buffer of `size_hint` bytes when the size is known
    (readinto, no copy), else appended piece by piece; 413 past `max_bytes`."""
    digest = hashlib.sha256()
    if size_hint:
        buffer = bytearray(size_hint)
        view = memoryview(buffer)
        filled = 0
        readinto = getattr(stream, "readinto", None)
        while filled < size_hint:
            if readinto is not None:
                count = readinto(view[filled:])
            else:
                piece = stream.read(size_hint - filled)
                count = len(piece)
                view[filled:filled + count] = piece
            if not count:
                break
            digest.update(view[filled:filled + count])
            filled += count
        if filled < size_hint:
            raise ApiError(400, "incomplete_body", "The request body ended before its Content-Length.")
        if stream.read(1):  # more than announced (a multipart file is measured before it is read)
            raise RequestEntityTooLarge()
        return ReceivedAudio(buffer, digest.hexdigest())
    buffer = bytearray()
    while True:
        piece = stream.read(PIECE)
        if not piece:
            break
        buffer += piece
        digest.update(piece)
        if len(buffer) > max_bytes:
            raise RequestEntityTooLarge()
    return ReceivedAudio(buffer, digest.hexdigest())


def receive_file(upload: Any, max_bytes: int) -> ReceivedAudio:
    """A multipart form's file (werkzeug FileStorage, already spooled by the form parser), hashed while read."""
    stream = upload.stream
    try:
        size = stream.seek(0, 2)
        stream.seek(0)
    except (AttributeError, OSError, ValueError):
        size = None
    if size is not None and size > max_bytes:
        raise RequestEntityTooLarge()
    return receive_stream(stream, max_bytes, size_hint=size)


def _gunicorn_body_source(environ: dict[str, Any], length: int):
    """(socket, bytes gunicorn already read past the headers) when this is gunicorn's untouched body of a known
    length on a plain socket; else None (the caller reads the stream instead)."""
    sock = environ.get("gunicorn.socket")
    stream = environ.get("wsgi.input")
    if sock is None or stream is None:
        return None
    try:
        from gunicorn.http.body import Body, LengthReader
        from gunicorn.http.unreader import SocketUnreader
    except ImportError:
        return None
    reader = getattr(stream, "reader", None)
    if not (type(stream) is Body and type(reader) is LengthReader and type(reader.unreader) is SocketUnreader
            and reader.length == length and stream.buf.tell() == 0 and reader.unreader.sock is sock
            and sock.gettimeout() is None):
        return None
    early = reader.unreader.take_buffered()
    if len(early) > length:  # the next pipelined request began in the same read: give it back
        reader.unreader.unread(early[length:])
        early = early[:length]
    reader.length = 0  # the body is ours now: gunicorn must not read (or skip) it again
    return sock, early


def _receive_from_socket(sock, early: bytes, length: int) -> ReceivedAudio:
    buffer = bytearray(length)
    view = memoryview(buffer)
    digest = hashlib.sha256(early)
    view[:len(early)] = early
    filled = len(early)
    while filled < length:
        count = sock.recv_into(view[filled:], length - filled)
        if not count:
            raise ApiError(400, "incomplete_body", "The request body ended before its Content-Length.")
        digest.update(view[filled:filled + count])
        filled += count
    return ReceivedAudio(buffer, digest.hexdigest())
