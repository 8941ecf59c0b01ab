"""The limits of what ``speaker`` accepts, in one place: every reader of untrusted input (model
files, checkpoints, i-vector back-end files, the speaker store, feature configurations) and
every command-line option that sizes a model checks against these.

A UBM has at most :data:`MAX_COMPONENTS` components of :data:`MAX_DIM` dimensions, wherever it
comes from: a UBM the model files refuse is refused by the store too, and ``train-ubm`` cannot
make one.  The bounds are generous for speech (64 to 2048 components and 20 to 60 dimensions
are customary) and keep a model's arrays small: K * D <= 819,200 values (6.6 MB in float64).
"""
from __future__ import annotations

import re

__all__ = ["MAX_COMPONENTS", "MAX_DIM", "MAX_RANK", "MAX_PASSES", "MAX_SPEAKERS", "MAX_ELEMENTS", "MAX_ID_CHARS",
           "MAX_SCALAR_CHARS", "SPEAKER_ID", "speaker_id_problem", "MAX_RECORDING_ID_CHARS", "recording_id_problem",
           "MAX_COHORT_FRAMES", "MAX_COHORT_ELEMENTS", "MAX_KEPT_FRAMES", "MAX_KEPT_ELEMENTS", "MAX_CALIBRATION_TRIALS",
           "ubm_shape_problem"]

#: Components K of a UBM (and of every model adapted from it).
MAX_COMPONENTS = 4096
#: Feature dimensions D (with deltas): a FeatureConfig giving more is refused.
MAX_DIM = 200
#: i-vector dimension R (rank of the total-variability matrix; 100 to 600 are customary).
MAX_RANK = 2000
#: EM passes recorded in a training checkpoint.
MAX_PASSES = 1_000_000
#: Speaker models in one models file.
MAX_SPEAKERS = 1_000_000
#: Elements of one array of a model file (2**28: 2 GiB of float64, e.g. 2000 speakers of a
#: 2048 x 60 UBM), checked on the declared headers before any data is read.
MAX_ELEMENTS = 1 << 28
#: Characters of a speaker id: the one rule (:func:`speaker_id_problem`) of the store, model files,
#: ``speaker import`` / ``enroll`` and the service.
MAX_ID_CHARS = 128
#: A speaker id: 1 to 128 characters of A-Z a-z 0-9 _ . @ + = -, not starting with . @ + = -
#: (a URL path segment as it is; never an option, a hidden file or a spreadsheet formula; no
#: whitespace, so never a forged line in a listing).
SPEAKER_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+=-]{0,%d}" % (MAX_ID_CHARS - 1))
#: Characters of a header string of a model file (format, kind, fingerprint).
MAX_SCALAR_CHARS = 1024
#: Characters of a cohort recording id (often the recording's path): printable, no whitespace.
MAX_RECORDING_ID_CHARS = 4096
#: Frames of one cohort recording kept in a store, and its frames * D (64 MB of float32).
MAX_COHORT_FRAMES = 1 << 22
MAX_COHORT_ELEMENTS = 1 << 24
#: Frames of one enrolled recording whose features a store keeps, and its frames * D (the
#: cohort's bounds; a longer recording is enrolled without its features).
MAX_KEPT_FRAMES = MAX_COHORT_FRAMES
MAX_KEPT_ELEMENTS = MAX_COHORT_ELEMENTS
#: Trials (target + non-target) whose calibrated LLRs a kept calibration holds (32 MB of float64).
MAX_CALIBRATION_TRIALS = 1 << 22


def speaker_id_problem(speaker_id: object) -> str | None:
    """Why ``speaker_id`` is not a speaker id (:data:`SPEAKER_ID`), or None."""
    if not isinstance(speaker_id, str):
        return f"a speaker id is a string, not {type(speaker_id).__name__}"
    if SPEAKER_ID.fullmatch(speaker_id):
        return None
    return (f"bad speaker id {speaker_id[:MAX_ID_CHARS + 12]!r}: 1 to {MAX_ID_CHARS} characters of A-Z a-z 0-9 "
            "_ . @ + = - (no whitespace), not starting with . @ + = -")


def recording_id_problem(recording_id: object) -> str | None:
    """Why ``recording_id`` (a cohort recording's id) is not one, or None: 1 to
    :data:`MAX_RECORDING_ID_CHARS` printable characters without whitespace."""
    if not isinstance(recording_id, str) or not recording_id or len(recording_id) > MAX_RECORDING_ID_CHARS \
            or not recording_id.isprintable() or any(c.isspace() for c in recording_id):
        return (f"recording ids are 1 to {MAX_RECORDING_ID_CHARS} printable characters without whitespace; "
                f"got {str(recording_id)[:80]!r}")
    return None


def ubm_shape_problem(K: object, D: object) -> str | None:
    """Why (K, D) is not the shape of an acceptable UBM, or None."""
    if not all(isinstance(x, int) and not isinstance(x, bool) for x in (K, D)):
        return f"K={K!r}, D={D!r} are not integers"
    if not 1 <= K <= MAX_COMPONENTS or not 1 <= D <= MAX_DIM:
        return f"K={K}, D={D}: at most {MAX_COMPONENTS} components and {MAX_DIM} dimensions are accepted"
    return None
