"""Statistics of many utterances per core call.

:data:`BATCH_UTTERANCES` is how many utterances go to the core at once where they cannot all
go at once (streamed features, many speakers, progress reports).

A recording's statistics are its statistics as one segment (:func:`recording_stats`); a
speaker's enrolment statistics are the per-utterance statistics
(``GaussianMixture.accumulate_segments``, one core call) summed in utterance order: the same
numbers, bit for bit, whether the utterances are enrolled at once, in batches with other
speakers, or over time into a speaker store.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from gmmext import GMMStats

if TYPE_CHECKING:                  # (the estimators import scikit-learn: imported where used)
    from gmmext import GaussianMixture

#: Utterances per core call when they are not all handed over at once.
BATCH_UTTERANCES = 256


def sum_in_order(stats: Sequence[GMMStats]) -> GMMStats:
    """``stats[0] + stats[1] + ...`` (left to right); ValueError when empty."""
    if not stats:
        raise ValueError("no feature arrays to accumulate")
    return GMMStats.total(stats)


def recording_stats(ubm: GaussianMixture, X: np.ndarray, *, check_input: bool = True) -> GMMStats:
    """Statistics of one recording (frames, D) under ``ubm``: its statistics as one segment of
    :meth:`gmmext.GaussianMixture.accumulate_segments`, the numbers :func:`speaker_stats` sums
    (``accumulate(X)`` may differ in the last bits for long recordings).  Enrolment, the store's
    cohort and the service all take a recording's statistics from here.  ``check_input=False``:
    ``X`` was checked by the caller."""
    return ubm.accumulate_segments([X], check_input=check_input)[0]


def speaker_stats(ubm: GaussianMixture, arrays: Sequence[np.ndarray]) -> GMMStats:
    """Enrolment statistics of one speaker's utterances (each (frames, D)) under ``ubm``: the
    per-utterance statistics summed in order, by the core (``groups``: no per-utterance arrays)."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError("no feature arrays to accumulate")
    return ubm.accumulate_segments(arrays, groups=np.zeros(len(arrays), dtype=np.int64))[0]
