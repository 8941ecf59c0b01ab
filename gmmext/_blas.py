"""BLAS limited to one thread: the process-wide, re-entrant guard shared by the core and its callers.

The core's chunks are small gemms run from (possibly several) OpenMP threads, and the M-step
and the model matrices are K small (D x D) Cholesky factors, triangular solves and eigenvalue
problems: a multi-threaded BLAS inside them only adds synchronisation.  Every call into the
core, the model matrices and the M-step run inside :data:`single_thread_blas` (public as
``gmmext.single_thread_blas``), and so may a caller's own small products (e.g. the MFCC
filterbank product of one utterance).  Measured effect: docs/design.md, "BLAS is single-threaded".
"""
from __future__ import annotations

import functools
import os
import threading
from typing import Callable, TypeVar

__all__ = ["BlasSingleThread", "single_thread_blas", "one_blas_thread", "available_threads"]

F = TypeVar("F", bound=Callable)


def available_threads() -> int:
    """Cores this process may run on (the core's default thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _set_blas_threads(lib, n: int) -> None:
    """Set a BLAS library's thread count (a threadpoolctl controller) from any Python thread.

    threadpoolctl >= 3.8 drops an OpenBLAS (pthreads) ``set_num_threads`` unless it comes from
    its "controlling thread"; ``_real_set_num_threads`` is its unfiltered setter (absent, and
    not needed, before 3.8).
    """
    getattr(lib, "_real_set_num_threads", lib.set_num_threads)(n)


class BlasSingleThread:
    """BLAS limited to one thread while any holder is inside, process-wide and re-entrant.

    The limit is a process-wide setting, so overlapping holders from several Python threads
    share it: the first one in sets BLAS to one thread, the last one out restores what was
    there.  The BLAS libraries are found once with threadpoolctl; each entry then costs two
    cheap C calls per library.  Use the one instance, :data:`single_thread_blas`.

    The limit is set through each library's own setter (:func:`_set_blas_threads`), not
    threadpoolctl's ``set_num_threads``: since threadpoolctl 3.8, that one ignores calls from
    any Python thread but the first one that set an OpenBLAS (pthreads) limit while it lives
    (the main thread, once it has run any core call), so a call from a worker thread ran with
    BLAS's full thread count.  This guard is itself the process-wide arbiter of its setting, so
    it needs no second one.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._depth = 0
        self._libs = None
        self._saved: list = []

    def __enter__(self) -> "BlasSingleThread":
        with self._lock:
            if self._depth == 0:
                if self._libs is None:
                    from threadpoolctl import ThreadpoolController
                    self._libs = ThreadpoolController().select(user_api="blas").lib_controllers
                self._saved = [lib.num_threads for lib in self._libs]
                for lib in self._libs:
                    _set_blas_threads(lib, 1)
            self._depth += 1
        return self

    def __exit__(self, *exc: object) -> bool:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                for lib, n in zip(self._libs, self._saved):
                    _set_blas_threads(lib, n)
        return False


#: The process-wide guard (``with single_thread_blas: ...``).
single_thread_blas = BlasSingleThread()


def one_blas_thread(fn: F) -> F:
    """``fn`` run inside :data:`single_thread_blas` (a decorator)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with single_thread_blas:
            return fn(*args, **kwargs)
    return wrapper  # type: ignore[return-value]
