"""Out-of-core EM in one process: a memmap, a lazily sliced array-like or a Dask array on the
local threaded scheduler gives the in-memory fit (same initialisation, same iterations), block
by block, without copying the data."""
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest
from conftest import make_blobs

import gmmext._blocked as gd
from gmmext import GaussianMixture

ATTRS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


def _fit(X, sw=None, **kw):
    params = dict(n_components=4, random_state=0, max_iter=8, tol=0.0, kmeans_max_samples=4000)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")        # ConvergenceWarning: tol=0 runs all iterations
        return GaussianMixture(**params, covariance_type="diag").fit(X, sample_weight=sw)


def assert_same_fit(a, b, rtol):
    for name in ATTRS:
        assert getattr(a, name).dtype == getattr(b, name).dtype, name
        ref = getattr(b, name)
        np.testing.assert_allclose(getattr(a, name), ref, rtol=rtol, atol=rtol * np.abs(ref).max(), err_msg=name)
    assert a.n_iter_ == b.n_iter_ and a.converged_ == b.converged_ and a.n_features_in_ == b.n_features_in_
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=rtol)
    np.testing.assert_allclose(a.lower_bound_, b.lower_bound_, rtol=rtol)


@pytest.fixture(scope="module")
def data():
    return make_blobs(n=140_000, d=4, k=4, seed=3)        # > 2 blocks of 65536 rows


@pytest.fixture
def small_blocks(monkeypatch):
    monkeypatch.setattr(gd, "BLOCK_BYTES", 1)             # blocks of 65536 rows: 3 blocks here


def _memmap(tmp_path, X):
    np.save(tmp_path / "X.npy", X)
    return np.load(tmp_path / "X.npy", mmap_mode="r")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("init", ["kmeans", "random", "random_from_data"])
def test_memmap_fit_equals_in_memory_fit(tmp_path, data, small_blocks, dtype, init):
    X = data.astype(dtype)
    M = _memmap(tmp_path, X)
    rtol = 1e-10 if dtype == np.float64 else 1e-5
    assert_same_fit(_fit(M, init_params=init), _fit(X, init_params=init), rtol)


def test_memmap_with_weights_and_labels(tmp_path, data, small_blocks):
    w = np.random.default_rng(1).uniform(0, 3, len(data))
    w[:70_000] = 0                                        # a whole block of zero weight
    M = _memmap(tmp_path, data)
    a = _fit(M, w)
    b = _fit(data, w)
    assert_same_fit(a, b, 1e-10)
    gm = GaussianMixture(n_components=4, random_state=0, max_iter=5, kmeans_max_samples=4000, covariance_type="diag")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = gm.fit_predict(M)
    np.testing.assert_array_equal(labels, gm.predict(data))


def test_memmap_warm_start_and_n_init(tmp_path, data):
    M = _memmap(tmp_path, data)
    a = _fit(M, n_init=2, max_iter=3)
    b = _fit(data, n_init=2, max_iter=3)
    assert_same_fit(a, b, 1e-10)
    for gm, X in ((a, M), (b, data)):
        gm.set_params(warm_start=True, max_iter=2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gm.fit(X)
    assert_same_fit(a, b, 1e-10)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memmap_is_streamed_not_copied(tmp_path, small_blocks):
    """numpy (and the core's buffers) report their allocations to tracemalloc: the memory a fit
    allocates does not grow with the rows of the memmap and stays far below its size."""
    X = make_blobs(n=1_200_000, d=6, k=4, seed=5)
    peaks = {}
    for n in (300_000, 1_200_000):
        np.save(tmp_path / f"X{n}.npy", X[:n])
        M = np.load(tmp_path / f"X{n}.npy", mmap_mode="r")
        peaks[n] = _peak_bytes(lambda: _fit(M, max_iter=2, kmeans_max_samples=2000))
    assert peaks[1_200_000] < 1.25 * peaks[300_000] + (1 << 20), peaks
    assert peaks[1_200_000] < X.nbytes / 4, (peaks, X.nbytes)


class LazyRows:
    """An array-like that only hands out row slices (as an h5py or zarr dataset would)."""

    def __init__(self, X):
        self._X, self.shape, self.dtype = X, X.shape, X.dtype
        self.largest = 0

    def __getitem__(self, key):
        part = self._X[key]
        self.largest = max(self.largest, part.shape[0])
        return part.copy()

    def __array__(self, *a, **k):
        raise AssertionError("the whole array was requested")


def test_lazy_array_like_is_read_in_blocks(data, small_blocks):
    L = LazyRows(data.astype(np.float32))
    for init in ("kmeans", "random"):
        assert_same_fit(_fit(L, init_params=init), _fit(data.astype(np.float32), init_params=init), 1e-5)
    assert L.largest < len(data)          # never all rows at once (__array__ would fail)


def test_blocked_errors_name_the_rows(tmp_path, data):
    X = data.copy()
    X[100_000, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        _fit(_memmap(tmp_path, X), means_init=np.zeros((4, 4)), weights_init=np.full(4, 0.25),
             precisions_init=np.ones((4, 4)))
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        _fit(_memmap(tmp_path, data[:3]))
    with pytest.raises(ValueError, match="sample_weight"):
        _fit(_memmap(tmp_path, data), -np.ones(len(data)))


# ------------------------------------------------------------------ Dask, local threaded scheduler
def test_dask_threaded_fit_equals_in_memory_fit(data):
    da = pytest.importorskip("dask.array")
    w = np.random.default_rng(2).uniform(0, 2, len(data))
    Xd = da.from_array(data, chunks=(23_000, 2))         # uneven row blocks, two column blocks
    a = _fit(Xd, da.from_array(w, chunks=5000))
    assert_same_fit(a, _fit(data, w), 1e-10)
    b = _fit(Xd, w, init_params="random_from_data")
    assert_same_fit(b, _fit(data, w, init_params="random_from_data"), 1e-10)
    gm = GaussianMixture(n_components=4, random_state=0, max_iter=4, kmeans_max_samples=4000, covariance_type="diag")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        labels = gm.fit_predict(Xd)
    np.testing.assert_array_equal(labels.compute(), gm.predict(data))


def test_dask_block_with_nan_is_a_clear_error(data):
    da = pytest.importorskip("dask.array")
    X = data.copy()
    X[50_001, 0] = np.inf
    with pytest.raises(ValueError, match=r"rows 46000:69000.*infinity"):
        _fit(da.from_array(X, chunks=(23_000, 4)), init_params="random_from_data")


def test_gmmext_does_not_import_dask():
    code = ("import sys, numpy as np, gmmext, warnings; warnings.simplefilter('ignore');"
            "X = np.random.default_rng(0).normal(size=(500, 3));"
            "np.save(sys.argv[1], X); gmmext.GaussianMixture(2, max_iter=2).fit(np.load(sys.argv[1], mmap_mode='r'));"
            "gmmext.GaussianMixture(2, max_iter=2).fit(X);"
            "assert not any(m.split('.')[0] == 'dask' for m in sys.modules), 'dask imported'")
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        p = subprocess.run([sys.executable, "-c", code, f"{d}/x.npy"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
