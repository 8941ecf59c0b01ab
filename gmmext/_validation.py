"""Input checks shared by every kind of input (in memory, memmap / array-like blocks, Dask).

One function per thing checked, so an in-memory array, a memmap block and a Dask block get the
same validation and the same messages (scikit-learn's, where scikit-learn has one):

* :func:`check_sample_weight`: sample weights (a whole vector, or one block of it);
* :func:`check_block`: one block of rows as it is read (``check_array``'s checks and messages,
  plus its column count against the declared number of features);
* :func:`check_source_dtype`: the dtype an out-of-core input will be fitted in;
* :func:`computation_dtype`: the dtype a model computes in on some data;
* :func:`check_trusted`: what ``check_input=False`` still checks of an array (its type and shape);
* :func:`check_usable_parameters`: (weights, means, variances) whose log-densities are finite
  in the model's dtype (see :func:`parameter_bounds`); :func:`check_bounds` the same bounds on
  a batch of diagonal models;
* :func:`check_stats`: :class:`~gmmext.GMMStats` against the model they update.

Nothing here imports the estimator; the estimator and the block tasks import this module.
"""
from __future__ import annotations

import numpy as np
from ._covariance import CovarianceType, get

__all__ = ["check_sample_weight", "sample_weight_shape_error", "check_total_weight", "check_block",
           "check_source_dtype", "computation_dtype", "check_trusted", "parameter_bounds",
           "check_usable_parameters", "check_bounds", "check_stats", "weights_sum_tolerance",
           "first_unusable_diag"]

_FLOATS = [np.float64, np.float32]


def _rows_prefix(rows: tuple[int, int] | None) -> str:
    return "" if rows is None else f"rows {rows[0]}:{rows[1]}: "


def sample_weight_shape_error(shape, n_samples: int) -> ValueError:
    """scikit-learn's message for sample weights of the wrong shape."""
    return ValueError(f"sample_weight.shape == {tuple(shape)}, expected {(n_samples,)}!")


def check_total_weight(total: float) -> None:
    """Raise unless the weights' total is finite and > 0 (scikit-learn's message for all-zero)."""
    if not np.isfinite(total):
        raise ValueError("Input sample_weight contains infinity or a value too large for dtype('float64').")
    if not total > 0:
        raise ValueError("Sample weights must contain at least one non-zero number.")


def check_sample_weight(sample_weight, n_samples: int, *, rows: tuple[int, int] | None = None):
    """Validated sample weights as a C-contiguous float64 (n_samples,) array, or None.

    The one checker for every input kind.  ``rows=None``: the weights of a whole data set
    (scikit-learn's ``_check_sample_weight`` with ``ensure_non_negative=True``: finite,
    non-negative, the right shape, not all zero).  ``rows=(start, stop)``: the weights of one
    block of rows; a block may weigh zero (the total is checked once, by
    :func:`check_total_weight`), and every message starts with ``"rows start:stop: "``.
    """
    if sample_weight is None:
        return None
    from ._sklearn_compat import _check_sample_weight   # (scikit-learn: imported where used)
    try:
        sw = _check_sample_weight(sample_weight, np.empty((n_samples, 0)), dtype=np.float64,
                                  ensure_non_negative=True, allow_all_zero_weights=rows is not None)
        if rows is None:
            check_total_weight(float(sw.sum()))
    except ValueError as exc:
        if rows is None:
            raise
        raise ValueError(f"{_rows_prefix(rows)}{exc}") from None
    return sw


def check_source_dtype(X) -> np.dtype:
    """The dtype an out-of-core input is fitted in: float32 / float64 kept, other reals -> float64.

    Complex input raises scikit-learn's ``check_array`` message ("Complex data not supported").
    """
    from ._sklearn_compat import _ensure_no_complex_data
    _ensure_no_complex_data(X)
    dtype = np.dtype(X.dtype)
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float64)


