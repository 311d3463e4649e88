"""benchmarks/fit_key.py: the excerpts it fits and scores beside each clip are what an analysis of a short clip
sees, they stay in their song's group, and a zero weight leaves a clip out of the fit."""
import json

import numpy as np

from backend.analysis import key as key_mod
from benchmarks.crossval import folds
from benchmarks.fit_key import (EXCERPT_SECONDS, Candidate, _design, _parse_args, base_model, calibrated_final,
                                excerpts, fit_profiles, fit_weights, key_label, load_sets, views)
from tests import synth

#: The candidate the committed key model is fitted as (fit_key --only c0.5-d0.9-p10-b52/fitted).
COMMITTED = Candidate(base_model(compression=0.5, partial_decay=0.9, n_partials=10, bass_below=52), "fitted")


def _training_dir(root, clips):
    """A generator-like training directory: `clips` as (song name, audio, key or None), one clip per song."""
    root.mkdir()
    manifest = []
    for song, audio, key in clips:
        (root / f"{song}-r0.wav").write_bytes(synth.wav_bytes(audio))
        manifest.append({"file": f"{song}-r0.wav", "song": song, "style": song.split("-")[0], "key": key})
    (root / "manifest.json").write_text(json.dumps(manifest))
    return str(root)


def _songs(keys):
    """(song name, 8 s of I-IV-V-I in the key, "<tonic> <mode>") for each (tonic, mode)."""
    return [(f"pop-{i:03d}", synth.chord_progression(tonic, mode, seconds=8.0), f"{tonic} {mode}")
            for i, (tonic, mode) in enumerate(keys)]


def _load(tmp_path, *argv):
    return load_sets(_parse_args([*argv, "--corpus", str(tmp_path / "no-corpus"), "--cache", str(tmp_path / "cache")]))


def _clip(name, song, n_segments):
    rng = np.random.default_rng(len(name))
    return {"file": name, "song": song, "style": "pop"}, (rng.random((n_segments, 12)), rng.random((n_segments, 12)))


def test_excerpts_are_runs_of_the_clips_segments_in_the_clips_song():
    items, segs = zip(*[_clip("a.wav", "s1", 30), _clip("b.mp3", "s2", 30), _clip("short.wav", "s3", 5)])
    short, short_segs = excerpts(list(items), list(segs), 1.0)
    assert sorted((it["file"], it["excerpt"]) for it in short) == sorted(
        (f, s) for f in ("a.wav", "b.mp3") for s in EXCERPT_SECONDS)  # a 5-s clip has no 6-s excerpt
    for it, (w, b) in zip(short, short_segs):
        whole_w, whole_b = segs[[x["file"] for x in items].index(it["file"])]
        assert w.shape == (it["excerpt"], 12) == b.shape
        start = next(i for i in range(len(whole_w)) if np.array_equal(whole_w[i], w[0]))
        assert np.array_equal(whole_w[start:start + len(w)], w) and np.array_equal(whole_b[start:start + len(b)], b)
        assert it["song"] == items[[x["file"] for x in items].index(it["file"])]["song"]
    # the same offsets on every run: a re-fit scores the same excerpts
    again, _ = excerpts(list(items), list(segs), 1.0)
    assert [it["excerpt"] for it in again] == [it["excerpt"] for it in short]
    # folds by song never split a clip from its excerpts
    everything = list(items) + short
    for train, test in folds(everything, by="song"):
        assert not {everything[i]["song"] for i in train} & {everything[i]["song"] for i in test}


