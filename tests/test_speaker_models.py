"""UBM training, MAP adaptation and llr scoring against direct formulas."""
import numpy as np
import pytest
from scipy.special import logsumexp

from gmmext import GaussianMixture
from speaker.adapt import map_adapt
from speaker.scoring import llr, score_trials
from speaker.ubm import train_ubm
from conftest import random_params, reference_logprob


@pytest.fixture(scope="module")
def ubm():
    w, mu, var = random_params(8, 3, seed=0)
    return GaussianMixture.from_parameters(w, mu, var)


def utterances(seed, n=6, d=3):
    rng = np.random.default_rng(seed)
    return [rng.normal(loc=rng.normal(scale=2, size=d), size=(int(rng.integers(40, 120)), d)) for _ in range(n)]


def paper_map(ubm, X, r, adapt):
    """Reynolds, Quatieri & Dunn (2000) eqs. 8-14, transcribed directly."""
    w, mu, var = ubm.weights_, ubm.means_, ubm.covariances_
    lp = reference_logprob(X, w, mu, var)
    P = np.exp(lp - logsumexp(lp, axis=1, keepdims=True))      # Pr(i | x_t), eq. 7
    n = P.sum(0)                                                 # eq. 8
    Ex = (P.T @ X) / n[:, None]                                  # eq. 9
    Exx = (P.T @ X ** 2) / n[:, None]                            # eq. 10
    a = n / (n + r)                                              # eq. 14
    T = X.shape[0]
    w_new = a * n / T + (1 - a) * w                              # eq. 11
    w_new /= w_new.sum()
    mu_new = a[:, None] * Ex + (1 - a[:, None]) * mu             # eq. 12
    var_new = a[:, None] * Exx + (1 - a[:, None]) * (var + mu ** 2) - mu_new ** 2   # eq. 13
    if "m" not in adapt:
        # the model keeps the UBM mean: the same adapted second moment, about that mean
        var_new = var_new + (mu_new - mu) ** 2
    return (w_new if "w" in adapt else w, mu_new if "m" in adapt else mu,
            var_new if "v" in adapt else var)


