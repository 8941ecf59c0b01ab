"""What every benchmark script shares: the environment header, timing and the matmul reference.

Every ``benchmarks/bench_*.py`` prints :func:`environment` first and :func:`load_line` last, times
with :func:`best_time` / :func:`median_time`, and states a rate against the machine's matrix
product through :class:`MatmulReference`, so that the figures of all results files mean the same.

**% of matmul peak**, in every results file: the operation's GFLOP/s (its flops counted as the
script states) divided by the best GFLOP/s of ``numpy.matmul`` on an (n x n) @ (n x n) product
(``2 n**3`` flops, n = :data:`MATMUL_N` = 2000 unless the script's option says otherwise) in the
same dtype, with BLAS at its default thread count, measured in the same run: best of
:data:`MATMUL_REPEATS` products at every :meth:`MatmulReference.measure` (the scripts measure
before and after their cases, some also between them), the best of all measurements kept.  A
load that comes and goes lowers a measurement, never raises it: the best is the machine's rate.
"""
from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

#: Side of the square product that gives the matmul reference.
MATMUL_N = 2000
#: Products timed per measurement (the best kept).
MATMUL_REPEATS = 3

__all__ = ["MATMUL_N", "MATMUL_REPEATS", "MatmulReference", "matmul_seconds", "best_time", "median_time",
           "times", "environment", "load_line", "cpu_model", "blas_line", "Report"]


# ------------------------------------------------------------------------------ timing
def times(fn: Callable[[], object], repeats: int) -> list[float]:
    """Wall seconds of ``repeats`` calls of ``fn``, in order."""
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def best_time(fn: Callable[[], object], repeats: int = 3, warmup: bool = False) -> float:
    """Fewest wall seconds of ``repeats`` calls (after one untimed call with ``warmup``)."""
    if warmup:
        fn()
    return min(times(fn, max(1, repeats)))


def median_time(fn: Callable[[], object], repeats: int) -> float:
    """Median wall seconds of ``repeats`` calls."""
    return float(np.median(times(fn, max(1, repeats))))


# ------------------------------------------------------------------------------ matmul
def _square(n: int, dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.standard_normal((n, n)).astype(dtype), rng.standard_normal((n, n)).astype(dtype),
            np.empty((n, n), dtype=dtype))


class MatmulReference:
    """The machine's matrix-product rate in this run: the denominator of every "% of matmul peak".

    ``measure(dtype)`` times :data:`MATMUL_REPEATS` products ``(n x n) @ (n x n)`` (after one
    warm-up) and returns that measurement's best GFLOP/s; :meth:`best` is the best of every
    measurement of the dtype so far, :meth:`percent` a rate as a percentage of it.
    """

    def __init__(self, n: int = MATMUL_N, repeats: int = MATMUL_REPEATS):
        self.n, self.repeats = int(n), int(repeats)
        self.rounds: dict[str, list[float]] = {}

    def measure(self, dtype=np.float64) -> float:
        """One measurement: best GFLOP/s of ``repeats`` products in ``dtype``."""
        a, b, c = _square(self.n, dtype)
        t = best_time(lambda: np.matmul(a, b, out=c), self.repeats, warmup=True)
        gf = 2.0 * self.n ** 3 / t / 1e9
        self.rounds.setdefault(np.dtype(dtype).name, []).append(gf)
        return gf

    def best(self, dtype=np.float64) -> float:
        """Best GFLOP/s of every measurement of ``dtype`` so far (one is taken if there is none)."""
        name = np.dtype(dtype).name
        if name not in self.rounds:
            self.measure(dtype)
        return max(self.rounds[name])

    def percent(self, gflops: float, dtype=np.float64) -> float:
        """``gflops`` as a percentage of :meth:`best`."""
        return 100.0 * gflops / self.best(dtype)

    def line(self) -> str:
        """The reference as reported: ``numpy.matmul NxN ...: float64 X GFLOP/s, float32 Y GFLOP/s``."""
        per = ", ".join(f"{name} {max(g):.1f} GFLOP/s" for name, g in self.rounds.items())
        counts = "/".join(str(len(g)) for g in self.rounds.values())
        rounds = "; ".join(f"{name} " + " ".join(f"{x:.1f}" for x in g) for name, g in self.rounds.items())
        return (f"numpy.matmul {self.n}x{self.n}, best of {self.repeats} products x {counts} measurements "
                f"(2 n^3 flops, BLAS default threads): {per}  [measurements: {rounds}]")


