"""Statistics of many utterances per core call.

:data:`BATCH_UTTERANCES` is how many utterances go to the core at once where they cannot all
go at once (streamed features, many speakers, progress reports).

A speaker's enrolment statistics are defined as the per-utterance statistics
(``GaussianMixture.accumulate_segments``, one core call) summed in utterance order: the same
numbers, bit for bit, whether the utterances are enrolled at once, in batches with other
speakers, or over time into a speaker store.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from gmmext import GaussianMixture, GMMStats

#: Utterances per core call when they are not all handed over at once.
BATCH_UTTERANCES = 256


def sum_in_order(stats: Sequence[GMMStats]) -> GMMStats:
    """``stats[0] + stats[1] + ...`` (left to right); ValueError when empty."""
    if not stats:
        raise ValueError("no feature arrays to accumulate")
    total = stats[0]
    for s in stats[1:]:
        total = total + s
    return total


def speaker_stats(ubm: GaussianMixture, arrays: Sequence[np.ndarray]) -> GMMStats:
    """Enrolment statistics of one speaker's utterances (each (frames, D)) under ``ubm``."""
    return sum_in_order(ubm.accumulate_segments(list(arrays)))
