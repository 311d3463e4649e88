"""Grouped cross-validation over the rendered training set (benchmarks/trainset/).

The training set is generated, not committed: `python -m benchmarks.trainset.generate --out DIR` writes the audio and
a manifest.json beside it (see that module). Every entry has the fields of ../shared/corpus/truth.json (file, format,
bpm, alt_bpm, key, meter, style, has_drums) plus `song` (one composition: every rendering, mix and encoding of it
shares the id) and `variant` (how this rendering differs).

Clips of one song are never split between fitting and testing: renderings of a song share its notes, so a split
inside a song would measure memory, not generalization. `folds(..., by="style")` holds out whole styles, the harder
question of how a fitted rule carries to a kind of music it has never seen.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

#: Where the generator writes by default and the fitting scripts look first (outside the repository: audio is
#: regenerated, never committed).
DEFAULT_TRAINSET_DIR = Path("/tmp/essentia-trainset")


def load_manifest(root: Path | str = DEFAULT_TRAINSET_DIR) -> list[dict]:
    """The manifest entries with `path` (absolute) added; raises FileNotFoundError when the set was not generated."""
    root = Path(root)
    entries = json.loads((root / "manifest.json").read_text())
    for entry in entries:
        entry["path"] = str(root / entry["file"])
    return entries


def load_manifests(roots: Sequence[Path | str]) -> list[dict]:
    """The entries of several training directories' manifests, fitted on together (load_manifest each); with more
    than one, every `file` and `song` is prefixed with its directory's name, since two generator runs number their
    songs alike and a song must stay one group in the folds. Each entry names its directory in `trainset`."""
    out = []
    for root in roots:
        prefix = f"{Path(root).name}/" if len(roots) > 1 else ""
        for entry in load_manifest(root):
            out.append({**entry, "file": prefix + entry["file"], "song": prefix + str(entry["song"]),
                        "trainset": Path(root).name})
    return out


def _bucket(group: str, k: int) -> int:
    """A stable fold for a group name: the same song lands in the same fold on every machine and run."""
    return int.from_bytes(hashlib.sha256(group.encode()).digest()[:4], "big") % k


def folds(entries: Sequence[dict], *, by: str = "song", k: int = 5) -> Iterator[tuple[list[int], list[int]]]:
    """(train indices, test indices) per fold; no value of `by` is on both sides of a fold.

    by="song": k folds of whole songs. by="style": one fold per style (leave-one-style-out), k is ignored.
    """
    if by == "style":
        styles = sorted({e["style"] for e in entries})
        for style in styles:
            test = [i for i, e in enumerate(entries) if e["style"] == style]
            train = [i for i, e in enumerate(entries) if e["style"] != style]
            yield train, test
        return
    buckets = [_bucket(str(e[by]), k) for e in entries]
    for fold in range(k):
        test = [i for i, b in enumerate(buckets) if b == fold]
        train = [i for i, b in enumerate(buckets) if b != fold]
        if test:
            yield train, test
