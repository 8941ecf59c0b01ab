"""MFCC front-end: cepstra, log-energy, deltas, energy VAD and cepstral normalisation.

Pipeline of :func:`extract_features` (frames are ``win_length_ms`` long, every ``hop_length_ms``,
without padding, i.e. Kaldi's ``snip-edges=true``)::

    load_audio (float32 mono, DC removed, resampled to config.sample_rate)
      -> pre-emphasis -> framing -> window -> |rfft|^2 -> mel filterbank -> ln -> DCT-II (ortho)
      -> optional lifter
      -> c0 replaced by the frame log-energy (optional)
      -> deltas / delta-deltas (librosa.feature.delta), computed on ALL frames
      -> energy VAD selects speech frames
      -> normalisation (CMVN / sliding CMN / none) over the kept frames only

The result has shape ``(frames, config.dim)``, float32.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import librosa
import numpy as np
from gmmext import single_thread_blas

from ._tables import cached_tables
from .audio import AudioError, AudioSource, _load
from .limits import MAX_DIM, MAX_RATE, MAX_SECONDS, MIN_RATE
from .quality import ClipMeter, Quality, measure

__all__ = ["FeatureConfig", "extract_features", "extract_features_and_quality", "vad", "LOG_FLOOR"]

#: Floor applied to powers before taking logs (mel energies and frame energy). Signals are in
#: full-scale units ([-1, 1]), so for the frame energy this is -100 dB re full scale.
LOG_FLOOR = 1e-10

#: Percentile of the utterance's frame log-energies used as its "peak" level by :func:`vad`.
VAD_REFERENCE_PERCENTILE = 95.0

_DB_PER_NEPER_POWER = 10.0 / math.log(10.0)  # dB per unit of natural-log power
_NORMALIZATIONS = ("cmvn", "cmn-sliding", "none")
_CHUNK_FRAMES = 4096  # frames per FFT block (bounds memory on long files)
_STD_FLOOR = 1e-8

# Bounds of every FeatureConfig field (a model file's stored configuration is untrusted: an
# absurd value must not cost gigabytes).  Generous for real speech: 8-384 kHz audio, windows of
# up to 1 s, filterbanks of up to 512 bands, feature vectors of up to MAX_DIM dimensions
# (:data:`speaker.limits.MAX_DIM`, the models' bound too).
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = MIN_RATE, MAX_RATE
MAX_WINDOW_MS = 1000.0
MAX_FFT = 1 << 14           # samples of the FFT (and so of the window): 1 s at 16 kHz

#: Window names scipy.signal.get_window takes without parameters that configurations use: known
#: without importing scipy.signal (a quarter of a second: every configuration a store or a model
#: file holds is checked when it is read).  Any other name is asked of librosa / scipy itself.
COMMON_WINDOWS = frozenset({"hamming", "hann", "blackman", "boxcar", "rectangular", "bartlett",
                            "triangle", "blackmanharris", "nuttall", "cosine", "flattop", "bohman", "parzen"})


@functools.lru_cache(maxsize=64)
def _known_window(name: str) -> bool:
    """Whether ``name`` is a window ``librosa.filters.get_window`` (scipy's) computes."""
    if name in COMMON_WINDOWS:
        return True
    try:
        librosa.filters.get_window(name, 8, fftbins=True)
    except Exception:
        return False
    return True
MAX_MELS = 512
MAX_LIFTER = 10_000.0
MAX_CONTEXT = 301           # delta_width, vad_context (frames)
MAX_CMN_WINDOW = 100_000    # frames (1000 s at a 10 ms hop)
#: Largest JSON text :meth:`FeatureConfig.from_json` parses, and its deepest nesting.
MAX_JSON_BYTES = 64 * 1024
MAX_JSON_DEPTH = 16


def _json_depth(text: str) -> int:
    """Deepest nesting of ``[``/``{`` in JSON ``text`` (outside strings), without parsing it."""
    depth = deepest = 0
    in_str = escaped = False
    for c in text:
        if in_str:
            if escaped:
                escaped = False
            elif c == "\\":
                escaped = True
            elif c == '"':
                in_str = False
        elif c == '"':
            in_str = True
        elif c in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in "]}":
            depth -= 1
    return deepest


def _is_int(x: object) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))


def _is_real(x: object) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


