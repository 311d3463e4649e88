"""Runs decoding and analysis off the request threads: a process pool with a bounded queue, a time limit and a
warm-up.

Only bytes go in and plain dicts come out, so nothing of Flask crosses into the workers. The pool is created in
the process that uses it (after gunicorn forks), with the "spawn" start method so a worker never inherits the
server's threads or open database connections.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable

log = logging.getLogger(__name__)


class ExecutorError(Exception):
    """The analysis could not run; carries what the client should be told."""

    status = 503
    code = "analysis_unavailable"

    def __init__(self, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after


class ServerBusy(ExecutorError):
    code = "server_busy"


class AnalysisTimeout(ExecutorError):
    code = "analysis_wait_timeout"


class WorkerCrashed(ExecutorError):
    code = "analysis_worker_crashed"


def run_analysis_job(data: bytes, window_seconds: float) -> dict[str, Any]:
    """Decode `data` and analyze it. Runs in a pool worker; returns a plain dict either way:
    {"ok": True, "result": {...}, "window": {...}, "source": {...}, "seconds": float} or
    {"ok": False, "status": int, "code": str, "message": str}."""
    from backend.analysis import MIN_ANALYSIS_SECONDS, ANALYSIS_SAMPLE_RATE, perform_audio_analysis
    from backend.audio.decode import AudioDecodeError, decode_audio

    started = time.perf_counter()
    try:
        audio = decode_audio(data, target_sr=ANALYSIS_SAMPLE_RATE, window_seconds=window_seconds)
    except AudioDecodeError as error:
        return {"ok": False, "status": error.status, "code": error.code, "message": error.message}
    result = perform_audio_analysis(audio.samples, audio.sample_rate, detail=True)
    if result.too_short:
        return {"ok": False, "status": 422, "code": "audio_too_short",
                "message": f"The audio is {result.duration:.2f} s long; analysis needs at least "
                           f"{MIN_ANALYSIS_SECONDS:g} s."}
    if result.silent:
        return {"ok": False, "status": 422, "code": "silent_audio",
                "message": "The audio has no audible content (digital silence or near it), so it has no tempo "
                           "or key to measure."}
    return {
        "ok": True,
        "result": result.to_dict(),
        "window": {"start": round(audio.window_start, 3), "end": round(audio.window_end, 3),
                   "seconds": round(audio.window_end - audio.window_start, 3)},
        "source": {"format": audio.source_format, "sample_rate": audio.source_sample_rate,
                   "channels": audio.channels,
                   "duration": None if audio.source_duration is None else round(audio.source_duration, 3)},
        "seconds": time.perf_counter() - started,
    }


class _OverTime(Exception):
    pass


def _raise_over_time(signum, frame):
    raise _OverTime()


def run_analysis_job_with_limit(data: bytes, window_seconds: float, time_limit: float) -> dict[str, Any]:
    """run_analysis_job, cut off after `time_limit` seconds of running (not of waiting in the queue).

    In a pool process the job runs on the main thread, so a real-time interval timer can interrupt it and the
    worker survives to take the next job. On a thread (workers=0) signals cannot be used; the caller's wait
    limit is the only bound there.
    """
    if threading.current_thread() is not threading.main_thread() or time_limit <= 0:
        return run_analysis_job(data, window_seconds)
    previous = signal.signal(signal.SIGALRM, _raise_over_time)
    signal.setitimer(signal.ITIMER_REAL, time_limit)
    try:
        return run_analysis_job(data, window_seconds)
    except _OverTime:
        return {"ok": False, "status": 422, "code": "analysis_timeout",
                "message": f"This audio took longer than {time_limit:g} s to analyze and was cut off."}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _warm_up() -> None:
    """Push a short synthetic clip through the whole pipeline so no request pays for imports or JIT."""
    import io

    import numpy as np
    import soundfile as sf

    sr = 22050
    t = np.arange(4 * sr) / sr
    clicks = (np.sin(2 * np.pi * 880 * t) * (np.mod(t, 0.5) < 0.02)).astype(np.float32)
    chord = 0.2 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.18, 329.63)).astype(np.float32)
    buf = io.BytesIO()
    sf.write(buf, clicks + chord, sr, format="WAV", subtype="PCM_16")
    run_analysis_job(buf.getvalue(), 30.0)


_MATH_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")


def _single_threaded_math() -> None:
    """Pool initializer: one BLAS/OpenMP thread per worker process.

    The pool already runs one process per core; letting each also start a BLAS thread per core oversubscribes the
    machine and costs ~70% more CPU per analysis (measured in PERFORMANCE_OPTIMIZATIONS.md). Set before the math
    libraries load, and enforced with threadpoolctl for any that already did.
    """
    for name in _MATH_THREAD_VARIABLES:
        os.environ[name] = "1"
    import numpy  # noqa: F401 (load the BLAS so its pool can be limited)
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


class AnalysisExecutor:
    """A pool of `workers` processes (0: a small thread pool in this process, for tests and tiny setups).

    At most `workers + queue_depth` analyses are in the pool at once; beyond that `run` raises ServerBusy at
    once rather than letting latency grow without bound.
    """

    def __init__(self, *, workers: int, queue_depth: int, timeout: float):
        self.workers = workers
        self.capacity = max(1, workers) + queue_depth
        self.timeout = timeout
        self.wait_limit = timeout * 3
        # Re-entrant: a job that is already done runs its done-callback at once, inside call()'s locked block.
        self._lock = threading.RLock()
        self._pool: ProcessPoolExecutor | ThreadPoolExecutor | None = None
        self._pid: int | None = None
        self._pending = 0
        self.completed = 0
        self.crashes = 0

    def workers_alive(self) -> int:
        """Pool processes currently alive (threads count as the pool's size when workers=0)."""
        pool = self._pool
        if pool is None:
            return 0
        if isinstance(pool, ThreadPoolExecutor):
            return pool._max_workers
        return sum(1 for process in (pool._processes or {}).values() if process.is_alive())

    def pending(self) -> int:
        """Analyses submitted and not yet finished (running or queued)."""
        return self._pending

    def _make_pool(self):
        if self.workers == 0:
            return ThreadPoolExecutor(max_workers=2, thread_name_prefix="analysis")
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_single_threaded_math)

    def _get_pool(self):
        if self._pool is None or self._pid != os.getpid():
            self._pool = self._make_pool()
            self._pid = os.getpid()
        return self._pool

    def start(self, *, wait: bool = True) -> None:
        """Start every worker and warm it up; with `wait`, return once all are ready."""
        with self._lock:
            pool = self._get_pool()
            warmups = [pool.submit(_warm_up) for _ in range(max(1, self.workers))]
        if wait:
            for future in warmups:
                try:
                    future.result(timeout=300)
                except Exception:
                    log.exception("analysis warm-up failed")

    def run(self, data: bytes, window_seconds: float) -> dict[str, Any]:
        """Decode and analyze `data` in the pool, cut off after `timeout` seconds of running; see
        run_analysis_job for the result."""
        return self.call(run_analysis_job_with_limit, data, window_seconds, self.timeout)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        with self._lock:
            if self._pending >= self.capacity:
                raise ServerBusy("The server is analyzing as many songs as it can; try again shortly.",
                                 retry_after=2)
            pool = self._get_pool()
            try:
                future = pool.submit(fn, *args)
            except BrokenProcessPool:
                self._replace_pool(pool)
                future = self._get_pool().submit(fn, *args)
            self._pending += 1
            future.add_done_callback(self._job_done)
        try:
            # The job's own limit covers its running time; this wait also covers its time in the queue.
            return future.result(timeout=self.wait_limit)
        except FutureTimeout:
            raise AnalysisTimeout(f"The server could not finish the analysis within {self.wait_limit:g} s; "
                                  "try again shortly.", retry_after=5) from None
        except BrokenProcessPool:
            self.crashes += 1
            with self._lock:
                self._replace_pool(pool)
            raise WorkerCrashed("The analysis worker stopped unexpectedly; the pool has been restarted. "
                                "Try again.", retry_after=1) from None

    def _job_done(self, _future: Future) -> None:
        with self._lock:
            self._pending -= 1
            self.completed += 1

    def _replace_pool(self, broken) -> None:
        """Called with the lock held: swap a broken pool for a fresh one (once, however many noticed)."""
        if self._pool is broken:
            log.warning("analysis pool broken; starting a new one")
            broken.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def shutdown(self) -> None:
        with self._lock:
            if self._pool is not None and self._pid == os.getpid():
                self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
