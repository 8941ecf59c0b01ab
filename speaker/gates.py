"""Quality gates: which recordings a store enrols and which tests it decides on.

A recording's quality measures (:class:`Quality`) are kept with it in the store: its **net
speech** in seconds (the frames the VAD kept, times the frame shift), the fraction of its samples
that are **clipped** and an **SNR** estimate in dB (the last two from the audio; None for
feature inputs, which have no samples).  :class:`Gate` holds the thresholds and says, in one
line, why a recording or a speaker is refused:

* per recording (enrolment): at least ``min_recording_speech`` seconds of net speech, at most
  ``max_clipping`` of its samples clipped, an SNR of at least ``min_snr_db`` (below it the
  recording is taken for noise);
* per speaker (enrolment): at least ``min_speaker_speech`` seconds of net speech over all its
  recordings;
* per test (verification, identification): at least ``min_test_speech`` seconds of net speech,
  else the decision is ``undecided`` with the reason "insufficient speech", never accept.

The defaults and the measurements behind them are in docs/store.md ("Quality gates").  The
measures themselves (VAD, clipping, SNR) are :mod:`speaker.quality`'s; this module only decides.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import NamedTuple

__all__ = ["Quality", "Gate", "DEFAULT_GATE", "NO_GATE", "speech_seconds", "measure_audio_quality"]


class Quality(NamedTuple):
    """Quality measures of one recording.

    speech_seconds : net speech after the VAD, seconds (frames kept x frame shift)
    clipping : fraction of the samples at (or within a hair of) full scale, in [0, 1]; None
        when the recording came as features (no samples)
    snr_db : signal-to-noise ratio estimate, dB (speech frames' energy over the non-speech
        frames'); None when unknown
    """

    speech_seconds: float
    clipping: float | None = None
    snr_db: float | None = None


def speech_seconds(frames: int, config) -> float:
    """Net speech in seconds of ``frames`` feature frames of a :class:`speaker.FeatureConfig`
    (with its VAD on, the features hold the speech frames only; with it off, every frame)."""
    return float(frames) * config.hop_samples / config.sample_rate


def measure_audio_quality(path: str, config, seconds: float) -> Quality:
    """The quality measures of an audio file whose features have ``seconds`` of net speech:
    clipping and SNR from its samples (:mod:`speaker.quality`)."""
    return Quality(seconds)


def _check(name: str, value: float, lo: float, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Gate:
    """The thresholds of the quality gates (seconds of net speech, a clipped fraction, dB).

    ``min_recording_speech`` / ``min_speaker_speech``: enrolment, per recording / per speaker
    (all its recordings); ``max_clipping``: largest clipped fraction of a recording's samples;
    ``min_snr_db``: lowest SNR estimate of a recording (below: noise only);
    ``min_test_speech``: the shortest test that gets a decision.
    """

    min_recording_speech: float = 1.5
    min_speaker_speech: float = 8.0
    max_clipping: float = 0.01
    min_snr_db: float = 5.0
    min_test_speech: float = 1.0

    def __post_init__(self) -> None:
        for name in ("min_recording_speech", "min_speaker_speech", "min_test_speech"):
            _check(name, getattr(self, name), 0.0, 3600.0)
        _check("max_clipping", self.max_clipping, 0.0, 1.0)
        _check("min_snr_db", self.min_snr_db, -math.inf, 200.0)

    def with_min_speech(self, recording: float | None = None, speaker: float | None = None) -> "Gate":
        """This gate with other enrolment minimums (None keeps one)."""
        changes = {k: v for k, v in (("min_recording_speech", recording), ("min_speaker_speech", speaker))
                   if v is not None}
        return replace(self, **changes)

    # ------------------------------------------------------------------ the decisions
    def recording_problem(self, q: Quality) -> tuple[str, str] | None:
        """``(code, reason)`` when a recording may not be enrolled, else None.

        Codes: ``insufficient_speech``, ``clipped``, ``noise_only``."""
        if q.speech_seconds < self.min_recording_speech:
            return ("insufficient_speech",
                    f"{q.speech_seconds:.2f} s of net speech after VAD, below the {self.min_recording_speech:g} s "
                    "a recording needs (--min-speech)")
        if q.clipping is not None and q.clipping > self.max_clipping:
            return ("clipped", f"{100 * q.clipping:.2f} % of its samples are clipped (at most "
                               f"{100 * self.max_clipping:g} %): record again with less input gain")
        if q.snr_db is not None and q.snr_db < self.min_snr_db:
            return ("noise_only", f"SNR estimate {q.snr_db:.1f} dB, below {self.min_snr_db:g} dB: noise, not "
                                  "speech (or speech drowned in noise)")
        return None

    def speaker_problem(self, seconds: float, n_recordings: int) -> str | None:
        """Why a speaker with ``seconds`` of net speech over ``n_recordings`` may not be
        enrolled (None when it may)."""
        if seconds < self.min_speaker_speech:
            return (f"{seconds:.2f} s of net speech in {n_recordings} usable recording(s), below the "
                    f"{self.min_speaker_speech:g} s a speaker needs (--min-speaker-speech): add recordings")
        return None

    def test_problem(self, seconds: float) -> str | None:
        """Why a test recording with ``seconds`` of net speech gets no decision (None if it does)."""
        if seconds < self.min_test_speech:
            return (f"insufficient speech: {seconds:.2f} s of net speech after VAD, a decision needs "
                    f"{self.min_test_speech:g} s")
        return None


#: The defaults (docs/store.md, "Quality gates").
DEFAULT_GATE = Gate()
#: No gate at all (tests of the arithmetic on synthetic features; not for real use).
NO_GATE = Gate(0.0, 0.0, 1.0, -math.inf, 0.0)
