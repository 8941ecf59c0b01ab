"""Recording quality: net speech, clipping, an SNR estimate and a noise-only verdict.

:class:`Quality` is measured in the same decode and the same frames as the features
(:func:`speaker.features.extract_features_and_quality`; :func:`speaker.sources.read_source_and_quality`
for any source): nothing is decoded or transformed twice.  This module holds the measures (pure
functions of arrays the front-end already has), the default thresholds and the one wording of
each refusal (:class:`QualityGates`); the store and the decisions keep and apply them.

Measures
--------
* **speech_seconds** (net speech): frames the project's energy VAD (:func:`speaker.features.vad`)
  marks as speech, times the hop (Kaldi's convention: frames x frame shift).  Computed with the
  front-end's own settings, also when ``FeatureConfig.vad`` is off.
* **clipping**, on the native samples (before DC removal and resampling, which would smooth a
  flat top away): a sample is clipped when it lies in a run of at least :data:`MIN_CLIP_RUN` (3)
  consecutive samples at the recording's own positive or negative peak (within a relative
  :data:`CLIP_TOLERANCE`).  Three consecutive samples at the limit is the rule of mastering
  meters' "over" counters and of audio editors' clipping finders: a natural waveform touches its
  peak once, a clipped one stays there.  Taking each side's own peak (not 1.0) also finds audio
  clipped and then scaled, and asymmetric clipping.  ``clipped_fraction`` is the fraction of all
  samples in such runs, ``clipped_runs`` their number, ``peak_dbfs`` the largest ``|sample|`` in dB
  re full scale.  A multichannel file is measured on its mono mix; lossy codecs ring around a
  clipped top and hide it.
* **snr_db**, from the frames' band energies (the power of each windowed frame between ``fmin``
  and ``fmax``, from the FFT the cepstra are computed from, with the pre-emphasis undone)::

      N = mean of the quietest NOISE_FLOOR_FRACTION (10 %) of the frames   (the noise floor)
      S = mean over the VAD's speech frames                                 (speech + noise)
      snr_db = 10 log10((S - N) / N), clamped to [SNR_MIN_DB, SNR_MAX_DB]

  Measured on real recordings plus noise at a known SNR (``tests/test_quality.py``; the figures
  in ``docs/quality.md``): within 1 dB for white noise from 0 to 20 dB; pink noise reads 1-2 dB
  high, brown noise 4-7 dB high (their power fluctuates more from frame to frame, so the
  quietest frames sit further below the mean).  Chosen over a waveform-statistics estimate
  (WADA-SNR): it is a mean and a partial sort of numbers the front-end already has (WADA needs
  another pass over the samples and a table of a Gamma speech model), and it is measured in the
  band the features see (a sub-audio drift does not pass for speech).  Its known bias: a tightly trimmed
  recording has no pause, so its quietest frames are quiet speech and the SNR is under-estimated
  (the short clean digits of FSDD: 5th to 95th percentile 10-48 dB): a conservative error.
* **noise_only**: ``snr_db < NOISE_ONLY_SNR_DB`` (5 dB) in a recording of at least
  :data:`NOISE_ONLY_MIN_SECONDS` (1 s).  Stationary noise alone measures -17 to +4.2 dB (white,
  pink, brown, low-passed, 50-Hz hum; 0.5 to 3 s); speech with white or pink noise at 0 dB SNR
  measures -0.2 to 2.9 dB, at 5 dB 4.3 to 7.3 dB (5th-95th percentiles).  So "noise only" means
  "nothing stands out of the noise floor": noise, or speech buried in it.  Below 1 s the verdict is not given: a tightly trimmed
  clip of one steady syllable has no quiet frame either (21 of FSDD's 3,000 digits, all under
  0.6 s, measure -0.7 to 4.8 dB); the net-speech minimum refuses such recordings anyway.

Default thresholds (:class:`QualityGates`; measured refusal rates on the shared data in
``docs/quality.md``): a verification test needs :data:`MIN_TEST_SPEECH` (1 s) of net speech, an
enrolment recording :data:`MIN_ENROL_RECORDING_SPEECH` (1 s), a speaker
:data:`MIN_ENROL_SPEAKER_SPEECH` (10 s) in all; at most :data:`MAX_CLIPPED_FRACTION` (1 %) of the
samples clipped; not noise-only.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

__all__ = ["Quality", "QualityGates", "ClipMeter", "clipping", "snr_db", "measure", "MIN_CLIP_RUN", "CLIP_TOLERANCE",
           "NOISE_FLOOR_FRACTION", "NOISE_ONLY_SNR_DB", "NOISE_ONLY_MIN_SECONDS", "SNR_MIN_DB", "SNR_MAX_DB", "MIN_TEST_SPEECH",
           "MIN_ENROL_RECORDING_SPEECH", "MIN_ENROL_SPEAKER_SPEECH", "MAX_CLIPPED_FRACTION"]

#: Consecutive samples at a peak that make a clipped run.
MIN_CLIP_RUN = 3
#: A sample is "at the peak" when within this fraction of the peak level.
CLIP_TOLERANCE = 1e-4
#: Fraction of the frames (the quietest) whose mean band energy is the noise floor.
NOISE_FLOOR_FRACTION = 0.1
#: Range of :attr:`Quality.snr_db` (dB).
SNR_MIN_DB, SNR_MAX_DB = -30.0, 100.0
#: Below this SNR estimate (dB) a recording is "noise only".
NOISE_ONLY_SNR_DB = 5.0
#: Shortest recording (seconds) given a noise-only verdict.
NOISE_ONLY_MIN_SECONDS = 1.0
#: Default minimum net speech (seconds) of a verification test.
MIN_TEST_SPEECH = 1.0
#: Default minimum net speech (seconds) of one enrolment recording.
MIN_ENROL_RECORDING_SPEECH = 1.0
#: Default minimum net speech (seconds) of a speaker's enrolment, all recordings together.
MIN_ENROL_SPEAKER_SPEECH = 10.0
#: Default largest fraction of clipped samples.
MAX_CLIPPED_FRACTION = 0.01

_BLOCK = 1 << 20        # samples per block of clipping()'s ClipMeter (bounds its temporary arrays)
_MAX_SECONDS = 1e7      # bounds of a stored Quality (a recording is at most 6 h: speaker.audio)


@dataclass(frozen=True)
class Quality:
    """What a recording is worth for verification.

    Attributes
    ----------
    seconds : float
        Duration of the recording (native samples / native rate), seconds.
    speech_seconds : float
        Net speech: VAD speech frames x hop, seconds.
    snr_db : float
        SNR estimate (dB) from the frames' band energies, in ``[SNR_MIN_DB, SNR_MAX_DB]``.
    clipped_fraction : float
        Fraction of the native samples in clipped runs, in ``[0, 1]``.
    clipped_runs : int
        Number of clipped runs (at least ``MIN_CLIP_RUN`` samples at a peak).
    peak_dbfs : float
        Largest ``|sample|`` in dB re full scale (0 dB = 1.0; integer PCM at its limit is 0 dB).
    """

    seconds: float
    speech_seconds: float
    snr_db: float
    clipped_fraction: float
    clipped_runs: int
    peak_dbfs: float

    def __post_init__(self) -> None:
        bounds = {"seconds": (0.0, _MAX_SECONDS), "speech_seconds": (0.0, _MAX_SECONDS),
                  "snr_db": (SNR_MIN_DB, SNR_MAX_DB), "clipped_fraction": (0.0, 1.0),
                  "peak_dbfs": (-400.0, 100.0)}
        for name, (lo, hi) in bounds.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
                raise ValueError(f"quality {name} must be a number in [{lo:g}, {hi:g}], got {v!r}")
        r = self.clipped_runs
        if isinstance(r, bool) or not isinstance(r, int) or r < 0:
            raise ValueError(f"quality clipped_runs must be a non-negative integer, got {r!r}")

    @property
    def noise_only(self) -> bool:
        """True when nothing stands out of the noise floor: :meth:`is_noise_only` at the default."""
        return self.is_noise_only()

    def is_noise_only(self, snr_db: float = NOISE_ONLY_SNR_DB) -> bool:
        """``self.snr_db < snr_db`` in a recording of at least :data:`NOISE_ONLY_MIN_SECONDS`."""
        return self.seconds >= NOISE_ONLY_MIN_SECONDS and self.snr_db < snr_db

    def to_dict(self) -> dict[str, float | int]:
        """The fields as a JSON-ready dict (what a store keeps)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: object) -> Quality:
        """Inverse of :meth:`to_dict` for untrusted input: ValueError naming the problem."""
        if not isinstance(d, dict):
            raise ValueError(f"quality must be a JSON object, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        if set(d) != names:
            missing, extra = sorted(names - set(d)), sorted(set(d) - names)
            raise ValueError(f"quality keys: missing {missing}, unknown {extra}")
        return cls(**d)


@dataclass(frozen=True)
class QualityGates:
    """Thresholds of the quality gates, and the one wording of each refusal.

    ``min_speech_seconds`` applies to one recording (a test, or one enrolment recording);
    ``max_clipped_fraction`` and ``noise_only_snr_db`` to every recording.  ``None`` turns a gate
    off.  ``QualityGates()`` has the enrolment-recording defaults; ``QualityGates.for_test()``
    the verification defaults.
    """

    min_speech_seconds: float | None = MIN_ENROL_RECORDING_SPEECH
    max_clipped_fraction: float | None = MAX_CLIPPED_FRACTION
    noise_only_snr_db: float | None = NOISE_ONLY_SNR_DB

    def __post_init__(self) -> None:
        for name in ("min_speech_seconds", "max_clipped_fraction", "noise_only_snr_db"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)):
                raise ValueError(f"{name} must be a finite number or None, got {v!r}")
        if self.min_speech_seconds is not None and self.min_speech_seconds < 0:
            raise ValueError(f"min_speech_seconds must be >= 0, got {self.min_speech_seconds!r}")
        if self.max_clipped_fraction is not None and not 0 <= self.max_clipped_fraction <= 1:
            raise ValueError(f"max_clipped_fraction must be in [0, 1], got {self.max_clipped_fraction!r}")

    @classmethod
    def for_test(cls) -> QualityGates:
        """The verification defaults: :data:`MIN_TEST_SPEECH` of net speech."""
        return cls(min_speech_seconds=MIN_TEST_SPEECH)

    def problems(self, q: Quality) -> list[str]:
        """Why ``q`` fails the gates (one short reason each; empty when it passes)."""
        out = []
        if self.min_speech_seconds is not None and q.speech_seconds < self.min_speech_seconds:
            out.append(f"insufficient speech: {q.speech_seconds:.2f} s of net speech, "
                       f"at least {self.min_speech_seconds:g} s needed")
        if self.max_clipped_fraction is not None and q.clipped_fraction > self.max_clipped_fraction:
            out.append(f"clipped: {100 * q.clipped_fraction:.2f} % of the samples in {q.clipped_runs} flat runs "
                       f"at the peak (at most {100 * self.max_clipped_fraction:g} %)")
        if self.noise_only_snr_db is not None and q.is_noise_only(self.noise_only_snr_db):
            out.append(f"noise only: no speech stands out of the noise (SNR estimate {q.snr_db:.1f} dB, "
                       f"at least {self.noise_only_snr_db:g} dB needed)")
        return out


