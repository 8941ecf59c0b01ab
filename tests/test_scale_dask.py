"""Distributed EM on a real dask.distributed LocalCluster (2 worker processes, loopback, no
dashboard): the distributed fit equals the in-memory fit, for gmmext and for speaker.train_ubm."""
import warnings

import numpy as np
import pytest
from conftest import make_blobs

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

from gmmext import GaussianMixture  # noqa: E402
from gmmext import dask_accumulate  # noqa: E402
from speaker.cluster import DaskFeatures  # noqa: E402
from speaker.featcache import FeatureFiles  # noqa: E402
from speaker.ubm import train_ubm  # noqa: E402

ATTRS = ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_")


pytestmark = pytest.mark.xdist_group("dask")     # one worker runs them, on one cluster


@pytest.fixture(scope="module")
def client(dask_cluster):
    """A client of the test run's LocalCluster (conftest.dask_cluster: 2 worker processes)."""
    with distributed.Client(dask_cluster) as c:
        yield c


def _fit(X, sw=None, **kw):
    params = dict(n_components=5, random_state=0, max_iter=10, tol=0.0, kmeans_max_samples=3000)
    params.update(kw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return GaussianMixture(**params, covariance_type="diag").fit(X, sample_weight=sw)


def assert_same_fit(a, b, rtol=1e-10):
    for name in ATTRS:
        ref = getattr(b, name)
        np.testing.assert_allclose(getattr(a, name), ref, rtol=rtol, atol=rtol * np.abs(ref).max(), err_msg=name)
        assert getattr(a, name).dtype == getattr(b, name).dtype
    assert (a.n_iter_, a.converged_, a.n_features_in_) == (b.n_iter_, b.converged_, b.n_features_in_)
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=rtol)


def test_distributed_fit_equals_in_memory_fit(client):
    X = make_blobs(n=60_000, d=5, k=5, seed=7)
    w = np.random.default_rng(0).uniform(0.1, 2.0, len(X))
    Xd = da.from_array(X, chunks=(7_000, 5)).persist()         # 9 blocks on 2 workers
    wd = da.from_array(w, chunks=(7_000,)).persist()
    assert_same_fit(_fit(Xd), _fit(X))                         # k-means init from the same sample
    assert_same_fit(_fit(Xd, wd), _fit(X, w))
    assert_same_fit(_fit(Xd, w, n_init=2, max_iter=4), _fit(X, w, n_init=2, max_iter=4))
    X32 = X.astype(np.float32)
    # float32: block boundaries on multiples of the core's chunk (4096 rows) keep the float32 partial
    # sums identical; only the float64 sums of the statistics are associated differently
    assert_same_fit(_fit(da.from_array(X32, chunks=(8192, 5))), _fit(X32), rtol=1e-5)


@pytest.mark.parametrize("cov", ["full", "tied", "spherical"])
def test_distributed_fit_equals_in_memory_fit_every_covariance_type(client, cov):
    X = make_blobs(n=6_000, d=4, k=3, seed=3)
    w = np.random.default_rng(1).uniform(0.1, 2.0, len(X))
    Xd, wd = da.from_array(X, chunks=(1_500, 4)), da.from_array(w, chunks=(1_500,))
    kw = dict(n_components=3, random_state=0, max_iter=5, tol=0.0, kmeans_max_samples=3000,
              covariance_type=cov)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = GaussianMixture(**kw).fit(Xd, sample_weight=wd)
        b = GaussianMixture(**kw).fit(X, sample_weight=w)
    assert_same_fit(a, b)


def test_distributed_fit_from_given_parameters_and_convergence(client):
    X = make_blobs(n=30_000, d=3, k=3, seed=8)
    init = dict(weights_init=np.full(3, 1 / 3), means_init=X[[0, 1, 2]], precisions_init=np.ones((3, 3)))
    a = _fit(da.from_array(X, chunks=4_000), n_components=3, tol=1e-6, max_iter=200, **init)
    b = _fit(X, n_components=3, tol=1e-6, max_iter=200, **init)
    assert a.converged_ and b.converged_
    assert_same_fit(a, b)


