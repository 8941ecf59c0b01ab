"""benchmarks/bench_peers.py without torch: its torch-based peers are skipped with the reason, the
other rows still run and pass their EM-step check against scikit-learn (no timing checks)."""
import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_peers.py"


@pytest.fixture
def bench(monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_peers", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.delitem(sys.modules, "torch", raising=False)
    monkeypatch.setattr(sys, "meta_path", [_NoTorch(), *sys.meta_path])   # `import torch` fails
    return mod


class _NoTorch:
    """An import finder that refuses torch, as if it were not installed."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError(f"No module named {name!r}")
        return None


def test_torch_peers_skip_cleanly_without_torch(bench):
    X, start = bench.mixture_data(np.random.default_rng(0), 50, 3, 2)
    for fit in (bench.fit_pycave, bench.fit_torchgmm, bench.fit_pomegranate):
        with pytest.raises(bench.Skip, match=r"not installed \(torch: "):
            fit(X, start, 1, None, 1)


def test_tiny_run_without_torch(bench, tmp_path):
    out = tmp_path / "r.txt"
    assert bench.main(["-n", "600", "-k", "8", "--iters", "1", "--fit-iters", "2", "--dtypes", "float64",
                       "--threads", "1", "--only", "gmmext,PyCave,torchgmm,pomegranate", "--out", str(out)]) == 0
    text = out.read_text()
    for name in ("gmmext",):
        assert re.search(rf"^{name} +float64 +[\d.]+ +(?:[\d.]+|nan)x +-[\d.]+ +[\d.]+ +-[\d.]+  yes \([\d.e+-]+\)$", text, re.M)
    for name in ("PyCave", "torchgmm", "pomegranate"):
        assert re.search(rf"^{name} +float64 +skipped: not installed \(torch: ", text, re.M)