class _Side:
    """One side (positive or negative peak) of :class:`ClipMeter`, in the domain ``z = sign * x``
    where its peak is the largest value.  Keeps the running peak and, for each of three per-index
    quantities, the multiset of the values that can still reach the final edge (a few thousand
    distinct float32 values at most: those within CLIP_TOLERANCE of the peak)."""

    def __init__(self, sign: int) -> None:
        self.sign = sign
        self.peak = -math.inf
        self.edge = -math.inf
        self.kept: list[tuple[np.ndarray, np.ndarray]] = [(np.empty(0, np.float32), np.empty(0, np.int64))] * 3

    def raise_peak(self, block_peak: float, tolerance: float) -> None:
        if block_peak > self.peak:
            self.peak = block_peak
            self.edge = block_peak * (1.0 - tolerance)
            pruned = []
            for v, c in self.kept:
                keep = v.astype(np.float64) >= self.edge
                pruned.append((v[keep], c[keep]))
            self.kept = pruned

    def floor32(self) -> np.float32:
        """The largest float32 not above ``edge``: a float32 sample is at least ``edge`` only
        if it is at least this (a superset test in float32, refined exactly in float64)."""
        f = np.float32(self.edge)
        return np.nextafter(f, np.float32(-np.inf)) if float(f) > self.edge else f

    def count(self, kind: int, values: np.ndarray) -> None:
        if values.size:
            v, c = self.kept[kind]
            u, inv = np.unique(np.concatenate([v, values]), return_inverse=True)
            self.kept[kind] = (u, np.bincount(inv, weights=np.concatenate([c, np.ones(values.size, np.int64)]),
                                              minlength=u.size).astype(np.int64))

    def total(self, kind: int) -> int:
        return int(self.kept[kind][1].sum())


