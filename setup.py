"""Build the compiled core ``gmmext._core`` from ``src/_core.pyx``.

All metadata lives in pyproject.toml; this file only describes the extension,
which needs numpy's headers and OpenMP.
"""
import os
import sys

import numpy
from Cython.Build import cythonize
from setuptools import Extension, setup

openmp = [] if sys.platform == "darwin" else ["-fopenmp"]
debug = os.environ.get("GMMEXT_DEBUG_BUILD") == "1"  # bounds checks + -O0 -g for memcheck / ASan

extensions = [
    Extension(
        "gmmext._core",
        ["src/_core.pyx"],
        include_dirs=[numpy.get_include()],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        extra_compile_args=(["-O0", "-g"] if debug else ["-O3"]) + openmp,
        extra_link_args=openmp,
    )
]

directives = {
    "language_level": 3,
    "boundscheck": debug,
    "wraparound": False,
    "initializedcheck": debug,
    "cdivision": True,
}

setup(ext_modules=cythonize(extensions, compiler_directives=directives))
