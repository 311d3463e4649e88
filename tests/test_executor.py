"""The executor under stress: bounded queue, single flight, a killed worker, the per-analysis time limit."""
from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from backend.runtime.claims import SingleFlight
from backend.runtime.executor import AnalysisExecutor, ServerBusy, WorkerCrashed, run_analysis_job_with_limit
from tests import synth
from tests.conftest import SR
from tests.test_api_analyze import post_audio


def _wait_until(predicate, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_full_queue_answers_server_busy_at_once():
    executor = AnalysisExecutor(workers=0, queue_depth=1, timeout=30)  # room for 2 analyses in all
    release = threading.Event()
    holders = [threading.Thread(target=executor.call, args=(release.wait, 30)) for _ in range(2)]
    for thread in holders:
        thread.start()
    _wait_until(lambda: executor.pending() == 2)
    started = time.monotonic()
    with pytest.raises(ServerBusy) as refused:
        executor.call(time.sleep, 0)
    assert time.monotonic() - started < 1.0
    assert refused.value.retry_after >= 1
    release.set()
    for thread in holders:
        thread.join()
    assert executor.call(sum, [1, 2]) == 3   # room again once the queue drains
    executor.shutdown()


def test_busy_server_answers_503_json_with_retry_after(make_app, song_120_a_minor):
    app = make_app(queue_depth=1)
    executor = app.extensions["essentia"].executor
    release = threading.Event()
    holders = [threading.Thread(target=executor.call, args=(release.wait, 30)) for _ in range(2)]
    for thread in holders:
        thread.start()
    _wait_until(lambda: executor.pending() == 2)
    response = post_audio(app.test_client(), song_120_a_minor)
    release.set()
    for thread in holders:
        thread.join()
    assert response.status_code == 503
    assert response.get_json()["error"] == "server_busy"
    assert int(response.headers["Retry-After"]) >= 1
    assert app.test_client().get("/cache").get_json() == []


def test_concurrent_requests_for_the_same_audio_share_one_analysis(make_app, song_120_a_minor):
    app = make_app()
    executor = app.extensions["essentia"].executor
    results = []
    barrier = threading.Barrier(16)

    def request():
        client = app.test_client()
        barrier.wait()
        results.append(post_audio(client, song_120_a_minor).get_json())

    threads = [threading.Thread(target=request) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert executor.completed == 1
    assert len({body["id"] for body in results}) == 1
    assert sum(not body["cached"] for body in results) == 1
    stats = app.test_client().get("/stats").get_json()
    assert stats["cache_misses"] == 1 and stats["cache_hits"] == 15


def test_single_flight_shares_errors_and_frees_the_key():
    flights = SingleFlight()
    with pytest.raises(ValueError):
        flights.do("k", lambda: (_ for _ in ()).throw(ValueError("boom")))
    assert flights.do("k", lambda: 7) == (7, False)


@pytest.mark.slow
def test_killed_worker_fails_only_its_request_and_the_pool_recovers():
    executor = AnalysisExecutor(workers=1, queue_depth=4, timeout=60)
    executor.start(wait=True)
    outcome = {}

    def doomed():
        try:
            executor.call(time.sleep, 30)
        except WorkerCrashed as error:
            outcome["error"] = error

    thread = threading.Thread(target=doomed)
    thread.start()
    _wait_until(lambda: executor.pending() == 1)
    time.sleep(0.3)  # let the worker pick the job up
    for pid in list(executor._pool._processes):
        os.kill(pid, signal.SIGKILL)
    thread.join(timeout=30)
    assert isinstance(outcome.get("error"), WorkerCrashed)
    assert outcome["error"].status == 503

    data = synth.wav_bytes(synth.song(100, "G", "major", seconds=6, sr=SR), SR)
    job = executor.run(data, 30.0)
    assert job["ok"] and job["result"]["key"] == "G Major"
    executor.shutdown()


def test_analysis_that_runs_too_long_is_cut_off_with_a_clear_error(monkeypatch):
    import backend.runtime.executor as executor_module

    def slow(data, window):
        time.sleep(5)
        return {"ok": True}

    monkeypatch.setattr(executor_module, "run_analysis_job", slow)
    started = time.monotonic()
    job = run_analysis_job_with_limit(b"...", 30.0, 0.2)  # pytest runs tests on the main thread, like a pool worker
    assert time.monotonic() - started < 2
    assert job == {**job, "ok": False, "status": 422, "code": "analysis_timeout"}
    assert "cut off" in job["message"]


def _blas_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [pool["num_threads"] for pool in threadpool_info() if pool.get("user_api") == "blas"]


@pytest.mark.slow
def test_pool_workers_use_one_math_thread_each():
    """Each pool process is one core's worth of work: its BLAS must not start a thread per core as well."""
    executor = AnalysisExecutor(workers=1, queue_depth=1, timeout=60)
    try:
        threads = executor.call(_blas_threads)
    finally:
        executor.shutdown()
    assert threads and all(count == 1 for count in threads), threads
