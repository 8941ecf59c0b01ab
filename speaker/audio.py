"""Audio input: decode, mix to mono, resample and validate, in memory bounded by the output.

Everything that reads audio in :mod:`speaker` goes through one decoding path: :func:`load_audio`
(a file or an in-memory signal) and :func:`decode_bytes` (a file held in memory, e.g. an HTTP
upload) return a float32 mono signal at a requested sample rate, or raise :class:`AudioError`
with a message that names the source and the reason.

Files and uploads are decoded with FFmpeg through PyAV: WAV, FLAC, Ogg (Vorbis, Opus),
WebM/Matroska (Opus, Vorbis; also as browsers record it, with no duration or index), MP4/M4A/3GP
(AAC, ALAC, AMR; the index may be at the end), MP3, AAC (ADTS), AIFF, AU, CAF, W64, NIST SPHERE
and WavPack.  Only those container formats are probed (:data:`FORMATS`), and the file is read
through a Python file object, so a path or a playlist inside a file can never make FFmpeg open
another file or a URL.

Memory: the decoder yields frames of a few thousand samples; each is mixed down to mono at once,
checked (finite, in range), and, when the rates differ, resampled with a streaming SoX resampler
(``soxr``, the "HQ" quality of ``librosa.resample(res_type="soxr_hq")``) before the next one is
decoded.  So the memory of a call is about one float32 copy of the *output* (mono, at the target
rate), whatever the file declares: 8 channels at 384 kHz cost what one channel at 16 kHz costs.
Time is bounded by what may be declared: at most :data:`MAX_CHANNELS` channels, a rate in
``[MIN_RATE, MAX_RATE]`` and ``max_seconds`` of audio (checked from the header when it gives the
duration, and while decoding in any case: a file whose header gives no length, or a wrong one,
is decoded until its end or the limit).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

from .limits import MAX_CHANNELS, MAX_RATE, MAX_SECONDS, MIN_RATE

if TYPE_CHECKING:  # pragma: no cover
    import av

__all__ = ["AudioError", "AudioSource", "AudioTooLong", "decode_bytes", "load_audio", "FORMATS",
           "MIN_RATE", "MAX_RATE", "MAX_SECONDS", "MAX_CHANNELS", "MAX_ABS_SAMPLE"]

#: A path to an audio file, or an in-memory signal (see :func:`load_audio`).
AudioSource: TypeAlias = str | os.PathLike[str] | np.ndarray
#: What sees the native mono samples while they are decoded (``native(block)``; see :func:`_load`).
Native: TypeAlias = Callable[[np.ndarray], None]

#: Name used in error messages for in-memory signals, and for uploads (:func:`decode_bytes`).
SIGNAL_NAME = "<signal>"
UPLOAD_NAME = "<upload>"

#: Largest accepted |sample| in full-scale units: float files may exceed 1.0 a little, but
#: samples around 1e20 are corrupt data (their squares overflow float32 and give NaN features).
MAX_ABS_SAMPLE = 1000.0

#: The container formats FFmpeg may probe (its demuxer names; ``mov`` covers MP4, M4A and 3GP,
#: ``matroska`` WebM).  Playlists (HLS, concat scripts) and image or video-only formats are not
#: among them.
FORMATS = ("wav", "w64", "aiff", "au", "caf", "nistsphere", "flac", "ogg", "matroska", "webm", "mov",
           "mp4", "m4a", "3gp", "mp3", "aac", "amr", "wv")

# Native frames gathered before they are checked and resampled (a few frames of the decoder).
_BLOCK_FRAMES = 1 << 16
# The output buffer is allocated from the declared length up to this (10 minutes: 38 MB at
# 16 kHz); a longer file grows it in blocks (then the output is joined once at the end).
_PREALLOC_SECONDS = 600
# PyAV's read size on the file object (one Python call per read).
_READ_BYTES = 1 << 18
_CONTAINER_OPTIONS = {"format_whitelist": ",".join(FORMATS)}


# A mean below this fraction of the peak is float32 rounding, not a DC offset: it is left alone,
# so that a signal this module returned comes back unchanged, bit for bit, when it is given again
# (an upload decoded by :func:`decode_bytes`, then passed to ``extract_features`` as a signal,
# gives the features of the same file read from disk).  Subtracting a mean leaves at most about
# 6e-8 x peak (half an ulp of float32 per sample).
_DC_RESOLUTION = 1e-6


class AudioError(Exception):
    """Audio that cannot be used: undecodable, empty, non-finite, silent or too short.

    The message always has the form ``"<source>: <reason>"`` where ``<source>`` is the file path,
    ``"<signal>"`` for an in-memory array, or the name given to :func:`decode_bytes`.

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


