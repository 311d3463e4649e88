"""What each kind of process loads: pool workers never load Flask, and an HTTP process serving cache hits never
loads the analysis stack (numpy, scipy: 80 MiB and seconds per process), which only the pool needs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_analysis_processes_never_load_flask():
    # What a pool worker imports (the job functions, decode, the fetch and service errors) must not pull Flask in.
    done = _run("import sys, backend.runtime.executor, backend.audio.decode, backend.audio.fetch; "
                "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug')))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_an_http_process_answers_hits_and_listings_without_loading_numpy(tmp_path):
    code = f"""
import sys
from backend.app import create_app
app = create_app({{"db_path": {str(tmp_path / "x.db")!r}, "workers": 0}})
client = app.test_client()
for path in ("/health", "/cache", "/cache/search?q=a", "/stats", "/cache/export", "/"):
    assert client.get(path).status_code == 200, path
assert client.post("/analyze_data", data=b"").status_code == 400
print(sorted(m for m in ("numpy", "scipy", "librosa", "backend.analysis") if m in sys.modules))
"""
    done = _run(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
