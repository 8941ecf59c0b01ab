"""gmmext/_sklearn_compat.py: the bridges between the scikit-learn and SciPy versions the core supports
(scikit-learn 1.7.2 / SciPy 1.15.3 on Python 3.10, the newest on 3.11+), checked against SciPy's and
scikit-learn's own functions."""
import numpy as np
import pytest
from scipy import linalg

from gmmext import GaussianMixture
from gmmext._sklearn_compat import (SCIPY_BATCHED_SOLVE, _check_sample_weight, _solve_triangular_loop,
                                    solve_triangular)


@pytest.mark.parametrize("lower", [True, False])
@pytest.mark.parametrize("b_shape", [(5, 4, 3), (4, 3), (2, 1, 4, 4)])
def test_solve_triangular_loop_equals_scipy_per_matrix(lower, b_shape):
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, 5, 4, 4)) + 4 * np.eye(4)
    a = np.tril(a) if lower else np.triu(a)
    b = rng.normal(size=b_shape)
    out = _solve_triangular_loop(a, b, lower=lower)
    bb = np.broadcast_to(b, (2, 5) + b.shape[-2:])
    assert out.shape == (2, 5, 4, bb.shape[-1])
    for i in np.ndindex(2, 5):
        assert np.array_equal(out[i], linalg.solve_triangular(a[i], bb[i], lower=lower))
        np.testing.assert_allclose(a[i] @ out[i], bb[i], atol=1e-12)
    np.testing.assert_array_equal(solve_triangular(a, b, lower=lower), out)
    if SCIPY_BATCHED_SOLVE:          # SciPy >= 1.16 batches itself: the same numbers
        np.testing.assert_array_equal(linalg.solve_triangular(a, b, lower=lower), out)


def test_check_sample_weight_all_zero():
    X = np.empty((3, 0))
    with pytest.raises(ValueError, match="Sample weights must contain at least one non-zero number"):
        _check_sample_weight(np.zeros(3), X, dtype=np.float64, ensure_non_negative=True)
    out = _check_sample_weight(np.zeros(3), X, dtype=np.float64, ensure_non_negative=True,
                               allow_all_zero_weights=True)
    assert out.dtype == np.float64 and not out.any()
    with pytest.raises(ValueError, match="Negative values"):
        _check_sample_weight(np.array([1.0, -1.0, 0.0]), X, ensure_non_negative=True,
                             allow_all_zero_weights=True)


def test_full_precisions_cholesky_match_numpy_inverse():
    # the batched triangular solve where the core uses it: precisions_cholesky_ of a 'full' fit
    rng = np.random.default_rng(1)
    X = np.concatenate([rng.normal(m, 1.0 + 0.2 * m, size=(300, 3)) for m in (0, 4, 8)])
    gm = GaussianMixture(3, covariance_type="full", random_state=0).fit(X)
    for cov, pc in zip(gm.covariances_, gm.precisions_cholesky_):
        np.testing.assert_allclose(pc @ pc.T, np.linalg.inv(cov), rtol=1e-9, atol=1e-12)
