"""Fit the tempo level model (backend/analysis/models/tempo_level.json) and report grouped cross-validation.

    nice python benchmarks/fit_tempo.py [--trainset DIR ...] [--synth-loops N] [--write] [--cv-json FILE]
                                         [--dev DIR] [--before REF] [--seeds 0,1,2] [--without PREFIX,...]

Training material:
- the rendered training set, one or more directories (benchmarks/crossval.py: manifest.json with song and style
  per clip), every clip also as two shorter excerpts (6 s and 12 s, same song group) so the model learns what
  short input looks like;
- `--synth-loops N` synthesized drum loops (tests/synth.drum_loop with random patterns, rests, swing, human
  timing, 4..30 s; those long enough also as excerpts, like the rendered clips), annotated at the tempo whose
  beats 2 and 4 carry the snare (dembow and four-on-the-floor at their kick): the real drum loops the rendered set
  lacks. They form their own style ("synth_loop") and songs (one per pattern). `--synth-noise N` beatless clips
  teach the calibration only.
The dev corpus (--dev, default ../shared/corpus) is never fitted on: it is scored with the final model only.
The model written has no prior shift: benchmarks/fit_tempo_prior.py fits that afterwards, on music people wrote.

Method: for every clip the front end is computed once and its onset bands cached (/tmp/tempo-features/*.npz);
candidates and their feature rows (backend.analysis.tempo.level_features) are computed once per clip. The level
model is a conditional logit (softmax over a clip's candidates, L2-regularised, standardised features) whose score
is a linear term plus a few tanh units (`--hidden`), fitted with scipy's L-BFGS from each of several random
starts of the hidden layer (`--seeds`) and averaged: the committed network holds every start's units (see
`fit_ensemble`). Cross-validation refits it per fold: 5 folds of whole songs, and leave-one-style-out; `--without`
leaves features out to measure what they bring. Calibration
(bpm_confidence) is a logistic map of the top softmax probability and the pulse strength fitted on the song-fold
predictions. Accuracy: Acc1 = within 4% of the annotated tempo, Acc1-or-alt also accepts an annotated
alternative, Acc2 also accepts x2, x1/2, x3, x1/3.
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import hashlib  # noqa: E402
import importlib.util  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
from scipy.optimize import minimize  # noqa: E402

from backend.analysis import ANALYSIS_SAMPLE_RATE, frontend, tempo  # noqa: E402
from benchmarks import crossval  # noqa: E402
from benchmarks.accuracy import tempo_flags  # noqa: E402

CACHE_DIR = Path("/tmp/tempo-features")
_FRONTEND_STAMP = hashlib.sha1(Path(frontend.__file__).read_bytes()).digest()
#: Excerpts added per clip (seconds); each is taken from the middle of the clip.
EXCERPTS = (6.0, 12.0)
#: L2 penalty on the standardised weights and hidden tanh units beside the linear term (0: the plain conditional
#: logit), the number of units per random start, and the starts averaged. Chosen on the 1096-clip set (2026-12-01,
#: fifth session: the 592 clips of the styles' usual tempos and 504 across their wider ranges) by the song-fold
#: Acc1 of the averaged model: 0.002 gave 97.4 %, 0.003 97.0, 0.0015 97.6 and 0.001 97.7, but with 0.0015 and 0.001
#: the synthesized 60 BPM ballad or half-time groove of tests/test_analysis_tempo.py (or both) read at the double.
#: On the 1920-clip set (eighth session, three starts): 0.001 gave 97.5 %, 0.002 97.1, 0.003 97.1 (16 units: 97.1;
#: 6 units: 96.2), and 0.001 read the synthesized 90 BPM rock pattern at the double, so 0.002 and 10 units stay.
L2 = 0.002
HIDDEN = 10
#: Random starts of the hidden layer, averaged into one model: its score is the mean of their scores, i.e. one
#: network with every start's units and each one's output weight divided by the number of starts. One start's
#: decisions on the synthesized drum-only and slow cases of tests/test_analysis_tempo.py sit on a boundary that
#: the start moves. On the 1920-clip set (2026-12-01, eighth session) averages of three starts (0-2, 3-5, 6-8) put
#: the half-time groove at 0.60, 0.58, 0.57 and the 90 BPM rock pattern at 0.57, 0.72, 0.68, and one of the three
#: read the dev corpus's second drum'n'bass clip at the half; with 16 units or L2 0.003 some groups of three missed
#: the groove or the rock pattern. Averages of nine (0-8, 9-17) agreed with each other on every synthesized case
#: (groove 0.58 and 0.56) and on the dev corpus, so nine are averaged: 90 units, 3,438 numbers.
SEEDS = tuple(range(9))


@dataclass
class Sample:
    """One clip (or excerpt) ready for fitting: its candidates, their feature rows and refined tempi."""

    name: str
    song: str
    style: str
    bpm: float                  # annotated tempo (0: no tempo, e.g. noise)
    alts: list[float]
    hyps: np.ndarray            # candidate tempi as generated
    refined: np.ndarray         # the tempo reported if that candidate wins (ACF-refined)
    clarity: np.ndarray         # pulse clarity at each refined period
    x: np.ndarray               # (candidates, features)
    target: int                 # index of the candidate within 4% of bpm (closest), -1 when none is
    excerpt: bool


@dataclass(frozen=True)
class Envelopes:
    """What the tempo estimator reads from the front end: onset bands, their sum, the harmonic-change envelope."""

    bands: np.ndarray
    onset: np.ndarray
    harmonic: np.ndarray
    fr: float

    def excerpt(self, a: int, m: int) -> "Envelopes":
        return Envelopes(self.bands[:, a:a + m], self.onset[a:a + m], self.harmonic[a:a + m], self.fr)

    def estimate(self, module=tempo) -> tempo.TempoEstimate:
        """The estimator's answer (`module`: tempo.py or an older version of it, which may not know `harmonic`)."""
        if "harmonic" in inspect.signature(module.estimate_tempo).parameters:
            return module.estimate_tempo(self.bands, self.onset, self.fr, harmonic=self.harmonic)
        return module.estimate_tempo(self.bands, self.onset, self.fr)