def test_dask_accumulate_of_futures_equals_accumulate(client):
    X = make_blobs(n=20_000, d=4, k=3, seed=9)
    gm = _fit(X, n_components=3, max_iter=2)
    parts = [X[:5000], [X[5000:6000], X[6000:12000]], X[12000:]]
    futures = client.scatter(parts)
    s = dask_accumulate(gm, futures)
    ref = gm.accumulate(X)
    for name in ("n", "sum_x", "sum_xx"):
        np.testing.assert_allclose(getattr(s, name), getattr(ref, name), rtol=1e-12)
    assert s.n_samples == ref.n_samples and np.isclose(s.loglik, ref.loglik, rtol=1e-12)


def _utterances(n=24, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(12, d))
    out = []
    for _ in range(n):
        lab = rng.integers(0, 12, size=int(rng.integers(200, 900)))
        out.append((centres[lab] + rng.standard_normal((len(lab), d))).astype(np.float32))
    return out


@pytest.mark.parametrize("init", ["split", "kmeans"])
def test_train_ubm_on_dask_equals_single_process(client, init):
    feats = _utterances()
    kw = dict(init=init, n_iter=4, n_iter_split=2, kmeans_frames=3000, n_threads=1)
    ref = train_ubm(feats, 8, **kw)
    dist = DaskFeatures.from_arrays(client, feats, n_parts=5)
    try:
        ubm = train_ubm(dist, 8, **kw)
    finally:
        dist.release()
    # float32 E-step: in memory one core call chunks across utterances, on Dask one call per part,
    # so float32 chunk sums are rounded at other boundaries (a few 1e-6 of the data's scale)
    for name in ("weights_", "means_", "covariances_"):
        np.testing.assert_allclose(getattr(ubm, name), getattr(ref, name), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ubm.lower_bounds_, ref.lower_bounds_, rtol=1e-7)


def test_dask_features_from_files_streamed_and_held(client, tmp_path):
    feats = _utterances(n=10, seed=1)
    paths = []
    for i, f in enumerate(feats):
        np.save(tmp_path / f"u{i}.npy", f)
        paths.append(str(tmp_path / f"u{i}.npy"))
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    sources = paths[:5] + [str(tmp_path / "bad.npy")] + paths[5:]
    ref = train_ubm(FeatureFiles(paths), 4, n_iter=3, n_iter_split=2, n_threads=1)
    for stream in (False, True):
        dist, errors = DaskFeatures.from_sources(client, sources, None, stream=stream, files_per_part=3)
        assert list(errors) == [str(tmp_path / "bad.npy")]
        assert dist.n_frames == sum(f.shape[0] for f in feats)
        ubm = train_ubm(dist, 4, n_iter=3, n_iter_split=2, n_threads=1)
        dist.release()
        # float32 chunk sums rounded at other boundaries (see the test above)
        np.testing.assert_allclose(ubm.means_, ref.means_, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(ubm.covariances_, ref.covariances_, rtol=1e-5, atol=1e-5)


async def _work_stealing(dask_scheduler, on: bool) -> None:
    """Dask's own balancing on or off: work stealing, and the bandwidth its placement assumes
    (a tiny one: moving a block to an idle worker never looks cheaper than waiting)."""
    ext = dask_scheduler.extensions["stealing"]
    if on:
        dask_scheduler.bandwidth = dask_scheduler._saved_bandwidth
        await ext.start()
    else:
        dask_scheduler._saved_bandwidth = dask_scheduler.bandwidth
        dask_scheduler.bandwidth = 1.0
        await ext.stop()


def test_the_data_never_moves(client):
    """Dask's own transfer counters: a fit on a persisted array sends less than one block's bytes
    in all besides the rows the initialisation fetches by index (the KMeans sample of 3,000 rows
    and the 9,000 of the EM on a sample): only those, parameters and (K, D) statistics travel."""
    X = make_blobs(n=80_000, d=5, k=5, seed=10)
    Xd = da.from_array(X, chunks=(10_000, 5)).persist()
    distributed.wait(Xd)

    def sent():
        return sum(client.run(lambda dask_worker: dask_worker.transfer_outgoing_bytes_total).values())

    # the scheduler's balancing may move a block to an idle worker (a timing-dependent choice of
    # Dask's, not of the graph gmmext builds): off for this measurement
    client.run_on_scheduler(_work_stealing, on=False)
    try:
        before = sent()
        gm = _fit(Xd, max_iter=6)
        moved = sent() - before
    finally:
        client.run_on_scheduler(_work_stealing, on=True)
    fetched = (3000 + 3 * 3000) * 5 * 8                         # the initialisation's rows: 480 kB
    assert moved < 10_000 * 5 * 8 + fetched, moved              # one block: 400 kB
    assert gm.n_iter_ == 6
