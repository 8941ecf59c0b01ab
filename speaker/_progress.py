"""Progress of long steps (features, EM passes, enrolment, scoring), in one place.

On a terminal a tqdm bar (redrawn in place, removed at the end).  When stderr is not a
terminal (a log file, ``nohup``, a pipe) a bar would be either nothing or one endless line
of carriage returns, so a plain line is printed instead, at most every ``interval`` seconds
(5 by default)::

    features: 412/2000 file (21 %), 10 s, about 38 s left

and a last line when the step ends, if it printed any.  A step that ends within the interval
prints nothing.  ``enabled=False`` (``--quiet``) silences both.

The time left is estimated from the rate since the first unit was done, not since the start:
the first unit pays one-off costs (librosa's compilation, starting worker processes) that
say nothing about the others.  It is shown once :data:`ETA_MIN_UNITS` units were done after
the first one.
"""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")

__all__ = ["Progress", "progress"]

#: Seconds between two plain progress lines (stderr not a terminal).
LINE_INTERVAL = 5.0
#: Units done after the first one before a plain line estimates the time left.
ETA_MIN_UNITS = 3


class Progress:
    """A progress report of ``total`` units (or an unknown number: ``total=None``).

    Use as a context manager (or call :meth:`close`): ``update(n)`` after every ``n`` units
    done, ``set_postfix(**values)`` to show e.g. the current log-likelihood.
    """

    def __init__(self, total: int | None, desc: str, unit: str = "it", *, enabled: bool = True,
                 initial: int = 0, interval: float = LINE_INTERVAL, stream=None):
        self.stream = sys.stderr if stream is None else stream
        self.total, self.desc, self.unit = total, desc, unit
        self.n = int(initial)
        self.interval = float(interval)
        self.postfix: dict = {}
        self._bar = None
        self._lines = False
        self._printed = False
        self._first: tuple[float, int] | None = None      # (time, units) when the first unit was done
        if not enabled:
            return
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            from tqdm.auto import tqdm
            self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, file=self.stream,
                             leave=False)
        else:
            self._lines = True
            self._start = self._last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
        elif self._lines:
            now = time.monotonic()
            if self._first is None:
                self._first = (now, self.n)
            if now - self._last >= self.interval:
                self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = values
        if self._bar is not None:
            self._bar.set_postfix(**values)

    def _line(self, done: bool = False) -> None:
        now = time.monotonic()
        elapsed = now - self._start
        parts = [f"{self.desc}: {self.n}" + (f"/{self.total}" if self.total else "") + f" {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f} %)"
        parts.append(f"{elapsed:.0f} s")
        if not done and self.total and self.n < self.total and self._first is not None:
            t1, n1 = self._first
            if self.n - n1 >= ETA_MIN_UNITS and now > t1:
                parts.append(f"about {(now - t1) * (self.total - self.n) / (self.n - n1):.0f} s left")
        if done:
            parts.append("done")
        parts += [f"{k}={v}" for k, v in self.postfix.items()]
        print(", ".join(parts), file=self.stream, flush=True)
        self._last = now
        self._printed = True

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self._lines and self._printed:
            self._line(done=True)
        self._lines = False

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(items: Iterable[T], desc: str, unit: str = "it", *, total: int | None = None,
             enabled: bool = True) -> Iterator[T]:
    """Iterate over ``items`` reporting :class:`Progress` (``total`` defaults to ``len(items)``)."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with Progress(total, desc, unit, enabled=enabled) as bar:
        for item in items:
            yield item
            bar.update(1)
