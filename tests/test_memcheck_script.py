"""tools/check_core_memory.sh (ASan/UBSan/valgrind check of the compiled core) stays runnable.

The full run (rebuild with ASan + UBSan + bounds checks, run the core's tests against it) takes
about half a minute and runs here too; set GMMEXT_SKIP_MEMCHECK=1 to skip it.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "check_core_memory.sh"


def test_script_exists_and_is_executable():
    assert SCRIPT.is_file()
    assert os.access(SCRIPT, os.X_OK)
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash not available")
def test_script_parses():
    res = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


@pytest.mark.skipif(os.environ.get("GMMEXT_SKIP_MEMCHECK") == "1", reason="GMMEXT_SKIP_MEMCHECK=1")
@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc with libasan")
@pytest.mark.long(35)
def test_core_is_clean_under_sanitizers():
    # this interpreter, not whichever `python` comes first on PATH (another one has no gmmext deps)
    res = subprocess.run(["bash", str(SCRIPT), "--python", sys.executable], capture_output=True,
                         text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-5000:] + res.stderr[-5000:]
    assert "PASS: no sanitizer report, all tests passed" in res.stdout + res.stderr


def test_script_refuses_unknown_arguments_and_a_missing_python():
    res = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True)
    assert res.returncode == 2 and "unknown argument: --bogus" in res.stderr
    res = subprocess.run(["bash", str(SCRIPT), "--python"], capture_output=True, text=True)
    assert res.returncode == 2 and "--python needs a path" in res.stderr
