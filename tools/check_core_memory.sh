#!/usr/bin/env bash
# check_core_memory.sh - memory-safety check of gmmext's compiled core (src/_core.pyx, src/gmm_kernels.h).
#
# What it does
#   1. Copies the build/test sources of this checkout (setup.py, pyproject.toml, README.md,
#      src/, gmmext/, speaker/, tests/: tracked and untracked-not-ignored files as they are in the
#      working tree, never a built .so, build/ or src/*.c) into a temporary folder, so the
#      checkout itself is never rebuilt.
#   2. Builds gmmext._core there with `python setup.py build_ext --inplace` and
#        GMMEXT_DEBUG_BUILD=1  -> Cython boundscheck + initializedcheck, -O0 -g (see setup.py);
#        CFLAGS/LDFLAGS       -> -fsanitize=address,undefined,float-cast-overflow
#                                -fno-omit-frame-pointer -fno-wrapv
#      (float-cast-overflow: float -> integer conversions out of range, not part of gcc's
#      "undefined" group.)
#      (-fno-wrapv: CPython compiles extensions with -fwrapv, under which gcc's UBSan checks
#      neither signed overflow nor signed left shifts; the C kernels must be valid ISO C anyway.
#      --wrapv keeps CPython's -fwrapv, i.e. checks only what is undefined in the real build.)
#      (Any @cython.boundscheck(False) decorator in src/_core.pyx would override the debug directive;
#      such decorators are removed *in the copy* so bounds checks apply.)
#   3. Runs the core's tests (tests/test_gmm_core.py, test_gmm_properties.py, test_gmm_errors.py,
#      test_top_c.py, plus test_concurrency.py, test_fast_exp.py, test_reliability_numeric.py,
#      test_segments.py, test_model_cache.py and test_determinism.py
#      when present) with PYTHONPATH=<copy>, LD_PRELOAD=libasan, OMP_NUM_THREADS=2,
#      PYTHONMALLOC=malloc, ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 and
#      UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1, after checking that the gmmext._core
#      imported is the instrumented one in the copy.
#   Exit status: 0 when everything passes; non-zero on any test failure, Cython IndexError, or
#   AddressSanitizer / UndefinedBehaviorSanitizer report (those abort the process).
#
# --valgrind (optional, slower: 1.5-2.5 min; a second opinion, ASan stays the primary check)
#   Builds a GMMEXT_DEBUG_BUILD=1 copy *without* sanitizers and runs a small driver (every core
#   entry point, float32/float64, strided input, weights, 1 and 2 threads) under
#   `valgrind --tool=memcheck --error-exitcode=1` with PYTHONMALLOC=malloc, plus a CPython
#   suppression file if one is found (/usr/lib/valgrind/python3.supp, Misc/valgrind-python.supp,
#   or VALGRIND_PYTHON_SUPP).  Raw valgrind is unusable on this interpreter: `python -c pass`
#   alone gives ~600 "uninitialised value" errors inside libpython (pyenv build), and glibc's
#   loader adds strncmp over-reads.  Those are suppressed *only when the top frame is in
#   libpython / the loader*, so any error whose top frame is in gmmext/_core*.so (including
#   gmm_kernels.h, inlined there) still fails the run.  OpenBLAS produced no reports.
#
# Usage
#   tools/check_core_memory.sh              # ASan + UBSan + bounds checks (default)
#   tools/check_core_memory.sh --valgrind   # valgrind memcheck driver instead
#   tools/check_core_memory.sh --wrapv      # ASan/UBSan, but keep CPython's -fwrapv
#   tools/check_core_memory.sh --keep       # keep the temporary folder (its path is printed)
#   tools/check_core_memory.sh -- -k topc   # extra arguments after -- go to pytest
#   tools/check_core_memory.sh --python /path/to/python   # the interpreter to build and test with
# Environment: PYTHON (the interpreter when --python is not given; default: python on PATH), TMPDIR.
# The test suite passes its own interpreter (sys.executable): `python` on PATH may be another one.
#
# Needs: the README install (`python -m pip install -e ".[test]"`), gcc with libasan/libubsan
# (Debian: gcc), valgrind for --valgrind. If Cython/setuptools (build requirements, not runtime
# ones) are missing from the environment, they are pip-installed into the temporary folder only.
set -euo pipefail

