"""The two fixtures of scikit-learn's own conftest that the copied suite uses, with its defaults.

``global_dtype``: float64, plus float32 when SKLEARN_RUN_FLOAT32_TESTS=1 (scikit-learn's rule;
it doubles the suite's time: gmmext's float32 path is checked in tests/test_gmm_covtypes.py).
``global_random_seed``: scikit-learn's default, 42.
"""
import os

import numpy as np
import pytest

_DTYPES = [np.float64] + ([np.float32] if os.environ.get("SKLEARN_RUN_FLOAT32_TESTS") == "1" else [])


@pytest.fixture(params=_DTYPES, ids=[np.dtype(d).name for d in _DTYPES])
def global_dtype(request):
    return request.param


@pytest.fixture(params=[42])
def global_random_seed(request):
    return request.param
