"""Audio files in the formats browsers and phones record, made with PyAV's encoders (FFmpeg's,
shipped in its wheels) at test time, so that no generated file is kept in the repository.

:data:`KINDS` names each file kind: the container, the codec, the codec's rate and bit rate, and
how it is written (a WebM "as a stream", as Chrome's MediaRecorder writes it: to an output that
cannot seek, so the header has no duration, no index and an unknown segment size; an M4A with
its index, the ``moov`` box, after the audio, as FFmpeg writes it by default; a fragmented MP4,
as Safari's MediaRecorder writes it, with ``delay_moov`` so that its edit list declares the
encoder's priming samples).  Lossy codecs run at 64 kbit/s.  The checks :func:`webm_is_streamed`,
:func:`moov_after_mdat` and :func:`is_fragmented_mp4` read the bytes themselves, so a test can
tell that a file is what it claims to be.
"""
from __future__ import annotations

import fractions
import io
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Kind:
    container: str
    codec: str
    rate: int | None = None          # the codec's rate (Opus: 48 kHz); None: the signal's
    bit_rate: int | None = None      # bits per second of lossy codecs
    options: dict = field(default_factory=dict)
    streamed: bool = False           # written to an output that cannot seek
    suffix: str = ""


KINDS: dict[str, Kind] = {
    "wav": Kind("wav", "pcm_s16le", suffix=".wav"),
    "flac": Kind("flac", "flac", suffix=".flac"),
    "ogg-opus": Kind("ogg", "libopus", 48000, 64_000, suffix=".ogg"),
    "webm-opus-stream": Kind("webm", "libopus", 48000, 64_000, streamed=True, suffix=".webm"),
    "m4a-aac": Kind("ipod", "aac", None, 64_000, suffix=".m4a"),
    "mp4-aac-fragmented": Kind("mp4", "aac", None, 64_000, {"movflags": "frag_keyframe+empty_moov+delay_moov"},
                               suffix=".mp4"),
    "mp3": Kind("mp3", "libmp3lame", None, 64_000, suffix=".mp3"),
}


class _Pipe:
    """A write-only output without ``seek``: what a muxer writing to a network stream sees."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b) -> int:
        self.data += bytes(b)
        return len(b)

    def flush(self) -> None:
        pass


def encode(y: np.ndarray, sr: int, kind: str | Kind, channels: int = 1) -> bytes:
    """The bytes of ``y`` (float32 full scale, (samples,) or (samples, channels)) at ``sr`` Hz
    encoded as ``kind`` (a name of :data:`KINDS` or a :class:`Kind`)."""
    import av
    k = KINDS[kind] if isinstance(kind, str) else kind
    x = np.ascontiguousarray(np.asarray(y, dtype=np.float32).reshape(len(y), -1).T)   # (channels, samples)
    layout = {1: "mono", 2: "stereo"}.get(x.shape[0], f"{x.shape[0]}c")
    out = _Pipe() if k.streamed else io.BytesIO()
    with av.open(out, "w", format=k.container, container_options=dict(k.options)) as c:
        st = c.add_stream(k.codec, rate=k.rate or sr, layout=layout)
        if k.bit_rate:
            st.codec_context.bit_rate = k.bit_rate
        fmt = st.codec_context.codec.audio_formats[0].name
        frame = av.AudioFrame.from_ndarray(x, format="fltp", layout=layout)
        frame.sample_rate, frame.pts, frame.time_base = sr, 0, fractions.Fraction(1, sr)
        resampler = av.AudioResampler(format=fmt, layout=layout, rate=k.rate or sr,
                                      frame_size=st.codec_context.frame_size or None)
        for f in resampler.resample(frame) + resampler.resample(None):
            c.mux(st.encode(f))
        c.mux(st.encode(None))
    return bytes(out.data) if k.streamed else out.getvalue()


# ------------------------------------------------------------------------------ what a file is
def _vint(data: bytes, i: int, keep_marker: bool) -> tuple[int, int]:
    """(value, next offset) of the EBML variable-length integer at ``i``; an element size whose
    bits are all ones is "unknown" (returned as -1)."""
    first = data[i]
    n = 9 - first.bit_length()
    raw = int.from_bytes(data[i:i + n], "big")
    value = raw if keep_marker else raw & ((1 << (7 * n)) - 1)
    if not keep_marker and value == (1 << (7 * n)) - 1:
        value = -1
    return value, i + n


def _ebml_children(data: bytes, start: int, end: int):
    """(id, payload start, payload end or -1 when unknown) of the elements in data[start:end]."""
    i = start
    while i < end:
        eid, i = _vint(data, i, keep_marker=True)
        size, i = _vint(data, i, keep_marker=False)
        yield eid, i, size
        if size < 0:
            return
        i += size


_SEGMENT, _INFO, _DURATION, _CUES = 0x18538067, 0x1549A966, 0x4489, 0x1C53BB6B


def webm_is_streamed(data: bytes) -> bool:
    """A WebM as MediaRecorder writes it: a Segment of unknown size, no Duration in its Info, and
    no Cues (the index), read from the EBML structure."""
    for eid, seg, size in _ebml_children(data, 0, len(data)):
        if eid == _SEGMENT:
            break
    else:
        return False
    if size >= 0:
        return False
    for eid, start, size in _ebml_children(data, seg, len(data)):
        if eid == _CUES:
            return False
        if eid == _INFO and any(c == _DURATION for c, _, _ in _ebml_children(data, start, start + size)):
            return False
    return True


def moov_after_mdat(data: bytes) -> bool:
    """An MP4/M4A whose index (the ``moov`` box) comes after its audio (``mdat``)."""
    boxes, i = [], 0
    while i + 8 <= len(data):
        size, name = int.from_bytes(data[i:i + 4], "big"), data[i + 4:i + 8]
        if size == 1:
            size = int.from_bytes(data[i + 8:i + 16], "big")
        boxes.append(name)
        if size < 8:
            break
        i += size
    return b"moov" in boxes and b"mdat" in boxes and boxes.index(b"moov") > boxes.index(b"mdat")


def is_fragmented_mp4(data: bytes) -> bool:
    return b"moof" in data and data.find(b"moov") < data.find(b"moof")
