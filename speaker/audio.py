"""Audio input: decode, mix to mono, resample and validate.

Everything that reads audio in :mod:`speaker` goes through :func:`load_audio`, which returns a
float32 mono signal at a requested sample rate, or raises :class:`AudioError` with a message that
names the file and the reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TypeAlias

import numpy as np
import soundfile as sf

__all__ = ["AudioError", "AudioSource", "AudioTooLong", "decode_bytes", "load_audio"]

#: A path to an audio file, or an in-memory signal (see :func:`load_audio`).
AudioSource: TypeAlias = str | os.PathLike[str] | np.ndarray

#: Name used in error messages for in-memory signals.
SIGNAL_NAME = "<signal>"

# Frames per block when mixing a multichannel file down to mono while reading.
_BLOCK_FRAMES = 1 << 16

#: Sample rates (Hz) accepted from a file header or for a signal: a header claiming 1 Hz would
#: make resampling to 16 kHz cost gigabytes.
MIN_RATE, MAX_RATE = 1000, 384_000
#: Longest audio accepted, in seconds (6 hours: 1.4 GB of float32 at 16 kHz), checked from the
#: header before decoding and before resampling.
MAX_SECONDS = 6 * 3600
#: Largest accepted |sample| in full-scale units: float files may exceed 1.0 a little, but
#: samples around 1e20 are corrupt data (their squares overflow float32 and give NaN features).
MAX_ABS_SAMPLE = 1000.0


class AudioError(Exception):
    """Audio that cannot be used: undecodable, empty, non-finite, silent or too short.

    The message always has the form ``"<source>: <reason>"`` where ``<source>`` is the file path,
    or ``"<signal>"`` for an in-memory array.

    Attributes
    ----------
    source : str
        The file path, or ``"<signal>"``.
    reason : str
        What is wrong with it.
    """

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason

    def __reduce__(self) -> tuple[Callable[..., AudioError], tuple[str, str]]:
        # Keep the two-argument constructor picklable (multiprocessing workers).
        return (type(self), (self.source, self.reason))


def _check_rate(value: object, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int (Hz), got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive (Hz), got {value}")
    return int(value)


def _check_length(name: str, n_samples: int, rate: int) -> None:
    """Refuse a native rate outside [MIN_RATE, MAX_RATE] and more than MAX_SECONDS of audio."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(name, f"sample rate {rate} Hz is outside [{MIN_RATE}, {MAX_RATE}] Hz "
                               "(corrupt header?)")
    if n_samples > MAX_SECONDS * rate:
        raise AudioError(name, f"{n_samples / rate / 3600:.1f} hours of audio, more than the "
                               f"{MAX_SECONDS // 3600} hours accepted per file (split it)")


def _read_file(path: str) -> tuple[np.ndarray, int]:
    """Decode ``path`` to a float32 mono array without keeping all channels in memory."""
    from ._reasons import os_reason
    why = os_reason(path)
    if why is not None:
        raise AudioError(path, why)
    try:
        with sf.SoundFile(path) as f:
            rate = int(f.samplerate)
            _check_length(path, max(int(f.frames), 0), rate)
            if f.channels == 1:
                y = f.read(dtype="float32")
            else:
                out = np.empty(max(int(f.frames), 0), dtype=np.float32)
                n = 0
                for block in f.blocks(blocksize=_BLOCK_FRAMES, dtype="float32", always_2d=True):
                    m = block.shape[0]
                    if n + m > out.shape[0]:  # header under-reported the length
                        _check_length(path, n + m, rate)
                        out = np.concatenate([out[:n], np.empty(max(m, n), dtype=np.float32)])
                    np.mean(block, axis=1, out=out[n : n + m])
                    n += m
                y = out[:n]
    except sf.SoundFileError as exc:
        if not os.path.exists(path):
            reason = "no such file"
        elif os.path.isdir(path):
            reason = "is a directory, not an audio file"
        elif os.path.getsize(path) == 0:
            reason = "empty file (0 bytes)"
        else:
            detail = getattr(exc, "error_string", None) or str(exc)
            reason = f"cannot decode audio (soundfile: {detail.strip()})"
        raise AudioError(path, reason) from exc
    return y, rate