def check_block(X, n_features: int, dtype=None, *, rows: tuple[int, int] | None = None,
                estimator: str = "GaussianMixture") -> np.ndarray:
    """One block of rows, validated as ``check_array`` validates an in-memory input.

    Parameters
    ----------
    X : array-like of shape (n_rows, n_features)
        The block as read (a memmap view, a slice of an array-like, a Dask block).
    n_features : int
        The number of columns the input declared; a block with another count is an error.
    dtype : float dtype or None
        The result's dtype (the source's); None keeps float32 / float64 (others -> float64).
    rows : (start, stop) or None
        The block's place in the input, put in front of every message.

    Returns
    -------
    ndarray of shape (n_rows, n_features)
        Not a copy when the block already is a finite ndarray of that dtype (a memmap block
        stays a view).  NaN, infinity, complex or non-numeric values and a block with
        another number of columns raise ``ValueError`` with scikit-learn's message.
    """
    if (isinstance(X, np.ndarray) and X.ndim == 2 and X.shape[1] == n_features >= 1
            and (X.dtype == dtype if dtype is not None else X.dtype in _FLOATS)
            and np.isfinite(X).all()):
        # what check_array would return unchecked (a finite float ndarray of the dtype asked
        # for; a memmap as a plain view), without its per-call cost (~20 us: a block of 256
        # utterances is 256 calls); anything else goes through it, for its messages
        return np.asarray(X)
    from sklearn.utils.validation import check_array
    try:
        X = check_array(X, dtype=_FLOATS if dtype is None else dtype, ensure_min_samples=0, input_name="X",
                        estimator=estimator)
    except ValueError as exc:
        raise ValueError(f"{_rows_prefix(rows)}{exc}") from None
    if X.shape[1] != n_features:
        raise ValueError(f"{_rows_prefix(rows)}X has {X.shape[1]} features, but {estimator} is "
                         f"expecting {n_features} features as input.")
    return X


def computation_dtype(model_dtype, *data_dtypes) -> np.dtype:
    """The dtype a model computes in on some data: the higher of the model's and the data's
    (float32 only when both are float32)."""
    return np.result_type(model_dtype, *data_dtypes)


def check_trusted(X, n_features: int, where: str = "") -> None:
    """What ``check_input=False`` still checks (constant time): a 2-D float32 / float64 ndarray
    with ``n_features`` columns.  Its values are the caller's promise (finite)."""
    if not (isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype in (np.float32, np.float64)
            and X.shape[1] == n_features):
        got = (f"{type(X).__name__} of shape {X.shape} and dtype {X.dtype}" if isinstance(X, np.ndarray)
               else type(X).__name__)
        raise ValueError(f"{where}check_input=False needs a validated 2-D float32 or float64 ndarray "
                         f"with {n_features} columns (see GaussianMixture.check_features); got {got}")


# ------------------------------------------------------------------------------ parameters
def parameter_bounds(dtype) -> dict:
    """The bounds :func:`check_usable_parameters` enforces for a model of ``dtype``.

    With ``F`` the dtype's largest finite value (1.8e308 in float64, 3.4e38 in float32):

    * ``var_min = 16 / F`` (8.9e-308, 4.7e-38): every variance is at least this, so
      ``1 / var`` (the precision) is finite with a margin of 16;
    * ``mean_max = sqrt(F) / 4`` (3.4e153, 4.6e18): every ``|mean|`` is at most this, so the
      square of a centred frame near the means is finite;
    * ``spread_max = F / 16`` (1.1e307, 2.1e37): for every component ``k``,
      ``sum_d R_d**2 / var_kd <= spread_max``, where ``R_d`` is the range of the means in
      dimension ``d`` (``max_k mu_kd - min_k mu_kd``).

    Together they keep every number the core computes in ``dtype`` for a frame inside the box
    spanned by the means (the matrix ``[mu / var, -1 / (2 var)]``, the per-component constant
    ``log w - D/2 log(2 pi) - 1/2 sum log var - 1/2 sum (mu - shift)**2 / var`` and every
    log-density) below ``F / 8``: log-densities, responsibilities and scores are finite.
    """
    F = float(np.finfo(dtype).max)
    return {"var_min": 16.0 / F, "mean_max": np.sqrt(F) / 4.0, "spread_max": F / 16.0}


