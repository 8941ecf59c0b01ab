"""GMM-UBM on real speech (the audio fixtures), through the library API."""
from pathlib import Path

import numpy as np
import pytest

import speaker
from speaker.metrics import eer

FIX = Path(__file__).resolve().parent.parent / "audio_fixtures"
SPEAKERS = ["george", "jackson", "lucas", "nicolas", "theo", "yweweler"]


@pytest.fixture(scope="module")
def feats():
    cfg = speaker.FeatureConfig(sample_rate=8000)
    return {p.name: speaker.extract_features(p, config=cfg) for p in sorted(FIX.glob("*.wav"))}


def run_recipe(feats, seed, top_c):
    ubm = speaker.train_ubm([f for n, f in feats.items() if n.endswith("_2.wav")], 32,
                            n_iter=8, random_state=seed)
    models = {s: speaker.map_adapt(ubm, [feats[f"{d}_{s}_{i}.wav"] for d in range(10) for i in (0, 1)])
              for s in SPEAKERS}
    trials = [(m, f"{d}_{s}_{i}.wav") for s in SPEAKERS for d in range(10) for i in (3, 4) for m in SPEAKERS]
    labels = np.array([t.split("_")[1] == m for m, t in trials])
    scores = speaker.score_trials(trials, models, ubm, feats, top_c=top_c)
    return scores, labels


def test_recipe_separates_speakers(feats):
    scores, labels = run_recipe(feats, seed=0, top_c=None)
    e = eer(scores, labels)
    assert e < 0.15, f"EER {e:.3f} on the fixtures (chance is 0.5)"
    fast, _ = run_recipe(feats, seed=0, top_c=5)
    assert eer(fast, labels) < 0.15
    assert np.corrcoef(fast, scores)[0, 1] > 0.99


def test_recipe_is_deterministic(feats):
    a, _ = run_recipe(feats, seed=3, top_c=5)
    b, _ = run_recipe(feats, seed=3, top_c=5)
    np.testing.assert_array_equal(a, b)
