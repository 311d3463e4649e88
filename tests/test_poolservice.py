"""The analysis pool as a local service (backend/runtime/poolservice.py): the executor interface over a Unix socket, for
this server's processes only, restarted when it dies, gone when stopped."""
from __future__ import annotations

import os
import signal
import threading
import time
from multiprocessing.connection import AuthenticationError, Client

import pytest

from backend.runtime.executor import ServerBusy
from backend.runtime.poolservice import PoolClient, socket_path, start_supervisor, stop_supervisor
from tests import synth
from tests.servers import children, service_of


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
    assert job["ok"] and abs(job["result"]["bpm"] - 100) < 1
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
