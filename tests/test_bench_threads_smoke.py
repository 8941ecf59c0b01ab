"""Smoke test of benchmarks/bench_threads.py: tiny sizes, no timing checks."""
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_threads.py"


def test_bench_threads_tiny_run():
    """Runs, prints its table, and finds the 2-thread / n_threads=2 results equal to sequential ones."""
    p = subprocess.run([sys.executable, str(SCRIPT), "--n", "3000", "--d", "3", "--k", "4",
                        "--repeats", "1"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "cores available to this process" in p.stdout and "2 threads, 1 half each" in p.stdout
    assert p.stdout.count("identical, n_threads=2 agrees") == 2, p.stdout
