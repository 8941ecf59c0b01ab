"""Smoke test of benchmarks/bench_serve.py: a tiny bounded load test that must print one row per
client level, with no errors, and the in-process reference (no timing checks)."""
import importlib.util
import re
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.mark.long(15)
def test_bench_serve_prints_a_row_per_level(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("bench_serve", BENCH / "bench_serve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out_file = tmp_path / "r.txt"
    assert mod.main(["--data", str(tmp_path / "no-data"), "--components", "8", "--speakers", "5", "--requests", "6",
                     "--clients", "1,3", "--time-limit", "60", "--work", str(tmp_path), "--out", str(out_file)]) == 0
    out = out_file.read_text()
    for c in (1, 3):
        assert re.search(rf"^ +{c} +6 +0 +\d+\.\d +\d+\.\d +\d+\.\d +\d+\.\d\dx$", out, re.M), out
    assert re.search(r"in process, SpeakerStore.verify .*median \d+\.\d ms", out)
    assert "exit 0" in out and "loaded machine" in out
