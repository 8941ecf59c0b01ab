"""Statistics of many utterances per core call.

:data:`BATCH_UTTERANCES` is how many utterances go to the core at once where they cannot all
go at once (streamed features, progress reports).

TODO(merge core): gmmext's ``GaussianMixture.accumulate(list_of_arrays)`` (summed statistics)
and ``GaussianMixture.accumulate_segments(list_of_arrays)`` (one ``GMMStats`` per array) do
what the two adapters below do, in one core call; at the merge replace
``accumulate_all(gm, arrays)`` by ``gm.accumulate(arrays)`` and ``accumulate_each(gm, arrays)``
by ``gm.accumulate_segments(arrays)``, and delete the adapters (the constant stays).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from gmmext import GaussianMixture, GMMStats

#: Utterances per core call when they are not all handed over at once.
BATCH_UTTERANCES = 256


def accumulate_all(gm: GaussianMixture, arrays: Sequence[np.ndarray]) -> GMMStats:
    """Summed :class:`gmmext.GMMStats` of ``arrays`` (each (frames, D)) under ``gm``, in order."""
    stats = None
    for a in arrays:
        s = gm.accumulate(a)
        stats = s if stats is None else stats + s
    if stats is None:
        raise ValueError("no feature arrays to accumulate")
    return stats


def accumulate_each(gm: GaussianMixture, arrays: Sequence[np.ndarray]) -> list[GMMStats]:
    """One :class:`gmmext.GMMStats` per array of ``arrays`` (each (frames, D)) under ``gm``."""
    return [gm.accumulate(a) for a in arrays]
