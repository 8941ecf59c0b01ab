"""Streaming verification: features computed as the audio arrives, and an early decision by a
sequential test.

A GMM-UBM score is an average over frames of ``log p(x | speaker) - log p(x | UBM)``, so the
evidence of a recording grows frame by frame.  :class:`StreamingVerifier` takes audio in blocks
(a microphone's), turns each block into features with :class:`OnlineFeatures`, scores the new
frames through the package's one scoring path (:class:`speaker.scoring.Probe`), and after each
block asks a :class:`SequentialTest` whether the evidence is already clear.

**The sequential test** is Wald's sequential probability ratio test (SPRT) on the calibrated
log-likelihood ratio of the speech heard so far.  With a duration-aware calibration (one that
takes the test's net speech, :func:`speaker.calibration.duration_terms`), that is the calibrated
LLR of the prefix at its own duration.  With a duration-blind calibration it is the calibrated
LLR accumulated per frame: a calibration ``llr = a * score + b`` is fitted on
recordings of about ``reference_seconds`` of speech; spread over that many frames, each frame
adds ``z_t = (a * l_t + b) / n_ref`` to the evidence (``l_t`` the frame's raw LLR, ``n_ref`` the
frames in ``reference_seconds``), so after ``n`` frames

    Lambda_n = (a * S_n + b * n) / n_ref        (S_n = l_1 + ... + l_n)

which equals the calibrated LLR of the speech heard so far when ``n = n_ref``, counts less for
shorter prefixes and more for longer ones.  With the target false-accept rate ``alpha`` and miss
rate ``beta``, Wald's thresholds are

    accept when Lambda_n >= A = ln((1 - beta) / alpha)
    reject when Lambda_n <= B = ln(beta / (1 - alpha))

(for a true likelihood ratio they bound the error rates: ``P(false accept) <= alpha / (1 - beta)``,
``P(miss) <= beta / (1 - alpha)``), checked after every block once ``min_speech`` seconds of speech
were heard.  Between the thresholds the test waits for more audio; at the end of the audio the
decision falls back to the whole recording with the ordinary rule.  The rates really reached, and
the speech needed, are measured on a development protocol in ``benchmarks/bench_stream.py``
(``docs/serve.md``): the calibrated LLR is only approximately a likelihood ratio, and frames are
not independent.

**The online front-end** (:class:`OnlineFeatures`) computes what :func:`speaker.features.
extract_features` computes, as far as that can be known without the rest of the recording:

* framing, pre-emphasis, the mel cepstra and the log-energy are the batch front-end's own code
  (:func:`speaker.features._cepstra`) on each block, continued across blocks: the same numbers;
* deltas use the same filter, emitted ``delta_width // 2`` frames late (40 ms at the default
  width 9) so that their window is complete: the same numbers;
* the DC offset is the running mean of the samples so far (batch: the whole recording's mean);
* **VAD**: the same rule (energy within ``vad_energy_threshold`` dB of the 95th-percentile
  level, smoothed over ``vad_context`` frames), but the reference level is the percentile of the
  frames heard so far, not of the whole recording, and a frame's decision is never revised.  No
  frame is decided before the levels heard span ``vad_energy_threshold`` dB (before the first
  loud speech, silence would pass against a reference made of silence), or ``vad_hold`` frames
  (2 s) have passed; afterwards a frame is decided ``vad_context`` frames after it arrives;
* **normalisation**: CMVN over the first ``warmup`` speech frames together (held until there are
  that many), then each frame with the mean and variance of all speech frames up to it (batch:
  the whole recording's); sliding CMN uses the previous ``cmn_window`` frames, not a centred
  window.

Everything a stream keeps grows with its audio only (the cepstra of every frame, for the
deltas): the service bounds the seconds per stream.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from gmmext import GaussianMixture, ModelStack, single_thread_blas

from .calibration import Calibration
from .features import _DB_PER_NEPER_POWER, _STD_FLOOR, VAD_REFERENCE_PERCENTILE, FeatureConfig, _cepstra, _delta
from .scoring import Probe

__all__ = ["SequentialTest", "StreamConfig", "OnlineFeatures", "StreamingVerifier", "Evidence"]

Verdict = Literal["accept", "reject", "undecided"]


def _probability(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < value < 0.5:
        raise ValueError(f"{name} must be a probability in (0, 0.5), got {value!r}")
    return float(value)


@dataclass(frozen=True)
class SequentialTest:
    """Wald's SPRT on the calibrated LLR accumulated per frame (see the module's docstring).

    target_far : alpha, the false-accept rate the test aims at, in (0, 0.5)
    target_miss : beta, the miss rate it aims at, in (0, 0.5)
    min_speech : seconds of speech before any early decision
    early_reject : whether the test may also reject early (False: only an early accept; a
        stream that is not accepted early is decided on its whole audio)
    reference_seconds : speech (seconds) of the recordings the calibration was fitted on: the
        evidence of that much speech is the calibrated LLR itself
    """

    target_far: float = 0.01
    target_miss: float = 0.05
    min_speech: float = 1.0
    reference_seconds: float = 3.0
    early_reject: bool = True

    def __post_init__(self) -> None:
        _probability("target_far", self.target_far)
        _probability("target_miss", self.target_miss)
        for name in ("min_speech", "reference_seconds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 3600.0 \
                    or (name == "reference_seconds" and v == 0):
                raise ValueError(f"{name} must be a number of seconds in {'(0' if name[0] == 'r' else '[0'}, 3600], "
                                 f"got {v!r}")

    @property
    def accept_at(self) -> float:
        """A = ln((1 - beta) / alpha): accept when the evidence reaches it."""
        return math.log((1.0 - self.target_miss) / self.target_far)

    @property
    def reject_at(self) -> float:
        """B = ln(beta / (1 - alpha)): reject when the evidence falls to it."""
        return math.log(self.target_miss / (1.0 - self.target_far))

    def evidence(self, calibration: Calibration, total, frames, frame_seconds: float,
                 enrol_seconds: float | None = None):
        """The test's statistic after ``frames`` speech frames whose raw LLRs sum to ``total``
        (scalars, or arrays of the same shape).

        A duration-aware calibration (one with the test's net speech among its inputs) gives the
        calibrated LLR of the speech heard at its duration: ``llr(total / frames, test_speech =
        frames * frame_seconds, enrol_speech = enrol_seconds)``.  A duration-blind one is spread
        over ``reference_seconds``: ``(frames / n_ref) * llr(total / frames)``, for the affine
        calibration ``(a * total + b * frames) / n_ref``."""
        from .calibration import ENROL_SPEECH, TEST_SPEECH
        frames = np.asarray(frames, dtype=np.float64)
        score = np.asarray(total, dtype=np.float64) / np.maximum(frames, 1)
        seconds = frames * frame_seconds
        if TEST_SPEECH in calibration.inputs:
            quality = {TEST_SPEECH: np.broadcast_to(np.maximum(seconds, frame_seconds), score.shape)}
            if ENROL_SPEECH in calibration.inputs:
                if enrol_seconds is None:
                    raise ValueError("a duration-aware calibration needs the enrolment's net speech")
                quality[ENROL_SPEECH] = np.full(score.shape, float(enrol_seconds))
            out = calibration.llr(score.reshape(-1), {k: v.reshape(-1) for k, v in quality.items()})
            out = np.asarray(out).reshape(score.shape)
        else:
            out = seconds / self.reference_seconds * np.asarray(calibration.llr(score))
        return float(out) if out.ndim == 0 else out

    def decide(self, evidence: float | None, speech_seconds: float) -> Verdict:
        """accept / reject when the evidence crossed a threshold after ``min_speech``, else undecided."""
        if evidence is None or speech_seconds < self.min_speech:
            return "undecided"
        if evidence >= self.accept_at:
            return "accept"
        if evidence <= self.reject_at and self.early_reject:
            return "reject"
        return "undecided"


@dataclass(frozen=True)
class StreamConfig:
    """The service's limits per stream, and its sequential test.

    max_seconds : audio a stream may send (then it is decided as if it had ended)
    max_message_bytes : largest WebSocket message
    idle_timeout : seconds without a message before the stream is closed
    max_streams : streams open at once (more: refused with close code 1013, "try again later")
    update_seconds : audio between two evidence messages
    test : the sequential test
    """

    max_seconds: float = 60.0
    max_message_bytes: int = 64 * 1024
    idle_timeout: float = 10.0
    max_streams: int = 16
    update_seconds: float = 0.25
    test: SequentialTest = field(default_factory=SequentialTest)


class OnlineFeatures:
    """:func:`speaker.features.extract_features`, block by block (the module's docstring says what
    differs).  :meth:`push` takes float32 mono samples at ``config.sample_rate`` and returns the
    speech frames that became ready, normalised: shape ``(frames, config.dim)``, float32.

    ``warmup``: speech frames normalised together before the first is emitted (``"cmvn"``);
    ``vad_hold``: frames the VAD may wait for a level to judge by (see the module's docstring).
    """

    def __init__(self, config: FeatureConfig, warmup: int = 100, vad_hold: int = 200) -> None:
        self.cfg, self.warmup, self.vad_hold = config, int(warmup), int(vad_hold)
        self._pending = np.zeros(0, np.float32)       # samples not yet in a complete frame
        self._prev: float | None = None               # the sample before _pending (pre-emphasis)
        self._dc_sum, self._dc_n = 0.0, 0
        self._ceps: list[np.ndarray] = []             # every frame's cepstra (the deltas' context)
        self._energy: list[np.ndarray] = []
        self._n = 0                                   # frames so far
        self._delta_done = 0                          # frames whose deltas are out
        self._feats: list[np.ndarray] = []            # frames with deltas, not yet through the VAD
        self._vad_done = 0
        self._held: list[np.ndarray] = []             # speech frames waiting for the CMVN warm-up
        self._sum = np.zeros(config.dim)              # speech frames' sums (normalisation)
        self._sq = np.zeros(config.dim)
        self._count = 0
        self._recent: list[np.ndarray] = []           # sliding CMN's window
        self.frames_out = 0

    @property
    def speech_seconds(self) -> float:
        """Speech frames emitted so far, in seconds."""
        return self.frames_out * self.cfg.hop_length_ms / 1000.0

    def push(self, samples: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if x.size:
            self._dc_sum += float(x.sum(dtype=np.float64))
            self._dc_n += x.size
            x = x - np.float32(self._dc_sum / self._dc_n)
        y = np.concatenate([self._pending, x])
        win, hop = cfg.win_samples, cfg.hop_samples
        if y.shape[0] < win:
            self._pending = y
            return np.zeros((0, cfg.dim), np.float32)
        n_new = 1 + (y.shape[0] - win) // hop
        with single_thread_blas:
            ceps, energy, _ = _cepstra(y[:(n_new - 1) * hop + win], cfg, "<stream>", self._prev)
        self._prev = float(y[n_new * hop - 1])
        self._pending = y[n_new * hop:].copy()
        self._ceps.append(ceps)
        self._energy.append(energy)
        self._n += n_new
        return self._after_cepstra()

    def _after_cepstra(self) -> np.ndarray:
        cfg = self.cfg
        ceps = np.concatenate(self._ceps) if len(self._ceps) > 1 else self._ceps[0]
        self._ceps = [ceps]
        half = cfg.delta_width // 2 if (cfg.deltas or cfg.delta_deltas) else 0
        ready = self._n - half                          # frames whose delta window is complete
        if ready > self._delta_done:
            lo = max(0, self._delta_done - half)
            part = ceps[lo:ready + half]
            blocks = [part]
            with single_thread_blas:
                for order, on in ((1, cfg.deltas), (2, cfg.delta_deltas)):
                    if on:
                        blocks.append(_delta(part, cfg.delta_width, order))
            full = np.concatenate(blocks, axis=1) if len(blocks) > 1 else part
            self._feats.append(full[self._delta_done - lo:ready - lo])
            self._delta_done = ready
        return self._vad_and_normalise()

    def _vad_and_normalise(self) -> np.ndarray:
        cfg = self.cfg
        feats = np.concatenate(self._feats) if self._feats else np.zeros((0, cfg.dim), np.float32)
        c = cfg.vad_context if cfg.vad else 0
        decided_to = min(self._delta_done, self._n - c)    # frames whose VAD window is complete
        if decided_to <= self._vad_done:
            self._feats = [feats]
            return np.zeros((0, cfg.dim), np.float32)
        if cfg.vad:
            energy = np.concatenate(self._energy)
            self._energy = [energy]
            e_db = energy[:self._n] * _DB_PER_NEPER_POWER
            if self._n < self.vad_hold and e_db.max() - e_db.min() < cfg.vad_energy_threshold:
                self._feats = [feats]                  # no level to judge by yet: wait
                return np.zeros((0, cfg.dim), np.float32)
            s = cfg.vad_energy_mean_scale
            reference = (1.0 - s) * np.percentile(e_db, VAD_REFERENCE_PERCENTILE) + s * e_db.mean()
            lo, hi = max(0, self._vad_done - c), min(self._n, decided_to + c)
            candidate = e_db[lo:hi] > reference - cfg.vad_energy_threshold
            csum = np.concatenate([[0], np.cumsum(candidate, dtype=np.int64)])
            t = np.arange(self._vad_done, decided_to)
            a, b = np.maximum(t - c, 0) - lo, np.minimum(t + c + 1, self._n) - lo
            speech = (csum[b] - csum[a]) >= cfg.vad_proportion_threshold * (b - a) - 1e-9
        take = decided_to - self._vad_done
        new, self._feats = feats[:take], [feats[take:]]
        if cfg.vad:
            new = new[speech]
        self._vad_done = decided_to
        out = self._normalise(new)
        self.frames_out += out.shape[0]
        return out

    def _normalise(self, new: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        if cfg.normalization == "none" or new.shape[0] == 0:
            return np.ascontiguousarray(new, dtype=np.float32)
        if cfg.normalization == "cmn-sliding":
            recent = np.concatenate([*self._recent, new])
            csum = np.concatenate([np.zeros((1, cfg.dim)), np.cumsum(recent, axis=0, dtype=np.float64)])
            stop = np.arange(recent.shape[0] - new.shape[0], recent.shape[0]) + 1
            start = np.maximum(stop - cfg.cmn_window, 0)
            out = new - (csum[stop] - csum[start]) / (stop - start)[:, None]
            self._recent = [recent[-cfg.cmn_window:]]
            return out.astype(np.float32)
        # cmvn: cumulative mean and variance of the speech frames up to each frame
        x = new.astype(np.float64)
        if self._count < self.warmup:
            self._held.append(new)
            self._sum += x.sum(0)
            self._sq += (x * x).sum(0)
            self._count += x.shape[0]
            if self._count < self.warmup:
                return np.zeros((0, cfg.dim), np.float32)
            held = np.concatenate(self._held).astype(np.float64)
            self._held = []
            mean = self._sum / self._count
            std = np.sqrt(np.maximum(self._sq / self._count - mean * mean, 0.0))
            return ((held - mean) / np.where(std > _STD_FLOOR, std, 1.0)).astype(np.float32)
        n = self._count + np.arange(1, x.shape[0] + 1)[:, None]
        s1 = self._sum + np.cumsum(x, axis=0)
        s2 = self._sq + np.cumsum(x * x, axis=0)
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
        self._sum, self._sq, self._count = s1[-1], s2[-1], self._count + x.shape[0]
        return ((x - mean) / np.where(std > _STD_FLOOR, std, 1.0)).astype(np.float32)


@dataclass(frozen=True)
class Evidence:
    """Where a stream stands: ``speech_seconds`` heard, the raw ``score`` of the speech so far
    (nats per frame; None before any speech), its calibrated ``llr`` and the test's ``evidence``
    (both None without a calibration), and the ``decision``."""

    speech_seconds: float
    score: float | None
    llr: float | None
    evidence: float | None
    decision: Verdict


class StreamingVerifier:
    """A claimed speaker's streaming verification: :meth:`push` audio blocks, read the
    :class:`Evidence` after each.

    ubm, model : the UBM and the claimed speaker's model (adapted from it)
    config : the UBM's front-end settings
    sample_rate : the rate of the pushed samples (resampled to ``config.sample_rate`` with
        soxr's streaming resampler, the filter the batch front-end uses)
    calibration : the store's calibration; without one the decision stays "undecided"
    test : the sequential test
    top_c : None (exact scoring) or the UBM's C best components per frame
    enrol_seconds : the speaker's net enrolment speech (a duration-aware calibration needs it)
    """

    def __init__(self, ubm: GaussianMixture, model: GaussianMixture, config: FeatureConfig, sample_rate: int,
                 calibration: Calibration | None, test: SequentialTest | None = None, top_c: int | None = None,
                 enrol_seconds: float | None = None):
        self.ubm, self.config, self.calibration = ubm, config, calibration
        self.enrol_seconds = enrol_seconds
        self.test = test or SequentialTest()
        self.top_c = top_c
        self.models = ModelStack([model], reference=ubm) if top_c is not None else [model]
        self.front = OnlineFeatures(config)
        self.total, self.frames = 0.0, 0
        self._resampler = None
        if int(sample_rate) != config.sample_rate:
            import soxr
            self._resampler = soxr.ResampleStream(int(sample_rate), config.sample_rate, 1, dtype="float32",
                                                  quality="HQ")

    def push(self, samples: np.ndarray) -> Evidence:
        """Add mono float32 samples (full scale [-1, 1]) and return the evidence so far."""
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        if self._resampler is not None:
            x = self._resampler.resample_chunk(x)
        X = self.front.push(x)
        if X.shape[0]:
            self.total += float(Probe(self.ubm, X, self.top_c).llrs(self.models)[0]) * X.shape[0]
            self.frames += X.shape[0]
        return self.evidence()

    def evidence(self) -> Evidence:
        seconds = self.frames * self.config.hop_length_ms / 1000.0
        if self.frames == 0:
            return Evidence(0.0, None, None, None, "undecided")
        score = self.total / self.frames
        cal = self.calibration
        llr = None
        if cal is not None:
            from .calibration import ENROL_SPEECH, TEST_SPEECH
            q = {TEST_SPEECH: seconds, ENROL_SPEECH: self.enrol_seconds}
            llr = float(cal.llr(score, {k: q[k] for k in cal.inputs}))
        lam = (self.test.evidence(cal, self.total, self.frames, self.config.hop_length_ms / 1000.0,
                                  self.enrol_seconds) if cal is not None else None)
        return Evidence(round(seconds, 3), score, llr, lam, self.test.decide(lam, seconds))
