"""The HTTP worker (backend/web/httpworker.py) under a real gunicorn with gunicorn.conf.py: a keep-alive
connection's next request is answered on the thread that answered the last one when it comes at once, without
starving other connections, and a connection that waits goes back to gunicorn's poller as before."""
from __future__ import annotations

import http.client
import socket
import threading
import time

import pytest

from tests.servers import GunicornServer


@pytest.fixture
def one_thread(tmp_path):
    """One HTTP process with one thread: whatever one connection holds, every other connection waits for."""
    instance = GunicornServer(tmp_path, ESSENTIA_HTTP_WORKERS="1", ESSENTIA_HTTP_THREADS="1")
    yield instance
    instance.stop()


class ResponseReader:
    """Complete HTTP responses (heads and Content-Length bodies) off a raw socket, one at a time."""

    def __init__(self, sock: socket.socket):
        self.sock, self.data = sock, b""

    def next(self) -> bytes:
        while True:
            head_end = self.data.find(b"\r\n\r\n")
            if head_end >= 0:
                head = self.data[:head_end].decode("latin-1")
                length = next(int(line.split(":", 1)[1]) for line in head.split("\r\n")
                              if line.lower().startswith("content-length:"))
                if len(self.data) >= head_end + 4 + length:
                    response, self.data = self.data[:head_end + 4 + length], self.data[head_end + 4 + length:]
                    return response
            piece = self.sock.recv(65536)
            assert piece, "the server closed the connection"
            self.data += piece


@pytest.mark.slow
def test_pipelined_requests_are_answered_in_order_on_one_connection(one_thread):
    requests = b"".join(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: req-{i}\r\n\r\n".encode()
                        for i in range(3))
    with socket.create_connection(("127.0.0.1", one_thread.port), timeout=30) as sock:
        sock.sendall(requests)  # all three in one segment: the second and third are read ahead with the first
        reader = ResponseReader(sock)
        responses = [reader.next() for _ in range(3)]
    for i, response in enumerate(responses):
        assert response.startswith(b"HTTP/1.1 200")
        assert f"X-Request-ID: req-{i}\r\n".encode() in response


@pytest.mark.slow
def test_a_connection_that_pauses_is_still_answered(one_thread):
    conn = http.client.HTTPConnection("127.0.0.1", one_thread.port, timeout=30)
    try:
        for pause in (0.0, 0.05, 0.3):  # at once, then longer than the worker waits on its thread
            time.sleep(pause)
            conn.request("GET", "/health")
            response = conn.getresponse()
            assert response.status == 200 and response.read()
    finally:
        conn.close()


@pytest.mark.slow
def test_a_busy_connection_does_not_starve_another(one_thread):
    """While one connection sends requests back to back, another's request is answered in well under a second
    (the thread leaves the busy connection as soon as another waits)."""
    stop = threading.Event()
    answered = []

    def hammer() -> None:
        request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        with socket.create_connection(("127.0.0.1", one_thread.port), timeout=30) as sock:
            reader = ResponseReader(sock)
            sock.sendall(request * 2)  # always one request ahead: the server never has to wait for the next
            while not stop.is_set():
                answered.append(reader.next()[:12])
                sock.sendall(request)

    busy = threading.Thread(target=hammer)
    busy.start()
    try:
        deadline = time.monotonic() + 10
        while len(answered) < 50 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(answered) >= 50, "the busy connection is not being answered"
        started = time.monotonic()
        status, _, body = one_thread.request("GET", "/health", timeout=30)
        waited = time.monotonic() - started
    finally:
        stop.set()
        busy.join(timeout=30)
    assert status == 200 and body["status"] == "healthy"
    assert waited < 1.0, f"the other connection waited {waited:.2f} s behind the busy one"
    assert set(answered) == {b"HTTP/1.1 200"}
