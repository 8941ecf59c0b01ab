"""Build the compiled core ``gmmext._core`` from ``src/_core.pyx``.

All metadata lives in pyproject.toml; this file only describes the extension, which needs
numpy's headers and OpenMP, with each compiler's own flags:

* gcc, and LLVM clang (Linux, Homebrew's llvm): ``-fopenmp -O3 -fno-trapping-math``
  (libgomp / libomp; the last lets gcc turn the fast exp's selects into blends for AVX2:
  without it the AVX2+FMA clone of the E-step's row kernel stays scalar, 3-10x slower; it
  changes no computed value, only the promise that floating-point exception flags are kept);
* Apple clang (macOS): ``-Xpreprocessor -fopenmp`` and ``-lomp`` from the libomp package
  (Homebrew's ``libomp``; ``GMMEXT_LIBOMP_PREFIX`` names another prefix holding
  ``include/omp.h`` and ``lib/libomp.dylib``);
* MSVC (Windows): ``/openmp /O2 /std:c11`` (vcomp; C11 for ``restrict`` and ``_Pragma``).

Before the core is compiled, a tiny OpenMP program is compiled and linked with the same
flags: without a working C compiler, or without the OpenMP runtime, the build stops with one
paragraph naming what is missing (and the wheels that need neither) instead of a compiler
traceback.  ``GMMEXT_DEBUG_BUILD=1`` builds with bounds checks and ``-O0 -g`` (memcheck,
sanitizers).  docs/install.md explains the wheels and this file.
"""
import contextlib
import os
import re
import shutil
import subprocess
import sys
import tempfile

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist
from setuptools.errors import PlatformError

debug = os.environ.get("GMMEXT_DEBUG_BUILD") == "1"  # bounds checks + -O0 -g for memcheck / ASan

OPENMP_PROBE = r"""
#include <omp.h>
int gmmext_probe(void) {
    int n = 0;
#pragma omp parallel reduction(+:n)
    n += omp_get_thread_num() >= 0;
    return n;
}
"""

PLAIN_PROBE = "int main(void) { return 0; }\n"

WHEELS_HINT = ("Wheels for Linux (x86_64, aarch64), macOS and Windows need no compiler: "
               "python -m pip install --only-binary gmmext gmmext (docs/install.md).")


def _is_apple_clang(cc: str) -> bool:
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return "Apple" in out and "clang" in out


def _libomp_prefix() -> str | None:
    """Where Apple clang finds libomp: GMMEXT_LIBOMP_PREFIX, Homebrew's libomp, or None."""
    prefix = os.environ.get("GMMEXT_LIBOMP_PREFIX")
    if prefix:
        return prefix
    if shutil.which("brew"):
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(["brew", "--prefix", "libomp"], capture_output=True, text=True, timeout=60)
            if out.returncode == 0 and out.stdout.strip():
                return out.stdout.strip()
    for prefix in ("/opt/homebrew/opt/libomp", "/usr/local/opt/libomp"):
        if os.path.isdir(prefix):
            return prefix
    return None


def openmp_flags(compiler) -> dict:
    """The compile / link flags and include / library folders for ``compiler`` (a setuptools
    CCompiler), with the name of the OpenMP runtime they link (for the error message)."""
    if compiler.compiler_type == "msvc":
        return dict(compile=(["/Od", "/Zi"] if debug else ["/O2"]) + ["/openmp", "/std:c11"], link=[],
                    include_dirs=[], library_dirs=[], runtime="vcomp (MSVC's OpenMP runtime, /openmp)",
                    compiler="MSVC (Visual Studio Build Tools)")
    opt = (["-O0", "-g"] if debug else ["-O3"]) + ["-fno-trapping-math"]
    cc = compiler.compiler_so[0] if getattr(compiler, "compiler_so", None) else "cc"
    if sys.platform == "darwin" and _is_apple_clang(cc):
        prefix = _libomp_prefix()
        inc, lib = ([os.path.join(prefix, "include")], [os.path.join(prefix, "lib")]) if prefix else ([], [])
        return dict(compile=opt + ["-Xpreprocessor", "-fopenmp"], link=["-lomp"], include_dirs=inc,
                    library_dirs=lib, runtime="libomp (brew install libomp, or GMMEXT_LIBOMP_PREFIX=its prefix)",
                    compiler="Apple clang (xcode-select --install)")
    return dict(compile=opt + ["-fopenmp"], link=["-fopenmp"], include_dirs=[], library_dirs=[],
                runtime="the OpenMP runtime of the compiler (libgomp for gcc: Debian/Ubuntu libgomp1 and "
                        "gcc; Fedora/RHEL libgomp; for clang: libomp-dev / libomp-devel)",
                compiler="a C compiler (gcc or clang: Debian/Ubuntu build-essential, Fedora/RHEL gcc)")


