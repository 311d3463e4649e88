"""One analysis pool for every HTTP process: a small local service that gunicorn's master starts.

Why: with several HTTP processes, a pool in each either runs more analyses at once than there are cores (more
CPU per analysis: section 7 of PERFORMANCE_OPTIMIZATIONS.md) or leaves a core idle while another process's share
is overloaded (a client's keep-alive connections all landed on that process). One
AnalysisExecutor behind a Unix socket keeps one queue, one bound and one set of workers for the whole server.

Processes (gunicorn.conf.py starts the first one):
  supervisor (own session) -> service (AnalysisExecutor, a thread per HTTP connection) -> pool workers
The supervisor starts the service again if it dies, and takes the whole group down when gunicorn stops.

Messages are multiprocessing.connection's: pickles, exchanged only after an HMAC handshake with a key kept in the
server's private state directory (mode 0600), so only this server's own processes can talk to the service.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from multiprocessing.connection import AuthenticationError, Client, Connection, Listener
from pathlib import Path
from typing import Any

from backend.config import PROJECT_ROOT
from backend.runtime.executor import AnalysisExecutor, AnalysisTimeout, ExecutorError, ServerBusy, WorkerCrashed

log = logging.getLogger(__name__)

SOCKET_NAME = "analysis-pool.sock"
KEY_NAME = "analysis-pool.key"
_ERRORS = {cls.__name__: cls for cls in (ExecutorError, ServerBusy, AnalysisTimeout, WorkerCrashed)}


def socket_path(state_dir: str | os.PathLike) -> str:
    return str(Path(state_dir) / SOCKET_NAME)


def write_key(state_dir: str | os.PathLike) -> None:
    path = Path(state_dir) / KEY_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(os.urandom(32))


def read_key(state_dir: str | os.PathLike) -> bytes:
    return (Path(state_dir) / KEY_NAME).read_bytes()


# -- the service side --------------------------------------------------------------------------------------------

def start_supervisor(state_dir: str, *, workers: int, queue_depth: int, timeout: float) -> int:
    """Start the supervisor (from gunicorn's master) and return its pid, which is also its process group.

    A plain subprocess, not a multiprocessing.Process: the master and the workers it forks would otherwise
    each try to join it at exit."""
    write_key(state_dir)
    process = subprocess.Popen([sys.executable, "-m", "backend.runtime.poolservice", state_dir, str(workers),
                                str(queue_depth), str(timeout)], cwd=PROJECT_ROOT, start_new_session=True)
    return process.pid


def stop_supervisor(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGTERM)  # supervisor, service and pool workers: one process group
    except ProcessLookupError:
        pass


STOP_GRACE_SECONDS = 5.0  # how long the service may take to shut its pool down before the group is killed


def supervise(state_dir: str, workers: int, queue_depth: int, timeout: float) -> None:
    # Started in a session of its own (start_new_session), so that stopping gunicorn can take every analysis
    # process down at once with one killpg.
    parent = os.getppid()
    running: list = []
    signal.signal(signal.SIGTERM, lambda *_args: _stop(running))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole terminal group; gunicorn stops us
    context = multiprocessing.get_context("spawn")
    while True:
        service = context.Process(target=serve, args=(state_dir, workers, queue_depth, timeout),
                                  name="essentia-analysis-pool")
        service.start()
        running[:] = [service]
        while service.is_alive():
            service.join(1.0)
            if os.getppid() != parent:  # gunicorn's master is gone without stopping us
                _stop(running)
        log.warning("analysis service exited (code %s); starting it again", service.exitcode)
        time.sleep(0.5)


def _stop(running: list) -> None:
    """Let the service shut its pool down (so it releases what it registered), then end the whole group."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    for service in running:
        service.terminate()
        service.join(STOP_GRACE_SECONDS)
    os.killpg(os.getpgid(0), signal.SIGTERM)  # whatever is left: a pool worker stuck in an analysis
    os._exit(0)


def serve(state_dir: str, workers: int, queue_depth: int, timeout: float) -> None:
    def stop(*_args: Any) -> None:
        raise SystemExit(0)  # unwinds to the finally below, then exits normally (finalizers run)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    executor = AnalysisExecutor(workers=workers, queue_depth=queue_depth, timeout=timeout)
    try:
        executor.start(wait=True)
        address = socket_path(state_dir)
        if os.path.exists(address):
            os.unlink(address)  # left by a service that died
        listener = Listener(address, family="AF_UNIX", authkey=read_key(state_dir))
        os.chmod(address, 0o600)
        while True:
            try:
                connection = listener.accept()
            except (AuthenticationError, OSError, EOFError):
                continue  # a peer without the key, or one that went away during the handshake
            threading.Thread(target=_answer, args=(executor, connection), daemon=True).start()
    finally:
        executor.shutdown()


def _answer(executor: AnalysisExecutor, connection: Connection) -> None:
    """One HTTP thread's connection: requests one after another until it closes."""
    with connection:
        while True:
            try:
                message = connection.recv()
            except (EOFError, OSError):
                return
            try:
                connection.send(_handle(executor, message))
            except (OSError, ValueError):
                return


def _handle(executor: AnalysisExecutor, message: tuple) -> tuple:
    if message[0] == "run":
        try:
            return ("result", executor.run(message[1], message[2]))
        except ExecutorError as error:
            return ("error", type(error).__name__, error.message, error.retry_after)
    if message[0] == "status":
        return ("status", executor.pending(), executor.workers_alive())
    return ("error", "ExecutorError", f"unknown request {message[0]!r}", None)


# -- the HTTP process side ---------------------------------------------------------------------------------------

class PoolClient:
    """The Executor role (backend/roles.py) answered by the host's pool service.
    Each HTTP thread keeps its own connection."""

    STATUS_WAIT = 2.0

    def __init__(self, state_dir: str, *, timeout: float):
        self.state_dir = state_dir
        self.wait_limit = timeout * 3 + 10  # the service's own limits answer first; this only catches a hang
        self._local = threading.local()
        self._key: bytes | None = None

    def _connection(self) -> tuple[Connection, bool]:
        connection = getattr(self._local, "connection", None)
        if connection is not None and getattr(self._local, "pid", None) == os.getpid():
            return connection, True
        if self._key is None:
            self._key = read_key(self.state_dir)
        connection = Client(socket_path(self.state_dir), family="AF_UNIX", authkey=self._key)
        self._local.connection, self._local.pid = connection, os.getpid()
        return connection, False

    def _drop(self) -> None:
        connection = getattr(self._local, "connection", None)
        self._local.connection = None
        if connection is not None:
            try:
                connection.close()
            except OSError:
                pass

    def _ask(self, message: tuple, wait: float) -> tuple:
        while True:
            try:
                connection, reused = self._connection()
            except (OSError, EOFError, AuthenticationError):
                raise ExecutorError("The analysis service is not running; try again shortly.", retry_after=2) from None
            try:
                connection.send(message)
                if not connection.poll(wait):
                    self._drop()
                    raise AnalysisTimeout(f"The server could not finish the analysis within {wait:g} s; try again "
                                          "shortly.", retry_after=5)
                return connection.recv()
            except (OSError, EOFError):
                self._drop()
                if not reused:  # a kept connection may have gone stale (the service restarted): one new try
                    raise ExecutorError("The analysis service stopped while answering; try again shortly.",
                                        retry_after=2) from None

    def run(self, data: bytes, window_seconds: float) -> dict[str, Any]:
        reply = self._ask(("run", data, window_seconds), self.wait_limit)
        if reply[0] == "error":
            raise _ERRORS.get(reply[1], ExecutorError)(reply[2], retry_after=reply[3])
        return reply[1]

    def _status(self) -> tuple[int, int]:
        try:
            reply = self._ask(("status",), self.STATUS_WAIT)
        except ExecutorError:
            return 0, 0
        return reply[1], reply[2]

    def pending(self) -> int:
        return self._status()[0]

    def workers_alive(self) -> int:
        return self._status()[1]

    def start(self, *, wait: bool = True) -> None:
        """Wait (up to 5 minutes) for the service to answer: it warms its workers up before it listens."""
        deadline = time.monotonic() + (300 if wait else 0)
        while self._status()[1] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)

    def shutdown(self) -> None:
        self._drop()


if __name__ == "__main__":  # how start_supervisor runs it: STATE_DIR WORKERS QUEUE_DEPTH TIMEOUT
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    supervise(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