@dataclass(frozen=True)
class FeatureConfig:
    """Front-end settings. Immutable; validated on construction; JSON round-trippable.

    Attributes
    ----------
    sample_rate : int
        Rate (Hz) the audio is resampled to before analysis. Use 8000 for narrowband
        (telephone, FSDD) audio: at 16000 the mel bands above the source's Nyquist are empty.
    win_length_ms, hop_length_ms : float
        Frame length and frame shift in milliseconds (rounded to whole samples).
    n_fft : int or None
        FFT size in samples; ``None`` means the next power of two >= the window length
        (512 for 25 ms at 16 kHz, 256 at 8 kHz). Frames are zero-padded at the end.
    window : str
        Analysis window name for ``librosa.filters.get_window`` (periodic), default ``"hamming"``.
    preemphasis : float
        Coefficient ``a`` of ``y[n] - a*y[n-1]``, in ``[0, 1)``; 0 disables it.
    n_mels : int
        Number of mel filters (HTK mel scale, unit-peak triangles as in Kaldi/HTK).
    n_ceps : int
        Cepstral coefficients kept, c0..c(n_ceps-1), ``<= n_mels``.
    fmin, fmax : float, float or None
        Filterbank edges in Hz. ``fmax=None`` means ``sample_rate / 2`` (Kaldi's default);
        ``fmax`` must be ``<= sample_rate / 2``.
    lifter : float
        Cepstral lifter ``L`` (HTK/Kaldi form: ``c_i *= 1 + L/2 * sin(pi * i / L)``); 0 disables
        it (Kaldi uses 22). It only rescales each coefficient, so it has no effect under
        ``"cmvn"``.
    use_energy : bool
        Replace c0 by the frame log-energy ``ln(max(mean(x**2), LOG_FLOOR))`` of the raw frame
        ``x`` (full-scale units, utterance DC offset removed, before pre-emphasis and windowing,
        like Kaldi's ``--raw-energy``).
        ``False`` keeps the DCT's c0.
    deltas, delta_deltas : bool
        Append first / second time derivatives (``librosa.feature.delta``, order 1 / 2). The
        first derivative is the HTK/Kaldi regression formula; the second is a quadratic
        Savitzky-Golay derivative over the same window (not the delta of the delta).
    delta_width : int
        Odd window (frames) of the derivative filter, >= 3. Edges replicate the first/last frame.
    vad : bool
        Keep only the frames :func:`vad` marks as speech.
    vad_energy_threshold : float
        dB (> 0): frames more than this far below the utterance's reference level are
        non-speech. See :func:`vad`.
    vad_energy_mean_scale : float
        In ``[0, 1]``: weight of the mean log-energy in the VAD reference level; the rest goes to
        the 95th-percentile ("peak") level. 0 (default) is scale-invariant and robust to long
        silences; 1 makes the threshold relative to the mean only. See :func:`vad`.
    vad_context : int
        Smoothing half-window (frames): a frame's decision uses frames ``t-c .. t+c``.
    vad_proportion_threshold : float
        In ``(0, 1]``: fraction of the context window that must be above threshold.
    normalization : {"cmvn", "cmn-sliding", "none"}
        ``"cmvn"``: per-utterance mean and variance normalisation of the kept frames.
        ``"cmn-sliding"``: subtract a centred moving mean over ``cmn_window`` kept frames
        (window shifted to stay inside the utterance, as Kaldi's ``apply-cmvn-sliding --center``).
        ``"none"``: raw features.
    cmn_window : int
        Window (frames) of ``"cmn-sliding"``; 301 frames = 3 s at a 10 ms hop.
    """

    sample_rate: int = 16000
    win_length_ms: float = 25.0
    hop_length_ms: float = 10.0
    n_fft: int | None = None
    window: str = "hamming"
    preemphasis: float = 0.97
    n_mels: int = 40
    n_ceps: int = 20
    fmin: float = 20.0
    fmax: float | None = None
    lifter: float = 0.0
    use_energy: bool = True
    deltas: bool = True
    delta_deltas: bool = True
    delta_width: int = 9
    vad: bool = True
    vad_energy_threshold: float = 40.0
    vad_energy_mean_scale: float = 0.0
    vad_context: int = 2
    vad_proportion_threshold: float = 0.6
    normalization: Literal["cmvn", "cmn-sliding", "none"] = "cmvn"
    cmn_window: int = 301

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        def fail(name: str, why: str) -> NoReturn:
            raise ValueError(
                f"FeatureConfig.{name} {why}, got {getattr(self, name)!r}"
            )

        def as_int(name: str) -> int:
            v = getattr(self, name)
            if not _is_int(v):
                fail(name, "must be an int")
            object.__setattr__(self, name, int(v))
            return int(v)

        def as_float(name: str) -> float:
            v = getattr(self, name)
            if not _is_real(v) or not math.isfinite(float(v)):
                fail(name, "must be a finite number")
            object.__setattr__(self, name, float(v))
            return float(v)

        def as_bool(name: str) -> None:
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                fail(name, "must be a bool")
            object.__setattr__(self, name, bool(v))

        sr = as_int("sample_rate")
        if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
            fail("sample_rate", f"must be in [{MIN_SAMPLE_RATE}, {MAX_SAMPLE_RATE}] Hz")
        if not 0 < as_float("win_length_ms") <= MAX_WINDOW_MS:
            fail("win_length_ms", f"must be in (0, {MAX_WINDOW_MS:g}] ms")
        if not 0 < as_float("hop_length_ms") <= MAX_WINDOW_MS:
            fail("hop_length_ms", f"must be in (0, {MAX_WINDOW_MS:g}] ms")
        if self.win_samples < 2:
            fail("win_length_ms", f"must span at least 2 samples at {sr} Hz")
        if self.hop_samples < 1:
            fail("hop_length_ms", f"must span at least 1 sample at {sr} Hz")
        if self.n_fft is not None and not self.win_samples <= as_int("n_fft") <= MAX_FFT:
            fail("n_fft", f"must be >= the window length ({self.win_samples} samples) and <= {MAX_FFT}")
        if self.fft_size > MAX_FFT:
            fail("win_length_ms", f"spans {self.win_samples} samples at {sr} Hz (FFT {self.fft_size}), more "
                                  f"than {MAX_FFT}")
        if not isinstance(self.window, str):
            fail("window", "must be a window name (str)")
        if not _known_window(self.window):
            fail("window", "is not a window name scipy.signal.get_window knows")
        p = as_float("preemphasis")
        if not 0.0 <= p < 1.0:
            fail("preemphasis", "must be in [0, 1)")
        if not 1 <= as_int("n_mels") <= MAX_MELS:
            fail("n_mels", f"must be in [1, {MAX_MELS}]")
        if not 1 <= as_int("n_ceps") <= self.n_mels:
            fail("n_ceps", f"must be in [1, n_mels={self.n_mels}]")
        fmin = as_float("fmin")
        if fmin < 0 or fmin > MAX_SAMPLE_RATE:
            fail("fmin", "must be >= 0 Hz")
        if self.fmax is not None:
            fmax = as_float("fmax")
            if fmax > sr / 2:
                fail("fmax", f"must be <= sample_rate / 2 = {sr / 2:g} Hz")
        if fmin >= self.fmax_hz:
            fail("fmin", f"must be < fmax ({self.fmax_hz:g} Hz)")
        if not 0 <= as_float("lifter") <= MAX_LIFTER:
            fail("lifter", f"must be in [0, {MAX_LIFTER:g}]")
        for name in ("use_energy", "deltas", "delta_deltas", "vad"):
            as_bool(name)
        w = as_int("delta_width")
        if w < 3 or w % 2 == 0 or w > MAX_CONTEXT:
            fail("delta_width", f"must be an odd int in [3, {MAX_CONTEXT}]")
        if not 0 < as_float("vad_energy_threshold") <= 1000:
            fail("vad_energy_threshold", "must be in (0, 1000] dB")
        if not 0.0 <= as_float("vad_energy_mean_scale") <= 1.0:
            fail("vad_energy_mean_scale", "must be in [0, 1]")
        if not 0 <= as_int("vad_context") <= MAX_CONTEXT:
            fail("vad_context", f"must be in [0, {MAX_CONTEXT}]")
        if not 0.0 < as_float("vad_proportion_threshold") <= 1.0:
            fail("vad_proportion_threshold", "must be in (0, 1]")
        if self.normalization not in _NORMALIZATIONS:
            fail("normalization", f"must be one of {_NORMALIZATIONS}")
        if not 1 <= as_int("cmn_window") <= MAX_CMN_WINDOW:
            fail("cmn_window", f"must be in [1, {MAX_CMN_WINDOW}]")
        if self.dim > MAX_DIM:
            fail("n_ceps", f"gives {self.dim} feature dimensions (with deltas), more than {MAX_DIM}")

    # ------------------------------------------------------------------ derived values
    @property
    def win_samples(self) -> int:
        """Window length in samples."""
        return int(round(self.win_length_ms * self.sample_rate / 1000.0))

    @property
    def hop_samples(self) -> int:
        """Frame shift in samples."""
        return int(round(self.hop_length_ms * self.sample_rate / 1000.0))

    @property
    def fft_size(self) -> int:
        """FFT length in samples (``n_fft``, or the next power of two >= the window)."""
        if self.n_fft is not None:
            return self.n_fft
        return 1 << (self.win_samples - 1).bit_length()

    @property
    def fmax_hz(self) -> float:
        """Upper filterbank edge in Hz (``fmax`` or ``sample_rate / 2``)."""
        return self.sample_rate / 2.0 if self.fmax is None else float(self.fmax)

    @property
    def dim(self) -> int:
        """Feature dimension: ``n_ceps * (1 + deltas + delta_deltas)``."""
        return self.n_ceps * (1 + int(self.deltas) + int(self.delta_deltas))

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict[str, Any]:
        """All fields as a plain, JSON-serialisable dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FeatureConfig:
        """Build from a mapping such as :meth:`to_dict` produced.

        Missing keys take their defaults. Unknown keys raise :class:`ValueError` (listing them and
        the valid keys), as do invalid values.
        """
        if not isinstance(d, Mapping):
            raise TypeError(f"FeatureConfig.from_dict expects a mapping, got {type(d).__name__}")
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(str(k) for k in d if k not in known)
        if unknown:
            raise ValueError(
                f"unknown FeatureConfig key(s): {', '.join(unknown)}; "
                f"valid keys: {', '.join(known)}"
            )
        return cls(**d)

    def to_json(self, **kwargs: Any) -> str:
        """:meth:`to_dict` as a JSON string (``kwargs`` go to :func:`json.dumps`)."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_json(cls, text: str) -> FeatureConfig:
        """Inverse of :meth:`to_json`.

        Text longer than ``MAX_JSON_BYTES`` (64 KiB) or nested deeper than ``MAX_JSON_DEPTH`` is
        refused with :class:`ValueError` before it is parsed (it is untrusted when it comes from a
        model file).
        """
        if not isinstance(text, str):
            raise TypeError(f"FeatureConfig.from_json expects a str, got {type(text).__name__}")
        if len(text) > MAX_JSON_BYTES:
            raise ValueError(f"feature configuration JSON is {len(text)} characters, more than "
                             f"{MAX_JSON_BYTES}")
        if _json_depth(text) > MAX_JSON_DEPTH:
            raise ValueError(f"feature configuration JSON is nested deeper than {MAX_JSON_DEPTH} levels")
        return cls.from_dict(json.loads(text))