def _bands_of_audio(y: np.ndarray) -> Envelopes:
    fe = frontend.compute_front_end(y, ANALYSIS_SAMPLE_RATE)
    return Envelopes(fe.onset_bands, fe.onset, fe.harmonic_change, fe.frame_rate)


def cached_bands(path: str) -> Envelopes:
    """Onset and harmonic envelopes of an audio file, decoded once (cache keyed by the file's content and the
    front end's source, so a moved file is not decoded again and a changed front end is)."""
    from backend.audio.decode import decode_audio

    data = Path(path).read_bytes()
    key = hashlib.sha1(data + _FRONTEND_STAMP).hexdigest()[:24]
    f = CACHE_DIR / f"{key}.npz"
    if f.exists():
        d = np.load(f)
        return Envelopes(d["bands"], d["onset"], d["harmonic"], float(d["fr"]))
    decoded = decode_audio(data, target_sr=ANALYSIS_SAMPLE_RATE)
    from backend.analysis import _as_channels

    ch = _as_channels(decoded.samples)
    mono = ch[0] if ch.shape[0] == 1 else ch.mean(axis=0)
    mono = frontend.resample(mono - mono.mean(), decoded.sample_rate, ANALYSIS_SAMPLE_RATE)
    env = _bands_of_audio(mono)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(f".{os.getpid()}.tmp.npz")  # one per process: parallel fits share the cache
    np.savez(tmp, bands=env.bands, onset=env.onset, harmonic=env.harmonic, fr=env.fr)
    os.replace(tmp, f)
    return env


def make_sample(env: Envelopes, *, name: str, song: str, style: str, bpm: float, alts: list[float],
                excerpt: bool = False) -> Sample | None:
    """Candidates and feature rows of one clip, as estimate_tempo computes them; None without any periodicity."""
    fr = env.fr
    per = tempo.periodicity(env.bands, env.onset, fr, env.harmonic)
    if per is None or per.salience.max() <= 1e-4:
        return None
    hyps = tempo.candidates(per)
    if not hyps:
        return None
    x = tempo.level_features(per, hyps)
    periods = np.array([tempo._refine(per.acf, 60.0 * fr / h) for h in hyps])
    refined = 60.0 * fr / periods
    clarity = np.clip(tempo._at(per.acf, periods), 0.0, 1.0)
    errs = np.abs(refined / bpm - 1.0) if bpm > 0 else np.full(len(hyps), np.inf)
    target = int(np.argmin(errs)) if errs.min() <= 0.04 else -1
    return Sample(name, song, style, bpm, alts, np.array(hyps), refined, clarity, x, target, excerpt)


