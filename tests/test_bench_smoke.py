"""Smoke test of benchmarks/bench_em.py: runs with tiny sizes and prints its table (no timing checks)."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_em.py"


def test_bench_em_tiny_run_prints_the_table():
    cmd = [sys.executable, str(SCRIPT), "-n", "1500", "-d", "3", "-k", "4", "--big-n", "2000",
           "--big-k", "4", "--iters", "1", "--matmul-size", "200", "--skip-scaling", "--timeout", "60"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert "numpy.matmul" in out and "s/iter" in out and "peakRSS MB" in out
    for name in ("gmmext ", "numpy-ref", "sklearn", "gmmext-big"):
        assert name in out, f"{name!r} row missing:\n{out}"
    assert "ERROR" not in out, out
    assert "float32 >= 1.7x faster than float64" in out
    assert "score_samples <= 1.3x E-step" in out


def test_bench_em_help():
    p = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert "--quick" in p.stdout and "--skip-sklearn" in p.stdout and "--skip-big" in p.stdout
