"""The analysis pool as a local service (backend/runtime/poolservice.py): the executor interface over a Unix socket, for
this server's processes only, restarted when it dies, gone when stopped."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from multiprocessing.connection import AuthenticationError, Client

import pytest

from backend.runtime.executor import JobResult, ServerBusy
from backend.runtime.poolservice import (OWNER_NAME, STATE_DIR_PREFIX, PoolClient, make_state_dir, socket_path,
                                        start_supervisor, state_dir_owner, stop_supervisor,
                                        sweep_abandoned_state_dirs)
from tests import synth
from tests.servers import GunicornServer, children, process_cmdline, service_of


@pytest.fixture
def service(tmp_path):
    supervisor = start_supervisor(str(tmp_path), workers=1, queue_depth=1, timeout=60.0)
    client = PoolClient(str(tmp_path), timeout=60.0)
    client.start(wait=True)
    yield supervisor, client
    stop_supervisor(supervisor)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return not open(f"/proc/{pid}/stat").read().split()[2] == "Z"


@pytest.mark.slow
def test_runs_an_analysis_and_reports_its_pool(service, tmp_path):
    _, client = service
    job = client.run(synth.wav_bytes(synth.click_track(100, 8.0)), 30.0)
    assert isinstance(job, JobResult) and abs(job.result["bpm"] - 100) < 1
    assert client.workers_alive() == 1 and client.pending() == 0
    assert oct(os.stat(socket_path(tmp_path)).st_mode & 0o777) == "0o600"


@pytest.mark.slow
def test_a_peer_without_the_key_is_refused_and_service_goes_on(service, tmp_path):
    _, client = service
    with pytest.raises((AuthenticationError, EOFError, ConnectionError)):
        Client(socket_path(tmp_path), family="AF_UNIX", authkey=b"guess")
    assert client.workers_alive() == 1


@pytest.mark.slow
def test_the_bound_is_the_whole_servers(service):
    _, client = service
    clip = synth.wav_bytes(synth.song(120, "E", "minor", seconds=20.0))
    errors = []

    def run():
        try:
            PoolClient(client.state_dir, timeout=60.0).run(clip, 30.0)
        except ServerBusy as error:
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert errors and errors[0].retry_after  # 1 running + 1 waiting admitted; the rest told to come back


@pytest.mark.slow
def test_restarted_after_a_kill_and_stopped_with_its_group(service):
    supervisor, client = service
    old_service = service_of(supervisor)
    os.kill(old_service, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while client.workers_alive() == 0:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert service_of(supervisor) != old_service
    everything = [supervisor, *children(supervisor)]
    everything += [pid for pid in list(everything) for pid in children(pid)]
    stop_supervisor(supervisor)
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in everything) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in everything)


# -- the shared-state folder outlives no server --------------------------------------------------------------------

def _dead_pid() -> int:
    finished = subprocess.Popen([sys.executable, "-c", "pass"])
    finished.wait()
    return finished.pid


def test_sweep_removes_only_folders_whose_owner_process_is_dead(tmp_path):
    abandoned = Path(make_state_dir(str(tmp_path)))
    (abandoned / OWNER_NAME).write_text(str(_dead_pid()))
    (abandoned / "metrics").mkdir()
    running = Path(make_state_dir(str(tmp_path)))  # owned by this live process
    chosen = tmp_path / (STATE_DIR_PREFIX + "operator")  # no owner file: the operator's own folder
    chosen.mkdir()
    unrelated = tmp_path / "something-else"
    unrelated.mkdir()
    (unrelated / OWNER_NAME).write_text(str(_dead_pid()))

    assert sweep_abandoned_state_dirs(str(tmp_path)) == [str(abandoned)]
    assert not abandoned.exists()
    assert running.exists() and chosen.exists() and unrelated.exists()


@pytest.mark.slow
def test_killing_gunicorns_master_with_sigkill_leaves_no_shared_state_folder(tmp_path):
    server = GunicornServer(tmp_path)
    try:
        supervisor = [pid for pid in children(server.process.pid)
                      if "backend.runtime.poolservice" in process_cmdline(pid)][0]
        state_dir = Path(process_cmdline(supervisor).split()[-4])
        assert state_dir.is_dir() and state_dir_owner(state_dir) == server.process.pid
        group = [supervisor, *children(supervisor)]
        os.kill(server.process.pid, signal.SIGKILL)
        server.process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (state_dir.exists() or any(_alive(pid) for pid in group)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not state_dir.exists()
        assert not any(_alive(pid) for pid in group)  # the pool went with it
    finally:
        server.stop()