mode=asan
keep=0
wrapv=0
pytest_extra=()
PY=${PYTHON:-python}
while (($#)); do
    case "$1" in
        --python) (($# >= 2)) || { echo "check_core_memory.sh: --python needs a path" >&2; exit 2; }
                  PY=$2; shift ;;
        --python=*) PY=${1#--python=} ;;
        --valgrind) mode=valgrind ;;
        --wrapv) wrapv=1 ;;
        --keep) keep=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        --) shift; pytest_extra=("$@"); break ;;
        *) echo "check_core_memory.sh: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

# the real interpreter, not a wrapper script (pyenv shim): valgrind must run Python itself
PY=$("$PY" -c 'import sys; print(sys.executable)')
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
work=$(mktemp -d "${TMPDIR:-/tmp}/gmmext-memcheck.XXXXXX")
cleanup() { if ((keep)); then echo "kept: $work"; else rm -rf "$work"; fi; }
trap cleanup EXIT
t0=$SECONDS
log() { printf '[check_core_memory %3ds] %s\n' $((SECONDS - t0)) "$*"; }

# ---------------------------------------------------------------- 1. copy the sources
log "copying sources of $repo into $work"
paths=(setup.py pyproject.toml README.md src gmmext speaker tests)
if git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # tracked + untracked-but-not-ignored files: working-tree state, never *.so / build/ / src/*.c
    (cd "$repo" && git ls-files -z --cached --others --exclude-standard -- "${paths[@]}") |
        while IFS= read -r -d '' f; do
            [[ -f "$repo/$f" ]] || continue             # deleted in the working tree
            mkdir -p "$work/$(dirname "$f")"
            cp -p "$repo/$f" "$work/$f"
        done
else
    (cd "$repo" && tar -cf - --exclude='*.so' --exclude='build' --exclude='__pycache__' \
        --exclude='src/*.c' --exclude='*.egg-info' "${paths[@]}") | (cd "$work" && tar -xf -)
fi
[[ -f "$work/src/_core.pyx" && -f "$work/setup.py" ]] || { echo "sources not found under $repo" >&2; exit 1; }
if compgen -G "$work/gmmext/_core*.so" >/dev/null; then echo "a built _core .so was copied" >&2; exit 1; fi
# let GMMEXT_DEBUG_BUILD's boundscheck directive apply to the decorated kernels (copy only)
n_dec=$(grep -c '^@cython\.boundscheck(False)$' "$work/src/_core.pyx" || true)
sed -i '/^@cython\.boundscheck(False)$/d' "$work/src/_core.pyx"
log "removed $n_dec @cython.boundscheck(False) decorator(s) in the copy"

# ---------------------------------------------------------------- 2. build tools
build_pythonpath=""
# setuptools >= 77 reads pyproject.toml's SPDX `license` string and `license-files`
if ! "$PY" -c 'import Cython, setuptools, numpy, scipy, sys
sys.exit(int(setuptools.__version__.split(".")[0]) < 77)' >/dev/null 2>&1; then
    log "Cython/setuptools missing: installing the build requirements into $work/_buildtools"
    "$PY" -m pip install --quiet --target "$work/_buildtools" "cython>=3.0" "setuptools>=77"
    build_pythonpath="$work/_buildtools"
fi

build() {  # build [extra CFLAGS/LDFLAGS]
    local san="$1"
    (cd "$work" && rm -rf build gmmext/_core*.so src/_core.c &&
        env GMMEXT_DEBUG_BUILD=1 PYTHONPATH="$build_pythonpath" \
            CFLAGS="${CFLAGS:-} $san" LDFLAGS="${LDFLAGS:-} $san" \
            "$PY" setup.py -q build_ext --inplace >"$work/build.log" 2>&1) ||
        { tail -n 40 "$work/build.log" >&2; echo "build failed (log above)" >&2; exit 1; }
    so=$(compgen -G "$work/gmmext/_core*.so" | head -n 1)
    [[ -n "$so" ]] || { echo "no gmmext/_core*.so after the build" >&2; exit 1; }
    grep -q '__Pyx_RaiseBufferIndexError' "$work/src/_core.c" ||
        { echo "the generated _core.c has no bounds checks: GMMEXT_DEBUG_BUILD not honoured?" >&2; exit 1; }
}

