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
           "MIN_RATE", "MAX_RATE", "MAX_SECONDS", "MAX_CHANNELS", "MAX_LIST_BYTES", "MAX_LIST_LINE",
           "ubm_shape_problem", "STORE_CACHE_MB", "SCORING_BATCH_MB"]

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
#: Megabytes an open speaker store keeps to score quickly (``SpeakerStore(cache_mb=...)``,
#: ``speaker serve --cache-mb``): derived speaker models (exact scoring) and prepared top-C stacks,
#: counted as the bytes of the arrays they hold.  A speaker takes ~1.9 MB as a float64 model at
#: K = 512, D = 60 (0.94 MB in float32), ~0.13 MB in a float32 top-C stack; beyond the bound
#: speakers are derived per call (slower, same scores).
STORE_CACHE_MB = 2048
#: Megabytes of the speakers' stacked arrays one top-C scoring call builds at once (a batch that is
#: not kept is built, scored and dropped): bounds a call's own memory, whatever the store's size.
SCORING_BATCH_MB = 64

# Audio (``speaker.audio``): what a file or an upload may declare before anything is decoded.
#: Sample rates (Hz) of audio and of the analysis: a header claiming 1 Hz would make resampling
#: to 16 kHz cost gigabytes.
MIN_RATE, MAX_RATE = 1000, 384_000
#: Longest audio accepted per file, in seconds (6 hours: 1.4 GB of float32 at 16 kHz).
MAX_SECONDS = 6 * 3600
#: Channels of one audio stream (7.1 surround, FLAC's own limit; Vorbis and Opus allow 255, WAV
#: 65535): decoding costs time in proportion to channels x rate x seconds, so a 64-channel upload is
#: refused from its header.
MAX_CHANNELS = 8

# Lists (``speaker.lists``): read with a bound, so ``--list /dev/zero`` is one line, not a MemoryError.
#: Bytes of one list file (about 2.5 million lines of 100 characters).
MAX_LIST_BYTES = 256 << 20
#: Bytes of one line of a list.
MAX_LIST_LINE = 1 << 20


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
