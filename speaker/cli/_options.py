"""The command line's option types: ``argparse`` types that accept only finite values in a
range (a bad value is a usage error, exit 2), and the ones several commands share.

Only the standard library is imported here (``speaker --help`` stays quick).
"""
from __future__ import annotations

import argparse
import math
import os
from typing import Callable

from ..limits import MAX_COMPONENTS

__all__ = ["int_option", "float_option", "max_threads", "prob", "positive", "count", "components"]


def max_threads() -> int:
    """Upper bound of ``--threads`` / ``--jobs`` / ``--dask-workers``: 4 x the cores, at least 1024."""
    return max(1024, 4 * (os.cpu_count() or 1))


def int_option(lo: int, hi: int | Callable[[], int] | None = None) -> Callable[[str], int]:
    """argparse ``type``: an int in ``[lo, hi]`` (``hi`` may be a callable, evaluated when parsing)."""
    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        top = hi() if callable(hi) else hi
        if v < lo or (top is not None and v > top):
            raise argparse.ArgumentTypeError(
                f"must be in [{lo}, {top}], got {text}" if top is not None else f"must be >= {lo}, got {text}")
        return v
    return parse


def float_option(lo: float, hi: float | None = None, *, lo_open: bool = False,
                 hi_open: bool = False) -> Callable[[str], float]:
    """argparse ``type``: a finite float in ``[lo, hi]`` (open at ``lo`` / ``hi`` with ``lo_open`` / ``hi_open``)."""
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        bad = v <= lo if lo_open else v < lo
        if bad or (hi is not None and (v >= hi if hi_open else v > hi)):
            left, right = "(" if lo_open else "[", ")" if hi_open else "]"
            raise argparse.ArgumentTypeError(
                f"must be in {left}{lo:g}, {hi:g}{right}, got {text}" if hi is not None
                else f"must be {'>' if lo_open else '>='} {lo:g}, got {text}")
        return v
    return parse


#: A probability strictly between 0 and 1 (a prior, a false-accept rate).
prob = float_option(0.0, 1.0, lo_open=True, hi_open=True)
#: A cost or a scale: > 0.
positive = float_option(0.0, lo_open=True)
#: A count: >= 0.
count = int_option(0)
#: ``--top-c C`` / ``--components K``: a number of UBM components, 1 to
#: :data:`speaker.limits.MAX_COMPONENTS` (the largest UBM a model file or a store holds).
components = int_option(1, MAX_COMPONENTS)
