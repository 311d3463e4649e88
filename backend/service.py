"""Cache-or-analyze: what /analyze and /analyze_data do between parsing the request and writing the response.

A hit costs one indexed SELECT, or none when the row is in this process's near cache (with Redis or on a SQLite
file, where every change to a row reaches every process: backend/runtime/nearcache.py). A miss fetches (URL) or
takes the bytes (upload), runs decode + analysis in the executor, and stores the result. Concurrent misses for the
same cache key share one analysis (single flight).
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any, Callable, Iterable

from backend.audio.fetch import fetch_url, normalize_url
from backend.config import Settings
from backend.roles import Claims, Executor, Invalidation, Store
from backend.runtime.claims import SingleFlight
from backend.runtime.executor import JobFailure, JobResult
from backend.runtime.nearcache import NearCache
from backend.runtime.redis_state import SharedStateUnavailable
from backend.storage import Row
from backend.storage.counters import BufferedCounters
from backend.timeutil import utc_now_iso
from backend.web.metrics import Metrics
from backend.web.prebuilt import serialize_answer
from backend.web.responses import UNKNOWN

log = logging.getLogger(__name__)

UPLOAD_URL_PREFIX = "upload:sha256:"


def url_cache_key(normalized_url: str) -> str:
    return "url:" + normalized_url


def upload_cache_key(sha256_hex: str) -> str:
    return "sha256:" + sha256_hex


class AnalysisService:
    def __init__(self, *, settings: Settings, store: Store, executor: Executor, counters: BufferedCounters,
                 metrics: Metrics, claims: Claims, near_cache: NearCache | None = None,
                 row_changes: Invalidation | None = None):
        self.settings = settings
        self.store = store
        self.executor = executor
        self.counters = counters
        self.metrics = metrics
        self.flights = SingleFlight()  # single flight among this process's threads
        self.claims = claims  # and across processes
        self.near_cache = near_cache  # rows of recent hits; only where row_changes tells every process of changes
        self.row_changes = row_changes
        if near_cache is not None and row_changes is not None:
            row_changes.listen(lambda analysis_id: near_cache.forget_ids([analysis_id]),
                               forget_all=near_cache.forget_all)

    def rows_changed(self, analysis_ids: Iterable[int] | None) -> None:
        """Analyses with these ids (None: all of them) were changed or deleted, and the change is committed:
        every process forgets what it keeps of them, this one at once. If Redis cannot be told, the others see
        the change within the near cache's max_age (logged)."""
        if self.row_changes is None:
            return
        ids = None if analysis_ids is None else list(analysis_ids)
        try:
            if ids is None:
                self.row_changes.announce_all()
            else:
                self.row_changes.announce(ids)
        except SharedStateUnavailable:
            log.warning("could not announce changed analyses %s; other hosts see the change within %g s",
                        "(all)" if ids is None else ids, self.near_cache.max_age if self.near_cache else 0)

    def analyze_upload(self, data: bytes | bytearray, *, title: str | None, artist: str | None,
                       sha256: str | None = None) -> tuple[Row, bool]:
        """The analysis of uploaded audio bytes, cached by their SHA-256 (`sha256` when the caller hashed them as
        they arrived); returns (row, served_from_cache). The bytes are copied for the decoder only on a miss."""
        digest = sha256 or hashlib.sha256(data).hexdigest()
        return self._cached_or_analyzed(
            upload_cache_key(digest), title, artist,
            lambda: (bytes(data), digest, "upload", UPLOAD_URL_PREFIX + digest),
        )

    def cached_upload(self, sha256: str, *, title: str | None, artist: str | None) -> Row | None:
        """The stored analysis of audio whose SHA-256 is `sha256` (lowercase hex), counted as a cache hit, or None
        (nothing is counted: no analysis was asked for)."""
        row = self._lookup(upload_cache_key(sha256), title, artist)
        if row is not None:
            self._count(hit=True)
            self._keep_answer(row)
        return row

    def analyze_url(self, url: str, *, title: str | None, artist: str | None) -> tuple[Row, bool]:
        """The analysis of the audio at `url`, cached by the normalized URL; returns (row, served_from_cache)."""
        normalized = normalize_url(url)  # FetchError (400 invalid_url) if it is not an http(s) URL we can fetch

        def download() -> tuple[bytes, str, str, str]:
            fetched = fetch_url(normalized, max_bytes=self.settings.max_download_bytes,
                                timeout=self.settings.fetch_timeout, max_redirects=self.settings.max_redirects,
                                allow_loopback=self.settings.allow_loopback_urls)
            return fetched.data, hashlib.sha256(fetched.data).hexdigest(), "url", url.strip()

        return self._cached_or_analyzed(url_cache_key(normalized), title, artist, download)

    def _cached_or_analyzed(self, cache_key: str, title: str | None, artist: str | None,
                            source: Callable[[], tuple[bytes, str, str, str]]) -> tuple[Row, bool]:
        """`source` supplies (audio bytes, their sha256, source kind, preview_url) when analysis is needed."""
        row = self._lookup(cache_key, title, artist)
        if row is not None:
            self._count(hit=True)
            self._keep_answer(row)
            return row, True

        def analyze_and_store() -> tuple[Row, bool]:
            # Another request may have stored it between our lookup and our turn in the flight.
            existing = self._lookup(cache_key, title, artist)
            if existing is not None:
                return existing, True
            stored_meanwhile = self._claim_or_wait(cache_key, title, artist)
            if stored_meanwhile is not None:
                return stored_meanwhile, True
            try:
                data, digest, kind, preview_url = source()
                job = self._run(data)
                return self._store(cache_key, kind, preview_url, digest, title, artist, job), False
            finally:
                self.claims.release(cache_key)

        (row, from_cache), shared = self.flights.do(cache_key, analyze_and_store)
        if shared or from_cache:
            self._count(hit=True)
            return row, True
        self._count(hit=False)
        self.metrics.analysis.observe(row["analysis_duration"])
        return row, False

    def _claim_or_wait(self, cache_key: str, title: str | None, artist: str | None) -> Row | None:
        """Claim `cache_key` across processes, or wait while another process analyzes it: returns its stored
        row if it finished meanwhile, else None: the claim is this process's (the caller releases it), or the wait
        outlasted any analysis and this process goes ahead without one."""
        longest = self.settings.fetch_timeout + self.settings.analysis_timeout + 30.0
        give_up = time.monotonic() + longest
        while not self.claims.try_claim(cache_key, longest) and time.monotonic() < give_up:
            self.claims.wait(cache_key, give_up - time.monotonic())
            row = self._lookup(cache_key, title, artist)
            if row is not None:
                return row
        row = self._lookup(cache_key, title, artist)  # the holder may have stored it just before releasing
        if row is not None:
            self.claims.release(cache_key)
        return row

    def _count(self, *, hit: bool) -> None:
        if hit:
            self.counters.count_hit()
        else:
            self.counters.count_miss()
        self.metrics.cache.labels("hit" if hit else "miss").inc()

    def _lookup(self, cache_key: str, title: str | None, artist: str | None) -> Row | None:
        def read() -> Row | None:
            with self.store.single_read() as conn:
                return self.store.find_analysis_by_cache_key(conn, cache_key)

        row = read() if self.near_cache is None else self.near_cache.get_or_load(cache_key, read)
        if row is not None and ((title and row["title"] == UNKNOWN) or (artist and row["artist"] == UNKNOWN)):
            with self.store.connection(write=True) as conn:
                self.store.fill_unknown_metadata(conn, row["id"], title, artist, UNKNOWN)
                row = self.store.find_analysis_by_id(conn, row["id"])
            self.rows_changed([row["id"]])
        return row

    def _keep_answer(self, row: Row) -> None:
        """Serialize a hit's answer once for the hits after it, if the row has none (stored before the
        response_json migration, or changed since)."""
        if row["response_json"] is None:
            with self.store.connection(write=True) as conn:
                self.store.store_response_json(conn, row, serialize_answer(row))
            self.rows_changed([row["id"]])  # kept copies lack the answer: read it once more

    def _run(self, data: bytes) -> JobResult:
        """The analysis of `data`; raises ExecutorError (the pool could not run it) or the JobFailure's error."""
        job = self.executor.run(data, self.settings.analysis_seconds)
        if isinstance(job, JobFailure):
            raise job.error()
        return job

    def _store(self, cache_key: str, kind: str, preview_url: str, digest: str, title: str | None,
               artist: str | None, job: JobResult) -> Row:
        values = analysis_row_values(job, cache_key=cache_key, kind=kind, preview_url=preview_url, digest=digest,
                                     title=title, artist=artist)
        with self.store.connection(write=True) as conn:
            row = self.store.insert_analysis(conn, values)
            if row["response_json"] is None:
                self.store.store_response_json(conn, row, serialize_answer(row))
            return row


def analysis_row_values(job: JobResult, *, cache_key: str, kind: str, preview_url: str, digest: str,
                        title: str | None, artist: str | None) -> dict[str, Any]:
    """The analyses row for a successful job (see executor.run_analysis_job). The chart arrays are stored apart
    from the summary so that a cache hit parses only what it answers."""
    result = dict(job.result)
    detail = result.pop("detail", None)
    return {
        "cache_key": cache_key,
        "source_kind": kind,
        "preview_url": preview_url,
        "content_sha256": digest,
        "title": title or UNKNOWN,
        "artist": artist or UNKNOWN,
        "bpm": result["bpm"],
        "bpm_confidence": result["bpm_confidence"],
        "key": result["key"],
        "key_confidence": result["key_confidence"],
        "energy": result["energy"],
        "danceability": result["danceability"],
        "acousticness": result["acousticness"],
        "spectral_centroid": result["spectral_centroid"],
        "analysis_duration": round(job.seconds, 4),
        "analyzed_at": utc_now_iso(),
        "result_json": json.dumps({"result": result, "window": job.window, "source": job.source},
                                  allow_nan=False),
        "detail_json": None if detail is None else json.dumps(detail, allow_nan=False),
    }

