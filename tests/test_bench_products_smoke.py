"""Smoke test of benchmarks/bench_products.py: with a tiny amount of work it runs and prints one
row of rates per case and dtype (no timing checks)."""
import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_products.py"


def test_bench_products_tiny_run_prints_every_row(tmp_path):
    out_file = tmp_path / "r.txt"
    p = subprocess.run([sys.executable, str(SCRIPT), "--flops", "1e5", "--repeats", "1", "--out", str(out_file)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [line for line in p.stdout.splitlines() if re.match(r"(logdens|stats|full|top-C) ", line)]
    assert len(rows) == 10, p.stdout
    for row in rows:
        assert re.search(r"float(32|64)( +\d+\.\d){2,3} +\d+\.\d\dx$", row), row
    assert out_file.read_text().startswith("command: ") and rows[0] in out_file.read_text()


GEMM_SHAPES = SCRIPT.parent / "bench_gemm_shapes.py"


def test_bench_gemm_shapes_tiny_run_prints_every_case(tmp_path):
    """Five products per dtype, each with a positive rate and its fraction of the 1000x1000 product."""
    out_file = tmp_path / "g.txt"
    p = subprocess.run([sys.executable, str(GEMM_SHAPES), "--repeats", "1", "-d", "4", "-k", "8",
                        "--out", str(out_file)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    rows = [line for line in p.stdout.splitlines() if re.match(r"  (log-densities|statistics), ", line)]
    assert len(rows) == 10, p.stdout
    for row in rows:
        m = re.search(r" (\d+\.\d) GFLOP/s +(\d+) %$", row)
        assert m and float(m.group(1)) > 0, row
    assert len(re.findall(r"single-thread 1000x1000 product \d+\.\d GFLOP/s", p.stdout)) == 2
    assert out_file.read_text().startswith("command: ") and rows[0] in out_file.read_text()