@contextlib.contextmanager
def _output_to(path: str):
    """Send this process's stdout and stderr (the compiler's too) to the file ``path``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(path, "w") as out:
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            yield
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _compiler_name(compiler) -> str:
    """The compiler's command (``CC``), or MSVC."""
    cmd = getattr(compiler, "compiler_so", None)
    return " ".join(cmd[:1]) if cmd else "MSVC (cl.exe)"


def _try_build(compiler, source: str, flags: dict, link: bool) -> str | None:
    """Compile (and link) ``source`` with ``flags`` in a temporary folder: None if that worked, else
    the compiler's first error line (its output is kept off the screen), or the error's type."""
    with tempfile.TemporaryDirectory(prefix="gmmext-probe-") as tmp:
        src, log = os.path.join(tmp, "probe.c"), os.path.join(tmp, "log")
        with open(src, "w") as f:
            f.write(source)
        try:
            with _output_to(log):
                objs = compiler.compile([src], output_dir=tmp, extra_postargs=flags["compile"],
                                        include_dirs=flags["include_dirs"])
                if link:   # as the extension is linked (a shared object, with LDFLAGS: e.g. sanitizers)
                    out = os.path.join(tmp, compiler.library_filename("probe", lib_type="shared"))
                    compiler.link_shared_object(objs, out, extra_postargs=flags["link"],
                                                library_dirs=flags["library_dirs"])
        except Exception as exc:  # noqa: BLE001 - CompileError, LinkError, no MSVC: all one message
            with open(log, errors="replace") as f:
                lines = [ln.strip().replace(tmp + os.sep, "") for ln in f if ln.strip()]
            errors = [ln for ln in lines if "error" in ln.lower() and not re.match(r"\d+ errors? generated", ln)]
            if errors or lines:
                return (errors or lines)[0]
            return f"it exited with an error and printed nothing ({type(exc).__name__})"
        return None


class BuildExt(build_ext):
    """build_ext with this compiler's OpenMP flags, after a probe that names what is missing."""

    def build_extensions(self):
        flags = openmp_flags(self.compiler)
        plain = _try_build(self.compiler, PLAIN_PROBE, dict(flags, compile=[], link=[]), link=False)
        if plain is not None:
            raise PlatformError(
                f"gmmext: building the compiled core needs {flags['compiler']} with OpenMP, and no working C "
                f"compiler was found ({_compiler_name(self.compiler)} failed on a one-line C file: {plain}). Install "
                f"one (or name it in CC), then retry; or: {WHEELS_HINT}")
        omp = _try_build(self.compiler, OPENMP_PROBE, flags, link=True)
        if omp is not None:
            raise PlatformError(
                f"gmmext: the C compiler ({_compiler_name(self.compiler)}) works but cannot build OpenMP code, which "
                f"the core needs for its threads (a 6-line OpenMP program with "
                f"{' '.join(dict.fromkeys(flags['compile'] + flags['link']))} failed: {omp}). Install {flags['runtime']}, then "
                f"retry; or: {WHEELS_HINT}")
        # Cython runs here, after the probe (and not for an sdist, which carries the .pyx sources);
        # (the generated C replaces the .pyx in each extension's sources, the objects setuptools set up stay)
        generated = {e.name: e.sources for e in cythonize(self.extensions, compiler_directives=DIRECTIVES)}
        for ext in self.extensions:
            ext.sources = generated[ext.name]
        for ext in self.extensions:
            ext.extra_compile_args = flags["compile"] + list(ext.extra_compile_args or [])
            ext.extra_link_args = flags["link"] + list(ext.extra_link_args or [])
            ext.include_dirs = list(ext.include_dirs or []) + flags["include_dirs"]
            ext.library_dirs = list(ext.library_dirs or []) + flags["library_dirs"]
        super().build_extensions()


class SDist(sdist):
    """The sdist carries the Cython sources (MANIFEST.in), not the C that Cython makes from them
    (a stale generated file would shadow a newer .pyx)."""

    def make_release_tree(self, base_dir, files):
        generated = {f[:-len(".pyx")] + ".c" for f in files if f.endswith(".pyx")}
        super().make_release_tree(base_dir, [f for f in files if f not in generated])


extensions = [
    Extension(
        "gmmext._core",
        ["src/_core.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
]

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": False,
    "initializedcheck": debug,
    "cdivision": True,
    # Free-threaded CPython (3.13t / 3.14t): importing the core does not re-enable the GIL. The audit of the
    # core's module-level state that allows it is in docs/install.md ("Free-threaded CPython").
    "freethreading_compatible": True,
}

setup(ext_modules=extensions, cmdclass={"build_ext": BuildExt, "sdist": SDist})
