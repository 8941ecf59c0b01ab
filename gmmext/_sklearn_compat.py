"""Every private scikit-learn name gmmext uses, and every difference between the scikit-learn and
SciPy versions it supports, in one place.

scikit-learn may move or change these between releases; a failure to import shows here, and
a replacement is written here once.  Public scikit-learn names (``check_array``,
``validate_data``, ``check_is_fitted``, ``BaseEstimator``, ...) are imported where they are used.

* ``_fit_context``: the ``fit`` decorator that validates the constructor parameters;
* ``Interval``, ``StrOptions``, ``HasMethods``, ``validate_params``: parameter constraints with
  scikit-learn's ``InvalidParameterError`` messages;
* ``_check_sample_weight``, ``_ensure_no_complex_data``: sample-weight and complex-data checks
  with scikit-learn's messages.  ``_check_sample_weight`` takes ``allow_all_zero_weights``
  (scikit-learn >= 1.9's keyword) on every supported version: before 1.9 the all-zero check,
  with scikit-learn 1.9's message, is done here;
* ``solve_triangular``: SciPy's ``linalg.solve_triangular`` over a stack of matrices (``a`` of
  shape (..., M, M), ``b`` of shape (..., M, N)), batched by SciPy itself from 1.16 on and by a
  loop over the stack, one LAPACK call per matrix (the same ``trtrs``, the same results), before.
"""
import numpy as np
from scipy import __version__ as _scipy_version
from scipy import linalg

__all__ = ["_fit_context", "HasMethods", "Interval", "StrOptions", "validate_params",
           "_check_sample_weight", "_ensure_no_complex_data", "solve_triangular"]

#: SciPy >= 1.16: linalg.solve_triangular broadcasts over leading (batch) dimensions
SCIPY_BATCHED_SOLVE = tuple(int(p) for p in _scipy_version.split(".")[:2]) >= (1, 16)


def __getattr__(name: str):
    """The scikit-learn names, imported on first use (PEP 562): ``solve_triangular`` and the
    modules that only score (``gmmext._model``) do not import scikit-learn."""
    if name in ("_fit_context",):
        from sklearn.base import _fit_context as value
    elif name in ("HasMethods", "Interval", "StrOptions", "validate_params"):
        from sklearn.utils import _param_validation
        value = getattr(_param_validation, name)
    elif name == "_ensure_no_complex_data":
        from sklearn.utils.validation import _ensure_no_complex_data as value
    elif name == "_check_sample_weight":
        value = _sample_weight_checker()
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def _sample_weight_checker():
    """scikit-learn's ``_check_sample_weight``, taking ``allow_all_zero_weights`` (its >= 1.9
    keyword) on every supported version."""
    import inspect
    from sklearn.utils.validation import _check_sample_weight as _sk_check_sample_weight
    if "allow_all_zero_weights" in inspect.signature(_sk_check_sample_weight).parameters:
        return _sk_check_sample_weight

    def _check_sample_weight(sample_weight, X, *, allow_all_zero_weights: bool = False, **kwargs):
        """scikit-learn < 1.9: its ``_check_sample_weight``, then 1.9's all-zero check."""
        sw = _sk_check_sample_weight(sample_weight, X, **kwargs)
        if not allow_all_zero_weights and np.all(sw == 0):
            raise ValueError("Sample weights must contain at least one non-zero number.")
        return sw
    return _check_sample_weight


def solve_triangular(a, b, *, lower: bool = False) -> np.ndarray:
    """``linalg.solve_triangular(a, b, lower=lower)`` for ``a`` (..., M, M) and ``b`` (..., M, N) or (M,),
    the leading dimensions broadcast against each other."""
    a, b = np.asarray(a), np.asarray(b)
    if SCIPY_BATCHED_SOLVE or (a.ndim == 2 and b.ndim <= 2):
        return linalg.solve_triangular(a, b, lower=lower)
    return _solve_triangular_loop(a, b, lower=lower)


def _solve_triangular_loop(a: np.ndarray, b: np.ndarray, *, lower: bool) -> np.ndarray:
    """SciPy < 1.16: one ``linalg.solve_triangular`` per matrix of the broadcast stack."""
    if b.ndim < 2:
        raise ValueError("solve_triangular: a stack of matrices needs b of shape (..., M, N)")
    batch = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    a = np.broadcast_to(a, batch + a.shape[-2:])
    b = np.broadcast_to(b, batch + b.shape[-2:])
    out = np.empty(batch + (a.shape[-1], b.shape[-1]), dtype=np.result_type(a, b, np.float32))
    for i in np.ndindex(*batch):
        out[i] = linalg.solve_triangular(a[i], b[i], lower=lower)
    return out
