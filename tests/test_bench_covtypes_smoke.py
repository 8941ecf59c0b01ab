"""Smoke test of benchmarks/bench_covtypes.py at tiny sizes: every line is printed with numbers
(no timing checks: ratios at these sizes say nothing)."""
import importlib.util
import re
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_covtypes.py"


def test_bench_covtypes_tiny_run(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_covtypes", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "r.txt"
    assert mod.main(["--n", "600", "--n-big", "600", "--n-acc", "300", "--iters", "1", "--rounds", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert re.search(r"full +N=600 D=39 K=64 float64: gmmext [\d.]+ s/iter .* (?:[\d.]+|nan)x; .* [\d.]+ % of the best matmul", text)
    assert re.search(r"full +float32 vs float64 .* mean [\d.e+-]+, max [\d.e+-]+ nats \(target max <= 1e-04: (ok|MISS)\)", text)
    assert len(re.findall(r"full +float32, covariances of condition number 1e\+0[1-5], .* max [\d.e+-]+ nats", text)) == 5
    assert re.search(r"full +float32 accuracy, condition numbers 1e1..1e5: max [\d.e+-]+ nats per frame \(target <= 1e-04: (ok|MISS)\)", text)
    assert re.search(r"float32 / float64 = [\d.]+ \(target <= 1.2: (ok|MISS);", text)
    for cov in ("tied", "spherical"):
        assert re.search(rf"{cov} +N=600 D=39 K=256 float64: gmmext [\d.]+ s/iter, scikit-learn (?:[\d.]+|nan) s/iter: (?:[\d.]+|nan)x", text)
    assert re.search(r"full +N=600 D=60 K=512 float32: gmmext [\d.]+ s/iter; .* \d+ MiB", text)
