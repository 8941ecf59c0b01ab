"""speaker.ivector_backend (the i-vector back-end's library half) against direct formulas, and
the one cohort driver (speaker.score_norm.normalise) that both back-ends normalise through."""
from __future__ import annotations

import numpy as np
import pytest

from gmmext import GaussianMixture
from speaker import ivector_backend as IB
from speaker.cohort import Cohort, normalise as gmm_normalise
from speaker.model_io import ModelError
from speaker.plda import length_norm, train_backend

EPS = 1e-8


def _ivectors(n_spk=6, per=5, R=8, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3, size=(n_spk, R))
    X = np.concatenate([c + rng.normal(size=(per, R)) for c in centres])
    return X, np.repeat(np.arange(n_spk), per)


def _cos(a, b):
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_enrolment_models_file_and_cosine_scores_match_the_direct_formulas(tmp_path):
    X, y = _ivectors()
    groups = {f"s{k}": X[y == k] for k in range(3)}
    models = IB.enrol_speakers(groups, "cosine", ubm_fingerprint="f" * 64)
    for i, (m, c) in models.as_dict().items():       # the mean of the length-normalised i-vectors
        want = np.mean([v / np.linalg.norm(v) for v in groups[i]], axis=0)
        np.testing.assert_allclose(m, want, rtol=1e-12)
        assert c == 1.0
    IB.save_models(tmp_path / "m.npz", models)
    back = IB.load_models(tmp_path / "m.npz", "cosine")
    assert back.ids == models.ids and np.array_equal(back.means, models.means)
    with pytest.raises(ModelError, match="it holds 'ivector-models-cosine'"):
        IB.load_models(tmp_path / "m.npz", "plda")
    tests = X[y == 4][:3]
    s = IB.score_pairs("cosine", None, models.means[:3], models.counts[:3], IB.to_space(None, tests))
    np.testing.assert_allclose(s, [_cos(models.means[i], tests[i]) for i in range(3)], rtol=1e-12)
    be = train_backend(X, y)
    plda_models = IB.enrol_speakers(groups, "plda", be)
    assert list(plda_models.counts) == [5, 5, 5]         # by-the-model enrolment: n_s recordings
    np.testing.assert_allclose(plda_models.means[0], be.transform(groups["s0"]).mean(axis=0), rtol=1e-12)
    with pytest.raises(ValueError, match="needs a trained back-end"):
        IB.enrol_speakers(groups, "plda", None)
    with pytest.raises(ValueError, match="unknown i-vector back-end"):
        IB.enrol_speakers(groups, "svm", be)


def test_normalised_ivector_scores_match_per_trial_loops():
    """z, t, zt, s and as of cosine scores, each trial's cohort scores computed by hand."""
    X, y = _ivectors(n_spk=10, per=3)
    Q = length_norm(X[y >= 5])                           # 15 cohort recordings
    E, Z = length_norm(X[y == 0][:2]), length_norm(X[(y > 0) & (y < 5)])
    E = np.repeat(E, 6, axis=0)[:len(Z)]                 # repeated models: their cohort scores are shared
    C = np.ones(len(E))
    raw = np.einsum("nd,nd->n", E, Z)

    def pairs(a, c, b):
        return IB.score_pairs("cosine", None, a, c, b)

    def z(s, coh):
        return (s - coh.mean()) / max(coh.std(), EPS)
    ez = [np.array([_cos(E[i], q) for q in Q]) for i in range(len(E))]
    tz = [np.array([_cos(q, Z[i]) for q in Q]) for i in range(len(E))]
    want = {"z": [z(raw[i], ez[i]) for i in range(len(E))],
            "t": [z(raw[i], tz[i]) for i in range(len(E))],
            "s": [(z(raw[i], ez[i]) + z(raw[i], tz[i])) / 2 for i in range(len(E))],
            "as": [(z(raw[i], np.sort(ez[i])[-4:]) + z(raw[i], np.sort(tz[i])[-4:])) / 2 for i in range(len(E))]}
    half = len(Q) // 2
    T, Zc = Q[:half], Q[half:]
    zt = []
    for i in range(len(E)):
        e = np.array([_cos(E[i], q) for q in Zc])
        t_scores = np.array([z(_cos(t, Z[i]), np.array([_cos(t, q) for q in Zc])) for t in T])
        zt.append(z(z(raw[i], e), t_scores))
    want["zt"] = zt
    for norm, expected in want.items():
        got = IB.normalise_scores(norm, raw, E, C, Z, Q, pairs, top_n=4 if norm == "as" else None)
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12, err_msg=norm)


def test_both_back_ends_refuse_the_same_small_cohorts_the_same_way():
    """One cohort driver: a cohort too small for a normalisation is the same ValueError for the
    GMM-UBM cohort and the i-vector back-ends."""
    rng = np.random.default_rng(0)
    ubm = GaussianMixture.from_parameters(np.full(2, 0.5), rng.normal(size=(2, 3)), np.ones((2, 3)))
    feats = [rng.normal(size=(40, 3)) for _ in range(4)]
    test = rng.normal(size=(30, 3))
    models = {"a": ubm}
    Q = length_norm(rng.normal(size=(4, 3)))
    E, Z = length_norm(rng.normal(size=(1, 3))), length_norm(rng.normal(size=(1, 3)))
    for n, norm, match in ((2, "z", "at least 3 recordings"), (3, "zt", "at least 4 recordings"),
                           (4, "x", "unknown normalisation")):
        cohort = Cohort.from_features(ubm, [str(i) for i in range(n)], feats[:n])
        with pytest.raises(ValueError, match=match):
            gmm_normalise(norm, [("a", "t")], np.zeros(1), models, {"t": test}.__getitem__, cohort)
        with pytest.raises(ValueError, match=match):
            IB.normalise_scores(norm, np.zeros(1), E, np.ones(1), Z, Q[:n],
                                lambda a, c, b: IB.score_pairs("cosine", None, a, c, b))
