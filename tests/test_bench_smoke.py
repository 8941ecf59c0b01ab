"""Smoke test of benchmarks/bench_em.py: with tiny sizes it runs, and prints a complete table and
check list with numbers in every cell (no timing checks: whether a check is [ok] or [MISS] on tiny
sizes says nothing, so only that every check was computed is asserted)."""
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_em.py"
ROWS = [("gmmext", "float64"), ("gmmext", "float32"), ("gmm-dense", "float64"), ("gemms-only", "float64"),
        ("gmm-dense", "float32"), ("gemms-only", "float32"),
        ("numpy-ref", "float64"), ("numpy-ref", "float32"), ("sklearn", "float64"), ("gmmext-big", "float32")]
COLUMNS = ["impl", "dtype", "N", "D", "K", "s/iter", "(min)", "GFLOP/s", "%peak", "input MB", "peakRSS MB",
           "fit+MB"]
CHECKS = ["float64 >= 60% of matmul peak", "dense float64 >= 80 % of matmul", "float64 >= 15x scikit-learn", "fit peak <= input + 150 MB (float64)",
          "score_samples <= 1.3x E-step (float64)", "predict_proba <= 1.3x E-step (float64)",
          "float32 >= 1.7x faster than float64", "score_samples <= 1.3x E-step (float32)",
          "predict_proba <= 1.3x E-step (float32)", "fit N=2000 K=4 float32 peak RSS < 2x input"]
NUMBER = re.compile(r"\d+(\.\d+)?x?")


def _number(cell: str) -> float:
    return float(cell.rstrip("%"))


@pytest.mark.long(11)
def test_bench_em_tiny_run_prints_the_table():
    cmd = [sys.executable, str(SCRIPT), "-n", "1500", "-d", "3", "-k", "4", "--big-n", "2000",
           "--big-k", "4", "--iters", "1", "--matmul-size", "200", "--skip-scaling", "--timeout", "60"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "ERROR" not in out, out
    assert re.search(r"numpy\.matmul 200x200, best of .*: float64 \d+\.\d GFLOP/s, float32 \d+\.\d GFLOP/s", out), out

    # the table: its header, then one row per case, every cell a number where a number belongs
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("impl "))
    for col in COLUMNS:
        assert col in lines[head], col
    rows = {}
    for line in lines[head + 1:]:
        if not line.strip():
            break
        cells = line.split()
        assert len(cells) == len(COLUMNS), line
        rows[tuple(cells[:2])] = cells
    assert list(rows) == ROWS, out
    for (name, dt), cells in rows.items():
        n, d, k = map(int, cells[2:5])
        assert (d, k) == (3, 4) and n == (2000 if name == "gmmext-big" else 1500), cells
        s_iter, s_min, gflops, peak, input_mb, rss, fit_mb = map(_number, cells[5:])
        assert all(math.isfinite(v) for v in (s_iter, s_min, gflops, peak, input_mb, rss, fit_mb)), cells
        # the gemms alone on a tiny case can print 0.0000 s (four decimals)
        assert (0 <= s_min if name == "gemms-only" else 0 < s_min) and s_min <= s_iter, cells
        assert gflops >= 0 and peak >= 0 and rss > 0, cells
        assert cells[8].endswith("%"), cells

    # the checks: every one computed (label, [ok] or [MISS], and the measured numbers)
    checks = {}
    for line in lines:
        m = re.fullmatch(r"  \[(ok|MISS)\] (.+?): (.+)", line)
        if m:
            checks[m[2]] = m[3]
    assert sorted(checks) == sorted(CHECKS), out
    for dt in ("float64", "float32"):   # the dense E-step against its gemms alone, as a percentage
        assert re.search(rf"\[info\] dense {dt}'s two gemms alone .*of matmul; the dense E-step runs at \d+% "
                         "of their rate", out), out
    for label, detail in checks.items():
        assert NUMBER.search(detail) and not re.search(r"\b(nan|inf)\b", detail), (label, detail)


def test_bench_em_help():
    p = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert "--quick" in p.stdout and "--skip-sklearn" in p.stdout and "--skip-big" in p.stdout
