"""benchmarks/fit_tempo_prior.py: the prior's shift follows the level the annotations tap, and --write records it
where the estimator reads it."""
import json
import shutil

import pytest

from backend.analysis import tempo
from benchmarks import fit_tempo, fit_tempo_prior
from tests import synth

#: Clicks with every other one accented: the beat could be either click or accent. People tapping fast annotate the
#: click rate, people tapping slow the accent rate.
RATES = (150.0, 160.0, 172.0)


def _set(root, factor):
    root.mkdir()
    entries = []
    for i, bpm in enumerate(RATES):
        name = f"clicks-{i}.wav"
        (root / name).write_bytes(synth.wav_bytes(synth.click_track(bpm, seconds=14.0, accent_every=2)))
        entries.append({"file": name, "song": f"clicks-{i}", "style": "clicks", "bpm": bpm * factor, "alt_bpm": []})
    (root / "manifest.json").write_text(json.dumps(entries))
    return root


@pytest.fixture
def sets(tmp_path, monkeypatch):
    monkeypatch.setattr(fit_tempo, "CACHE_DIR", tmp_path / "cache")
    return _set(tmp_path / "fast", 1.0), _set(tmp_path / "slow", 0.5)


def test_the_shift_leans_to_the_level_the_annotations_tap(sets):
    fast, slow = (fit_tempo.trainset_samples([d]) for d in sets)
    model = tempo.load_model()
    up, down = fit_tempo_prior.fit_shift(fast, model), fit_tempo_prior.fit_shift(slow, model)
    assert up > 0 > down
    read_fast = fit_tempo_prior.figures(fast, fit_tempo_prior.dataclasses.replace(model, prior_shift=up))
    assert read_fast["acc1"] == 1.0, read_fast["misses"]
    # the accents are too weak for any shift in bounds to make the accent the beat: the fit is a nudge, not a rule
    read_slow = fit_tempo_prior.figures(slow, fit_tempo_prior.dataclasses.replace(model, prior_shift=down))
    assert read_slow["acc1"] == 0.0 and read_slow["acc2"] == 1.0


def test_write_records_the_shift_where_the_estimator_reads_it(sets, tmp_path, monkeypatch):
    path = tmp_path / "tempo_level.json"
    shutil.copy(tempo.MODEL_PATH, path)
    monkeypatch.setattr(tempo, "MODEL_PATH", path)
    assert fit_tempo_prior.main(["--fit", str(sets[0]), "--check", str(sets[1]), "--dev", str(tmp_path),
                                 "--write"]) == 0
    record = json.loads(path.read_text())["prior_shift"]
    assert "--fit" in record["command"] and set(record["figures_before_after"]) == {
        "fitted on (in-sample)", "held out: slow"}
    assert tempo.load_model(str(path)).prior_shift == pytest.approx(record["value"])
    assert record["value"] > 0
