"""Every private scikit-learn name gmmext uses, imported in one place.

scikit-learn may move or change these between releases; a failure to import shows here, and
a replacement is written here once.  Public scikit-learn names (``check_array``,
``validate_data``, ``check_is_fitted``, ``BaseEstimator``, ...) are imported where they are used.

* ``_fit_context``: the ``fit`` decorator that validates the constructor parameters;
* ``Interval``, ``StrOptions``, ``HasMethods``, ``validate_params``: parameter constraints with
  scikit-learn's ``InvalidParameterError`` messages;
* ``_check_sample_weight``, ``_ensure_no_complex_data``: sample-weight and complex-data checks
  with scikit-learn's messages.
"""
from sklearn.base import _fit_context
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions, validate_params
from sklearn.utils.validation import _check_sample_weight, _ensure_no_complex_data

__all__ = ["_fit_context", "HasMethods", "Interval", "StrOptions", "validate_params",
           "_check_sample_weight", "_ensure_no_complex_data"]