class AudioTooLong(AudioError):
    """Audio longer than the limit of the call (``max_seconds``; :data:`MAX_SECONDS` by default)."""


# ------------------------------------------------------------------------------- arguments
def _check_rate(value: object, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int (Hz), got {value!r}")
    if value <= 0:
        raise ValueError(f"{name} must be positive (Hz), got {value}")
    return int(value)


def _check_target(target_rate: object) -> int:
    rate = _check_rate(target_rate, "target_rate")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise ValueError(f"target_rate must be in [{MIN_RATE}, {MAX_RATE}] Hz, got {rate}")
    return rate


def _check_max_seconds(max_seconds: object) -> float:
    if isinstance(max_seconds, bool) or not isinstance(max_seconds, (int, float, np.integer, np.floating)) \
            or not 0 < max_seconds <= MAX_SECONDS:
        raise ValueError(f"max_seconds must be in (0, {MAX_SECONDS}], got {max_seconds!r}")
    return float(max_seconds)


def _span(seconds: float) -> str:
    """A duration in words: ``"300 s"``, ``"6 hours"``."""
    return f"{seconds / 3600:.4g} hours" if seconds >= 3600 else f"{seconds:.4g} s"


def _check_stream(name: str, rate: int, channels: int) -> None:
    """Refuse a rate outside [MIN_RATE, MAX_RATE] and more than MAX_CHANNELS channels."""
    if not MIN_RATE <= rate <= MAX_RATE:
        raise AudioError(name, f"sample rate {rate} Hz is outside [{MIN_RATE}, {MAX_RATE}] Hz "
                               "(corrupt header?)")
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioError(name, f"{channels} channels: 1 to {MAX_CHANNELS} are accepted")


def _too_long(name: str, max_seconds: float, how: str) -> AudioTooLong:
    return AudioTooLong(name, f"longer than {_span(max_seconds)} ({how}; split it)")


# ------------------------------------------------------------------------------- the one path
class _Mono:
    """The mono signal at ``target_rate``, built from native-rate mono blocks.

    Every block is checked (non-finite samples, peak, all zero), shown to ``native`` if given
    (where a recording's clipping is measured: :class:`speaker.quality.ClipMeter`), then
    resampled by a streaming resampler; the output goes to a buffer sized from the declared length
    when there is one.  The caller's blocks are never modified.
    """

    def __init__(self, name: str, rate: int, target_rate: int, max_seconds: float,
                 declared_frames: int | None = None, native: Native | None = None) -> None:
        import soxr
        self.name, self.rate, self.max_seconds, self.native = name, rate, max_seconds, native
        self.max_frames = int(math.floor(max_seconds * rate))
        self.resampler = None if rate == target_rate else \
            soxr.ResampleStream(rate, target_rate, 1, dtype="float32", quality="HQ")
        self.ratio = target_rate / rate
        self.frames = 0             # native frames seen
        self.bad = 0                # non-finite samples
        self.peak = 0.0
        self.nonzero = False
        self.offset: np.float32 | None = None
        self.pending: list[np.ndarray] = []
        self.n_pending = 0
        capacity = 0
        if declared_frames:                 # trusted up to _PREALLOC_SECONDS: a header may lie
            frames = min(declared_frames, self.max_frames, _PREALLOC_SECONDS * rate)
            capacity = int(frames * self.ratio) + 2 * _BLOCK_FRAMES
        self.buf = np.empty(capacity, dtype=np.float32)
        self.n = 0
        self.more: list[np.ndarray] = []

    def add(self, mono: np.ndarray) -> None:
        """Append native-rate float32 mono samples (any length)."""
        self.frames += mono.shape[0]
        if self.frames > self.max_frames:
            raise _too_long(self.name, self.max_seconds, f"decoding stopped at {_span(self.max_seconds)}")
        self.pending.append(mono)
        self.n_pending += mono.shape[0]
        if self.n_pending >= _BLOCK_FRAMES:
            self._flush(last=False)

    def _flush(self, last: bool) -> None:
        block = self.pending[0] if len(self.pending) == 1 else np.concatenate(self.pending) \
            if self.pending else np.zeros(0, dtype=np.float32)
        self.pending, self.n_pending = [], 0
        if block.size:
            finite = np.isfinite(block)
            if not finite.all():
                self.bad += int(block.size - np.count_nonzero(finite))
            if self.bad:
                return          # the signal is refused: only count what is left
            self.peak = max(self.peak, float(block.max()), -float(block.min()))
            self.nonzero = self.nonzero or bool(block.any())
            if self.native is not None:
                self.native(block)
        elif self.bad:
            return
        if self.resampler is None:
            self._out(block)
            return
        # Resampling: subtract the first block's mean first, so that a DC offset does not make a
        # step (and the filter's ringing) at the edges; the exact mean is removed at the end.
        if self.offset is None and block.size:
            self.offset = np.float32(block.mean(dtype=np.float64))
        if self.offset:
            block = block - self.offset
        self._out(self.resampler.resample_chunk(block, last=last))

    def _out(self, y: np.ndarray) -> None:
        m = y.shape[0]
        if not self.more and self.n + m <= self.buf.shape[0]:
            self.buf[self.n:self.n + m] = y
            self.n += m
        elif m:
            self.more.append(y)             # a new array (the resampler's, or _mix's)

    def finish(self) -> np.ndarray:
        """The checked signal, DC removed; AudioError if it is empty, non-finite, huge or silent."""
        self._flush(last=True)
        name = self.name
        if self.frames == 0:
            raise AudioError(name, "contains no samples (empty audio)")
        if self.bad:
            raise AudioError(name, f"contains {self.bad} non-finite (NaN or inf) samples")
        if self.peak > MAX_ABS_SAMPLE:
            raise AudioError(name, f"samples reach {self.peak:.3g} x full scale (more than {MAX_ABS_SAMPLE:g}: "
                                   "corrupt or unscaled float data)")
        if not self.nonzero:
            raise AudioError(name, f"all {self.frames} samples are zero (digital silence)")
        head = self.buf[:self.n]
        if self.more:
            y = np.concatenate([head, *self.more])
        elif self.n == self.buf.shape[0] or 4 * self.n >= 3 * self.buf.shape[0]:
            y = head
        else:
            y = head.copy()                         # the header overstated the length: give back the rest
        self.buf, self.more = np.empty(0, dtype=np.float32), []
        if y.size == 0:
            raise AudioError(name, f"too short: {self.frames} sample(s) at {self.rate} Hz give none after resampling")
        mean = y.mean(dtype=np.float64)
        if abs(mean) > _DC_RESOLUTION * self.peak:
            y -= np.float32(mean)
        if not y.any():
            raise AudioError(name, "signal is constant (only a DC offset, no audio content)")
        return y


def _scale(m: np.ndarray, kind: np.dtype) -> np.ndarray:
    """Integer PCM to full-scale float32 in place: signed / 2**(bits-1), unsigned 8-bit - 128."""
    if kind == np.uint8:
        m -= np.float32(128.0)
        m *= np.float32(1.0 / 128.0)
    elif kind.kind == "i":
        m *= np.float32(1.0 / 2 ** (8 * kind.itemsize - 1))
    return m


def _mix(planes: np.ndarray) -> np.ndarray:
    """A new float32 mono array from ``planes`` of shape (channels, samples), any PCM dtype: the
    channels' mean, summed one channel at a time (vectorised over the samples: four times faster
    than numpy's mean over a short axis, the same sums)."""
    dt = planes.dtype
    if dt.kind not in "fiu" or (dt.kind == "u" and dt != np.uint8):
        raise ValueError(f"unsupported sample dtype {dt}")
    m = planes[0].astype(np.float32, copy=True)
    if planes.shape[0] > 1:
        for channel in planes[1:]:
            m += channel
        m /= np.float32(planes.shape[0])
    return _scale(m, dt)


# ------------------------------------------------------------------------------- FFmpeg
def _av():
    import av
    return av


def _metadata_kwargs(av) -> dict:
    """``av.open``'s argument for container metadata that is not UTF-8 (a tag in Latin-1, say):
    PyAV up to 18 raises UnicodeDecodeError unless told to replace such bytes; PyAV 19 decodes
    metadata with ``surrogateescape`` and has no such argument (passing it is a TypeError)."""
    major = av.__version__.split(".", 1)[0]
    return {"metadata_errors": "replace"} if major.isdigit() and int(major) < 19 else {}


def _refuse_nested_open(url: str, flags: int, options: dict) -> None:
    raise PermissionError(f"opening {url!r} from inside an audio file is not allowed")


def _ffmpeg_reason(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return f"cannot decode audio (FFmpeg: {text.strip()})"


def _declared_frames(container: "av.container.InputContainer", stream: "av.AudioStream", rate: int) -> int | None:
    """Native frames the header declares (the stream's or the container's duration), or None."""
    if stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        return int(stream.duration * stream.time_base * rate)
    if container.duration is not None and container.duration > 0:
        return int(container.duration * rate / 1_000_000)
    return None


class _Planes:
    """(channels, samples) arrays of a stream's decoded frames, any sample layout.

    PyAV 18 counts the planes of a planar frame by reading ``AVFrame.data``, which holds eight:
    a frame of eight or more planar channels gets a plane too many, and ``to_ndarray`` crashes.
    Such frames are first made packed by FFmpeg's resampler (same rate and layout: a copy)."""

    def __init__(self) -> None:
        self.packer = None

    def __call__(self, frame: "av.AudioFrame", channels: int) -> Iterator[np.ndarray]:
        if frame.format.is_planar and channels >= 8:
            if self.packer is None:
                self.packer = _av().AudioResampler(format=frame.format.packed, layout=frame.layout,
                                                   rate=frame.sample_rate)
            for packed in self.packer.resample(frame):
                yield packed.to_ndarray().reshape(-1, channels).T
        else:
            a = frame.to_ndarray()
            yield a if frame.format.is_planar else a.reshape(-1, channels).T

    def flush(self, channels: int) -> Iterator[np.ndarray]:
        if self.packer is not None:
            for packed in self.packer.resample(None):
                yield packed.to_ndarray().reshape(-1, channels).T


def _decode_file(fileobj: io.RawIOBase | io.BufferedIOBase, name: str, target_rate: int | None,
                 max_seconds: float, native: Native | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream of a file object: (float32 mono at target_rate, native rate);
    ``native`` sees the native mono blocks (see :class:`_Mono`)."""
    av = _av()
    options = dict(_CONTAINER_OPTIONS)
    head = fileobj.read(12)
    fileobj.seek(0)
    if head[:4] in (b"RIFF", b"RF64") and head[8:12] == b"WAVE":
        # FFmpeg reads PCM up to its probe size (64 KiB and more) to look for what the header
        # already says: 3 ms of the 4 ms of a 10-s WAV.  4 KiB holds the header.
        options["probesize"] = "4096"
    try:
        container = av.open(fileobj, "r", container_options=options, buffer_size=_READ_BYTES,
                            io_open=_refuse_nested_open, **_metadata_kwargs(av))
    except (av.FFmpegError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise AudioError(name, _ffmpeg_reason(exc)) from None
    with container:
        if not container.streams.audio:
            raise AudioError(name, "no audio stream in this file")
        stream = container.streams.audio[0]
        cc = stream.codec_context
        rate, channels = int(cc.sample_rate or 0), int(cc.channels or 0)
        declared = None
        if rate and channels:                       # refuse from the header, before decoding
            _check_stream(name, rate, channels)
            frames = _declared_frames(container, stream, rate)
            if frames is not None:
                declared = frames / rate
                if frames > max_seconds * rate:
                    raise _too_long(name, max_seconds, f"{_span(declared)} declared")
        acc: _Mono | None = None
        failure: BaseException | None = None
        planes = _Planes()
        try:
            for packet in container.demux(stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError as exc:       # a corrupt packet, or the cut end of a file
                    failure = exc
                    continue
                for frame in frames:
                    fc, fr = frame.layout.nb_channels, int(frame.sample_rate)
                    if acc is None or (acc.frames == 0 and (fr, fc) != (rate, channels)):
                        # the decoder's parameters rule (HE-AAC doubles the header's rate, and
                        # parametric stereo its channels), as long as nothing was decoded yet
                        rate, channels = fr, fc
                        _check_stream(name, rate, channels)
                        acc = _Mono(name, rate, target_rate or rate, max_seconds,
                                    None if declared is None else int(declared * rate), native)
                    elif (fr, fc) != (rate, channels):
                        raise AudioError(name, f"the stream changes from {channels} channel(s) at {rate} Hz to "
                                               f"{fc} at {fr} Hz; not supported")
                    for block in planes(frame, channels):
                        acc.add(_mix(block))
        except av.FFmpegError as exc:               # the container is corrupt from here on: keep what was read
            failure = exc
        if acc is not None:
            for block in planes.flush(channels):
                acc.add(_mix(block))
        if acc is None or (acc.frames == 0 and failure is not None):
            if failure is not None:
                raise AudioError(name, _ffmpeg_reason(failure)) from None
            raise AudioError(name, "contains no samples (empty audio)")
        return acc.finish(), rate


def _open_regular(path: str) -> io.FileIO:
    """Open ``path`` for reading if it is a regular, non-empty file (a FIFO or a device is refused
    before it is opened, and checked again on the open descriptor), else AudioError."""
    from ._reasons import not_regular, os_reason
    why = os_reason(path)
    if why is None:
        st = os.stat(path)
        why = not_regular(st.st_mode)
        if why == "is a directory, not a regular file":
            why = "is a directory, not an audio file"
        elif why is None and st.st_size == 0:
            why = "empty file (0 bytes)"
    if why is not None:
        raise AudioError(path, why)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise AudioError(path, exc.strerror or str(exc)) from None
    why = not_regular(os.fstat(fd).st_mode)       # replaced between the stat and the open
    if why is not None:
        os.close(fd)
        raise AudioError(path, why)
    return io.FileIO(fd, "rb", closefd=True)


# ------------------------------------------------------------------------------- signals
def _signal_blocks(signal: np.ndarray) -> Iterator[np.ndarray]:
    """Validate an in-memory signal and yield new float32 mono blocks of it."""
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
    if dt.kind not in "fi" and dt != np.uint8:
        raise AudioError(SIGNAL_NAME, f"unsupported sample dtype {dt} (use float or integer PCM)")
    for i in range(0, signal.shape[0], _BLOCK_FRAMES):
        block = signal[i:i + _BLOCK_FRAMES]
        yield _mix(block.reshape(block.shape[0], -1).T)


def _load(
    source: AudioSource | bytes | bytearray | memoryview, sample_rate: int | None, target_rate: int,
    max_seconds: float = MAX_SECONDS, native: Native | None = None,
) -> tuple[np.ndarray, int, str]:
    """:func:`load_audio` that also returns the native rate and the name used in messages.

    ``source`` may also be the bytes of a file held in memory (an upload, named ``"<upload>"``
    as :func:`decode_bytes` names it).  ``native(block)``, if given, sees the validated native
    mono samples block by block, in order (float32 full scale, before DC removal and
    resampling; it must not modify them): where a recording's clipping is measured
    (:class:`speaker.quality.ClipMeter`), in the same decode and in bounded memory.
    """
    target_rate = _check_rate(target_rate, "target_rate")
    max_seconds = _check_max_seconds(max_seconds)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if sample_rate is not None:
            raise ValueError("sample_rate is only for numpy signals; a file's rate is read from its header")
        _check_target(target_rate)
        if len(source) == 0:
            raise AudioError(UPLOAD_NAME, "empty file (0 bytes)")
        y, native_rate = _decode_file(io.BytesIO(source), UPLOAD_NAME, target_rate, max_seconds, native)
        return y, native_rate, UPLOAD_NAME
    if isinstance(source, np.ndarray):
        if sample_rate is None:
            raise ValueError("sample_rate is required when passing a numpy signal")
        native_rate = _check_rate(sample_rate, "sample_rate")
        n = source.shape[0] if source.ndim else 0
        if not MIN_RATE <= native_rate <= MAX_RATE:
            raise AudioError(SIGNAL_NAME, f"sample rate {native_rate} Hz is outside [{MIN_RATE}, {MAX_RATE}] Hz")
        if native_rate != target_rate:
            _check_target(target_rate)
        if n > max_seconds * native_rate:
            raise _too_long(SIGNAL_NAME, max_seconds, f"{_span(n / native_rate)}")
        acc = _Mono(SIGNAL_NAME, native_rate, target_rate, max_seconds, n, native)
        for block in _signal_blocks(source):
            acc.add(block)
        return acc.finish(), native_rate, SIGNAL_NAME
    if isinstance(source, (str, os.PathLike)):
        name = os.fspath(source)
        if sample_rate is not None:
            raise ValueError(
                "sample_rate is only for numpy signals; a file's rate is read from its header "
                "(use target_rate to choose the output rate)"
            )
        _check_target(target_rate)
        with _open_regular(name) as f:
            y, native_rate = _decode_file(f, name, target_rate, max_seconds, native)
        return y, native_rate, name
    raise TypeError(f"expected a file path or a numpy array, got {type(source).__name__}")


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
        A file in one of the :data:`FORMATS` (WAV, FLAC, Ogg Vorbis/Opus, WebM, MP4/M4A, MP3, ...;
        integer PCM of 8-32 bits or float, any codec FFmpeg decodes), or an in-memory signal of
        shape ``(samples,)`` or ``(samples, channels)`` (soundfile's layout). Float arrays are
        taken as full scale ``[-1, 1]``; signed integer arrays are scaled by ``2**(bits-1)``;
        ``uint8`` is offset by 128. The caller's array is never modified.
    sample_rate : int, optional
        Sample rate of ``path_or_signal`` in Hz. Required for a numpy signal; must be ``None``
        for a file (the rate is read from the file header).
    target_rate : int
        Output sample rate in Hz, in ``[MIN_RATE, MAX_RATE]``. When it differs from the native
        rate, the signal is resampled while it is decoded (SoX "HQ", as
        ``librosa.resample(res_type="soxr_hq")``).

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
        If the file does not exist, is not a regular file (a FIFO, a device, a folder) or cannot
        be decoded (FFmpeg's reason; a symbolic link loop or a broken link is said), has zero
        samples, contains NaN or inf or samples beyond ``MAX_ABS_SAMPLE`` (1000) x full scale,
        is all zeros (digital silence) or is constant, has a native rate outside
        ``[MIN_RATE, MAX_RATE]`` (1 kHz to 384 kHz) or more than ``MAX_CHANNELS`` (8)
        channels, or lasts more than ``MAX_SECONDS`` (6 hours; :class:`AudioTooLong`, checked
        from the header when it gives the length and while decoding). The message starts with
        the file path, or ``"<signal>"``.
    ValueError, TypeError
        For invalid arguments (missing or non-positive rates, unsupported input type).

    Notes
    -----
    Memory: about one float32 copy of the output (mono, at ``target_rate``) plus a few blocks of
    the decoder, whatever the file's channels and rate (see the module's notes). A corrupt
    packet in the middle of a compressed file is skipped, and a file cut short gives what it
    holds, as players do; a file of which nothing decodes is refused.
    """
    y, _, _ = _load(path_or_signal, sample_rate, target_rate)
    return y


def decode_bytes(
    data: bytes | bytearray | memoryview,
    target_rate: int | None = None,
    *,
    name: str = UPLOAD_NAME,
    max_seconds: float = MAX_SECONDS,
) -> tuple[np.ndarray, int]:
    """Decode an audio file held in memory (an HTTP upload) to a float32 mono signal.

    The bytes are read through a file object (never written to disk, never given to FFmpeg as a
    path or URL), with the bounds and checks of :func:`load_audio`: the memory of a call is about
    one float32 copy of the output, whatever the upload declares.

    Parameters
    ----------
    data : bytes, bytearray or memoryview
        The whole file, in one of the :data:`FORMATS` (what browsers and phones record: WebM/Opus,
        Ogg/Opus, MP4/M4A with AAC, MP3; and WAV, FLAC, ...).
    target_rate : int, optional
        Output rate in Hz, in ``[MIN_RATE, MAX_RATE]``; resampled while decoding. ``None``: the
        file's own rate (then memory is one float32 mono copy at that rate).
    name : str
        What error messages call the data (``"<upload>"``).
    max_seconds : float
        Longest audio accepted, in seconds, at most :data:`MAX_SECONDS`: checked from the header
        when it gives the length, and while decoding (a stream without a length, or with a
        wrong one, is decoded until its end or this limit).

    Returns
    -------
    (signal, rate) : (np.ndarray, int)
        ``signal`` of shape ``(samples,)``, float32, full scale, channels averaged, DC offset
        removed, sampled at ``rate`` Hz (``target_rate``, or the file's rate). Give it to
        :func:`speaker.extract_features` or the store with ``sample_rate=rate``.

    Raises
    ------
    AudioTooLong
        More than ``max_seconds`` of audio (a subclass of AudioError).
    AudioError
        Empty or undecodable data (FFmpeg's reason), and everything :func:`load_audio` refuses.
    ValueError, TypeError
        For invalid arguments.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data must be bytes, got {type(data).__name__}")
    max_seconds = _check_max_seconds(max_seconds)
    target = None if target_rate is None else _check_target(target_rate)
    if len(data) == 0:
        raise AudioError(name, "empty file (0 bytes)")
    y, rate = _decode_file(io.BytesIO(data), name, target, max_seconds)
    return y, target or rate