def samples_of_clip(env: Envelopes, *, name, song, style, bpm, alts, excerpts=EXCERPTS) -> list[Sample]:
    out = []
    s = make_sample(env, name=name, song=song, style=style, bpm=bpm, alts=alts)
    if s:
        out.append(s)
    n = env.bands.shape[1]
    for sec in excerpts:
        m = int(sec * env.fr)
        if m < n * 0.8:
            a = (n - m) // 2
            s = make_sample(env.excerpt(a, m), name=f"{name}@{sec:g}s", song=song, style=style,
                            bpm=bpm, alts=alts, excerpt=True)
            if s:
                out.append(s)
    return out


# ---------------------------------------------------------------- synthesized sparse loops

def random_loop(rng: np.random.Generator) -> tuple[dict[str, list[float]], float, float, float, float]:
    """A random drum loop: usually sparse 4/4 (kick on 1 + random syncopated kicks, snare on 2 and 4, hats none /
    quarters / eighths / a few offbeats), sometimes a genre's fixed groove played at its usual tempo: dembow
    (kick on every beat, snare on the "a" of 1 and the "and" of 2; 85-105 BPM) or four-on-the-floor (kick on every
    beat, clap on 2 and 4, open hat on the off-beats; 115-130 BPM), or a bare pulse at 40-200 BPM (one drum on
    every beat and nothing between: a metronome or a lone kick, whose every hit is a beat however slow). Returns
    pattern, bpm, swing, jitter (ms), seconds."""
    kind = rng.random()
    hat_kind = int(rng.integers(0, 4))
    hats = {0: [], 1: [0.0, 1.0, 2.0, 3.0], 2: [i / 2 for i in range(8)],
            3: sorted(rng.choice([0.5, 1.5, 2.5, 3.5, 0.75, 2.25], size=2, replace=False).tolist())}[hat_kind]
    if kind < 0.15:
        pattern = {"kick": [0.0, 1.0, 2.0, 3.0], "snare": [0.75, 1.5, 2.75, 3.5]}
        bpm = float(rng.uniform(85, 105))
    elif kind < 0.25:
        pattern = {"kick": [0.0, 1.0, 2.0, 3.0], "snare": [1.0, 3.0]}
        hats = [0.5, 1.5, 2.5, 3.5] if hat_kind < 2 else hats
        bpm = float(rng.uniform(115, 130))
    elif kind < 0.33:
        pattern = {str(rng.choice(["kick", "rim", "hat", "snare"])): [0.0, 1.0, 2.0, 3.0]}
        hats = []
        bpm = float(np.exp(rng.uniform(np.log(40), np.log(200))))
    else:
        sixteenths = np.arange(16) / 4.0
        kick = [0.0] + sorted(rng.choice(sixteenths[1:], size=rng.integers(0, 4), replace=False).tolist())
        pattern = {"kick": [k for k in kick if k not in (1.0, 3.0)], "snare": [1.0, 3.0]}
        bpm = float(np.exp(rng.uniform(np.log(70), np.log(170))))
    if hats:
        pattern["hat" if rng.random() < 0.7 else "rim"] = hats
    swing = float(rng.choice([0.0, 0.0, 0.3, 0.6]))
    jitter = float(rng.uniform(0, 15))
    seconds = float(rng.uniform(4.0, 30.0))
    return pattern, bpm, swing, jitter, seconds


def synth_samples(count: int, seed: int = 7) -> list[Sample]:
    from tests import synth

    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        pattern, bpm, swing, jitter, seconds = random_loop(rng)
        y = synth.drum_loop(bpm, pattern, seconds=seconds, swing=swing, jitter_ms=jitter, seed=i)
        out += samples_of_clip(_bands_of_audio(y), name=f"loop{i:03d}", song=f"loop{i:03d}", style="synth_loop",
                               bpm=bpm, alts=[])
    return out


