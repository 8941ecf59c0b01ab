"""Ctrl-C (and SIGTERM) that is never lost.

Python delivers SIGINT as KeyboardInterrupt wherever the main thread happens to be; when that
is inside a callback from C (numba's JIT, which librosa triggers, is one), the exception is
printed and *ignored*, and the job would go on to overwrite its outputs.  The command line
installs :func:`install`, which also records the request, and long loops and every atomic
write call :func:`check`, so an interrupted job stops before it writes anything.

SIGTERM (``kill``, a batch scheduler's time limit) is handled the same way: it raises
:class:`Terminated`, a KeyboardInterrupt, so temporary files are removed and earlier outputs
kept; the command then exits 143 (128 + 15) instead of 130.
"""
from __future__ import annotations

import signal
import threading

_requested = threading.Event()
_signum = [signal.SIGINT]


class Terminated(KeyboardInterrupt):
    """SIGTERM received: handled like Ctrl-C, exit code 143."""


def _exception() -> KeyboardInterrupt:
    return Terminated() if _signum[0] == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, frame):
    _signum[0] = signum
    _requested.set()
    raise _exception()


def install() -> None:
    """Record SIGINT and SIGTERM (and raise KeyboardInterrupt / Terminated). Main thread only."""
    _requested.clear()
    _signum[0] = signal.SIGINT
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def exit_code(exc: BaseException | None = None) -> int:
    """130 after SIGINT (or a plain KeyboardInterrupt), 143 after SIGTERM."""
    return 143 if isinstance(exc, Terminated) or (exc is None and _signum[0] == signal.SIGTERM) else 130


def check() -> None:
    """Raise KeyboardInterrupt (Terminated after SIGTERM) if an interrupt was requested and
    swallowed on the way."""
    if _requested.is_set():
        raise _exception()
