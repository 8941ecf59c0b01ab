"""tools/check_core_memory.sh (ASan/UBSan/valgrind check of the compiled core) stays runnable.

The full run rebuilds the core with sanitizers and takes about half a minute, so it is not
run here; this only checks that the script is present, executable and valid bash.
"""
import os
import shutil
import subprocess
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