def synth_noise_samples(count: int, seed: int = 11) -> list[Sample]:
    """Material without a beat (noise, randomly timed clicks and tones), annotated "no tempo": it only teaches the
    calibration that a weak, irregular pulse deserves a low confidence."""
    from tests import synth

    rng = np.random.default_rng(seed)
    sr = ANALYSIS_SAMPLE_RATE
    out = []
    for i in range(count):
        seconds = float(rng.uniform(5.0, 30.0))
        kind = i % 3
        if kind == 0:
            y = synth.white_noise(seconds, amplitude=float(rng.uniform(0.05, 0.5)), seed=i)
        else:
            y = np.zeros(int(seconds * sr), np.float32)
            times = np.cumsum(rng.exponential(float(rng.uniform(0.15, 0.8)), size=400))
            src = synth.click_track(60, seconds=1.0) if kind == 1 else synth.chord_progression(
                int(rng.integers(12)), seconds=1.0, chord_seconds=1.0)
            for t in times[times < seconds - 1]:
                a = int(t * sr)
                y[a:a + src.size] += float(rng.uniform(0.3, 1.0)) * src[: y.size - a]
            y += synth.white_noise(seconds, amplitude=0.01, seed=i)
        out += samples_of_clip(_bands_of_audio(y), name=f"noise{i:03d}", song=f"noise{i:03d}", style="synth_noise",
                               bpm=0.0, alts=[], excerpts=())
    return out


# ---------------------------------------------------------------- model

def standardise(samples: list[Sample]) -> tuple[np.ndarray, np.ndarray]:
    allx = np.concatenate([s.x for s in samples])
    return allx.mean(axis=0), np.maximum(allx.std(axis=0), 1e-6)


def fit_weights(samples: list[Sample], mean: np.ndarray, scale: np.ndarray, l2: float = L2,
                hidden: int = HIDDEN, seed: int = 0) -> tempo.LevelModel:
    """The level model on features standardised by `mean` and `scale` (its calibration left neutral: that is
    fitted afterwards on cross-validated predictions). The weights minimise the mean negative log softmax
    probability of each clip's correct candidate plus l2 * |every weight|^2 (clips without a correct candidate
    carry no information and are skipped). All clips' candidates are stacked in one matrix; the per-clip softmax
    uses segment reductions."""
    usable = [s for s in samples if s.target >= 0 and len(s.hyps) > 1]
    if not usable:  # e.g. a fold left with beatless clips only: nothing to learn, every candidate scores alike
        return tempo.LevelModel(mean=mean, scale=scale, weights=np.zeros(mean.size), calibration=(1.0, 0.0, 0.0))
    z = np.concatenate([(s.x - mean) / scale for s in usable])
    sizes = np.array([len(s.hyps) for s in usable])
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    clip_of_row = np.repeat(np.arange(len(usable)), sizes)
    correct = starts + np.array([s.target for s in usable])
    n, dim = max(1, len(usable)), mean.size
    n_in = hidden * dim

    def unpack(p: np.ndarray):
        return (p[:dim], p[dim:dim + n_in].reshape(hidden, dim), p[dim + n_in:dim + n_in + hidden],
                p[dim + n_in + hidden:])

    def loss(p: np.ndarray) -> tuple[float, np.ndarray]:
        w, w_in, bias, w_out = unpack(p)
        act = np.tanh(z @ w_in.T + bias)
        s = z @ w + act @ w_out
        top = np.maximum.reduceat(s, starts)
        e = np.exp(s - top[clip_of_row])
        total = np.add.reduceat(e, starts)
        d = e / total[clip_of_row]
        d[correct] -= 1.0
        d /= n
        value = float(np.mean(np.log(total) + top - s[correct])) + l2 * float(p @ p)
        d_act = np.outer(d, w_out) * (1.0 - act ** 2)
        grad = np.concatenate([z.T @ d, (d_act.T @ z).ravel(), d_act.sum(axis=0), act.T @ d]) + 2 * l2 * p
        return value, grad

    rng = np.random.default_rng(seed)
    start = np.concatenate([np.zeros(dim), rng.normal(0.0, 0.3, n_in), np.zeros(hidden),
                            rng.normal(0.0, 0.3, hidden)])
    res = minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 1000})
    w, w_in, bias, w_out = unpack(res.x)
    return tempo.LevelModel(mean=mean, scale=scale, weights=w, calibration=(1.0, 0.0, 0.0),
                            hidden=(w_in, bias, w_out) if hidden else None)