# imported module must be the instrumented copy, not the editable install in $repo
check_import() (   # subshell: run from the copy, as pytest will
    cd "$work" && "$@" -c '
import os, sys
import gmmext._core as c
work = os.path.realpath(sys.argv[1])
f = os.path.realpath(c.__file__)
print("gmmext._core:", f)
sys.exit(0 if f.startswith(work + os.sep) else "gmmext._core was not imported from the instrumented copy")
' "$work"
)

export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
# results must not depend on how many cores the CI machine has; 2 OpenMP threads exercise the
# per-thread buffers even on one core
export OMP_NUM_THREADS=2

if [[ $mode == asan ]]; then
    # ------------------------------------------------------------ 3a. ASan + UBSan
    libasan=$(gcc -print-file-name=libasan.so)
    [[ -e "$libasan" && "$libasan" == /* ]] || { echo "libasan.so not found (install gcc's libasan)" >&2; exit 1; }
    libasan=$(realpath "$libasan")
    san="-fsanitize=address,undefined,float-cast-overflow -fno-omit-frame-pointer"
    ((wrapv)) || san+=" -fno-wrapv"
    log "building with GMMEXT_DEBUG_BUILD=1 and $san"
    build "$san"
    syms=$(nm -D "$so")   # (not piped into grep -q: SIGPIPE + pipefail)
    grep -q '__asan_report' <<<"$syms" || { echo "$so is not ASan-instrumented" >&2; exit 1; }
    grep -q '__ubsan_handle' <<<"$syms" || { echo "$so is not UBSan-instrumented" >&2; exit 1; }
    log "built $(basename "$so")"
    run=(env LD_PRELOAD="$libasan" PYTHONMALLOC=malloc
         ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:allocator_may_return_null=1"
         UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
         "$PY")
    check_import "${run[@]}"
    tests=(tests/test_gmm_core.py tests/test_gmm_properties.py tests/test_gmm_errors.py tests/test_top_c.py)
    for extra in tests/test_concurrency.py tests/test_fast_exp.py tests/test_reliability_numeric.py \
                 tests/test_segments.py tests/test_model_cache.py tests/test_determinism.py; do
        [[ -f "$work/$extra" ]] && tests+=("$extra")    # more core coverage, when present
    done
    # one process: pyproject.toml's addopts ask pytest-xdist for 2 workers (-n 2); this run is
    # one job of the test suite's, beside the others, and sanitizer aborts are clearer in one process
    xdist=()
    "$PY" -c 'import xdist' >/dev/null 2>&1 && xdist=(-n 0)
    log "running pytest ${tests[*]} under ASan/UBSan"
    # --capture=sys: sanitizer reports are written to fd 2 by C code, and pytest's default
    # fd capture would swallow them when the process aborts
    if (cd "$work" && "${run[@]}" -m pytest -q -p no:cacheprovider --capture=sys ${xdist[@]+"${xdist[@]}"} \
            "${tests[@]}" ${pytest_extra[@]+"${pytest_extra[@]}"}); then
        log "PASS: no sanitizer report, all tests passed"
    else
        rc=$?
        log "FAIL (exit $rc): a test failed or a sanitizer reported an error (see above)"
        exit "$rc"
    fi
else
    # ------------------------------------------------------------ 3b. valgrind memcheck
    command -v valgrind >/dev/null || { echo "valgrind not found (Debian: apt-get install valgrind)" >&2; exit 1; }
    log "building with GMMEXT_DEBUG_BUILD=1 (no sanitizers)"
    build ""
    log "built $(basename "$so")"
    check_import "$PY"
    supp=("--suppressions=$work/noise.supp")
    # Noise that is not ours: this CPython (pyenv build) reports ~600 uninitialised-value errors
    # inside libpython for `python -c pass` even with PYTHONMALLOC=malloc, and glibc's loader
    # reads past rpath strings with strncmp.  Suppressed only when the *top* frame is there, so
    # an error in gmmext/_core*.so (or gmm_kernels.h inlined into it) is always reported.
    cat >"$work/noise.supp" <<'EOF'
{
   cpython-internal-value8
   Memcheck:Value8
   obj:*/libpython3*.so*
}
{
   cpython-internal-cond
   Memcheck:Cond
   obj:*/libpython3*.so*
}
{
   ld-so-rpath-strncmp
   Memcheck:Addr8
   fun:strncmp
   fun:is_dst
}
EOF
    pysupp=${VALGRIND_PYTHON_SUPP:-}
    if [[ -z "$pysupp" ]]; then
        for cand in /usr/lib/valgrind/python3.supp /usr/lib/valgrind/python.supp \
                    "$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("srcdir") or "")')/Misc/valgrind-python.supp"; do
            [[ -f "$cand" ]] && { pysupp=$cand; break; }
        done
    fi
    [[ -n "$pysupp" ]] && supp+=("--suppressions=$pysupp") && log "CPython suppressions: $pysupp"
    cat >"$work/valgrind_driver.py" <<'EOF'
"""Every entry point of gmmext._core on small inputs (run under valgrind memcheck)."""
import warnings

import numpy as np
from gmmext import GaussianMixture, _core, top_c_loglik

warnings.simplefilter("ignore")                        # ConvergenceWarning of max_iter=3
rng = np.random.default_rng(0)
for dtype in (np.float64, np.float32):
    X = rng.normal(size=(701, 6)).astype(dtype)
    for nt in (1, 2):
        gm = GaussianMixture(5, chunk_size=64, n_threads=nt, max_iter=3, tol=0,
                             random_state=0).fit(X)
        Xs = np.asfortranarray(X[::2])                 # strided / Fortran-ordered input
        gm.score_samples(Xs); gm.predict(Xs); gm.predict_proba(Xs)
        gm.component_log_likelihood(Xs)
        gm.accumulate(X, sample_weight=rng.uniform(0, 2, len(X)))
        gm.accumulate(X[:1])
        gm.accumulate_segments([X[:100], Xs[:0], Xs[:300], X[:1]])
        gm.accumulate([Xs[:10], X[100:]])
        idx, ll = gm.top_components(X, 3)
        gm.top_components(X, 5)
        other = GaussianMixture.from_parameters(gm.weights_, gm.means_ + 0.1, gm.covariances_,
                                                n_threads=nt, chunk_size=64)
        top_c_loglik([gm, other], X, idx)
        assert np.all(np.isfinite(gm.score_samples(X)))
    # well-separated clusters: sparse responsibilities; both statistics paths if switchable
    C = rng.normal(scale=20, size=(16, 6))
    Xc = (C[rng.integers(0, 16, 900)] + rng.normal(size=(900, 6))).astype(dtype)
    gm = GaussianMixture.from_parameters(np.full(16, 1 / 16), C, np.ones((16, 6)), n_threads=2,
                                         chunk_size=100)
    for lim in (-1.0, 1.0):                            # dense gemm, then sparse sums
        gm._core_cache().sparse_limit = lim
        gm.accumulate(Xc)
        gm.accumulate(Xc, sample_weight=rng.uniform(0, 2, len(Xc)))
        segs = [Xc[:0], Xc[:1], Xc[1:250], Xc[250:]]  # many segments: summed and per segment
        gm.accumulate(segs, sample_weight=[rng.uniform(0, 2, len(a)) for a in segs])
        gm.accumulate_segments(segs)
        gm.accumulate_segments(segs, second_order=False)
print("valgrind driver: done")
EOF
    log "running the driver under valgrind memcheck (1.5-2.5 min)"
    if (cd "$work" && PYTHONMALLOC=malloc valgrind --tool=memcheck --error-exitcode=1 \
            --track-origins=yes --num-callers=30 "${supp[@]}" "$PY" valgrind_driver.py); then
        log "PASS: valgrind memcheck reported no error"
    else
        rc=$?
        log "FAIL (exit $rc): valgrind reported an error or the driver failed (see above)"
        exit "$rc"
    fi
fi
