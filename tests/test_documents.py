"""The documents quote commands as a user runs them from a checkout, never with the absolute paths of the
machine they were first run on."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["README.md", "PERFORMANCE_OPTIMIZATIONS.md", "benchmarks/ANALYSIS_RESULTS.md", "docs/ARCHITECTURE.md"]
# A home or work directory, or an interpreter named by its absolute path (/work/venv/bin/python, /usr/bin/python3).
MACHINE_PATH = re.compile(r"(?<![\w.~-])(/(?:work|home|root|Users)/\S*|/\S*/bin/python3?\b|\bcd /\S+)")


@pytest.mark.parametrize("name", DOCUMENTS)
def test_document_quotes_no_absolute_paths_of_a_machine(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    found = [(number, line.strip()) for number, line in enumerate(text.splitlines(), 1) if MACHINE_PATH.search(line)]
    assert not found, f"{name}: run commands from a checkout (.venv/bin/python ...), not {found}"


def test_the_check_catches_the_paths_it_is_meant_to():
    for line in ("cd /work/main && .venv/bin/python performance_test.py", "/work/venv/bin/python x.py",
                 "/home/alice/essentia/.venv/bin/python performance_test.py", "/usr/bin/python3 -m pytest"):
        assert MACHINE_PATH.search(line), line
    for line in (".venv/bin/python performance_test.py --json perf.json", "`backend/runtime/executor.py`",
                 "curl -s http://127.0.0.1:5050/health", "ESSENTIA_DB_PATH=instance/essentia.db"):
        assert not MACHINE_PATH.search(line), line