def fit_ensemble(samples: list[Sample], mean: np.ndarray, scale: np.ndarray, l2: float = L2, hidden: int = HIDDEN,
                 seeds: tuple[int, ...] | list[int] = SEEDS) -> tempo.LevelModel:
    """One model per random start (`fit_weights`), averaged: the mean of their scores is itself a network of the
    same form, with the linear weights averaged, every start's hidden units side by side and each unit's output
    weight divided by the number of starts."""
    models = [fit_weights(samples, mean, scale, l2, hidden, seed) for seed in seeds]
    weights = np.mean([m.weights for m in models], axis=0)
    if models[0].hidden is None:  # linear models (hidden=0), or a fold with nothing to learn
        return tempo.LevelModel(mean=mean, scale=scale, weights=weights, calibration=(1.0, 0.0, 0.0))
    stacked = tuple(np.concatenate([m.hidden[part] for m in models]) for part in range(3))
    return tempo.LevelModel(mean=mean, scale=scale, weights=weights, calibration=(1.0, 0.0, 0.0),
                            hidden=(stacked[0], stacked[1], stacked[2] / len(models)))


def predict(s: Sample, model: tempo.LevelModel) -> tuple[int, float]:
    p = model.probabilities(s.x)
    i = int(np.argmax(p))
    return i, float(p[i])


def flags(est: float, s: Sample) -> dict[str, bool]:
    """Acc1 / Acc1-or-alt / Acc2 of one answer, as benchmarks/accuracy.py scores it."""
    return tempo_flags(est if est > 0 else None, s.bpm, s.alts)


def summarise(rows: list[dict]) -> dict:
    """Accuracy over full clips (excerpts reported separately), overall and per style."""
    def rates(rs: list[dict]) -> dict:
        n = len(rs)
        return {"n": n, **{k: (sum(r[k] for r in rs) / n if n else None) for k in ("acc1", "acc1_or_alt", "acc2")}}

    rows = [r for r in rows if r["truth"] > 0]  # beatless material only serves the calibration
    full = [r for r in rows if not r["excerpt"]]
    styles = sorted({r["style"] for r in full})
    return {**rates(full), "excerpts": rates([r for r in rows if r["excerpt"]]),
            "recall": (sum(r["recall"] for r in full) / len(full)) if full else None,
            "by_style": {st: rates([r for r in full if r["style"] == st]) for st in styles}}


def cross_validate(samples: list[Sample], by: str, l2: float = L2, hidden: int = HIDDEN,
                   seeds: tuple[int, ...] | list[int] = SEEDS) -> tuple[dict, list[dict]]:
    entries = [{"song": s.song, "style": s.style} for s in samples]
    rows: list[dict] = []
    for train, test in crossval.folds(entries, by=by):
        tr = [samples[i] for i in train]
        if not tr:  # a single style cannot be held out from itself
            continue
        mean, scale = standardise(tr)
        model = fit_ensemble(tr, mean, scale, l2, hidden, seeds)
        for i in test:
            s = samples[i]
            j, p = predict(s, model)
            rows.append({"name": s.name, "style": s.style, "excerpt": s.excerpt, "p": p, "truth": s.bpm,
                         "clarity": float(s.clarity[j]), "bpm": float(s.refined[j]), "recall": s.target >= 0,
                         **flags(float(s.refined[j]), s)})
    return summarise(rows), rows


def fit_calibration(rows: list[dict]) -> tuple[float, float, float]:
    """Logistic regression of "top answer right" on logit(p_top) and log(clarity), over CV predictions."""
    p = np.clip(np.array([r["p"] for r in rows]), 1e-4, 1 - 1e-4)
    f = np.stack([np.log(p / (1 - p)), np.log(np.maximum([r["clarity"] for r in rows], 1e-3)), np.ones(p.size)], 1)
    y = np.array([float(r["acc1"]) for r in rows])

    def loss(w):
        z = f @ w
        q = 1 / (1 + np.exp(-z))
        return float(np.mean(np.logaddexp(0, z) - y * z) + 1e-3 * w[:2] @ w[:2]), \
            f.T @ (q - y) / y.size + np.r_[2e-3 * w[:2], 0.0]

    res = minimize(loss, np.array([1.0, 0.0, 0.0]), jac=True, method="L-BFGS-B")
    return tuple(float(v) for v in res.x)


