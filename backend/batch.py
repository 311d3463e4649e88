"""Batch analysis of files and folders on this machine, for `flask --app backend analyze PATH...`.

The same decode + `perform_audio_analysis` as the HTTP endpoints, run in parallel processes, written to the same
cache (keyed by the SHA-256 of each file, so a later upload of the same file is a cache hit).
"""
from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, TextIO

from backend.runtime.executor import run_analysis_job
from backend.service import UPLOAD_URL_PREFIX, analysis_row_values, upload_cache_key
from backend.storage import Store

AUDIO_SUFFIXES = {".wav", ".wave", ".flac", ".ogg", ".oga", ".mp3", ".m4a", ".mp4", ".aac", ".aif", ".aiff",
                  ".caf", ".webm"}


@dataclass
class BatchReport:
    analyzed: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # already in the cache
    failed: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def find_audio_files(paths: Iterable[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named directly, plus audio files found recursively in folders (sorted); and paths that do not exist."""
    found: list[Path] = []
    missing: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            missing.append((raw, "no such file or folder"))
    unique = list(dict.fromkeys(p.resolve() for p in found))
    return unique, missing


def title_and_artist(path: Path) -> tuple[str, str | None]:
    """'Artist - Title.mp3' -> ('Title', 'Artist'); otherwise the file name is the title."""
    stem = path.stem.strip()
    if " - " in stem:
        artist, title = (part.strip() for part in stem.split(" - ", 1))
        if artist and title:
            return title, artist
    return stem, None


def _analyze_file(path: str, window_seconds: float, digest: str | None) -> dict[str, Any]:
    """Runs in a worker: read, decode and analyze one file; hash it unless the caller already did."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        return {"ok": False, "code": "unreadable_file", "message": error.strerror or str(error)}
    job = run_analysis_job(data, window_seconds)
    job["sha256"] = digest or hashlib.sha256(data).hexdigest()
    return job


def _sha256_of(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


class Progress:
    """One self-rewriting line: done/total, rate and ETA."""

    def __init__(self, total: int, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.total, self.done, self.stream, self._clock = total, 0, stream, clock
        self.started = clock()
        self.interactive = stream.isatty()

    def advance(self, label: str) -> None:
        self.done += 1
        elapsed = max(self._clock() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * self.done / max(self.total, 1))
        line = (f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}  {rate:.2f} files/s  "
                f"ETA {eta:.0f}s  {label[:40]}")
        if self.interactive:
            self.stream.write("\r\x1b[K" + line)
            if self.done == self.total:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def analyze_paths(paths: Iterable[str], *, store: Store, window_seconds: float, jobs: int, force: bool,
                  progress_stream: TextIO = sys.stderr) -> BatchReport:
    files, missing = find_audio_files(paths)
    report = BatchReport(failed=list(missing))
    todo: list[tuple[Path, str | None]] = []
    for path in files:
        digest = None if force else _sha256_of(path)
        if digest is not None:
            with store.single_read() as conn:
                if store.find_analysis_by_cache_key(conn, upload_cache_key(digest)) is not None:
                    report.skipped.append(str(path))
                    continue
        todo.append((path, digest))
    if not todo:
        return report

    progress = Progress(len(todo), progress_stream)
    workers = max(1, min(jobs, len(todo)))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_analyze_file, str(path), window_seconds, digest): path for path, digest in todo}
        for future in as_completed(futures):
            path = futures[future]
            try:
                job = future.result()
            except Exception as error:  # a crashed worker fails one file, not the batch
                job = {"ok": False, "code": "analysis_failed", "message": str(error) or type(error).__name__}
            progress.advance(path.name)
            if not job["ok"]:
                report.failed.append((str(path), f"{job['code']}: {job['message']}"))
                continue
            report.analyzed.append(_store(store, path, job, force))
    report.analyzed.sort(key=lambda row: row["file"])
    return report


def _store(store: Store, path: Path, job: dict[str, Any], force: bool) -> dict[str, Any]:
    title, artist = title_and_artist(path)
    digest = job["sha256"]
    values = analysis_row_values(job, cache_key=upload_cache_key(digest), kind="upload",
                                 preview_url=UPLOAD_URL_PREFIX + digest, digest=digest, title=title, artist=artist)
    with store.connection(write=True) as conn:
        row = store.insert_analysis(conn, values, replace=force)
    result = job["result"]
    return {"file": str(path), "id": row["id"], "title": row["title"], "artist": row["artist"],
            "bpm": result["bpm"], "bpm_confidence": result["bpm_confidence"], "key": result["key"],
            "key_confidence": result["key_confidence"], "camelot": result["camelot"], "energy": result["energy"],
            "danceability": result["danceability"], "acousticness": result["acousticness"],
            "loudness_lufs": result["loudness_lufs"], "analysis_duration": values["analysis_duration"]}


def write_results(report: BatchReport, out: Path) -> None:
    """Write the analyzed rows as CSV or JSON, chosen by the file's extension."""
    rows = report.analyzed
    if out.suffix.lower() == ".json":
        payload = {"analyzed": rows, "skipped": report.skipped,
                   "failed": [{"file": f, "reason": r} for f, r in report.failed]}
        out.write_text(json.dumps(payload, indent=2, ensure_ascii=False, allow_nan=False), encoding="utf-8")
        return
    columns = list(rows[0]) if rows else ["file", "id", "title", "artist", "bpm", "key"]
    with out.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def default_jobs() -> int:
    return os.cpu_count() or 1