# ---------------------------------------------------------------------------------- VAD
def vad(log_energy: np.ndarray, config: FeatureConfig | None = None) -> np.ndarray:
    """Energy-based voice activity detection in the spirit of Kaldi's ``compute-vad``.

    Parameters
    ----------
    log_energy : np.ndarray
        Shape ``(frames,)``: natural log of each frame's power (any constant offset or gain is
        irrelevant, only differences matter). :func:`extract_features` passes
        ``ln(max(mean(frame**2), LOG_FLOOR))``.
    config : FeatureConfig, optional
        Uses ``vad_energy_threshold`` (dB), ``vad_energy_mean_scale``, ``vad_context`` and
        ``vad_proportion_threshold``. Defaults to ``FeatureConfig()``.

    Returns
    -------
    np.ndarray
        Shape ``(frames,)``, bool, True for speech frames.

    Notes
    -----
    With ``E`` the log-energy in dB, ``P`` its 95th percentile over the utterance (a robust peak
    level), ``M`` its mean, ``s = vad_energy_mean_scale`` and ``T = vad_energy_threshold``::

        candidate[t] = E[t] > (1 - s) * P + s * M - T

    Then, as in Kaldi, frame ``t`` is speech if at least ``vad_proportion_threshold`` of the
    candidates in ``t - vad_context .. t + vad_context`` (clipped to the utterance) are set.

    Kaldi's rule is ``E > 5.5 + 0.5 * M`` in natural-log units of int16-scale energy; its constant
    makes the threshold depend on the recording gain (at 25 ms frames it is about
    ``0.5 * M - 34`` dB re full scale). Here the absolute constant is replaced by the utterance's
    own peak level, so the decision does not change with gain, and with the default ``s = 0`` it
    does not drift when most of the file is silence (a mean is pulled down by long silences).
    The default ``T = 40`` dB keeps every frame within 40 dB of the peak: essentially all frames
    of trimmed, clean recordings, while silence is dropped when it is more than 40 dB below the
    loudest speech. Noise closer than ``T`` to the speech peak is kept; lower ``T`` for noisy data.

    The result is never empty for non-empty input: if smoothing removes every frame the raw
    candidates are used, and if there are none, the frames at or above the median energy.
    """
    cfg = FeatureConfig() if config is None else config
    e = np.asarray(log_energy, dtype=np.float64)
    if e.ndim != 1:
        raise ValueError(f"log_energy must be 1-D (frames,), got shape {e.shape}")
    n = e.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    if not np.isfinite(e).all():
        raise ValueError("log_energy contains NaN or inf; floor the power before the log")

    e_db = e * _DB_PER_NEPER_POWER
    s = cfg.vad_energy_mean_scale
    reference = (1.0 - s) * np.percentile(e_db, VAD_REFERENCE_PERCENTILE) + s * e_db.mean()
    candidate = e_db > reference - cfg.vad_energy_threshold

    c = cfg.vad_context
    if c > 0:
        # Count candidates (numerator) and frames (denominator) in the window clipped to the
        # utterance, with a cumulative sum (exact integer counts, any n).
        csum = np.concatenate([[0], np.cumsum(candidate, dtype=np.int64)])
        t = np.arange(n)
        lo, hi = np.maximum(t - c, 0), np.minimum(t + c + 1, n)
        num, den = csum[hi] - csum[lo], hi - lo
        speech = num >= cfg.vad_proportion_threshold * den - 1e-9
    else:
        speech = candidate.copy()

    if not speech.any():
        speech = candidate.copy() if candidate.any() else e >= np.median(e)
    return speech