def _signal_to_float32(signal: np.ndarray) -> np.ndarray:
    """Validate an in-memory signal and return a new float32 mono array (never a view)."""
    if signal.ndim == 2:
        n, c = signal.shape
        if c > n:
            raise AudioError(
                SIGNAL_NAME,
                f"2-D signal of shape {signal.shape} has more channels than samples; "
                "pass (samples, channels) as soundfile does (transpose a librosa-style "
                "(channels, samples) array)",
            )
    elif signal.ndim != 1:
        raise AudioError(
            SIGNAL_NAME, f"signal must be 1-D or 2-D (samples, channels), got shape {signal.shape}"
        )

    dt = signal.dtype
    if dt.kind == "f":
        y = signal.astype(np.float32, copy=True)
    elif dt.kind == "i":  # signed PCM: full scale is 2**(bits-1)
        y = signal.astype(np.float32)
        y *= np.float32(1.0 / 2 ** (8 * dt.itemsize - 1))
    elif dt == np.uint8:  # 8-bit WAV convention: unsigned, offset 128
        y = signal.astype(np.float32)
        y -= np.float32(128.0)
        y *= np.float32(1.0 / 128.0)
    else:
        raise AudioError(SIGNAL_NAME, f"unsupported sample dtype {dt} (use float or integer PCM)")
    if y.ndim == 2:
        y = y.mean(axis=1, dtype=np.float32)
    return y


def _remove_dc(y: np.ndarray) -> None:
    """Subtract the mean in place (the mean is accumulated in float64)."""
    y -= np.float32(y.mean(dtype=np.float64))


def resample(y: np.ndarray, orig_rate: int, target_rate: int) -> np.ndarray:
    """``y`` (samples,) resampled from ``orig_rate`` to ``target_rate`` Hz: float32, contiguous,
    ``ceil(len(y) * target_rate / orig_rate)`` samples.

    The same samples as ``librosa.resample(y, orig_sr=..., target_sr=..., res_type="soxr_hq")``
    (soxr's high-quality band-limited resampler, the length fixed by zero padding or trimming),
    called directly: importing ``librosa.core`` compiles numba functions, a second's start-up
    for a command that verifies one recording."""
    import soxr
    n = int(np.ceil(y.shape[0] * float(target_rate) / orig_rate))
    out = np.ascontiguousarray(soxr.resample(y, orig_rate, target_rate, quality="soxr_hq")[:n], dtype=np.float32)
    return out if out.shape[0] == n else np.pad(out, (0, n - out.shape[0]))


def _load(
    source: AudioSource, sample_rate: int | None, target_rate: int,
    native: Callable[[np.ndarray, int], None] | None = None,
) -> tuple[np.ndarray, int, str]:
    """:func:`load_audio` that also returns the native rate and the name used in messages.

    ``native(samples, rate)``, if given, sees the validated native mono samples (float32 full
    scale, before DC removal and resampling; it must not modify them): where a recording's
    clipping is measured (:func:`speaker.quality.clipping`), in the same decode.
    """
    target_rate = _check_rate(target_rate, "target_rate")
    if isinstance(source, np.ndarray):
        name = SIGNAL_NAME
        if sample_rate is None:
            raise ValueError("sample_rate is required when passing a numpy signal")
        native_rate = _check_rate(sample_rate, "sample_rate")
        _check_length(SIGNAL_NAME, source.shape[0] if source.ndim else 0, native_rate)
        y = _signal_to_float32(source)
    elif isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if sample_rate is not None:
            raise ValueError(
                "sample_rate is only for numpy signals; a file's rate is read from its header "
                "(use target_rate to choose the output rate)"
            )
        y, native_rate = _read_file(name)
    else:
        raise TypeError(
            f"expected a file path or a numpy array, got {type(source).__name__}"
        )

    if y.size == 0:
        raise AudioError(name, "contains no samples (empty audio)")
    if not np.isfinite(y).all():
        bad = int(np.count_nonzero(~np.isfinite(y)))
        raise AudioError(name, f"contains {bad} non-finite (NaN or inf) samples")
    peak = float(np.max(np.abs(y)))
    if peak > MAX_ABS_SAMPLE:
        raise AudioError(name, f"samples reach {peak:.3g} x full scale (more than {MAX_ABS_SAMPLE:g}: "
                               "corrupt or unscaled float data)")
    if not y.any():
        raise AudioError(name, f"all {y.size} samples are zero (digital silence)")
    if native is not None:
        native(y, native_rate)

    # DC removal before resampling avoids ringing at the edges from the offset's step.
    _remove_dc(y)
    if not y.any():
        raise AudioError(name, "signal is constant (only a DC offset, no audio content)")

    if native_rate != target_rate:
        if not MIN_RATE <= target_rate <= MAX_RATE:
            raise ValueError(f"target_rate must be in [{MIN_RATE}, {MAX_RATE}] Hz, got {target_rate}")
        y = resample(y, native_rate, target_rate)
        _remove_dc(y)  # remove the tiny residual offset the filter can leave
    return y, native_rate, name