def test_an_excerpt_of_weight_zero_changes_nothing_in_the_fit():
    rng = np.random.default_rng(3)
    n = 40
    zw, zb = rng.normal(size=(n, 12)), rng.normal(size=(n, 12))
    zc = rng.random((n, 24))
    labels = rng.integers(0, 24, n)
    items = [{"excerpt": 6} if i % 4 == 0 else {} for i in range(n)]
    weights = fit_weights(items, 0.0)
    assert weights.tolist() == [0.0 if i % 4 == 0 else 1.0 for i in range(n)]
    keep = weights > 0
    X = _design(zw, zb, zc)

    def key_probabilities(theta):  # what a fit decides; the weights themselves agree only to the optimizer's
        s = X @ theta              # tolerance, which depends on the order of the sums (seen: 5e-4 on one CPU)
        p = np.exp(s - s.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    with_zero = fit_profiles(zw, zb, zc, labels, 1e-3, weights)
    without = fit_profiles(zw[keep], zb[keep], zc[keep], labels[keep], 1e-3)
    np.testing.assert_allclose(key_probabilities(with_zero), key_probabilities(without), atol=1e-3)
    with_one = fit_profiles(zw, zb, zc, labels, 1e-3, fit_weights(items, 1.0))
    assert np.abs(key_probabilities(with_one) - key_probabilities(without)).max() > 0.1


def test_the_length_term_is_zero_for_a_preview_and_longer_and_negative_below():
    terms = key_mod.calibration_terms(np.array([2.0, 2.0, 2.0]), 0.2, 0.5, np.array([6.0, 30.0, 240.0]))
    assert terms[0, 4] < 0 and terms[1, 4] == 0.0 == terms[2, 4]
    assert terms[0, 4] == np.log(6.0 / key_mod.SECONDS_CENTRE)


def test_several_training_directories_are_fitted_together_and_keep_their_songs_apart(tmp_path):
    one = _training_dir(tmp_path / "run-a", _songs([("A", "minor")]))
    two = _training_dir(tmp_path / "run-b", _songs([("D", "major")]))
    train, keyless, dev = _load(tmp_path, "--trainset", one, two)
    assert sorted((it["song"], it["ref"]) for it in train) == [("run-a/pop-000", (9, "minor")),
                                                               ("run-b/pop-000", (2, "major"))]
    assert keyless == [] and dev == [] and all(it["pf"] is not None for it in train)
    # one directory keeps its songs' own names, as fits before several directories were possible did
    train_one, _, _ = _load(tmp_path, "--trainset", one)
    assert [it["song"] for it in train_one] == ["pop-000"]


def test_a_decision_only_directory_teaches_the_profiles_but_not_the_confidence(tmp_path):
    plain = _training_dir(tmp_path / "plain", _songs([("C", "major"), ("A", "minor"), ("E", "major"), ("D", "minor")]))
    modal = _training_dir(tmp_path / "modal", _songs([("G", "major"), ("F", "minor"), ("B", "major")]))
    train, keyless, _ = _load(tmp_path, "--trainset", plain, "--decision-only", modal)
    assert [it["calibrates"] for it in train] == [True] * 4 + [False] * 3
    zw, zb, zc, segs = views(train, COMMITTED.model)
    labels = np.array([key_label(it["ref"]) for it in train])
    right = np.eye(24)[labels] * 3.0              # out-of-fold scores that name every true key
    modal_wrong = right.copy()
    modal_wrong[4:] = np.eye(24)[(labels[4:] + 7) % 24] * 3.0  # ...but a fifth away on the modal songs

    def calibration(oof, items):
        report = {}
        model = calibrated_final(report, items, items, keyless, COMMITTED, (zw, zb, zc), segs, 1e-3, 0.0, oof)
        return np.array(model.calibration), report["calibration"]

    calib, report = calibration(right, train)
    np.testing.assert_allclose(calibration(modal_wrong, train)[0], calib)  # their answers do not move it
    assert sum(row["n"] for row in report["table_oof_decision_only"]) == 3
    assert sum(row["n"] for row in report["table_oof"]) == 4
    everything = [{**it, "calibrates": True} for it in train]
    assert not np.allclose(calibration(modal_wrong, everything)[0], calib)  # calibrated on, they would


def test_drum_loops_weighed_more_in_the_calibration_get_a_lower_confidence(tmp_path):
    # drums alone with tuned toms: no key, though some pass the no-key gate
    drums = [(f"percussion-{i:03d}", synth.tom_groove(100 + 10 * i, (80.0 + 9 * i, 110.0 + 9 * i, 150.0 + 9 * i),
                                                       seconds=12, seed=i), None) for i in range(3)]
    root = _training_dir(tmp_path / "set", _songs([("C", "major"), ("A", "minor"), ("E", "major"), ("D", "minor")])
                         + drums)
    train, keyless, _ = _load(tmp_path, "--trainset", root)
    zw, zb, zc, segs = views(train, COMMITTED.model)
    oof = np.eye(24)[np.array([key_label(it["ref"]) for it in train])] * 3.0

    def loops_confidence(keyless_weight):
        report = {}
        calibrated_final(report, train, train, keyless, COMMITTED, (zw, zb, zc), segs, 1e-3, 0.0, oof, keyless_weight)
        assert report["calibration"]["keyless_passing_gate"] > 0  # else there is nothing to weigh
        return report["calibration"]["keyless_median_confidence"]

    assert loops_confidence(3.0) < loops_confidence(1.0)
