"""``check_input``: validate an input array once at the boundary, then call trusted internals.

A validated call (``check_input=True``, the default) and an unvalidated one on the same
validated array give equal results; the default still refuses NaN, infinity and wrong shapes
with scikit-learn's messages (its own ``GaussianMixture`` is the reference); ``check_input=False``
refuses what would make the core's call meaningless in constant time (not an ndarray, wrong
dtype or shape) and scans no value.
"""
import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import gmmext._mixture as mixture_module
from gmmext import GaussianMixture, ModelStack, top_c_loglik

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

K, D = 4, 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return np.concatenate([rng.normal(3 * k, 1.0, size=(60, D)) for k in range(K)])


@pytest.fixture(scope="module", params=["diag", "tied", "full", "spherical"])
def model(request, data):
    return GaussianMixture(K, covariance_type=request.param, random_state=0, max_iter=5).fit(data)


def _calls(gm, X, check):
    """Every public per-frame method of ``gm`` on X, with ``check_input=check``."""
    idx, ll = gm.top_components(X, 2, check_input=check)
    return {
        "score_samples": gm.score_samples(X, check_input=check),
        "score": gm.score(X, check_input=check),
        "predict": gm.predict(X, check_input=check),
        "predict_proba": gm.predict_proba(X, check_input=check),
        "component_log_likelihood": gm.component_log_likelihood(X, check_input=check),
        "top_components": (idx, ll),
        "accumulate": gm.accumulate(X, check_input=check),
        "accumulate_list": gm.accumulate([X[:50], X[50:]], check_input=check),
        "accumulate_segments": gm.accumulate_segments([X[:50], X[50:]], check_input=check),
        "stack": ModelStack([gm, gm], reference=gm).top_c_loglik(X, idx, check_input=check),
        "top_c_loglik": top_c_loglik([gm], X, idx, check_input=check),
    }


def _flat(v):
    if isinstance(v, (list, tuple)):
        return [a for x in v for a in _flat(x)]
    if hasattr(v, "sum_x"):
        return [v.n, v.sum_x, v.sum_xx, v.loglik, v.n_samples]
    return [v]


def test_validated_and_unvalidated_calls_are_equal(model, data):
    for dtype in (np.float64, np.float32):
        X = model.check_features(data.astype(dtype))
        checked, trusted = _calls(model, X, True), _calls(model, X, False)
        for name in checked:
            for a, b in zip(_flat(checked[name]), _flat(trusted[name])):
                np.testing.assert_array_equal(a, b, err_msg=name)


def test_unvalidated_score_samples_is_the_mixture_density(data):
    """The trusted path computes the model's density (a direct NumPy formula, float64)."""
    gm = GaussianMixture(K, covariance_type="diag", random_state=0, max_iter=5).fit(data)
    X = gm.check_features(data)
    var, mu, w = gm.covariances_, gm.means_, gm.weights_
    logdens = (np.log(w) - 0.5 * np.log(2 * np.pi * var).sum(axis=1)
               - 0.5 * (((X[:, None, :] - mu) ** 2) / var).sum(axis=2))
    np.testing.assert_allclose(gm.score_samples(X, check_input=False), logsumexp(logdens, axis=1),
                               rtol=1e-10)


def test_check_features_converts_to_the_computation_dtype(data):
    gm32 = GaussianMixture(K, covariance_type="diag", random_state=0, max_iter=2).fit(data.astype(np.float32))
    X32 = data.astype(np.float32)
    assert gm32.check_features(X32) is X32                         # nothing to convert: no copy
    assert gm32.check_features(data).dtype == np.float64            # float64 input: float64 computation
    assert gm32.check_features(data.tolist()).dtype == np.float64   # an array-like becomes an array


def _bad_inputs(X):
    nan, inf = X.copy(), X.copy()
    nan[3, 1] = np.nan
    inf[5, 0] = np.inf
    return {"nan": nan, "inf": inf, "features": X[:, :2], "1-D": X[:, 0]}


def test_default_still_refuses_bad_input_with_sklearns_messages(model, data):
    sk = SkGaussianMixture(K, covariance_type=model.covariance_type, random_state=0, max_iter=5).fit(data)
    gm = model
    idx = gm.top_components(data, 2)[0]
    stack = ModelStack([gm], reference=gm)
    for case, bad in _bad_inputs(data).items():
        with pytest.raises(ValueError) as ref:
            sk.score_samples(bad)
        expected = str(ref.value)
        calls = [gm.check_features, gm.score_samples, gm.score, gm.predict, gm.predict_proba,
                 gm.component_log_likelihood, gm.accumulate, lambda X: gm.top_components(X, 2)]
        if bad.ndim == 2:      # indices fit a 2-D input's rows
            calls.append(lambda X: stack.top_c_loglik(X, idx))
        for call in calls:
            with pytest.raises(ValueError) as got:
                call(bad)
            assert str(got.value) == expected, (case, call)


def test_default_still_refuses_bad_segments(data):
    gm = GaussianMixture(K, covariance_type="diag", random_state=0, max_iter=2).fit(data)
    bad = data.copy()
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="segment 1: contains NaN or infinity"):
        gm.accumulate_segments([data, bad])
    with pytest.raises(ValueError, match="segment 0: X has 2 features"):
        gm.accumulate_segments([data[:, :2]])
    with pytest.raises(ValueError, match=r"indices must be integers in \[0, 4\)"):
        ModelStack([gm], reference=gm).top_c_loglik(data, np.full((data.shape[0], 2), 7))


def test_unvalidated_calls_refuse_what_is_not_a_validated_array(data):
    gm = GaussianMixture(K, covariance_type="diag", random_state=0, max_iter=2).fit(data)
    for bad in (data.tolist(), data[:, :2], data[:, 0], data.astype(np.int64)):
        for call in (gm.score_samples, gm.predict, gm.accumulate, lambda X, **kw: gm.top_components(X, 2, **kw)):
            with pytest.raises(ValueError, match="check_input=False needs a validated 2-D"):
                call(bad, check_input=False)
    with pytest.raises(ValueError, match="segment 1: check_input=False needs"):
        gm.accumulate_segments([data, data[:, :2]], check_input=False)
    # an index out of range is still refused (by the compiled core) without the Python scan
    with pytest.raises(ValueError, match="out of range"):
        ModelStack([gm], reference=gm).top_c_loglik(data, np.full((data.shape[0], 2), 7, np.int32),
                                                    check_input=False)


def test_one_request_validates_its_features_once(data, monkeypatch):
    """Top-C scoring of one recording against a stack: one ``validate_data`` scan in all."""
    gm = GaussianMixture(K, covariance_type="diag", random_state=0, max_iter=2).fit(data)
    stack = ModelStack([gm, gm], reference=gm)
    calls = []
    real = mixture_module.validate_data
    monkeypatch.setattr(mixture_module, "validate_data", lambda *a, **k: calls.append(1) or real(*a, **k))
    X = gm.check_features(data)
    idx, ll = gm.top_components(X, 2, check_input=False)
    stack.top_c_loglik(X, idx, check_input=False)
    gm.score_samples(X, check_input=False)
    assert len(calls) == 1
    gm.bic(data)                                          # bic validates once, then scores trusted
    assert len(calls) == 2