@pytest.mark.parametrize("adapt", ["m", "w", "v", "mw", "mv", "wv", "mwv"])
@pytest.mark.parametrize("r", [4.0, 16.0])
def test_map_matches_the_paper(ubm, adapt, r):
    X = np.vstack(utterances(1, n=3))
    spk = map_adapt(ubm, X, relevance_factor=r, adapt=adapt)
    w, mu, var = paper_map(ubm, X, r, adapt)
    np.testing.assert_allclose(spk.weights_, w, rtol=1e-10)
    np.testing.assert_allclose(spk.means_, mu, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(spk.covariances_, var, rtol=1e-10)


def test_map_of_list_equals_map_of_concatenation(ubm):
    parts = utterances(2, n=4)
    a = map_adapt(ubm, parts, adapt="mwv")
    b = map_adapt(ubm, np.vstack(parts), adapt="mwv")
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    np.testing.assert_allclose(a.covariances_, b.covariances_, rtol=1e-10)


def test_map_limits(ubm):
    X = np.vstack(utterances(3, n=2))
    tiny = map_adapt(ubm, X[:1], relevance_factor=1e9)      # no data weight: the UBM
    np.testing.assert_allclose(tiny.means_, ubm.means_, rtol=1e-6, atol=1e-6)
    for bad in (dict(adapt="x"), dict(adapt=""), dict(adapt="mm"), dict(relevance_factor=0.0)):
        with pytest.raises(ValueError):
            map_adapt(ubm, X, **bad)
    with pytest.raises(ValueError, match="dims|features"):
        map_adapt(ubm, np.zeros((5, 4)))


@pytest.mark.parametrize("top_c", [None, 8])
def test_llr_equals_direct_formula(ubm, top_c):
    X = np.vstack(utterances(4, n=2))
    spk = map_adapt(ubm, X[:100], adapt="mwv")
    ref = (logsumexp(reference_logprob(X, spk.weights_, spk.means_, spk.covariances_), axis=1)
           - logsumexp(reference_logprob(X, ubm.weights_, ubm.means_, ubm.covariances_), axis=1)).mean()
    assert llr(spk, ubm, X, top_c=top_c) == pytest.approx(ref, rel=1e-10)


def test_top_c_5_close_to_full_on_real_sized_model():
    rng = np.random.default_rng(5)
    feats = [rng.normal(size=(300, 6)) * rng.uniform(0.5, 2, size=6) + rng.normal(scale=3, size=6)
             for _ in range(12)]
    ubm = train_ubm(feats, 32, n_iter=5, dtype=np.float64)
    spk = map_adapt(ubm, feats[0])
    for X in (feats[0], feats[5]):
        full, fast = llr(spk, ubm, X), llr(spk, ubm, X, top_c=5)
        assert fast == pytest.approx(full, abs=0.02 * max(1.0, abs(full)))


def test_score_trials_groups_tests_and_reports_failures(ubm):
    utts = utterances(6, n=3)
    models = {"a": map_adapt(ubm, utts[0]), "b": map_adapt(ubm, utts[1], adapt="mwv")}
    tests = {"t0": utts[2], "t1": utts[0]}
    calls = []

    def feats(key):
        calls.append(key)
        if key == "broken":
            raise OSError("cannot read")
        return tests[key]

    trials = [("a", "t0"), ("b", "t0"), ("a", "t1"), ("b", "broken"), ("b", "t1")]
    for top_c in (None, 3):
        calls.clear()
        errors = {}
        s = score_trials(trials, models, ubm, feats, top_c=top_c, errors=errors)
        assert sorted(calls) == ["broken", "t0", "t1"]        # every test read once
        assert np.isnan(s[3]) and "cannot read" in errors["broken"]
        for i in (0, 1, 2, 4):
            m, t = trials[i]
            assert s[i] == pytest.approx(llr(models[m], ubm, tests[t], top_c=top_c), rel=1e-10)
    with pytest.raises(OSError):
        score_trials(trials, models, ubm, feats)
    with pytest.raises(KeyError, match="unknown model"):
        score_trials([("zz", "t0")], models, ubm, tests)


def test_ubm_training_streams_and_improves():
    feats = utterances(7, n=10, d=4)
    calls = []

    def source():
        calls.append(1)
        return iter(feats)

    a = train_ubm(feats, 6, n_iter=6, dtype=np.float64)
    b = train_ubm(source, 6, n_iter=6, dtype=np.float64)
    assert len(calls) >= 6                                  # one pass per EM iteration
    np.testing.assert_allclose(a.means_, b.means_, rtol=1e-10)
    assert a.n_components == 6 and np.all(np.isfinite(a.covariances_))
    lb = np.array(a.lower_bounds_)
    # at the final size, EM passes never lower the likelihood
    assert np.all(np.diff(lb[-6:]) >= -1e-9)
    X = np.vstack(feats)
    gvar = X.var(axis=0)
    assert np.all(a.covariances_ >= 0.01 * gvar * (1 - 1e-9))   # the relative variance floor
    km = train_ubm(feats, 6, init="kmeans", n_iter=6, dtype=np.float32)
    assert km.means_.dtype == np.float32 and np.isfinite(km.lower_bound_)
    with pytest.raises(ValueError, match="no feature frames"):
        train_ubm([], 4)


def test_a_full_covariance_ubm_is_refused_clearly(tmp_path):
    """gmmext's default is covariance_type='full' (scikit-learn's); the recipe needs diag."""
    from gmmext import GaussianMixture
    from speaker.model_io import save_model
    X = np.random.default_rng(0).normal(size=(200, 3))
    full = GaussianMixture(2, random_state=0, max_iter=2).fit(X)
    with pytest.raises(ValueError, match="needs covariance_type='diag'"):
        save_model(tmp_path / "ubm.npz", full)
    assert not (tmp_path / "ubm.npz").exists()



@pytest.mark.parametrize("kind", ["full", "tied", "spherical"])
def test_map_adaptation_refuses_a_non_diagonal_ubm_before_any_statistics(kind, monkeypatch):
    """The diag-only gate is MAP's, not only the model files': map_adapt, map_adapt_many and
    map_from_stats refuse with the one message before the UBM computes anything."""
    from gmmext import GMMStats
    from speaker.adapt import map_adapt_many, map_from_stats
    X = np.random.default_rng(0).normal(size=(200, 3))
    other = GaussianMixture(2, covariance_type=kind, random_state=0, max_iter=2).fit(X)

    def no_statistics(*args, **kwargs):
        raise AssertionError("statistics computed before the gate")
    monkeypatch.setattr(other, "accumulate_segments", no_statistics)
    monkeypatch.setattr(other, "accumulate", no_statistics)
    stats = GMMStats(np.ones(2), np.zeros((2, 3)), np.ones((2, 3)), 0.0, 2.0)
    for call in (lambda: map_adapt(other, [X[:50]]), lambda: map_adapt_many(other, {"a": [X[:50]]}),
                 lambda: map_from_stats(other, stats)):
        with pytest.raises(ValueError, match=f"covariance_type='{kind}'.*needs covariance_type='diag'"):
            call()
