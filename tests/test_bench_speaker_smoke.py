"""Smoke tests of benchmarks/bench_startup.py and bench_features.py: tiny runs that must print a
ratio for every measured command (no timing checks)."""
import importlib.util
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
FIX = Path(__file__).resolve().parents[1] / "audio_fixtures"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_startup_prints_a_ratio_per_command(capsys):
    from speaker.cli import COMMANDS
    assert _load("bench_startup").main(["--runs", "1"]) == 0
    out = capsys.readouterr().out
    for name in ["speaker --help"] + [f"speaker {c.NAME} --help" for c in COMMANDS]:
        assert re.search(rf"^{re.escape(name)} +\d+ms +\d+ms +\d+\.\d\dx  \[(ok|MISS)\]$", out, re.M), name
    assert re.search(r"^worst ratio to 'import numpy': \d+\.\d\dx", out, re.M)


@pytest.mark.filterwarnings("ignore:audio sampled at 8000 Hz")
def test_bench_features_prints_rates_and_ratio(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text("".join(f"u{i} {p}\n" for i, p in enumerate(sorted(FIX.glob("*_theo_2.wav"))[:3])))
    out_file = tmp_path / "r.txt"
    assert _load("bench_features").main(["--data", str(data), "--limit", "3", "--no-train-ubm",
                                         "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert out == out_file.read_text()
    assert re.search(r"^\(a\) library.* +\d+\.\d +\d+ *$", out, re.M)
    assert re.search(r"^\(b\) speaker extract --jobs 2 +\d+\.\d +\d+\.\d +\d+ +\d+ %  \[(ok|MISS)\]$", out, re.M)