def calibration_table(rows: list[dict], cal: tuple[float, float, float]) -> list[dict]:
    a, b, c = cal
    out = []
    conf = []
    for r in rows:
        p = min(max(r["p"], 1e-4), 1 - 1e-4)
        conf.append(1 / (1 + np.exp(-(a * np.log(p / (1 - p)) + b * np.log(max(r["clarity"], 1e-3)) + c))))
    for lo, hi in ((0, 0.5), (0.5, 0.8), (0.8, 1.01)):
        sel = [r["acc1"] for r, q in zip(rows, conf) if lo <= q < hi]
        mc = [q for q in conf if lo <= q < hi]
        out.append({"band": f"{lo}-{min(hi, 1)}", "n": len(sel), "acc1": (sum(sel) / len(sel)) if sel else None,
                    "mean_confidence": float(np.mean(mc)) if mc else None})
    return out


# ---------------------------------------------------------------- loading

def annotation(entry: dict) -> tuple[float, list[float]]:
    """(tempo, alternatives) of a manifest entry."""
    return float(entry["bpm"]), [float(a) for a in entry.get("alt_bpm") or []]


def trainset_samples(roots: list[Path]) -> list[Sample]:
    """Samples of every clip with a tempo in the training directories (crossval.load_manifests: with more than
    one, each song is named after its directory too)."""
    out = []
    t0 = time.time()
    entries = crossval.load_manifests(roots)
    for k, e in enumerate(entries):
        if not e.get("bpm"):
            continue
        try:
            env = cached_bands(e["path"])
        except Exception as exc:  # an unreadable clip is reported and skipped, not fatal for the fit
            print(f"  skip {e['file']}: {exc}", file=sys.stderr)
            continue
        bpm, alts = annotation(e)
        out += samples_of_clip(env, name=e["file"], song=str(e["song"]), style=str(e["style"]), bpm=bpm, alts=alts)
        if k % 100 == 99:
            print(f"  trainset: {k + 1}/{len(entries)} clips ({time.time() - t0:.0f} s)", file=sys.stderr)
    return out


def dev_samples(corpus: Path) -> list[Sample]:
    truth = json.loads((corpus / "truth.json").read_text())
    out = []
    for e in truth:
        if not e.get("primary", True):
            continue
        s = make_sample(cached_bands(str(corpus / e["file"])), name=e["file"], song=e["file"], style=e["style"],
                        bpm=float(e["bpm"]), alts=[float(a) for a in e.get("alt_bpm", [])])
        if s:
            out.append(s)
    return out


def score_fixed(samples: list[Sample], model: tempo.LevelModel) -> tuple[dict, list[dict]]:
    rows = []
    for s in samples:
        j, p = predict(s, model)
        rows.append({"name": s.name, "style": s.style, "excerpt": s.excerpt, "p": p, "bpm": float(s.refined[j]),
                     "truth": s.bpm, "clarity": float(s.clarity[j]), "recall": s.target >= 0,
                     **flags(float(s.refined[j]), s)})
    return summarise(rows), rows