class ClipMeter:
    """:func:`clipping` of a signal given in consecutive blocks, in a small state.

    Feed the native mono samples with :meth:`add` in order (blocks of any length, cut anywhere);
    :meth:`result` equals :func:`clipping` of the whole signal, exactly, without holding it.

    How: with ``m = MIN_CLIP_RUN`` and ``z`` a side's samples (``x`` for the positive peak, ``-x``
    for the negative one), three quantities per index do not depend on the edge::

        W[s] = min z[s : s+m]                (window s lies in a run of >= m at the edge iff W[s] >= edge)
        D[s] = min(W[s-1], W[s])             (consecutive windows in the same run)
        C[j] = max of the W of the windows holding sample j   (j is in such a run iff C[j] >= edge)

    so that, for the final edge ``E = peak * (1 - CLIP_TOLERANCE)``, clipped samples
    ``= #{C >= E}`` and runs ``= #{W >= E} - #{D >= E}`` (a run of length L has L - m + 1
    windows and L - m adjacent pairs of them).  The peak only rises, hence so does the edge: a
    value below the current edge never counts, and only the values at or above it are kept (as
    counts per distinct float32 value, at most about ``CLIP_TOLERANCE * 2**24`` of them per
    quantity and side).  The last ``2m - 2`` samples are carried to the next block, for runs that
    span a boundary.  A block that has no sample at or above a side's edge (and no carried one)
    costs its max and min only.
    """

    def __init__(self, min_run: int = MIN_CLIP_RUN, tolerance: float = CLIP_TOLERANCE) -> None:
        if isinstance(min_run, bool) or not isinstance(min_run, int) or min_run < 1:
            raise ValueError(f"min_run must be a positive integer, got {min_run!r}")
        if not 0 <= tolerance < 1:
            raise ValueError(f"tolerance must be in [0, 1), got {tolerance!r}")
        self.min_run, self.tolerance = min_run, float(tolerance)
        self.samples = 0                                   #: samples seen
        self._tail = np.empty(0, np.float32)               # the last max(m, 2m - 2) samples
        self._sides = (_Side(1), _Side(-1))

    def add(self, block: np.ndarray) -> None:
        """The next samples: ``(n,)`` float32 (other dtypes are converted), finite; not modified."""
        x = np.asarray(block, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"a block must be 1-D, got shape {x.shape}")
        if x.size == 0:
            return
        m = self.min_run
        hi, lo = float(x.max()), float(x.min())
        buf: np.ndarray | None = None
        for side, block_peak in zip(self._sides, (hi, -lo)):
            side.raise_peak(block_peak, self.tolerance)
            f = side.floor32()
            tail = self._tail
            near = block_peak >= f or bool(tail.size and (tail.max() >= f if side.sign > 0 else -tail.min() >= f))
            if near:
                if buf is None:
                    buf = np.concatenate([tail, x])
                for kind, values in enumerate(self._scan(side, buf, f, len(tail) - m + 1, buf.shape[0] - m)):
                    side.count(kind, values)
        self.samples += x.size
        keep = max(m, 2 * m - 2)
        self._tail = (buf if buf is not None else np.concatenate([self._tail, x[-keep:]]))[-keep:].copy()

    def _scan(self, side: _Side, buf: np.ndarray, f: np.float32, new: int, last: int) -> tuple[np.ndarray, ...]:
        """The values at or above the side's edge of W and D of the windows starting at local
        indices ``new`` .. ``last`` of ``buf`` and of C at those indices (the windows and samples
        before ``new`` were counted with an earlier block)."""
        m = self.min_run
        none = (np.empty(0, np.float32),) * 3
        at = np.flatnonzero(buf >= f) if side.sign > 0 else np.flatnonzero(buf <= -f)
        if at.size:
            at = at[(side.sign * buf[at]).astype(np.float64) >= side.edge]   # exactly at or above the edge
        if at.size < m:
            return none
        # windows of m samples all at or above the edge: m consecutive indices among `at`
        starts = at[: at.size - m + 1][at[m - 1:] - at[: at.size - m + 1] == m - 1]
        if starts.size == 0:
            return none
        w = side.sign * buf[starts]
        for k in range(1, m):
            w = np.minimum(w, side.sign * buf[starts + k])
        fresh = starts >= new                               # windows holding a sample of this block
        pair = np.flatnonzero(np.diff(starts) == 1) + 1     # windows s - 1 and s both at the edge
        pair = pair[fresh[pair]]
        # C[j] for j in [new, last]: the largest W of the windows s in [j - m + 1, j]
        pos = (starts[None, :] + np.arange(m)[:, None]).ravel()
        val = np.broadcast_to(w, (m, w.size)).ravel()
        sel = (pos >= new) & (pos <= last)
        pos, val = pos[sel], val[sel]
        order = np.lexsort((val, pos))
        pos, val = pos[order], val[order]
        top = np.flatnonzero(np.append(pos[1:] != pos[:-1], True)) if pos.size else pos   # largest per index
        return w[fresh], np.minimum(w[pair - 1], w[pair]), val[top]

    def result(self) -> tuple[float, int, float]:
        """``(clipped_fraction, clipped_runs, peak)`` of the samples given so far, as
        :func:`clipping` of them; ValueError if none were given.  More samples may follow."""
        if self.samples == 0:
            raise ValueError("no samples")
        n_in = n_runs = 0
        tail = self._tail
        for side in self._sides:
            if side.peak <= 0:
                continue
            # the last m - 1 samples: no window starts at them, the C of the earlier ones is final
            last_c = self._scan(side, tail, side.floor32(), tail.size - self.min_run + 1, tail.size - 1)[2]
            n_in += side.total(2) + last_c.size
            n_runs += side.total(0) - side.total(1)
        return n_in / self.samples, n_runs, max(self._sides[0].peak, self._sides[1].peak)


