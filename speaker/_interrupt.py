"""Ctrl-C (and SIGTERM) that is never lost.

Python delivers SIGINT as KeyboardInterrupt wherever the main thread happens to be; when that
is inside a callback from C (numba's JIT, which librosa triggers, is one), the exception is
printed and *ignored*, and the job would go on to overwrite its outputs.  The command line
installs :func:`install`, which also records the request, and long loops and every atomic
write call :func:`check`, so an interrupted job stops before it writes anything.

SIGTERM (``kill``, a batch scheduler's time limit) is handled the same way: it raises
:class:`Terminated`, a KeyboardInterrupt, so temporary files are removed and earlier outputs
kept; the command then exits 143 (128 + 15) instead of 130.

Three more rules (docs/reliability.md, section 4):

* an interrupt that a callback from C swallows is reported by Python as "Exception ignored in
  ...", with a traceback, through ``sys.unraisablehook``: once recorded, it is not printed
  (:func:`check` raises it where it can be handled), nor is an error there after it;
* a process forked from this one (a worker of the feature extraction's pool) inherits the
  handlers: there, SIGINT is ignored (the command stops the pool) and SIGTERM ends the worker at
  once, never a KeyboardInterrupt printed with a traceback by the worker's own loop;
* inside :func:`deferred` (a temporary file created and not yet recorded for removal) an
  interrupt is recorded and raised at the block's end; after :func:`ignore` (the command has
  ended and its exit status is known) signals are ignored.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from typing import Iterator

_requested = [False]             # a plain flag: a handler that takes a lock (threading.Event.set)
                                 # deadlocks when a second signal interrupts it there
_signum = [signal.SIGINT]
_owner = [os.getpid()]           # the process that installed the handlers
_deferring = [0]                 # depth of deferred() blocks in the main thread
_previous_hook = [sys.unraisablehook]


class Terminated(KeyboardInterrupt):
    """SIGTERM received: handled like Ctrl-C, exit code 143."""


def _exception() -> KeyboardInterrupt:
    return Terminated() if _signum[0] == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, frame):
    if os.getpid() != _owner[0]:                  # a forked worker: the command decides
        worker()
        if signum == signal.SIGTERM:
            os.kill(os.getpid(), signal.SIGTERM)
        return
    _signum[0] = signum
    _requested[0] = True
    if not _deferring[0]:
        raise _exception()


def _unraisable(unraisable) -> None:
    """sys.unraisablehook: an interrupt raised where it cannot propagate (a ``__del__``, a callback
    from C) is recorded already, and raised again by :func:`check`; and once one was requested, an
    error there is its consequence (llvmlite's ``__del__`` of an object whose ``__init__`` the
    interrupt cut: AttributeError), as :func:`speaker.cli.main` treats errors then.  Before an
    interrupt, anything is shown as before."""
    if _requested[0]:
        return
    _previous_hook[0](unraisable)


def install() -> None:
    """Record SIGINT and SIGTERM (and raise KeyboardInterrupt / Terminated). Main thread only."""
    _requested[0] = False
    _signum[0] = signal.SIGINT
    _owner[0] = os.getpid()
    _deferring[0] = 0
    if sys.unraisablehook is not _unraisable:
        _previous_hook[0] = sys.unraisablehook
        sys.unraisablehook = _unraisable
    signal.signal(signal.SIGINT, _handler)
    signal.signal(signal.SIGTERM, _handler)


def worker() -> None:
    """In a worker process: SIGINT ignored (the command that owns the pool stops it), SIGTERM the
    default (the worker ends at once)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def ignore() -> None:
    """The command has ended and its exit status is known: a signal from now on (while the
    interpreter shuts down) is ignored instead of turning that status into a kill."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextlib.contextmanager
def deferred(*, raise_after: bool = True) -> Iterator[None]:
    """Inside the block an interrupt is recorded, not raised; it is raised when the block ends
    (for a few statements that must not be cut: a temporary created and recorded for removal).

    ``raise_after=False``: not even then, for clean-up after the work it ends was done (a store's
    connections closed after its commit): the request stays recorded, so the next :func:`check`
    (before any atomic write or store commit, in the loops) still raises it, and a command that
    has nothing left to do ends with its own status."""
    main = threading.current_thread() is threading.main_thread()
    _deferring[0] += main
    try:
        yield
    finally:
        _deferring[0] -= main
    if raise_after and not _deferring[0]:
        check()


def exit_code(exc: BaseException | None = None) -> int:
    """130 after SIGINT (or a plain KeyboardInterrupt), 143 after SIGTERM."""
    return 143 if isinstance(exc, Terminated) or (exc is None and _signum[0] == signal.SIGTERM) else 130


def check() -> None:
    """Raise KeyboardInterrupt (Terminated after SIGTERM) if an interrupt was requested and
    swallowed on the way."""
    if _requested[0]:
        raise _exception()