def matmul_seconds(m: int, k: int, n: int, dtype=np.float32, repeats: int = MATMUL_REPEATS) -> float:
    """Best seconds of one ``(m x k) @ (k x n)`` numpy product: "a matmul of the same flops"."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = np.empty((m, n), dtype=dtype)
    return best_time(lambda: np.matmul(a, b, out=c), repeats, warmup=True)


# ------------------------------------------------------------------------------ environment
def cpu_model() -> str:
    """``lscpu``'s model name (or the platform's processor string)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown"


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def blas_line() -> str:
    """BLAS and OpenMP libraries as threadpoolctl sees them: name, version, kernel, threads."""
    from threadpoolctl import threadpool_info
    parts = []
    for d in threadpool_info():
        kernel = f", kernel {d['architecture']}" if d.get("architecture") else ""
        layer = f" ({d['threading_layer']})" if d.get("threading_layer") not in (None, "unknown") else ""
        version = f" {d['version']}" if d.get("version") else ""
        parts.append(f"{d['user_api']}: {d['internal_api']}{version} [{d.get('prefix', '?')}]{layer}{kernel}, "
                     f"{d['num_threads']} threads")
    return "; ".join(parts) or "no BLAS/OpenMP library found by threadpoolctl"


def _git_head() -> str:
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (head or "unknown") + (" (+ uncommitted changes)" if dirty else "")


def load_line(when: str = "at end") -> str:
    """``load average at end: 1.23 0.98 0.77`` (1, 5, 15 minutes)."""
    return f"load average {when}: {' '.join(f'{x:.2f}' for x in os.getloadavg())}"


def environment(argv: Sequence[str] | None = None, script: str | None = None) -> list[str]:
    """The header every results file starts with: the command, the machine, the libraries, the load.

    ``argv``: the script's arguments (default ``sys.argv[1:]``); ``script``: its path (default
    ``sys.argv[0]``), shown relative to the repository root.
    """
    script = script or sys.argv[0]
    try:
        script = str(Path(script).resolve().relative_to(ROOT))
    except ValueError:
        pass
    args = list(sys.argv[1:] if argv is None else argv)
    import sklearn
    return [f"command: python {shlex.join([script, *args])}",
            f"CPU: {cpu_model()}, {_cores()} cores available to this process",
            f"python {platform.python_version()}, numpy {np.__version__}, scikit-learn {sklearn.__version__}",
            f"threads: {blas_line()}",
            load_line("at start") + " (a loaded machine slows every absolute time; ratios are "
                                    "measured in the same run)",
            f"date {datetime.now(timezone.utc).strftime('%Y-%m-%dT%H:%MZ')}, git HEAD {_git_head()}"]


def append_lines(lines: list[str], path: str | Path) -> None:
    """End ``lines`` (a table a protocol built) with :func:`load_line`, print them and add them
    after what ``path`` holds, a blank line after: for results files that keep every run."""
    lines.append(f"# {load_line('at end')}")
    text = "\n".join(lines) + "\n"
    print(text, end="")
    with open(path, "a", encoding="utf-8") as f:
        f.write(text + "\n")


class Report:
    """A results file being written: every line printed as it comes and kept.

    ``Report(argv, __file__)`` starts with :func:`environment` (each line after ``prefix``);
    ``report("...")`` adds a line; :meth:`write` ends with :func:`load_line` and writes the file.
    """

    def __init__(self, argv: Sequence[str] | None, script: str, prefix: str = ""):
        self.lines: list[str] = []
        self.prefix = prefix
        for line in environment(argv, script):
            self(prefix + line)

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def write(self, path: str | Path | None, append: bool = False) -> None:
        """Add the closing load line; write every line to ``path`` (None: print only), or add
        them after what it holds (``append``, a blank line after)."""
        self(self.prefix + load_line("at end"))
        if path:
            with open(path, "a" if append else "w", encoding="utf-8") as f:
                f.write("\n".join(self.lines) + ("\n\n" if append else "\n"))