def load_audio(
    path_or_signal: AudioSource,
    sample_rate: int | None = None,
    *,
    target_rate: int,
) -> np.ndarray:
    """Load audio as a float32 mono signal at ``target_rate`` with the DC offset removed.

    Parameters
    ----------
    path_or_signal : str, os.PathLike or np.ndarray
        A file in any format libsndfile reads (WAV, FLAC, OGG/Vorbis, Opus, MP3, AIFF, ...;
        integer PCM of 8-32 bits or float), or an in-memory signal of shape ``(samples,)`` or
        ``(samples, channels)`` (soundfile's layout). Float arrays are taken as full scale
        ``[-1, 1]``; signed integer arrays are scaled by ``2**(bits-1)``; ``uint8`` is offset by
        128.
        The caller's array is never modified.
    sample_rate : int, optional
        Sample rate of ``path_or_signal`` in Hz. Required for a numpy signal; must be ``None``
        for a file (the rate is read from the file header).
    target_rate : int
        Output sample rate in Hz. When it differs from the native rate, the signal is resampled
        with :func:`resample` (``librosa.resample(res_type="soxr_hq")``'s result).

    Returns
    -------
    np.ndarray
        Shape ``(samples,)``, dtype float32, sampled at ``target_rate`` Hz. Channels are averaged
        to mono and the mean (DC offset) is subtracted, so values are nominally in ``[-1, 1]``
        full scale; they are not clipped (a float file that exceeds full scale stays as it is,
        and resampling or DC removal can overshoot slightly).

    Raises
    ------
    AudioError
        If the file does not exist or cannot be decoded (the message includes soundfile's
        reason; a symbolic link loop or a broken link is said), has zero samples, contains NaN or
        inf or samples beyond ``MAX_ABS_SAMPLE`` (1000) x full scale, is all zeros (digital
        silence) or is constant, has a native rate outside ``[MIN_RATE, MAX_RATE]`` (1 kHz to
        384 kHz) or lasts more than ``MAX_SECONDS`` (6 hours; checked from the header, before
        decoding and resampling). The message starts with the file path, or ``"<signal>"``.
    ValueError, TypeError
        For invalid arguments (missing or non-positive rates, unsupported input type).

    Notes
    -----
    Memory: the file is decoded straight to float32; a multichannel file is mixed to mono block
    by block, so peak memory is about one float32 mono copy of the file (plus the resampled
    copy when resampling).
    """
    y, _, _ = _load(path_or_signal, sample_rate, target_rate)
    return y


class AudioTooLong(AudioError):
    """Audio longer than a caller's limit (:func:`decode_bytes`'s ``max_seconds``)."""


def decode_bytes(
    data: bytes, *, name: str = "<upload>", max_seconds: float = MAX_SECONDS
) -> tuple[np.ndarray, int]:
    """Decode an audio file held in memory (an HTTP upload) with soundfile, never via a path.

    Parameters
    ----------
    data : bytes
        The whole file (any format libsndfile reads, as for :func:`load_audio`).
    name : str
        What error messages call it.
    max_seconds : float
        Longest audio accepted; checked from the header before decoding when the header gives
        the length, and after decoding otherwise.

    Returns
    -------
    (signal, rate) : float32 array of shape ``(samples,)`` or ``(samples, channels)`` (soundfile's
        layout) and its sample rate in Hz, to give to :func:`load_audio` or
        :func:`speaker.extract_features` as an in-memory signal (which validate and mix it).

    Raises
    ------
    AudioError
        Empty or undecodable data (soundfile's reason), a rate outside ``[MIN_RATE, MAX_RATE]``,
        or more than ``max_seconds`` of audio (:class:`AudioTooLong`, a subclass).
    """
    import io
    if not data:
        raise AudioError(name, "empty file (0 bytes)")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate = int(f.samplerate)
            _check_length(name, max(int(f.frames), 0), rate)
            if f.frames > max_seconds * rate:
                raise AudioTooLong(name, f"longer than {max_seconds:g} s ({f.frames / rate:.1f} s)")
            y = f.read(dtype="float32")
    except AudioError:
        raise
    except sf.SoundFileError as exc:
        detail = getattr(exc, "error_string", None) or str(exc)
        raise AudioError(name, f"cannot decode audio (soundfile: {detail.strip()})") from exc
    except (RuntimeError, TypeError, ValueError) as exc:    # libsndfile's virtual-IO errors
        raise AudioError(name, f"cannot decode audio (soundfile: {exc})") from exc
    if y.shape[0] > max_seconds * rate:
        raise AudioTooLong(name, f"longer than {max_seconds:g} s ({y.shape[0] / rate:.1f} s)")
    return y, rate
