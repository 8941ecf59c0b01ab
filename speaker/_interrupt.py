"""Ctrl-C that is never lost.

Python delivers SIGINT as KeyboardInterrupt wherever the main thread happens to be; when that
is inside a callback from C (numba's JIT, which librosa triggers, is one), the exception is
printed and *ignored*, and the job would go on to overwrite its outputs.  The command line
installs :func:`install`, which also records the request, and long loops and every atomic
write call :func:`check`, so an interrupted job stops before it writes anything.
"""
from __future__ import annotations

import signal
import threading

_requested = threading.Event()


def _handler(signum, frame):
    _requested.set()
    raise KeyboardInterrupt


def install() -> None:
    """Record SIGINT (and still raise KeyboardInterrupt). Main thread only."""
    _requested.clear()
    signal.signal(signal.SIGINT, _handler)


def check() -> None:
    """Raise KeyboardInterrupt if an interrupt was requested and swallowed on the way."""
    if _requested.is_set():
        raise KeyboardInterrupt
