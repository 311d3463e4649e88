"""gunicorn's threaded worker, keeping a keep-alive connection on its thread for the client's next request.

gunicorn's gthread worker hands every kept-alive connection back to its main thread after each response: the main
thread registers the socket with its poller, wakes when the next request arrives, and queues the connection for a
pool thread again. That is three thread wake-ups per request (pool -> main, main on the socket, main -> pool),
and each one waits for the GIL and, on a busy machine, for a CPU: measured under load, the hand-back and the
dispatch each had a p99 of 4-7 ms, and together they were a third of a hit's tail (PERFORMANCE_OPTIMIZATIONS.md,
section 8). Clients that send requests back to back on one connection (a load balancer's upstream keep-alive, a
phone syncing a list) pay them on every request.

`LingeringThreadWorker` answers the next request on the same thread when it arrives within `LINGER_SECONDS` and no
other connection is waiting for a thread; otherwise the connection goes back to the poller exactly as before. A
thread is never kept from a waiting request for longer than that short wait, and a connection that keeps sending
gives its thread up as soon as another connection waits (fairness between connections).
"""
from __future__ import annotations

import collections
import select

from gunicorn.workers.gthread import ThreadWorker

LINGER_SECONDS = 0.002  # covers a client's turnaround on loopback or a LAN; a longer one only holds idle threads


class LingeringThreadWorker(ThreadWorker):
    """gthread, plus: the thread that answered a keep-alive request waits briefly for the next one itself."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One token per connection queued for a pool thread and not yet picked up (deque: atomic append/pop).
        self._queued: collections.deque[None] = collections.deque()

    def enqueue_req(self, conn):
        self._queued.append(None)
        super().enqueue_req(conn)

    def handle(self, conn):
        try:
            self._queued.pop()
        except IndexError:
            pass
        keep = super().handle(conn)
        while keep is True and self._next_request_here(conn):
            keep = super().handle(conn)
        return keep

    def _next_request_here(self, conn) -> bool:
        """Whether this thread should read the connection's next request now (else it goes back to the poller)."""
        if not self.alive or self._queued or conn.is_http2 or self.cfg.is_ssl:
            return False  # stopping, another connection waits, or a protocol whose buffering poll cannot see
        if conn.parser.unreader.buf.getvalue():
            return True  # the client already sent it (pipelined), and it was read with the last body
        poller = select.poll()
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(LINGER_SECONDS * 1000))
