"""Process tools: who is in a server's process tree, its CPU seconds and RSS per role (from /proc), and stopping
it. Used by the load benchmark and by tests/servers.py."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Any


def stop_process(process: subprocess.Popen | None) -> None:
    """SIGTERM the process group, then SIGKILL it if it has not exited within 30 s."""
    if process is None or process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def children(pid: int) -> list[int]:
    """Direct child processes of `pid`, over all its threads (Linux /proc)."""
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as f:
                kids.extend(int(x) for x in f.read().split())
    except OSError:
        pass
    return kids


def _status_kb(pid: int, field: str) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def process_cmdline(pid: int) -> str:
    """The command line of a process (empty once it is gone); tests/servers.py uses it too."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc/<pid>/stat."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _role(pid: int, depth: int, single: bool) -> str:
    """Who a process of the server's tree is: master -> HTTP workers, and master -> pool supervisor -> analysis
    service -> pool workers (backend/runtime/poolservice.py)."""
    if single:
        return "naive server"
    if depth == 0:
        return "gunicorn master"
    command = process_cmdline(pid)
    if "resource_tracker" in command:
        return "multiprocessing resource tracker"
    if "backend.runtime.poolservice" in command:
        return "analysis pool supervisor"
    if "spawn_main" not in command:
        return "gunicorn HTTP worker"
    return "analysis service" if depth == 2 else "analysis pool worker"


def process_tree(root_pid: int) -> list[tuple[int, int]]:
    """(pid, depth) of a process and all its descendants."""
    out, level = [], [(root_pid, 0)]
    while level:
        out.extend(level)
        level = [(child, depth + 1) for pid, depth in level for child in children(pid)]
    return out


class CpuMeter:
    """CPU seconds used by a server's process tree (per role) and by this process (the load generator)."""

    def __init__(self, root_pid: int, single: bool = False):
        self.root_pid, self.single = root_pid, single

    def snapshot(self) -> tuple[dict[int, tuple[str, float]], float]:
        procs = {}
        for pid, depth in process_tree(self.root_pid):
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                procs[pid] = (_role(pid, depth, self.single), cpu)
        return procs, time.process_time()

    @staticmethod
    def delta(before, after) -> dict[str, float]:
        roles: dict[str, float] = {}
        for pid, (role, cpu) in after[0].items():
            roles[role] = roles.get(role, 0.0) + cpu - before[0].get(pid, (role, 0.0))[1]
        roles["load generator (this process)"] = after[1] - before[1]
        return {role: round(value, 3) for role, value in roles.items()}

    def run_queue_waits(self) -> dict[int, tuple[str, float]]:
        """Seconds each process of the tree has spent runnable but not running (all its threads), by pid."""
        waits = {}
        for pid, depth in process_tree(self.root_pid):
            wait = run_queue_wait_seconds(pid)
            if wait is not None:
                waits[pid] = (_role(pid, depth, self.single), wait)
        return waits

    @staticmethod
    def wait_delta(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
        roles: dict[str, float] = {}
        for pid, (role, wait) in after.items():
            roles[role] = roles.get(role, 0.0) + wait - before.get(pid, (role, 0.0))[1]
        return {role: round(value, 3) for role, value in roles.items()}


def run_queue_wait_seconds(pid: int) -> float | None:
    """Time all threads of a process spent waiting on a CPU run queue (descheduled while runnable), from
    /proc/<pid>/task/*/schedstat (second field, ns); None if the process is gone or the kernel has no schedstat."""
    total = 0
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return total / 1e9


class RssSampler(threading.Thread):
    """Samples VmRSS (from /proc/<pid>/status) of a server's process tree every 0.2 s; keeps each process's max."""

    def __init__(self, root_pid: int):
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.max_kb: dict[int, int] = {}
        self.roles: dict[int, str] = {}
        self._stop_event = threading.Event()

    def sample(self) -> None:
        for pid, depth in process_tree(self.root_pid):
            kb = _status_kb(pid, "VmRSS")
            if kb is not None:
                self.max_kb[pid] = max(kb, self.max_kb.get(pid, 0))
                self.roles.setdefault(pid, _role(pid, depth, False))

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(0.2)

    def stop(self) -> dict[str, Any]:
        self._stop_event.set()
        self.join(timeout=5)
        by_role: dict[str, list[float]] = {}
        for pid, kb in self.max_kb.items():
            by_role.setdefault(self.roles[pid], []).append(round(kb / 1024, 1))
        return {"max_rss_mb_by_role": by_role,
                "total_max_rss_mb": round(sum(self.max_kb.values()) / 1024, 1)}
