"""The core's test subset: the test files that need only what ``pip install gmmext`` installs.

A test file is in the subset when it imports ``gmmext`` and, besides the standard library, only the
core's dependencies (numpy, scipy, scikit-learn, threadpoolctl), the test tools (pytest, hypothesis,
pytest-run-parallel's fixtures) and the tests' own ``conftest``: every ``import`` counts, at module
level or inside a function.  So a new core test joins the subset by itself, and a test that needs
the speaker toolkit (librosa, soundfile, ...) stays out.  Each wheel runs this subset in an
environment with only the core installed (cibuildwheel's test-command, tools/build_wheels.py).

    python tools/core_tests.py              # the files, one a line (paths from the repository root)
    python tools/core_tests.py --run -q     # pytest on them; arguments after --run go to pytest

Standard library only.  Run it with the interpreter whose environment holds the wheel: pytest is
started from a temporary folder, so ``gmmext`` is imported from that environment, never from the
source tree.
"""
from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

#: what a core test may import besides the standard library
CORE_IMPORTS = frozenset({"gmmext", "numpy", "scipy", "sklearn", "threadpoolctl", "pytest", "hypothesis",
                          "conftest", "_pytest", "pytest_run_parallel"})


def imported_top_names(path: Path) -> set[str]:
    """The top-level names of every module ``path`` imports (absolute imports, anywhere in it)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def is_core_test(path: Path) -> bool:
    names = imported_top_names(path)
    return "gmmext" in names and names <= CORE_IMPORTS | set(sys.stdlib_module_names) | {"__future__"}


def core_test_files(tests: Path = TESTS) -> list[Path]:
    """The core's test files under ``tests``, sorted."""
    return sorted(p for p in tests.rglob("test_*.py") if is_core_test(p))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true",
                    help="run pytest on the files (from a temporary folder); the arguments that follow go to pytest")
    args, rest = ap.parse_known_args(argv)
    files = core_test_files()
    if not args.run:
        if rest:
            ap.error(f"unknown arguments {rest} (pytest arguments go after --run)")
        print("\n".join(str(p.relative_to(ROOT)) for p in files))
        return 0
    with tempfile.TemporaryDirectory(prefix="gmmext-core-tests-") as cwd:
        cmd = [sys.executable, "-m", "pytest", "--rootdir", str(ROOT), "-p", "no:cacheprovider",
               *rest, *map(str, files)]
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return subprocess.call(cmd, cwd=cwd, env=env)


if __name__ == "__main__":
    sys.exit(main())
