"""A models file with many speakers: validated at once, each model built when read."""
import tracemalloc

import numpy as np
import pytest

from gmmext import GaussianMixture
from speaker.gates import NO_GATE
from speaker.model_io import ModelError, load_model, ubm_fingerprint
from speaker.store import SpeakerStore
from conftest import random_params

S, K, D = 50_000, 2, 2


def write_models(path, ubm, S, seed=0, spoil=None):
    """A models file in the documented layout (``speaker.model_io``), written with ``np.savez``
    directly (``save_model`` takes built models); ``spoil(w, mu, var)`` edits the arrays first.
    Returns (ids, weights, means, variances)."""
    rng = np.random.default_rng(seed)
    w = rng.dirichlet(np.ones(K), size=S)
    mu = rng.normal(size=(S, K, D))
    var = rng.uniform(0.5, 2.0, size=(S, K, D))
    if spoil is not None:
        spoil(w, mu, var)
    ids = np.array([f"spk{s:06d}" for s in range(S)])
    np.savez(path, format=np.array("gmmext-speaker"), format_version=np.array(1), kind=np.array("speakers"),
             feature_config=np.array(""), ubm_fingerprint=np.array(ubm_fingerprint(ubm)), speaker_ids=ids,
             weights=w, means=mu, covariances=var)
    return ids, w, mu, var


@pytest.fixture(scope="module")
def ubm():
    return GaussianMixture.from_parameters(*random_params(K, D, seed=0))


@pytest.fixture(scope="module")
def big(tmp_path_factory, ubm):
    path = tmp_path_factory.mktemp("many") / "models.npz"
    return path, write_models(path, ubm, S)


def test_many_speakers_load_in_memory_bounded_by_the_arrays(big, ubm):
    path, (ids, w, mu, var) = big
    arrays = ids.nbytes + w.nbytes + mu.nbytes + var.nbytes            # 5.8 MB
    tracemalloc.start()
    try:
        mf = load_model(path, ubm=ubm)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The loader holds the arrays once; checking them takes a few temporaries no larger than
    # one of them ((S, K, D) booleans / float64, a sorted copy of the ids, an (S,) index).
    # One built model costs about 3 KB, ~30 times its (K, D) = (2, 2) parameters' bytes: a
    # loader that built every model up front peaks at about 30x the arrays (measured 31.8x,
    # benchmarks/bench_model_file.py).
    assert peak < 4 * arrays, (peak, arrays)
    sp = mf.speakers
    assert len(sp) == S and list(sp) == ids.tolist()
    for s in (0, 12_345, S - 1):
        i = str(ids[s])
        assert i in sp
        got, want = sp[i], GaussianMixture.from_parameters(w[s], mu[s], var[s], covariance_type="diag")
        for a in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            np.testing.assert_array_equal(getattr(got, a), getattr(want, a))
        X = np.random.default_rng(s).normal(size=(5, D))
        np.testing.assert_array_equal(got.score_samples(X), want.score_samples(X))
        for a, b in zip(sp.arrays(i), (w[s], mu[s], var[s])):
            np.testing.assert_array_equal(a, b)
            assert not a.flags.writeable
    got.means_ += 1.0                                  # a model read is the caller's copy
    np.testing.assert_array_equal(sp.arrays(str(ids[-1]))[1], mu[-1])
    assert "nobody" not in sp and "spk" not in sp and 3 not in sp
    with pytest.raises(KeyError):
        sp["spk0000001"]
    with pytest.raises(TypeError):
        sp["new"] = sp[str(ids[0])]                    # read-only


@pytest.mark.parametrize("spoil, reason", [
    (lambda w, mu, var: w.__setitem__((31_337, 0), w[31_337, 0] + 1e-6), "weights must sum to 1"),
    (lambda w, mu, var: w.__setitem__((31_337, slice(None)), [1.5, -0.5]), "weights must be non-negative"),
    (lambda w, mu, var: var.__setitem__((31_337, 1, 0), 0.0), "variances"),
    (lambda w, mu, var: mu.__setitem__((31_337, 0, 1), np.nan), "NaN or infinity"),
    (lambda w, mu, var: mu.__setitem__((31_337, 0, 1), 1e200), r"\|means\| must be <="),
])
def test_one_bad_speaker_among_many_is_named(tmp_path, ubm, spoil, reason):
    write_models(tmp_path / "m.npz", ubm, S, spoil=spoil)
    with pytest.raises(ModelError, match=rf"m\.npz: not a usable model file: speaker 'spk031337': .*{reason}"):
        load_model(tmp_path / "m.npz")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_first_unusable_applies_from_parameters_rules(dtype):
    """Each of 400 models, spoilt or not near every bound, is refused by the vectorised check
    exactly when ``from_parameters`` refuses it alone."""
    rng = np.random.default_rng(7)
    n, F = 400, float(np.finfo(dtype).max)
    w = rng.dirichlet(np.ones(3), size=n)
    mu = rng.normal(size=(n, 3, 2))
    var = rng.uniform(0.5, 2.0, size=(n, 3, 2))
    atol = max(1e-8, 4 * 3 * float(np.finfo(dtype).eps))
    for s in range(0, n, 4):
        kind = rng.integers(8)
        if kind == 0:
            w[s, 0] += rng.choice([0.5, 2.0]) * atol            # just inside / outside the sum tolerance
        elif kind == 1:
            w[s] = [1.2, -0.2, 0.0]
        elif kind == 2:
            var[s, 1, 1] = rng.choice([0.0, -1.0, 20.0 / F, 10.0 / F])
        elif kind == 3:
            mu[s, 2, 0] = rng.choice([np.inf, np.nan]) if s % 8 else np.sqrt(F) / rng.choice([3.0, 5.0])
        elif kind == 4:
            mu[s, :, 0] = [0.0, 1e6, 0.0]
            var[s, :, 0] = rng.choice([1e-30, 64.0 / F * 1e12])        # spread over F / 16 or not
        elif kind == 5:
            w[s, 1] = np.nan
    w, mu, var = w.astype(dtype), mu.astype(dtype), var.astype(dtype)
    refused = []
    for s in range(n):
        try:
            GaussianMixture.from_parameters(w[s], mu[s], var[s], covariance_type="diag")
            refused.append(False)
        except ValueError:
            refused.append(True)
    assert 20 < sum(refused) < n                        # both kinds occur
    got = [GaussianMixture.first_unusable(w[s:s + 1], mu[s:s + 1], var[s:s + 1]) is not None for s in range(n)]
    assert got == refused
    assert GaussianMixture.first_unusable(w, mu, var) == refused.index(True)


def test_import_models_reads_rows_without_building(tmp_path, ubm):
    ids, w, mu, var = write_models(tmp_path / "m.npz", ubm, 300, seed=3)
    st = SpeakerStore(tmp_path / "s.db", ubm, gate=NO_GATE)
    assert st.import_models(tmp_path / "m.npz") == ids.tolist()
    for s in (0, 299):
        m = st.model(str(ids[s]))
        for a, b in zip((m.weights_, m.means_, m.covariances_), (w[s], mu[s], var[s])):
            np.testing.assert_array_equal(a, b)
