"""Pieces of the UBM recipe and of the feature store, each against a NumPy formula or a
direct computation: the binary split, the one-Gaussian start, row gathering, source kinds,
the warmed-up extraction pool, progress lines."""
import io

import numpy as np
import pytest

from gmmext import GaussianMixture
from speaker._progress import Progress
from speaker.featcache import ExtractionPool, _work, split_rows, take_rows
from speaker.sources import source_kind
from speaker.ubm import _global_model, _LocalFeatures, _split


def _model(K, D, seed, dtype=np.float64):
    rng = np.random.default_rng(seed)
    w = rng.random(K) + 0.1
    return GaussianMixture.from_parameters((w / w.sum()).astype(dtype), rng.normal(size=(K, D)).astype(dtype),
                                           (rng.random((K, D)) + 0.5).astype(dtype), var_floor=0.0)


@pytest.mark.parametrize("K, target", [(1, 2), (4, 8), (5, 7), (6, 512)])
def test_binary_split_formula(K, target):
    gm = _model(K, 3, seed=K)
    perturb = 0.2
    out = _split(gm, target, perturb)
    w, mu, var = gm.weights_, gm.means_, gm.covariances_
    n = min(K, target - K)
    heaviest = sorted(range(K), key=lambda k: (-w[k], k))[:n]     # heaviest first, ties by index
    exp_w, exp_mu, exp_var = w.copy(), mu.copy(), var.copy()
    new_w, new_mu, new_var = [], [], []
    for k in heaviest:
        sigma = np.sqrt(var[k])
        exp_w[k] = w[k] / 2
        exp_mu[k] = mu[k] - perturb * sigma
        new_w.append(w[k] / 2)
        new_mu.append(mu[k] + perturb * sigma)
        new_var.append(var[k])
    exp_w = np.concatenate([exp_w, new_w])
    assert out.n_components == K + n == min(2 * K, target)
    np.testing.assert_allclose(out.weights_, exp_w / exp_w.sum(), rtol=1e-12)
    np.testing.assert_allclose(out.weights_.sum(), 1.0, rtol=1e-12)
    np.testing.assert_allclose(out.means_, np.vstack([exp_mu] + ([np.array(new_mu)] if n else [])), rtol=1e-12)
    np.testing.assert_array_equal(out.covariances_, np.vstack([exp_var] + ([np.array(new_var)] if n else [])))
    # the pair of halves keeps the parent's mean (a split moves no mass)
    for j, k in enumerate(heaviest):
        np.testing.assert_allclose((out.means_[k] + out.means_[K + j]) / 2, mu[k], rtol=1e-12, atol=1e-12)


def test_binary_split_keeps_float32():
    out = _split(_model(4, 2, seed=0, dtype=np.float32), 8, 0.2)
    assert out.means_.dtype == out.covariances_.dtype == out.weights_.dtype == np.float32


def test_global_model_is_the_data_mean_and_variance():
    rng = np.random.default_rng(1)
    arrays = [rng.normal(loc=3.0, scale=[1.0, 2.0, 0.5], size=(n, 3)) for n in (100, 250, 7)]
    template = GaussianMixture(8, covariance_type="diag", reg_covar=1e-6)
    gm = _global_model(_LocalFeatures(arrays), template, np.float64)
    X = np.vstack(arrays)
    np.testing.assert_allclose(gm.weights_, [1.0])
    np.testing.assert_allclose(gm.means_[0], X.mean(axis=0), rtol=1e-10)
    np.testing.assert_allclose(gm.covariances_[0], X.var(axis=0) + 1e-6, rtol=1e-9)


def test_take_rows_and_split_rows():
    rng = np.random.default_rng(2)
    blocks = [rng.normal(size=(n, 2)) for n in (5, 0, 3, 9, 1)]
    stacked = np.vstack(blocks)
    rows = np.sort(rng.choice(stacked.shape[0], size=8, replace=False))
    np.testing.assert_array_equal(take_rows(blocks, rows), stacked[rows])
    np.testing.assert_array_equal(take_rows(iter(blocks), rows, [b.shape[0] for b in blocks]), stacked[rows])
    parts = list(split_rows(rows, [b.shape[0] for b in blocks]))
    assert len(parts) == len(blocks)
    starts = np.cumsum([0] + [b.shape[0] for b in blocks])
    np.testing.assert_array_equal(np.concatenate([p + s for p, s in zip(parts, starts)]), rows)


def test_source_kind():
    assert source_kind("a/b.wav") == "audio"
    assert source_kind("feats/u1.npy") == "npy"
    assert source_kind("/data/feats.ark:1234") == "ark"
    assert source_kind("odd.ark:notanoffset") == "audio"
    assert source_kind("x.flac") == "audio"


def test_extraction_pool_gives_the_in_process_features(tmp_path):
    from speaker.features import FeatureConfig
    from pathlib import Path
    fx = Path(__file__).resolve().parent.parent / "audio_fixtures"
    config = FeatureConfig(sample_rate=8000)
    items = [(str(p), config, None) for p in sorted(fx.glob("*_theo_[01].wav"))[:6]]
    items.append((str(tmp_path / "missing.wav"), config, None))
    pool = ExtractionPool(2, config)
    try:
        got = list(pool.results(items))
    finally:
        pool.close()
    want = [_work(i) for i in items]
    assert [g[0] for g in got] == [w[0] for w in want]
    for (_, a, ea), (_, b, eb) in zip(got, want):
        assert (ea is None) == (eb is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)
    assert got[-1][2] is not None and "missing.wav" in got[-1][2]


class _Log(io.StringIO):
    def isatty(self):
        return False


def test_progress_prints_plain_lines_when_not_a_terminal():
    log = _Log()
    with Progress(4, "features", "file", interval=0.0, stream=log) as bar:
        for _ in range(4):
            bar.update(1)
    lines = log.getvalue().splitlines()
    assert lines[0].startswith("features: 1/4 file (25 %)")
    assert lines[3].startswith("features: 4/4 file (100 %)")
    assert lines[-1].endswith("done") and "\r" not in log.getvalue()
    quiet = _Log()
    with Progress(4, "features", "file", interval=0.0, stream=quiet, enabled=False) as bar:
        bar.update(4)
    assert quiet.getvalue() == ""
    short = _Log()
    with Progress(4, "features", "file", stream=short) as bar:      # ends within the 5 s interval
        bar.update(4)
    assert short.getvalue() == ""


@pytest.mark.parametrize("batch", [1, 3, 256])
def test_map_adapt_many_equals_map_adapt_per_speaker(batch, monkeypatch):
    import speaker.adapt as A
    monkeypatch.setattr(A, "BATCH_UTTERANCES", batch)
    ubm = _model(8, 3, seed=5)
    rng = np.random.default_rng(6)
    speakers = {f"s{i}": [rng.normal(size=(int(rng.integers(5, 40)), 3)) for _ in range(int(rng.integers(1, 5)))]
                for i in range(7)}
    many = A.map_adapt_many(ubm, speakers, relevance_factor=8.0, adapt="mwv")
    assert list(many) == list(speakers)
    for spk, feats in speakers.items():
        one = A.map_adapt(ubm, feats, relevance_factor=8.0, adapt="mwv")
        for name in ("weights_", "means_", "covariances_"):
            np.testing.assert_array_equal(getattr(many[spk], name), getattr(one, name))
    with pytest.raises(ValueError, match="no enrolment features"):
        A.map_adapt_many(ubm, {"a": []})
