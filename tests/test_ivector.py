"""The total-variability model against dense NumPy references and EM properties."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from gmmext import GaussianMixture
from speaker import ivector as iv


def _ubm(K=4, D=3, seed=0):
    rng = np.random.default_rng(seed)
    return GaussianMixture.from_parameters(np.full(K, 1 / K), rng.normal(size=(K, D)) * 2,
                                           rng.uniform(0.5, 2.0, size=(K, D)))


def test_centred_stats_direct_formula():
    ubm = _ubm()
    rng = np.random.default_rng(1)
    X = [rng.normal(size=(50, 3)).astype(np.float32), rng.normal(size=(30, 3))]
    n, f = iv.centred_stats(ubm, X)
    for u, x in enumerate(X):
        x = x.astype(np.float64)
        g = ubm.predict_proba(x)                                        # (frames, K)
        F = g.T @ x - g.sum(0)[:, None] * ubm.means_
        np.testing.assert_allclose(n[u], g.sum(0), rtol=1e-5)
        np.testing.assert_allclose(f[u], (F / np.sqrt(ubm.covariances_)).ravel(), rtol=1e-4, atol=1e-5)
    _, f_raw = iv.centred_stats(ubm, X, whiten=False)
    np.testing.assert_allclose(f_raw.reshape(2, 4, 3) / np.sqrt(ubm.covariances_), f.reshape(2, 4, 3))


def test_posterior_equals_dense_closed_form():
    """K=4, D=3, R=2: mean L^-1 T^T S^-1 F and covariance L^-1 with L = I + T^T N S^-1 T (dense)."""
    rng = np.random.default_rng(2)
    K, D, R, B = 4, 3, 2, 5
    T = rng.normal(size=(K * D, R))
    n = rng.uniform(0, 20, size=(B, K))
    f = rng.normal(size=(B, K * D)) * 3
    Sigma = rng.uniform(0.5, 2, size=K * D)
    # the same model in raw (unwhitened) coordinates: T_raw = S^1/2 T, F_raw = S^1/2 f
    T_raw, F_raw = T * np.sqrt(Sigma)[:, None], f * np.sqrt(Sigma)
    mean, cov, logdet = iv.posterior(T, n, f)
    for u in range(B):
        Nbig = np.diag(np.repeat(n[u], D))
        Sinv = np.diag(1 / Sigma)
        L = np.eye(R) + T_raw.T @ Nbig @ Sinv @ T_raw
        np.testing.assert_allclose(cov[u], np.linalg.inv(L), rtol=1e-10)
        np.testing.assert_allclose(mean[u], np.linalg.solve(L, T_raw.T @ Sinv @ F_raw[u]), rtol=1e-10)
        np.testing.assert_allclose(logdet[u], np.linalg.slogdet(L)[1], rtol=1e-10)


def _synthetic(K, D, R, U, seed, frames=(20, 200)):
    """Statistics of utterances drawn from a planted T (whitened space): f_k = n_k T_k w + sqrt(n_k) e."""
    rng = np.random.default_rng(seed)
    T = rng.normal(size=(K * D, R))
    n = rng.uniform(*frames, size=(U, K))
    w = rng.normal(size=(U, R))
    f = (w @ T.T).reshape(U, K, D) * n[:, :, None] + np.sqrt(n)[:, :, None] * rng.normal(size=(U, K, D))
    return T, n, f.reshape(U, K * D)


def test_log_likelihood_is_the_marginal_of_the_data():
    """The objective equals log N(f; 0, N T T^T N + N) minus the T-independent part (dense)."""
    from scipy.stats import multivariate_normal
    K, D, R = 3, 2, 2
    T, n, f = _synthetic(K, D, R, 4, 3)
    T2 = T * 0.7 + 0.1
    for Tt in (T, T2):
        direct = 0.0
        for u in range(len(n)):
            Nd = np.repeat(n[u], D)
            cov = (Nd[:, None] * Tt) @ (Nd[:, None] * Tt).T + np.diag(Nd)
            direct += multivariate_normal(np.zeros(K * D), cov).logpdf(f[u])
            direct -= multivariate_normal(np.zeros(K * D), np.diag(Nd)).logpdf(f[u])
        assert iv.log_likelihood(Tt, [(n, f)]) == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize("min_div", [False, True])
def test_em_never_lowers_the_likelihood(min_div):
    K, D, R = 4, 3, 2
    _, n, f = _synthetic(K, D, R, 60, 4)
    batches = [(n[:25], f[:25]), (n[25:], f[25:])]
    T = iv.init_tv(K, D, R, random_state=0)
    llks = [iv.log_likelihood(T, batches)]
    for _ in range(8):
        acc = iv.accumulate(T, batches, K)
        assert acc.llk == pytest.approx(llks[-1], rel=1e-10)     # the E-step's objective is the current T's
        T = iv.m_step(acc, K)
        if min_div:
            T = iv.min_divergence(T, acc)
        llks.append(iv.log_likelihood(T, batches))
    assert np.all(np.diff(llks) >= -1e-8 * abs(llks[0])), llks
    assert llks[-1] > llks[0]


def test_recovers_a_planted_T_up_to_rotation():
    """R = K*D: T T^T (the supervector covariance) is identifiable; EM finds it."""
    K, D = 2, 2
    R = K * D
    T, n, f = _synthetic(K, D, R, 3000, 5, frames=(50, 100))
    batches = [(n[i:i + 500], f[i:i + 500]) for i in range(0, len(n), 500)]
    tv = iv.train_tv(_ubm(K, D), lambda: batches, R, n_iter=60, min_div=True)
    np.testing.assert_allclose(tv.T @ tv.T.T, T @ T.T, atol=0.15 * np.abs(T @ T.T).max())


def test_batching_does_not_change_the_result_and_resume_matches(tmp_path):
    K, D, R = 4, 3, 2
    _, n, f = _synthetic(K, D, R, 40, 6)
    ubm = _ubm(K, D)
    one = iv.train_tv(ubm, lambda: [(n, f)], R, n_iter=3)
    many = iv.train_tv(ubm, lambda: [(n[i:i + 7], f[i:i + 7]) for i in range(0, 40, 7)], R, n_iter=3)
    np.testing.assert_allclose(one.T, many.T, rtol=1e-9, atol=1e-12)
    ck = tmp_path / "ck.npz"
    first = iv.train_tv(ubm, lambda: [(n, f)], R, n_iter=3, checkpoint=ck)
    assert iv.read_checkpoint(ck)["done"] == 3
    # an interrupted run: two passes, then resume to three
    calls = []

    def stop(it, T, llk):
        calls.append(it)
        if it == 1:
            raise KeyboardInterrupt
    ck2 = tmp_path / "ck2.npz"
    with pytest.raises(KeyboardInterrupt):
        iv.train_tv(ubm, lambda: [(n, f)], R, n_iter=3, checkpoint=ck2, callback=stop)
    assert iv.read_checkpoint(ck2)["done"] == 2
    resumed = iv.train_tv(ubm, lambda: [(n, f)], R, n_iter=3, checkpoint=ck2, resume=True)
    np.testing.assert_array_equal(resumed.T, first.T)
    with pytest.raises(iv.CheckpointError):
        iv.train_tv(ubm, lambda: [(n, f)], R + 1, n_iter=3, checkpoint=ck2, resume=True)


def test_extraction_streams_in_order():
    K, D, R = 4, 3, 2
    T, n, f = _synthetic(K, D, R, 30, 7)
    tv = iv.TotalVariability(T)
    m_all, c_all = iv.extract_ivectors(tv, [(n, f)], with_cov=True)
    m_b, c_b = iv.extract_ivectors(tv, [(n[:11], f[:11]), (n[11:], f[11:])], with_cov=True)
    np.testing.assert_allclose(m_all, m_b, rtol=1e-12)
    np.testing.assert_allclose(c_all, c_b, rtol=1e-12)
    assert c_all.shape == (30, R, R)


def test_model_file_roundtrip_and_validation(tmp_path):
    from speaker.model_io import ModelError, ubm_fingerprint
    ubm = _ubm()
    tv = iv.TotalVariability(np.random.default_rng(0).normal(size=(12, 2)), ubm_fingerprint(ubm))
    p = tmp_path / "tv.npz"
    iv.save_tv(p, tv)
    back = iv.load_tv(p, ubm)
    np.testing.assert_array_equal(back.T, tv.T)
    with pytest.raises(ModelError, match="different UBM"):
        iv.load_tv(p, _ubm(seed=9))
    bad = dict(np.load(p))
    bad["T"] = np.full((12, 2), np.nan)
    np.savez(tmp_path / "nan.npz", **bad)
    with pytest.raises(ModelError, match="non-finite"):
        iv.load_tv(tmp_path / "nan.npz")
    bad["T"] = np.zeros((12, 2), dtype=object)
    np.savez(tmp_path / "obj.npz", **bad)
    with pytest.raises(ModelError):
        iv.load_tv(tmp_path / "obj.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ModelError, match="not a zip archive"):            # from the one reader's header guard
        iv.load_tv(tmp_path / "junk.npz")


def test_means_without_covariance_and_packed_products_match_dense():
    """The mean-only path (potrs) equals the dense solve; the packed T_k^T T_k table unpacks to
    the direct products; the E-step accumulators equal their definitions summed densely."""
    K, D, R = 5, 3, 4
    T, n, f = _synthetic(K, D, R, 9, 11)
    m, c = iv.extract_ivectors(iv.TotalVariability(T), [(n, f)], with_cov=False)
    assert c is None
    Tk = T.reshape(K, D, R)
    full = iv.unpack(iv.component_products(T, K), R)
    np.testing.assert_allclose(full, [Tk[k].T @ Tk[k] for k in range(K)], rtol=1e-12)
    acc = iv.accumulate(T, [(n, f)], K)
    C, A = np.zeros((K * D, R)), np.zeros((K, R, R))
    for u in range(len(n)):
        L = np.eye(R) + sum(n[u, k] * Tk[k].T @ Tk[k] for k in range(K))
        w = np.linalg.solve(L, T.T @ f[u])
        np.testing.assert_allclose(m[u], w, rtol=1e-10)
        Eww = np.linalg.inv(L) + np.outer(w, w)
        C += np.outer(f[u], w)
        A += n[u][:, None, None] * Eww
    np.testing.assert_allclose(acc.C, C, rtol=1e-10)
    np.testing.assert_allclose(iv.unpack(acc.A, R), A, rtol=1e-10)


def _checkpoint_bomb(path, shape):
    """An i-vector checkpoint whose T declares ``shape`` float64 and holds that many zero bytes,
    deflated (streamed: the test never holds them): a zip of a few hundred KB."""
    import io
    import zipfile
    scalars = dict(format=np.array(iv.CHECKPOINT_FORMAT), format_version=np.array(1), done=np.array(1),
                   total=np.array(3), settings_hash=np.array("0" * 64), llks=np.zeros(1))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, a in scalars.items():
            buf = io.BytesIO()
            np.save(buf, a)
            zf.writestr(k + ".npy", buf.getvalue())
        with zf.open("T.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(f, {"descr": "<f8", "fortran_order": False, "shape": shape})
            left, block = int(np.prod(shape)) * 8, bytes(1 << 20)
            while left:
                f.write(block[:min(left, len(block))])
                left -= min(left, len(block))


def test_checkpoint_bomb_is_refused_from_its_header(tmp_path):
    """A checkpoint of about 120 KB whose T declares 30720 x 500 float64 (117 MiB, within the
    limits: K=512, D=60, R=500) is refused by a training that needs another T before numpy
    allocates it (the reader of the UBM's checkpoints and model files does the same); one whose T
    is beyond the limits (speaker.limits) is refused whoever reads it.  Memory: tracemalloc's peak."""
    import tracemalloc
    ubm = _ubm()
    bomb, beyond = tmp_path / "bomb.npz", tmp_path / "beyond.npz"
    _checkpoint_bomb(bomb, (512 * 60, 500))
    _checkpoint_bomb(beyond, (12, 2001))                # R > MAX_RANK
    assert bomb.stat().st_size < 1 << 20 and beyond.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(iv.CheckpointError, match=r"declares shape \(30720, 500\), this training needs \(12, 2\)"):
            iv.train_tv(ubm, lambda: [], 2, n_iter=3, checkpoint=bomb, resume=True)
        with pytest.raises(iv.CheckpointError, match="this training needs"):
            iv.read_checkpoint(bomb, shape=(12, 2))
        with pytest.raises(iv.CheckpointError, match=r"'T' declares shape \(12, 2001\)"):
            iv.read_checkpoint(beyond)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, peak                  # numpy.load alone: 117 MiB for the first file


def test_one_em_pass_equals_the_direct_formulas_in_raw_coordinates():
    """One pass (E-step, m-step, minimum divergence) against Kenny's/Dehak's formulas written
    densely per utterance with the UBM covariances Sigma (not whitened):
    L_u = I + sum_k N_uk T_k^T Sigma_k^-1 T_k, E[w_u] = L_u^-1 T^T Sigma^-1 F_u,
    T_k <- (sum_u F_uk E[w_u]^T) (sum_u N_uk E[w_u w_u^T])^-1, then T <- T chol(mean_u E[w w^T])."""
    rng = np.random.default_rng(12)
    K, D, R, U = 4, 3, 3, 11
    Sigma = rng.uniform(0.5, 2.0, size=(K, D))
    T_raw = rng.normal(size=(K * D, R)) * np.sqrt(Sigma).reshape(-1, 1)
    n = rng.uniform(0.5, 30, size=(U, K))
    F = rng.normal(size=(U, K * D)) * 4                          # centred first order, raw
    Sinv = np.diag(1 / Sigma.ravel())
    C, A, H = np.zeros((K * D, R)), np.zeros((K, R, R)), np.zeros((R, R))
    for u in range(U):
        L = np.eye(R) + sum(n[u, k] * T_raw[k * D:(k + 1) * D].T @ np.diag(1 / Sigma[k]) @ T_raw[k * D:(k + 1) * D]
                            for k in range(K))
        w = np.linalg.solve(L, T_raw.T @ Sinv @ F[u])
        Eww = np.linalg.inv(L) + np.outer(w, w)
        C += np.outer(F[u], w)
        A += n[u][:, None, None] * Eww
        H += Eww
    T_new = np.vstack([C[k * D:(k + 1) * D] @ np.linalg.inv(A[k]) for k in range(K)])
    T_md = T_new @ np.linalg.cholesky(H / U)
    # the code works on whitened statistics and T: f = Sigma^-1/2 F, T = Sigma^-1/2 T_raw
    s = np.sqrt(Sigma).ravel()
    acc = iv.accumulate(T_raw / s[:, None], [(n[:6], F[:6] / s), (n[6:], F[6:] / s)], K)
    np.testing.assert_allclose(iv.m_step(acc, K) * s[:, None], T_new, rtol=1e-9)
    np.testing.assert_allclose(iv.min_divergence(iv.m_step(acc, K), acc) * s[:, None], T_md, rtol=1e-9)