def before_module(ref: str):
    """backend/analysis/tempo.py as it was at git `ref`, imported under another name (for before/after)."""
    src = subprocess.run(["git", "-C", str(REPO_ROOT), "show", f"{ref}:backend/analysis/tempo.py"], check=True,
                         capture_output=True, text=True).stdout
    path = Path(tempfile.mkdtemp()) / "tempo_before.py"
    path.write_text(src)
    model = subprocess.run(["git", "-C", str(REPO_ROOT), "show", f"{ref}:backend/analysis/models/tempo_level.json"],
                           capture_output=True, text=True)
    if model.returncode == 0:  # the estimator looks for its model beside itself
        (path.parent / "models").mkdir()
        (path.parent / "models" / "tempo_level.json").write_text(model.stdout)
    spec = importlib.util.spec_from_file_location("tempo_before", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["tempo_before"] = mod  # dataclasses look their module up while the class is built
    spec.loader.exec_module(mod)
    return mod


def score_before(mod, roots: list[Path], corpus: Path | None) -> dict:
    """Accuracy of an older estimator on the same full clips (training set and dev corpus)."""
    out = {}
    sets = []
    if roots:
        sets.append(("trainset", [(e["path"], e["style"], *annotation(e)) for e in crossval.load_manifests(roots)
                                  if e.get("bpm")]))
    if corpus is not None:
        truth = json.loads((corpus / "truth.json").read_text())
        sets.append(("dev", [(str(corpus / e["file"]), e["style"], float(e["bpm"]), [float(a) for a in e["alt_bpm"]])
                             for e in truth if e.get("primary", True)]))
    for name, items in sets:
        rows = []
        for path, style, bpm, alts in items:
            est = cached_bands(path).estimate(mod).bpm or 0.0
            s = Sample(path, path, style, bpm, alts, np.zeros(0), np.zeros(0), np.zeros(0), np.zeros((0, 0)), -1, False)
            rows.append({"style": style, "excerpt": False, "recall": True, "truth": bpm, **flags(est, s)})
        out[name] = summarise(rows)
    return out


def print_summary(title: str, s: dict) -> None:
    def pct(v):
        return "   -  " if v is None else f"{100 * v:5.1f}%"

    print(f"{title}: n={s['n']}  Acc1 {pct(s['acc1'])}  Acc1-or-alt {pct(s['acc1_or_alt'])}  Acc2 {pct(s['acc2'])}"
          + (f"  (candidate recall {pct(s['recall'])})" if s.get("recall") is not None else ""))
    if s.get("excerpts") and s["excerpts"]["n"]:
        e = s["excerpts"]
        print(f"    excerpts (6 s, 12 s): n={e['n']}  Acc1 {pct(e['acc1'])}  Acc1-or-alt {pct(e['acc1_or_alt'])}  "
              f"Acc2 {pct(e['acc2'])}")
    for st, v in s.get("by_style", {}).items():
        print(f"    {st:16s} n={v['n']:4d}  Acc1 {pct(v['acc1'])}  or-alt {pct(v['acc1_or_alt'])}  "
              f"Acc2 {pct(v['acc2'])}")


def _default_dev() -> Path:
    """../shared/corpus beside the repository (or beside its worktree directory)."""
    for base in (REPO_ROOT.parent, REPO_ROOT.parent.parent):
        if (base / "shared" / "corpus" / "truth.json").is_file():
            return base / "shared" / "corpus"
    return REPO_ROOT.parent / "shared" / "corpus"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trainset", type=Path, nargs="+", default=[crossval.DEFAULT_TRAINSET_DIR],
                    help="training set directories (generator output), fitted on together")
    ap.add_argument("--no-trainset", action="store_true", help="fit on the synthesized loops alone")
    ap.add_argument("--synth-loops", type=int, default=150, help="synthesized sparse drum loops to add (default 150)")
    ap.add_argument("--synth-noise", type=int, default=150,
                    help="beatless synthesized clips for calibration (default 150: with 45, 10 s of white noise "
                         "got a confidence of 0.39 from the 8-unit model)")
    ap.add_argument("--dev", type=Path, default=_default_dev(),
                    help="validation corpus (never fitted on)")
    ap.add_argument("--l2", type=float, default=L2)
    ap.add_argument("--hidden", type=int, default=HIDDEN, help=f"hidden tanh units (0: linear; default {HIDDEN})")
    ap.add_argument("--write", action="store_true", help="write backend/analysis/models/tempo_level.json")
    ap.add_argument("--cv-json", type=Path, help="write the cross-validated figures here (for accuracy.py)")
    ap.add_argument("--before", help="also score backend/analysis/tempo.py of this git ref on the same clips")
    ap.add_argument("--seeds", default=",".join(str(v) for v in SEEDS),
                    help="random starts of the hidden layer, comma-separated, averaged into the model "
                         "(default %(default)s)")
    ap.add_argument("--without", default="",
                    help="ablation: leave out the features whose names start with these comma-separated prefixes "
                         "(figures only; cannot be combined with --write)")
    args = ap.parse_args(argv)
    seeds = [int(v) for v in args.seeds.split(",") if v.strip()]
    dropped = [f for f in tempo.FEATURES if any(f.startswith(p) for p in args.without.split(",") if p)]
    if dropped and args.write:
        ap.error("--without fits a model the estimator cannot read: no --write")
    names = [f for f in tempo.FEATURES if f not in dropped]

    t0 = time.time()
    samples: list[Sample] = []
    roots = [] if args.no_trainset else args.trainset
    samples += trainset_samples(roots)
    samples += synth_samples(args.synth_loops)
    samples += synth_noise_samples(args.synth_noise)
    if dropped:
        keep = [tempo.FEATURES.index(f) for f in names]
        samples = [Sample(**{**s.__dict__, "x": s.x[:, keep]}) for s in samples]
        print(f"without {', '.join(dropped)}")
    print(f"{len(samples)} samples ({sum(not s.excerpt for s in samples)} full clips) in {time.time() - t0:.0f} s; "
          f"candidate recall {np.mean([s.target >= 0 for s in samples if s.bpm > 0]):.1%}")

    cv_song, rows_song = cross_validate(samples, "song", args.l2, args.hidden, seeds)
    cv_style, _ = cross_validate(samples, "style", args.l2, args.hidden, seeds)
    print_summary(f"CV by song (5 folds, starts {args.seeds} averaged)", cv_song)
    print_summary(f"CV leave-one-style-out (starts {args.seeds} averaged)", cv_style)
    cal = fit_calibration([r for r in rows_song])
    table = calibration_table(rows_song, cal)
    print("Calibration on song-fold predictions (band of bpm_confidence: n, Acc1, mean confidence):")
    for r in table:
        print(f"    {r['band']:8s} n={r['n']:4d}  Acc1 {r['acc1'] if r['acc1'] is None else round(r['acc1'], 3)}  "
              f"mean conf {r['mean_confidence'] if r['mean_confidence'] is None else round(r['mean_confidence'], 3)}")

    mean, scale = standardise(samples)
    final = fit_ensemble(samples, mean, scale, args.l2, args.hidden, seeds)
    fit_in, _ = score_fixed(samples, final)
    print_summary("In-sample (final model on its own training data)", {k: v for k, v in fit_in.items()
                                                                       if k != "by_style"})
    dev = None
    if args.dev and (args.dev / "truth.json").is_file():
        dev, dev_rows = score_fixed(dev_samples(args.dev), final)
        print_summary("Dev corpus (validation, never fitted)", dev)
        for r in dev_rows:
            if not r["acc1"]:
                print(f"    miss {r['name']} ({r['style']}): truth {r['truth']:.1f}, got {r['bpm']:.1f}")
    for name, weight, m, sc in zip(names, final.weights, mean, scale):  # the linear term
        print(f"    {name:20s} w={weight:+.3f}  (mean {m:+.3f}, scale {sc:.3f})")

    if args.before:
        b = score_before(before_module(args.before), roots, args.dev if (args.dev / "truth.json").is_file() else None)
        for name, s in b.items():
            print_summary(f"BEFORE ({args.before}) on {name}", s)

    command = "nice python benchmarks/fit_tempo.py " + " ".join(argv if argv is not None else sys.argv[1:])
    fit_record = {"command": command.strip(), "samples": len(samples),
                  "full_clips": sum(not s.excerpt for s in samples), "l2": args.l2, "hidden": args.hidden,
                  "seeds": seeds,
                  "cv_by_song": {k: cv_song[k] for k in ("n", "acc1", "acc1_or_alt", "acc2")},
                  "cv_by_style": {k: cv_style[k] for k in ("n", "acc1", "acc1_or_alt", "acc2")},
                  "dev": None if dev is None else {k: dev[k] for k in ("n", "acc1", "acc1_or_alt", "acc2")},
                  "calibration_table": table}
    if args.write:
        model = {"features": list(tempo.FEATURES), "mean": mean.round(6).tolist(), "scale": scale.round(6).tolist(),
                 "weights": final.weights.round(6).tolist(),
                 "calibration": dict(zip("abc", (round(v, 6) for v in cal))),
                 "fit": fit_record}
        if final.hidden is not None:
            w_in, bias, w_out = final.hidden
            model["hidden"] = {"W": w_in.round(6).tolist(), "b": bias.round(6).tolist(), "v": w_out.round(6).tolist()}
        tempo.MODEL_PATH.parent.mkdir(parents=True, exist_ok=True)
        tempo.MODEL_PATH.write_text(json.dumps(model, indent=1) + "\n")
        print(f"wrote {tempo.MODEL_PATH} (no prior shift: benchmarks/fit_tempo_prior.py fits it for this network)")
    if args.cv_json:
        def brief(s):
            return {"acc1": s["acc1"], "acc1_or_alt": s["acc1_or_alt"], "acc2": s["acc2"], "n": s["n"],
                    "by_style": s["by_style"]}
        args.cv_json.write_text(json.dumps({"tempo": {**brief(cv_song), "by": "song, 5 folds",
                                                      "leave_one_style_out": brief(cv_style),
                                                      "dev": fit_record["dev"]}}, indent=1))
    print(f"done in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
