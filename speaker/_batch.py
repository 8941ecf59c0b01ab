"""Statistics of many utterances in one call.

TODO(merge core): gmmext's ``GaussianMixture.accumulate(list_of_arrays)`` returns the summed
statistics of a list of utterances from one core call; at the merge replace every
``accumulate_all(gm, arrays)`` by ``gm.accumulate(arrays)`` and delete this module.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from gmmext import GaussianMixture, GMMStats


def accumulate_all(gm: GaussianMixture, arrays: Sequence[np.ndarray]) -> GMMStats:
    """Summed :class:`gmmext.GMMStats` of ``arrays`` (each (frames, D)) under ``gm``, in order."""
    stats = None
    for a in arrays:
        s = gm.accumulate(a)
        stats = s if stats is None else stats + s
    if stats is None:
        raise ValueError("no feature arrays to accumulate")
    return stats
