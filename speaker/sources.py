"""What a source is: an audio file, a ``.npy`` feature file, a Kaldi archive entry
``file.ark:OFFSET``, or (in the library) a feature array or a :class:`Waveform` (samples held in
memory with their rate); how its features are read and what identifies its content.

* :func:`ark_entry` is the one parser of ``file.ark:OFFSET`` (lists resolve it against a root,
  the file guards check ``file.ark``, :func:`source_kind` and :func:`content_hash` recognise it).
* :func:`read_source` reads the features (frames, D) float32 of one source (audio through
  :func:`speaker.features.extract_features`, ``.npy`` without pickles, ark entries with kaldiio)
  and :func:`feature_problem` says why an array is not usable features;
  :func:`read_source_and_quality` also measures an audio source's quality in the same decode.
* :func:`content_hash` is the SHA-256 that identifies a recording in the speaker store: the
  file's bytes, or the float32 features of an array or an archive entry.
"""
from __future__ import annotations

import hashlib
import os
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Union

from ._reasons import describe, not_regular

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from .features import FeatureConfig
    from .quality import Quality

__all__ = ["Source", "Waveform", "ark_entry", "source_file", "source_kind", "read_source", "read_source_and_quality",
           "feature_problem",
           "file_digest", "content_hash"]

class Waveform(NamedTuple):
    """Audio held in memory: ``samples`` of shape ``(samples,)`` or ``(samples, channels)`` (float in
    [-1, 1], or integer PCM) at ``sample_rate`` Hz, e.g. from a microphone or
    :func:`speaker.audio.decode_bytes`.  The store's ``enroll`` / ``verify`` / ``identify`` take it
    as a recording: it goes through the file front-end (mono, DC removed, resampled to the UBM's
    rate, features)."""

    samples: Any
    sample_rate: int


#: A recording: a path (audio, ``.npy`` or ``file.ark:OFFSET``), a :class:`Waveform`, or a
#: (frames, D) feature array.
Source = Union[str, os.PathLike, Waveform, "np.ndarray"]

_HASH_BLOCK = 1 << 20
# numpy is imported by the functions that need it: the command line parses lists with this
# module before it loads numpy.


def ark_entry(spec: str | os.PathLike) -> tuple[str, str] | None:
    """``(archive, offset)`` of a Kaldi archive entry ``file.ark:OFFSET`` (``archive`` ends in
    ``.ark``, ``offset`` is digits), or None when ``spec`` is not one."""
    head, sep, tail = os.fspath(spec).rpartition(".ark:")
    return (head + ".ark", tail) if sep and tail.isdigit() else None


def source_file(spec: str | os.PathLike) -> str:
    """The file behind a source: ``file.ark`` for an archive entry, else the path itself."""
    entry = ark_entry(spec)
    return entry[0] if entry is not None else os.fspath(spec)


def source_kind(source: str | os.PathLike) -> Literal["audio", "npy", "ark"]:
    """What a source is: a Kaldi archive entry ``file.ark:OFFSET`` ("ark"), a ``.npy`` feature
    file ("npy"), or anything else: an audio file ("audio"), whose features are extracted."""
    if ark_entry(source) is not None:
        return "ark"
    return "npy" if os.fspath(source).endswith(".npy") else "audio"


def read_source(source: str, config: "FeatureConfig") -> "np.ndarray":
    """Features (frames, dims) float32 of one source: audio file, ``.npy`` or ``ark:offset``."""
    return _read(source, config, quality=False)[0]


def read_source_and_quality(source: str, config: "FeatureConfig") -> "tuple[np.ndarray, Quality | None]":
    """:func:`read_source` and, for audio, the recording's :class:`speaker.quality.Quality`
    (measured in the same decode); None for ``.npy`` and ``ark:offset`` features (no samples)."""
    return _read(source, config, quality=True)


def _read(source: str, config: "FeatureConfig", quality: bool) -> "tuple[np.ndarray, Quality | None]":
    import numpy as np
    kind = source_kind(source)
    q = None
    if kind == "audio":
        from .features import extract_features, extract_features_and_quality
        if quality:
            feats, q = extract_features_and_quality(source, config=config)
        else:
            feats = extract_features(source, config=config)
    elif kind == "ark":
        import kaldiio
        _refuse_special(source_file(source), source)
        try:
            feats = np.asarray(kaldiio.load_mat(source), dtype=np.float32)
        except Exception as exc:  # noqa: BLE001 - kaldiio raises many types on bad archives
            raise ValueError(f"{source}: cannot read Kaldi archive entry: {describe(exc)}") from None
    else:
        from ._npz import read_npy
        try:
            feats = read_npy(source)
        except Exception as exc:  # noqa: BLE001
            raise ValueError(f"{source}: cannot read .npy features: {describe(exc)}") from None
        if feats.dtype.kind != "f":
            raise ValueError(f"{source}: features must be floating point, got {feats.dtype}")
        feats = feats.astype(np.float32, copy=False)
    why = feature_problem(feats)
    if why is not None:
        raise ValueError(f"{source}: {why}")
    return feats, q


def feature_problem(feats: "np.ndarray", dim: int | None = None) -> str | None:
    """Why ``feats`` are unusable as (frames >= 1, ``dim``) finite float32 features, or None."""
    import numpy as np
    if feats.dtype != np.float32:
        return f"features must be float32, got {feats.dtype}"
    if feats.ndim != 2 or feats.shape[0] == 0:
        return f"features must have shape (frames >= 1, dims), got {feats.shape}"
    if dim is not None and feats.shape[1] != dim:
        return f"features have {feats.shape[1]} dimensions, expected {dim} (another front-end or model?)"
    if not np.all(np.isfinite(feats)):
        return "features contain NaN or infinity"
    return None


def _refuse_special(path: str | os.PathLike, name: str | os.PathLike) -> None:
    """ValueError naming ``name`` if ``path`` is a FIFO, a device, a socket or a folder: a FIFO
    would block the reader forever and a device never ends (readers that check for themselves:
    the audio decoder and ``_npz``).  A missing file is left to the reader to say."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return
    why = not_regular(mode)
    if why is not None:
        raise ValueError(f"{name}: {why}")


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in blocks of 1 MiB; ValueError for a FIFO or a device."""
    _refuse_special(path, path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def content_hash(source: Source, features: "np.ndarray | None" = None) -> str:
    """SHA-256 of a recording: the file's bytes, the float32 features of an array / ark entry, or
    a waveform's rate and float32 samples."""
    import numpy as np
    if isinstance(source, Waveform):
        samples = np.ascontiguousarray(source.samples, dtype="<f4")
        return hashlib.sha256(b"waveform:%d:%s:" % (int(source.sample_rate), str(samples.shape).encode())
                              + samples.tobytes()).hexdigest()
    if isinstance(source, np.ndarray):
        features = source
    elif ark_entry(source) is None or features is None:
        return file_digest(source)
    return hashlib.sha256(np.ascontiguousarray(features, dtype="<f4").tobytes()).hexdigest()
