"""Opt-in (slow: a wheel build, a few minutes): ``GMMEXT_TEST_WHEELS=1 python -m pytest -n 0 tests/test_wheels.py``.

tools/build_wheels.py builds a wheel of this checkout for this interpreter from the sdist, repairs it
with auditwheel and installs it in a fresh venv without a compiler, where it fits a model with 1 and
2 threads.  Here the result is checked on its own terms: the wheel's tags, and in its ELF files (read
with pyelftools, auditwheel's own reader) the vendored OpenMP runtime and the highest glibc symbol
version each needs.
"""
import io
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.skipif(os.environ.get("GMMEXT_TEST_WHEELS") != "1", reason="opt-in: GMMEXT_TEST_WHEELS=1"),
    pytest.mark.skipif(sys.platform != "linux", reason="manylinux wheels are built on Linux"),
]


def _elf_needs(data: bytes) -> tuple[list[str], tuple[int, ...]]:
    """DT_NEEDED names and the highest GLIBC_x.y symbol version an ELF file requires."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    elf = ELFFile(io.BytesIO(data))
    needed, glibc = [], (0,)
    for sec in elf.iter_sections():
        if isinstance(sec, DynamicSection):
            needed += [t.needed for t in sec.iter_tags() if t.entry.d_tag == "DT_NEEDED"]
        elif isinstance(sec, GNUVerNeedSection):
            for _, auxs in sec.iter_versions():
                for aux in auxs:
                    m = re.fullmatch(r"GLIBC_(\d+(?:\.\d+)*)", aux.name)
                    if m:
                        glibc = max(glibc, tuple(map(int, m.group(1).split("."))))
    return needed, glibc


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    pytest.importorskip("auditwheel")
    out, work = tmp_path_factory.mktemp("dist"), tmp_path_factory.mktemp("work")
    p = subprocess.run([sys.executable, ROOT / "tools" / "build_wheels.py", "--python", sys.executable,
                        "--out", out, "--work", work, "--core-tests", "none", "--lowest-on", "none"],
                       capture_output=True, text=True, timeout=3600)
    report = json.loads((out / "report.json").read_text()) if (out / "report.json").exists() else None
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    (wheel,) = out.glob("gmmext-*.whl")
    return wheel, report, out


def test_the_wheel_is_manylinux2014_with_libgomp_vendored(built):
    wheel, _, out = built
    arch = os.uname().machine
    assert wheel.name.endswith(f"-manylinux2014_{arch}.manylinux_2_17_{arch}.whl"), wheel.name
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        (core,) = [n for n in names if re.fullmatch(r"gmmext/_core\..*\.so", n)]
        (gomp,) = [n for n in names if re.fullmatch(r"gmmext\.libs/libgomp[^/]*\.so[.0-9]*", n)]
        core_needed, core_glibc = _elf_needs(z.read(core))
        gomp_needed, gomp_glibc = _elf_needs(z.read(gomp))
        tags = [ln.split(": ", 1)[1] for ln in z.read(next(n for n in names if n.endswith(".dist-info/WHEEL")))
                .decode().splitlines() if ln.startswith("Tag: ")]
    assert any(t.endswith(f"manylinux_2_17_{arch}") for t in tags), tags
    assert Path(gomp).name in core_needed                      # the core loads the vendored copy ...
    assert not [n for n in core_needed if n.startswith("libgomp.so")]   # ... never the system's
    assert core_glibc <= (2, 17) and gomp_glibc <= (2, 17), (core_glibc, gomp_glibc)
    assert "manylinux_2_17" in (out / "auditwheel-show.txt").read_text()


def test_it_installs_and_fits_without_a_compiler(built):
    _, report, _ = built
    (r,) = report["pythons"]
    assert r["python"] == "%d.%d" % sys.version_info[:2]
    assert r["speech_packages"] == []
    assert {"numpy", "scipy", "scikit-learn", "threadpoolctl", "gmmext"} <= set(r["installed"])
    fit = r["fit"]
    assert fit["converged"] == [True, True]
    assert abs(fit["mean_loglik"]["1"] - fit["mean_loglik"]["2"]) < 1e-6
    assert abs(fit["mean_loglik"]["1"] - fit["sklearn_mean_loglik"]) < 1e-4
    assert any("/gmmext.libs/libgomp" in f for f in fit["openmp"]), fit["openmp"]
    assert "/venv-" in fit["core"]                              # the wheel's core, not the checkout's
    sp = r["speaker_without_extra"]
    assert sp["exit"] == 1 and "gmmext[speaker]" in sp["stderr"] and len(sp["stderr"].strip().splitlines()) == 1