def clipping(samples: np.ndarray) -> tuple[float, int, float]:
    """Clipping of native samples: ``(clipped_fraction, clipped_runs, peak)``.

    Parameters
    ----------
    samples : (n,) float full-scale samples (mono, as decoded, before DC removal), finite

    A run is at least :data:`MIN_CLIP_RUN` consecutive samples within :data:`CLIP_TOLERANCE`
    (relative) of the positive peak ``max(samples)`` (if > 0) or of the negative peak
    ``min(samples)`` (if < 0): ``x >= max * (1 - CLIP_TOLERANCE)``, compared exactly (in
    float64); ``peak = max |sample|``.  Measured by a :class:`ClipMeter` over blocks of 2**20
    samples (what the decoder does while it decodes, with its own blocks: the same result).
    """
    y = np.asarray(samples)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"samples must be a non-empty 1-D array, got shape {y.shape}")
    meter = ClipMeter()
    for i in range(0, y.size, _BLOCK):
        block = y[i:i + _BLOCK]
        if not np.isfinite(block).all():
            raise ValueError("samples must be finite")
        meter.add(block)
    return meter.result()


def snr_db(band_power: np.ndarray, speech: np.ndarray) -> float:
    """SNR estimate (dB) of a recording from its frames' band energies and the VAD's decision.

    Parameters
    ----------
    band_power : (frames,) non-negative band energy of each frame (any unit)
    speech : (frames,) bool, the VAD's speech frames (at least one)

    ``10 log10((S - N) / N)`` with ``N`` the mean of the quietest ``NOISE_FLOOR_FRACTION`` of
    the frames (at least one) and ``S`` the mean over the speech frames, clamped to
    ``[SNR_MIN_DB, SNR_MAX_DB]`` (so digital silence between words gives ``SNR_MAX_DB``).
    """
    p = np.asarray(band_power, dtype=np.float64)
    sp = np.asarray(speech, dtype=bool)
    if p.ndim != 1 or p.shape != sp.shape or p.size == 0 or not sp.any():
        raise ValueError("band_power and speech must be (frames,) arrays with at least one speech frame")
    k = max(1, int(round(NOISE_FLOOR_FRACTION * p.size)))
    noise = float(np.partition(p, k - 1)[:k].mean())
    s = float(p[sp].mean())
    lo, hi = 10.0 ** (SNR_MIN_DB / 10), 10.0 ** (SNR_MAX_DB / 10)
    ratio = (s - noise) / noise if noise > s / hi else hi
    return 10.0 * math.log10(min(max(ratio, lo), hi))


def measure(*, samples: int, rate: int, clip: tuple[float, int, float], band_power: np.ndarray,
            speech: np.ndarray, hop_seconds: float) -> Quality:
    """Assemble a :class:`Quality` from what the front-end computed.

    Parameters
    ----------
    samples, rate : native length (samples) and rate (Hz)
    clip : :func:`clipping` of the native samples
    band_power, speech : (frames,) band energies and VAD decision (see :func:`snr_db`)
    hop_seconds : frame shift (seconds)
    """
    fraction, runs, peak = clip
    peak_dbfs = 20.0 * math.log10(peak) if peak > 0 else -400.0
    return Quality(seconds=samples / rate, speech_seconds=float(np.count_nonzero(speech)) * hop_seconds,
                   snr_db=snr_db(band_power, speech), clipped_fraction=float(fraction), clipped_runs=int(runs),
                   peak_dbfs=max(-400.0, min(100.0, peak_dbfs)))
