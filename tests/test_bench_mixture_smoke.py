"""Smoke tests of benchmarks/bench_bgm.py and benchmarks/bench_online.py at tiny sizes: every line
is printed with numbers (no timing or distance checks: at these sizes they say nothing)."""
import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_bgm_tiny_run(tmp_path):
    out = tmp_path / "r.txt"
    assert _load("bench_bgm").main(["--n", "400", "--iters", "1", "--types", "full,spherical",
                                    "--out", str(out)]) == 0
    text = out.read_text()
    for cov in ("full", "spherical"):
        assert re.search(rf"{cov} +N=400 D=\d+ K=\d+ float64: gmmext [\d.]+ s/iter, scikit-learn [\d.]+ s/iter: "
                         r"[\d.]+x", text)


def test_bench_online_tiny_run(tmp_path):
    out = tmp_path / "r.txt"
    assert _load("bench_online").main(["--batches", "5", "--rows", "100", "--out", str(out)]) == 0
    text = out.read_text()
    assert len(re.findall(r"learning_decay=[\d.]+: 5 batches x 100 rows: max \|mean diff\| [\d.e+-]+", text)) == 3