def check_usable_parameters(weights, means, covariances, dtype,
                            covariance_type: str | CovarianceType = "diag", prec_chol=None) -> None:
    """Raise ``ValueError`` unless the parameters' log-densities are finite in ``dtype``.

    ``weights`` (K,), ``means`` (K, D), ``covariances`` of ``covariance_type``'s shape, already
    finite and of consistent shapes; the bounds are :func:`parameter_bounds`.  For "full" and
    "tied" the covariance matrices must be symmetric and positive-definite (their Cholesky
    factor exists) and the bounds apply to each component's smallest eigenvalue in place of
    every variance (``sum_d R_d**2 / lambda_min`` bounds ``R^T inv(cov) R``).  The message
    names the first bound broken, the worst value and the dtype.  ``prec_chol``: the
    covariances' ``precisions_cholesky`` when the caller has it already (their
    positive-definiteness is then known).
    """
    kind = get(covariance_type)
    mu = np.asarray(means, dtype=np.float64)
    K, D = mu.shape
    if kind.matrix:
        cov = np.asarray(covariances, dtype=np.float64)
        if not np.allclose(cov, np.swapaxes(cov, -1, -2), rtol=1e-5, atol=0.0):
            raise ValueError(f"'{kind.name}' covariances must be symmetric")
        try:
            if prec_chol is None:
                kind.precisions_cholesky(cov)
        except ValueError:
            raise ValueError(f"'{kind.name}' covariances must be positive-definite") from None
    check_bounds(mu, kind.bound_variances(covariances, K, D), dtype,
                 "smallest eigenvalues" if kind.matrix else "variances")


def check_bounds(means, variances, dtype, what: str = "variances") -> None:
    """Raise ``ValueError`` unless models are inside :func:`parameter_bounds` of ``dtype``.

    ``means`` (..., K, D) and ``variances`` (K, D) or (..., K, D): one model (K, D), or a batch
    of models (S, K, D) checked in one pass (``ModelStack.from_parameters``; variances (K, D)
    shared by all of them are not repeated), the message then naming the first model that
    breaks a bound.  ``what`` names the variances in messages.
    """
    dtype = np.dtype(dtype)
    b = parameter_bounds(dtype)
    name = dtype.name
    mu = np.asarray(means)
    var = np.asarray(variances, dtype=np.float64)
    batch = mu.ndim > 2

    def model(bad) -> str:          # "model s: " for the first model where ``bad`` (..., K, D) holds
        bad = np.broadcast_to(bad, mu.shape)
        return f"model {int(np.argwhere(bad.reshape(bad.shape[0], -1).any(axis=1))[0, 0])}: " if batch else ""

    if np.any(var < b["var_min"]):
        raise ValueError(f"{model(var < b['var_min'])}covariances ({what}) must be >= {b['var_min']:.3g} in "
                         f"{name} (so that 1 / variance is finite); got {var.min():.3g}")
    amax = float(np.abs(mu).max())
    if amax > b["mean_max"]:
        raise ValueError(f"{model(np.abs(mu) > b['mean_max'])}|means| must be <= {b['mean_max']:.3g} in {name} "
                         f"(so that squares of centred frames are finite); got {amax:.3g}")
    R = mu.max(axis=-2).astype(np.float64) - mu.min(axis=-2).astype(np.float64)      # (..., D)
    with np.errstate(over="ignore"):
        if batch and var.ndim == 2:             # shared variances: one product for all models
            spread = (R * R) @ (1.0 / var).T
        else:
            spread = ((R * R)[..., None, :] / var).sum(axis=-1)
    at = np.unravel_index(int(np.argmax(spread)), spread.shape)
    if not spread[at] <= b["spread_max"]:
        where = f"model {at[0]}, " if batch else ""
        raise ValueError(f"{where}component {at[-1]}: sum_d (range of the means_d)**2 / variance_kd = "
                         f"{spread[at]:.3g} exceeds {b['spread_max']:.3g}: its log-densities overflow {name}")


def weights_sum_tolerance(n_components: int, dtype) -> float:
    """How far from 1 the sum of a model's ``n_components`` weights of ``dtype`` may be:
    ``max(1e-8, 4 K eps)``."""
    return max(1e-8, 4 * n_components * float(np.finfo(dtype).eps))


