"""Fit the tempo prior's shift on music people wrote, after the level model was fitted on the composer's songs.

    nice .venv/bin/python benchmarks/fit_tempo_prior.py --fit DIR [DIR ...] [--check DIR ...] [--dev DIR] [--write]

The level model (benchmarks/fit_tempo.py) learns its tempo prior from the training set, whose tempos are the
composer's: each style's range, and the annotation of its half-time styles. Music people wrote
(benchmarks/trainset/human.py) says where that prior sits wrong: held out, the model read fast songs at the half
more often than the double. One number is fitted here, with the level model fixed: a score added to every
candidate per octave of its tempo above tempo.PRIOR_REF_BPM (`LevelModel.prior_shift`), by maximum likelihood of
the annotated candidate under the model's softmax over the clips of the --fit directories (full clips and their
6-s and 12-s excerpts, as fit_tempo.py takes them). The --check directories and the dev corpus are never fitted
on: they are scored with the shift at 0 and at its fitted value. --write records it in
backend/analysis/models/tempo_level.json ("prior_shift": its value and how it was fitted); a refit of the level
model (fit_tempo.py --write) writes none, so this runs again after one.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
from scipy.optimize import minimize_scalar  # noqa: E402

from backend.analysis import tempo  # noqa: E402
from benchmarks.fit_tempo import Sample, _default_dev, dev_samples, score_fixed, trainset_samples  # noqa: E402

#: The shifts searched (score per octave): wide enough that the bound is never the answer on sane material.
BOUNDS = (-3.0, 3.0)


def negative_log_likelihood(samples: list[Sample], model: tempo.LevelModel, shift: float) -> float:
    """Mean -log P(annotated candidate) under `model` with `shift`, over the samples whose candidates hold it."""
    shifted = dataclasses.replace(model, prior_shift=shift)
    total, n = 0.0, 0
    for s in samples:
        if s.target >= 0:
            total -= float(np.log(max(shifted.probabilities(s.x)[s.target], 1e-12)))
            n += 1
    return total / max(n, 1)


def fit_shift(samples: list[Sample], model: tempo.LevelModel) -> float:
    """The maximum-likelihood prior shift for `model` on `samples` (the model's own shift is replaced, not added)."""
    result = minimize_scalar(lambda v: negative_log_likelihood(samples, model, v), bounds=BOUNDS, method="bounded",
                             options={"xatol": 1e-3})
    return float(result.x)


def figures(samples: list[Sample], model: tempo.LevelModel) -> dict:
    """Acc1 / or-alt / Acc2 over the full clips (excerpts apart) as fit_tempo.py scores them, and the misses by clip."""
    summary, rows = score_fixed(samples, model)
    summary["misses"] = {r["name"]: f"{r['name']}: {r['truth']:g} read {r['bpm']:.1f}" for r in rows
                         if not r["acc1"] and not r["excerpt"]}
    return summary


def _line(name: str, before: dict, after: dict) -> str:
    cells = [f"{before[k]:.1%} -> {after[k]:.1%}" for k in ("acc1", "acc1_or_alt", "acc2")]
    return f"  {name:28s} n={before['n']:4d}  Acc1 {cells[0]}  or alt {cells[1]}  Acc2 {cells[2]}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fit", type=Path, nargs="+", required=True, help="sets the shift is fitted on")
    ap.add_argument("--check", type=Path, nargs="*", default=[], help="sets scored before and after, never fitted")
    ap.add_argument("--dev", type=Path, default=_default_dev(), help="validation corpus (never fitted on)")
    ap.add_argument("--write", action="store_true", help="record the shift in backend/analysis/models/tempo_level.json")
    args = ap.parse_args(argv)

    model = dataclasses.replace(tempo.load_model(), prior_shift=0.0)
    fit_on = trainset_samples(args.fit)
    shift = fit_shift(fit_on, model)
    shifted = dataclasses.replace(model, prior_shift=shift)
    print(f"prior shift {shift:+.3f} per octave (fitted on {sum(not s.excerpt for s in fit_on)} clips of "
          f"{', '.join(p.name for p in args.fit)}); mean -log-likelihood "
          f"{negative_log_likelihood(fit_on, model, 0.0):.3f} -> {negative_log_likelihood(fit_on, model, shift):.3f}")
    checks = {"fitted on (in-sample)": fit_on}
    checks |= {f"held out: {p.name}": trainset_samples([p]) for p in args.check}
    if args.dev and (args.dev / "truth.json").is_file():
        checks["held out: dev corpus"] = dev_samples(args.dev)
    record = {}
    for name, samples in checks.items():
        before, after = figures(samples, model), figures(samples, shifted)
        print(_line(name, before, after))
        for clip in sorted(after["misses"].keys() - before["misses"].keys()):
            print(f"      now missed: {after['misses'][clip]}")
        for clip in sorted(before["misses"].keys() - after["misses"].keys()):
            print(f"      now right:  {before['misses'][clip]}")
        record[name] = {k: [round(before[k], 4), round(after[k], 4)] for k in ("n", "acc1", "acc1_or_alt", "acc2")}
    if args.write:
        data = json.loads(tempo.MODEL_PATH.read_text())
        command = "nice .venv/bin/python benchmarks/fit_tempo_prior.py " + " ".join(
            argv if argv is not None else sys.argv[1:])
        data["prior_shift"] = {"value": round(shift, 4), "command": command.strip(),
                               "figures_before_after": record}
        tempo.MODEL_PATH.write_text(json.dumps(data, indent=1) + "\n")
        print(f"wrote prior_shift to {tempo.MODEL_PATH}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