# ---------------------------------------------------------------------------------- front-end
@functools.lru_cache(maxsize=16)
def _filters(window: str, win: int, sample_rate: int, n_fft: int, n_mels: int, fmin: float,
             fmax: float) -> tuple[np.ndarray, np.ndarray]:
    """The analysis window ``(win,)`` and the mel filterbank ``(n_mels, 1 + n_fft // 2)``, float32.

    librosa's own (``librosa.filters.get_window``, ``librosa.filters.mel``), computed once per
    setting and kept in the tables' cache folder (:mod:`speaker._tables`: importing them takes
    numba and ``scipy.signal``, most of a second), returned read-only.
    """
    def compute() -> dict[str, np.ndarray]:
        return {"window": librosa.filters.get_window(window, win, fftbins=True),
                "mel": librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax,
                                           htk=True, norm=None, dtype=np.float32)}

    import scipy
    key = {"window": window, "win": win, "sample_rate": sample_rate, "n_fft": n_fft, "n_mels": n_mels,
           "fmin": fmin, "fmax": fmax, "librosa": librosa.__version__, "scipy": scipy.__version__}
    t = cached_tables("filters", key, {"window": ((win,), "<f4", -2.0, 2.0),
                                       "mel": ((n_mels, 1 + n_fft // 2), "<f4", 0.0, 1.0)}, compute)
    return t["window"], t["mel"]


@functools.lru_cache(maxsize=16)
def _delta_filters(width: int) -> np.ndarray:
    """The filters ``(2, width)`` float64 of ``librosa.feature.delta(width=width, order=1 / 2)``:
    SciPy's Savitzky-Golay convolution coefficients (``savgol_coeffs(width, order, deriv=order,
    use="conv")``, what its ``savgol_filter`` applies), kept like :func:`_filters`'s tables."""
    def compute() -> dict[str, np.ndarray]:
        import scipy.signal
        return {"filters": np.stack([scipy.signal.savgol_coeffs(width, order, deriv=order, use="conv")
                                     for order in (1, 2)])}

    import scipy
    key = {"width": width, "scipy": scipy.__version__}
    return cached_tables("delta", key, {"filters": ((2, width), "<f8", -4.0, 4.0)}, compute)["filters"]


def _delta(x: np.ndarray, width: int, order: int) -> np.ndarray:
    """``librosa.feature.delta(x, width=width, order=order, axis=0, mode="nearest")`` (frames,
    dims) float32: the Savitzky-Golay filter of :func:`_delta_filters` over the frames, the edge
    frames repeated, summed in float64 as ``scipy.ndimage.convolve1d`` does."""
    h, n = width // 2, x.shape[0]
    padded = np.concatenate([np.repeat(x[:1], h, axis=0), x, np.repeat(x[-1:], h, axis=0)]).astype(np.float64)
    taps = _delta_filters(width)[order - 1][::-1]
    out = np.zeros(x.shape, dtype=np.float64)
    for k in range(width):                       # one tap at a time: memory 2 (frames, dims) float64
        if taps[k] != 0.0:
            out += taps[k] * padded[k:k + n]
    return out.astype(np.float32)


@functools.lru_cache(maxsize=16)
def _band_weights(preemphasis: float, window: str, win: int, sample_rate: int, n_fft: int, n_mels: int,
                  fmin: float, fmax: float) -> np.ndarray:
    """Weights ``(1 + n_fft // 2,)`` float32 of the band energy: the filterbank's total gain per
    FFT bin divided by the pre-emphasis filter's power gain ``|1 - a e^(-jw)|^2``, so that the
    band energy is the un-emphasised signal's power between ``fmin`` and ``fmax``."""
    mel = _filters(window, win, sample_rate, n_fft, n_mels, fmin, fmax)[1]
    w = 2.0 * np.pi * np.arange(1 + n_fft // 2) / n_fft
    gain = np.abs(1.0 - preemphasis * np.exp(-1j * w)) ** 2
    out = (mel.sum(axis=0, dtype=np.float64) / np.maximum(gain, 1e-6)).astype(np.float32)
    out.setflags(write=False)
    return out


def _cepstra(y: np.ndarray, cfg: FeatureConfig, name: str, prev: float | None = None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cepstra ``(frames, n_ceps)`` float32, log-energy ``(frames,)`` float64 and band energy
    ``(frames,)`` float64 (the windowed frame's power between ``fmin`` and ``fmax``, pre-emphasis
    undone, from the same FFT: what :func:`speaker.quality.snr_db` reads) of a signal.

    ``prev``: the sample before ``y`` when ``y`` continues a stream (pre-emphasis of ``y[0]``);
    None at the start of a signal (then ``y[-1]`` is taken equal to ``y[0]``)."""
    import scipy.fft               # (here: reading a store's or a model's configuration needs no SciPy)
    win, hop, n_fft = cfg.win_samples, cfg.hop_samples, cfg.fft_size
    if y.shape[0] < win:
        raise AudioError(
            name,
            f"too short for one analysis frame: {y.shape[0]} samples "
            f"({1000.0 * y.shape[0] / cfg.sample_rate:.1f} ms) at {cfg.sample_rate} Hz, "
            f"need {win} ({cfg.win_length_ms:g} ms)",
        )

    if cfg.preemphasis > 0:
        # emph[n] = y[n] - a*y[n-1], with y[-1] taken equal to y[0] (Kaldi's convention). Done
        # in place on one float32 copy: librosa.effects.preemphasis (scipy lfilter) peaks at
        # about 4x the signal's size and seeds the first sample differently.
        a = np.float32(cfg.preemphasis)
        emph = np.empty_like(y)
        emph[0] = y[0] * (np.float32(1) - a) if prev is None else y[0] - a * np.float32(prev)
        emph[1:] = y[:-1]
        emph[1:] *= -a
        emph[1:] += y[1:]
    else:
        emph = y

    # (frames, win) views, as librosa.util.frame(axis=0) gives them (whose module compiles numba
    # functions on import: numpy's own view here)
    raw_frames = np.lib.stride_tricks.sliding_window_view(y, win)[::hop]
    emph_frames = np.lib.stride_tricks.sliding_window_view(emph, win)[::hop]
    n_frames = raw_frames.shape[0]

    window, mel_basis = _filters(cfg.window, win, cfg.sample_rate, n_fft, cfg.n_mels, cfg.fmin, cfg.fmax_hz)
    band_weights = _band_weights(cfg.preemphasis, cfg.window, win, cfg.sample_rate, n_fft, cfg.n_mels, cfg.fmin, cfg.fmax_hz)

    log_mel = np.empty((n_frames, cfg.n_mels), dtype=np.float32)
    log_energy = np.empty(n_frames, dtype=np.float64)
    band = np.empty(n_frames, dtype=np.float64)
    for start in range(0, n_frames, _CHUNK_FRAMES):
        stop = min(start + _CHUNK_FRAMES, n_frames)
        raw = raw_frames[start:stop]
        log_energy[start:stop] = np.einsum("ij,ij->i", raw, raw, dtype=np.float64) / win
        spec = scipy.fft.rfft(emph_frames[start:stop] * window, n=n_fft, axis=1)
        power = np.square(spec.real, dtype=np.float32) + np.square(spec.imag, dtype=np.float32)
        mel = power @ mel_basis.T
        band[start:stop] = power @ band_weights
        np.log(np.maximum(mel, np.float32(LOG_FLOOR)), out=log_mel[start:stop])
    np.log(np.maximum(log_energy, LOG_FLOOR), out=log_energy)

    ceps = scipy.fft.dct(log_mel, type=2, norm="ortho", axis=1)[:, : cfg.n_ceps].copy()
    if cfg.lifter > 0:  # HTK/Kaldi sinusoidal lifter: c_i *= 1 + L/2 * sin(pi * i / L)
        i = np.arange(cfg.n_ceps)
        ceps *= (1.0 + 0.5 * cfg.lifter * np.sin(np.pi * i / cfg.lifter)).astype(np.float32)
    if cfg.use_energy:
        ceps[:, 0] = log_energy
    return np.ascontiguousarray(ceps), log_energy, band


def _sliding_cmn(x: np.ndarray, window: int) -> np.ndarray:
    """Subtract a centred moving mean; the window is shifted (not truncated) at the edges."""
    n = x.shape[0]
    w = min(window, n)
    t = np.arange(n)
    start = np.clip(t - window // 2, 0, n - w)
    stop = start + w
    csum = np.zeros((n + 1, x.shape[1]), dtype=np.float64)
    np.cumsum(x, axis=0, dtype=np.float64, out=csum[1:])
    mean = (csum[stop] - csum[start]) / w
    return (x - mean).astype(np.float32)


def _normalize(x: np.ndarray, method: str, cmn_window: int) -> np.ndarray:
    if method == "none" or x.shape[0] == 0:
        return x
    if method == "cmvn":
        mean = x.mean(axis=0, dtype=np.float64)
        std = x.std(axis=0, dtype=np.float64)
        std = np.where(std > _STD_FLOOR, std, 1.0)
        return ((x - mean) / std).astype(np.float32)
    if method == "cmn-sliding":
        return _sliding_cmn(x, cmn_window)
    raise ValueError(f"unknown normalization {method!r}")  # unreachable: validated


def extract_features(
    path_or_signal: AudioSource,
    sample_rate: int | None = None,
    config: FeatureConfig | None = None,
) -> np.ndarray:
    """MFCC (+ deltas) of the speech frames of one utterance.

    Parameters
    ----------
    path_or_signal : str, os.PathLike or np.ndarray
        Audio file, or a signal of shape ``(samples,)`` / ``(samples, channels)``
        (see :func:`speaker.audio.load_audio`).
    sample_rate : int, optional
        Rate of a numpy signal in Hz (required for arrays, must be ``None`` for files).
        It is resampled to ``config.sample_rate``.
    config : FeatureConfig, optional
        Front-end settings; ``FeatureConfig()`` by default.

    Returns
    -------
    np.ndarray
        Shape ``(frames, config.dim)``, float32, C-contiguous. Columns are
        ``[c0 or log-energy, c1 .. c(n_ceps-1)]``, then their deltas, then delta-deltas (each
        block present if enabled). Rows are the frames kept by :func:`vad` (all frames if
        ``config.vad`` is False), at most ``1 + (samples - win) // hop`` with window and hop in
        samples at ``config.sample_rate``. Deltas are computed over all frames before the VAD;
        normalisation uses the kept frames only.

    Raises
    ------
    AudioError
        Everything :func:`speaker.audio.load_audio` raises, and "too short" when the signal is
        shorter than one analysis window. The message names the file (or ``"<signal>"``).

    Warns
    -----
    UserWarning
        When the source's native rate is below ``config.sample_rate`` and the filterbank reaches
        above the source's Nyquist frequency (those mel bands are empty; e.g. 8 kHz audio with
        the 16 kHz default: use ``FeatureConfig(sample_rate=8000)``).
    """
    feats, _ = _extract(path_or_signal, sample_rate, config, quality=False)
    return feats


def extract_features_and_quality(
    path_or_signal: AudioSource | bytes,
    sample_rate: int | None = None,
    config: FeatureConfig | None = None,
    *,
    max_seconds: float = MAX_SECONDS,
) -> tuple[np.ndarray, Quality]:
    """:func:`extract_features` and the recording's :class:`speaker.quality.Quality`, in one decode.

    The clipping is measured on the native samples while they are decoded, block by block
    (:class:`speaker.quality.ClipMeter`: the native signal is never held), net speech and the
    SNR estimate on the frames of the features (the VAD and the filterbank energies of this
    ``config``, the VAD also when ``config.vad`` is off). Same parameters, result and errors as
    :func:`extract_features`; the extra cost is one scan of the samples (clipping) and a partial
    sort of the frame energies.

    ``path_or_signal`` may also be the bytes of an audio file held in memory (an HTTP upload,
    decoded as :func:`speaker.audio.decode_bytes` does, named ``"<upload>"`` in messages), and
    ``max_seconds`` bounds the audio accepted (:class:`speaker.audio.AudioTooLong` beyond it):
    memory stays about one float32 copy of the mono signal at ``config.sample_rate``, whatever
    the file declares.
    """
    feats, q = _extract(path_or_signal, sample_rate, config, quality=True, max_seconds=max_seconds)
    assert q is not None
    return feats, q


def _extract(path_or_signal: AudioSource | bytes, sample_rate: int | None, config: FeatureConfig | None, *,
             quality: bool, max_seconds: float = MAX_SECONDS) -> tuple[np.ndarray, Quality | None]:
    """The front-end; with ``quality`` also the recording's Quality (see above)."""
    cfg = FeatureConfig() if config is None else config
    if not isinstance(cfg, FeatureConfig):
        raise TypeError(f"config must be a FeatureConfig, got {type(cfg).__name__}")
    meter = ClipMeter() if quality else None
    y, native_rate, name = _load(path_or_signal, sample_rate, cfg.sample_rate, max_seconds,
                                 None if meter is None else meter.add)
    if native_rate < cfg.sample_rate and cfg.fmax_hz > native_rate / 2:
        warnings.warn(
            f"audio sampled at {native_rate} Hz is upsampled to {cfg.sample_rate} Hz; mel bands "
            f"above {native_rate / 2:g} Hz (up to fmax={cfg.fmax_hz:g} Hz) carry no signal. Use "
            f"FeatureConfig(sample_rate={native_rate}) or fmax <= {native_rate / 2:g}.",
            UserWarning,
            stacklevel=3  # the caller of extract_features[_and_quality],
        )

    # The filterbank products are small gemms: on one BLAS thread they take ~0.1 ms for a 3-s
    # utterance, against a median of ~15 ms with OpenBLAS's two threads on a busy 2-core machine.
    with single_thread_blas:
        ceps, log_energy, band = _cepstra(y, cfg, name)
        if not (log_energy > np.log(LOG_FLOOR)).any():
            # every frame at the log floor: the features are one constant frame repeated (after
            # normalization all zeros), nothing a model can be adapted to or scored on
            raise AudioError(name, f"near-silent: every frame's energy is below the front-end's floor "
                                   f"({LOG_FLOOR:g}; peak amplitude {float(np.max(np.abs(y))):.3g})")
        del y
        blocks = [ceps]
        if cfg.deltas:
            blocks.append(_delta(ceps, cfg.delta_width, 1))
        if cfg.delta_deltas:
            blocks.append(_delta(ceps, cfg.delta_width, 2))
    feats = np.concatenate(blocks, axis=1) if len(blocks) > 1 else ceps

    speech = vad(log_energy, cfg) if (cfg.vad or quality) else None
    q = None
    if quality:
        q = measure(samples=meter.samples, rate=native_rate, clip=meter.result(), band_power=band,
                    speech=speech, hop_seconds=cfg.hop_samples / cfg.sample_rate)
    if cfg.vad:
        feats = feats[speech]
    feats = _normalize(feats, cfg.normalization, cfg.cmn_window)
    return np.ascontiguousarray(feats, dtype=np.float32), q