def first_unusable_diag(weights, means, variances) -> int | None:
    """Index of the first of S diagonal models that ``GaussianMixture.from_parameters`` refuses,
    or None: every rule of ``from_parameters`` (finite, weights >= 0 summing to 1 within
    :func:`weights_sum_tolerance`, variances > 0, :func:`parameter_bounds` in the models' dtype)
    checked on the stacks in one vectorised pass.

    ``weights`` (S, K), ``means`` (S, K, D), ``variances`` (S, K, D), float32 or float64, of
    consistent shapes (the caller's).  Temporaries: a few arrays of (S, K, D) booleans and float64.
    """
    w, mu, var = np.asarray(weights), np.asarray(means), np.asarray(variances)
    S, K = w.shape
    dtype = np.result_type(w.dtype, mu.dtype, var.dtype)
    b = parameter_bounds(dtype)
    with np.errstate(all="ignore"):                   # NaN / inf make those models bad, not warnings
        bad = ~np.isfinite(w).all(axis=1)
        bad |= ~np.isfinite(mu).all(axis=(1, 2)) | ~np.isfinite(var).all(axis=(1, 2))
        bad |= (w < 0).any(axis=1)
        bad |= ~(np.abs(w.astype(np.float64).sum(axis=1) - 1.0) <= weights_sum_tolerance(K, w.dtype))
        var64 = var.astype(np.float64, copy=False)
        bad |= ~(var64 >= b["var_min"]).all(axis=(1, 2))            # (also "> 0")
        bad |= ~(np.abs(mu) <= b["mean_max"]).all(axis=(1, 2))
        R = mu.max(axis=1).astype(np.float64) - mu.min(axis=1).astype(np.float64)     # (S, D)
        spread = ((R * R)[:, None, :] / var64).sum(axis=-1)                           # (S, K)
        bad |= ~(spread <= b["spread_max"]).all(axis=1)
    first = np.flatnonzero(bad)
    return int(first[0]) if first.size else None


# ------------------------------------------------------------------------------ statistics
def check_stats(stats, n_components: int, n_features: int | None, dtype,
                covariance_type: str | CovarianceType = "diag") -> None:
    """Raise ``ValueError`` unless ``stats`` can update a (K, D) model of ``dtype`` and type.

    Shapes (K,), (K, D) and ``sum_xx`` (K, D) for "diag" / "spherical", (K, D, D) for "full" /
    "tied", with the model's K and D (``n_features=None``: any D, for a model not fitted yet);
    total weight ``n_samples`` finite and > 0; every statistic finite; occupancies ``n`` and
    second moments (``sum_xx``, its diagonals for (K, D, D)) non-negative up to a rounding
    tolerance of ``1e-12`` of their total (a sum of non-negative terms is never negative; a
    difference of sums can be, by rounding).
    """
    kind = get(covariance_type)
    K, D = stats.sum_x.shape
    full = kind.matrix
    if stats.sum_xx.ndim != (3 if full else 2):
        raise ValueError(f"statistics with sum_xx of shape {stats.sum_xx.shape} cannot update a "
                         f"covariance_type={kind.name!r} model (it needs "
                         f"{'(K, D, D)' if full else '(K, D)'}); accumulate them with a model of "
                         "that type")
    if full and not kind.pooled and stats.pooled_second_order:
        raise ValueError(f"pooled (tied) statistics with sum_xx of shape {stats.sum_xx.shape} cannot "
                         f"update a covariance_type={kind.name!r} model (it needs (K, D, D)); "
                         "accumulate them with a model of that type")
    if K != n_components:
        raise ValueError(f"statistics have {K} components, the model has {n_components}")
    if n_features is not None and D != n_features:
        raise ValueError(f"statistics have {D} features, the model has {n_features}")
    if not np.isfinite(stats.n_samples) or not stats.n_samples > 0:
        raise ValueError("cannot run an M-step on statistics of zero total weight "
                         f"(n_samples = {stats.n_samples!r})")
    if not (np.all(np.isfinite(stats.n)) and np.all(np.isfinite(stats.sum_x))
            and np.all(np.isfinite(stats.sum_xx)) and np.isfinite(stats.loglik)):
        raise ValueError(
            "the E-step statistics contain NaN or infinity: the data's magnitude overflows "
            f"{np.dtype(dtype).name} arithmetic (squares of the centred data must be representable). "
            "Use float64 input or rescale the data (e.g. sklearn.preprocessing.StandardScaler).")
    tol_n = 1e-12 * max(float(np.abs(stats.n).sum()), stats.n_samples)
    if np.any(stats.n < -tol_n):
        k = int(np.argmin(stats.n))
        raise ValueError(f"statistics have a negative occupancy: n[{k}] = {float(stats.n[k])!r}")
    sxx = np.diagonal(stats.sum_xx, axis1=1, axis2=2) if full else stats.sum_xx
    tol_xx = 1e-12 * np.abs(sxx).sum(axis=0)
    bad = sxx < -tol_xx
    if np.any(bad):
        k, d = (int(i) for i in np.argwhere(bad)[0])
        idx = f"{k}, {d}, {d}" if full else f"{k}, {d}"
        raise ValueError(f"statistics have a negative second moment: sum_xx[{idx}] = {float(sxx[k, d])!r}")
