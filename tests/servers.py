"""A real gunicorn for tests: started with gunicorn.conf.py on a free 127.0.0.1 port with its own database,
talked to over HTTP, and always stopped (its whole process group) afterwards."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmarks.perf_common import free_port
from benchmarks.perf_hits import create_key_cli
from benchmarks.proctools import children, process_cmdline

ROOT = Path(__file__).resolve().parent.parent


def spawned_children(pid: int) -> list[int]:
    """Children started by multiprocessing's spawn, without its resource tracker."""
    return [child for child in children(pid)
            if "spawn_main" in process_cmdline(child) and "resource_tracker" not in process_cmdline(child)]


def service_of(supervisor_pid: int) -> int:
    services = spawned_children(supervisor_pid)
    assert services, "no analysis service"
    return services[0]


class GunicornServer:
    """`python -m gunicorn -c gunicorn.conf.py [APP]` with ESSENTIA_* overrides; waits until /health answers."""

    def __init__(self, tmp_path: Path, *, app: str | None = None, host: str = "127.0.0.1", **env: str):
        self.host = host  # another loopback address (127.0.0.2) stands in for another machine
        self.port = free_port()
        self.db_path = str(tmp_path / "served.db")
        self.base = f"http://{host}:{self.port}"
        self.env = {**os.environ, "ESSENTIA_PORT": str(self.port), "ESSENTIA_HOST": host,
                    "ESSENTIA_DB_PATH": self.db_path, "ESSENTIA_WORKERS": "1", "ESSENTIA_LOG_LEVEL": "WARNING",
                    **env}
        self.log_path = tmp_path / "gunicorn.log"
        self._log = open(self.log_path, "wb")
        command = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *([app] if app else [])]
        self.process = subprocess.Popen(command, cwd=ROOT, env=self.env, stdout=self._log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self.wait_healthy()
        except BaseException:
            self.stop()
            raise

    def create_key(self, name: str, *flags: str) -> str:
        return create_key_cli(self.env, name, *flags)

    def wait_healthy(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.request("GET", "/health", timeout=5)[0] == 200:
                    return
            except OSError:
                pass
            if self.process.poll() is not None:
                break
            time.sleep(0.2)
        pytest.fail("gunicorn did not become healthy:\n" + self.log_path.read_text(errors="replace")[-3000:])

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 120.0) -> tuple[int, dict, object]:
        """One request on a fresh connection: (status, headers, parsed JSON body or None)."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            data = response.read()
            parsed = json.loads(data) if data and response.getheader("Content-Type", "").startswith(
                "application/json") else None
            return response.status, dict(response.getheaders()), parsed
        finally:
            conn.close()

    def http_worker_pids(self) -> list[int]:
        """gunicorn's HTTP worker processes (the master's other children run the analysis pool)."""
        return [pid for pid in children(self.process.pid) if "gunicorn" in process_cmdline(pid)]

    def http_worker_pid(self) -> int:
        workers = self.http_worker_pids()
        assert workers, "no gunicorn worker"
        return workers[0]

    def analysis_service_pid(self) -> int:
        """The process that owns the analysis pool (master -> supervisor -> service -> pool workers)."""
        supervisors = [pid for pid in children(self.process.pid) if "backend.runtime.poolservice" in process_cmdline(pid)]
        assert supervisors, "no analysis pool supervisor"
        return service_of(supervisors[0])

    def analysis_pool_pids(self) -> list[int]:
        return spawned_children(self.analysis_service_pid())

    def stop(self) -> None:
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass
        self._log.close()


class TcpProxy:
    """A TCP relay from a local port to a service (PostgreSQL, Redis) that a test can cut (every connection dropped,
    nothing listening: the service is unreachable) and restore on the same port."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() alone would not
        self._listener.close()
        for sock in self._sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass
        self._sockets = []
