"""The quality gates a speaker store applies: to enrolment recordings, to speakers, to tests.

The measures (:class:`speaker.quality.Quality`: net speech, clipping, SNR, noise only), the
default thresholds and the wording of every refusal are :mod:`speaker.quality`'s
(:class:`~speaker.quality.QualityGates`); :class:`Gate` bundles the three uses the store makes
of them:

* ``recording``: an enrolment recording is refused (skipped, or 422 in the service) with too
  little net speech, too many clipped samples, or no speech standing out of the noise;
* ``min_speaker_speech``: a speaker whose recordings hold less net speech in all is not
  enrolled (nothing written);
* ``test``: a test that fails it gets no decision, ``undecided`` with the reason (e.g.
  "insufficient speech: ..."), never accept.

A recording given as features (``.npy``, ``ark:offset``, an array) has no samples: only its net
speech is known (its frames times the frame shift) and only the net-speech gate applies.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from .quality import MIN_ENROL_SPEAKER_SPEECH, SNR_MAX_DB, Quality, QualityGates

__all__ = ["Gate", "DEFAULT_GATE", "NO_GATE", "speech_seconds", "code_of"]


def speech_seconds(frames: int, config) -> float:
    """Net speech in seconds of ``frames`` feature frames of a :class:`speaker.FeatureConfig`
    (with its VAD on, the features hold the speech frames only; with it off, every frame)."""
    return float(frames) * config.hop_samples / config.sample_rate


def code_of(reason: str) -> str:
    """The machine-readable code of a refusal of :class:`speaker.quality.QualityGates`
    ("insufficient speech: ..." -> ``insufficient_speech``; ``clipped``, ``noise_only``)."""
    return reason.split(":", 1)[0].strip().replace(" ", "_")


def _speech_only(gates: QualityGates, seconds: float) -> list[str]:
    """``gates``' net-speech refusal of a recording known only by its net speech (features)."""
    if gates.min_speech_seconds is None:
        return []
    known = Quality(seconds=seconds, speech_seconds=seconds, snr_db=SNR_MAX_DB, clipped_fraction=0.0,
                    clipped_runs=0, peak_dbfs=0.0)          # only the speech gate below reads it
    return QualityGates(min_speech_seconds=gates.min_speech_seconds, max_clipped_fraction=None,
                        noise_only_snr_db=None).problems(known)


@dataclass(frozen=True)
class Gate:
    """The store's quality gates (thresholds: :mod:`speaker.quality`'s defaults).

    recording : :class:`speaker.quality.QualityGates` of one enrolment recording
    min_speaker_speech : seconds of net speech a speaker needs in all (None: no minimum)
    test : :class:`speaker.quality.QualityGates` of a test (verification, identification)
    """

    recording: QualityGates = field(default_factory=QualityGates)
    min_speaker_speech: float | None = MIN_ENROL_SPEAKER_SPEECH
    test: QualityGates = field(default_factory=QualityGates.for_test)

    def __post_init__(self) -> None:
        if not isinstance(self.recording, QualityGates) or not isinstance(self.test, QualityGates):
            raise TypeError("recording and test must be speaker.quality.QualityGates")
        v = self.min_speaker_speech
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < math.inf):
            raise ValueError(f"min_speaker_speech must be a number >= 0 or None, got {v!r}")

    def with_min_speech(self, recording: float | None = None, speaker: float | None = None,
                        test: float | None = None) -> "Gate":
        """This gate with other net-speech minimums (None keeps one)."""
        g = self
        if recording is not None:
            g = replace(g, recording=replace(g.recording, min_speech_seconds=recording))
        if speaker is not None:
            g = replace(g, min_speaker_speech=speaker)
        if test is not None:
            g = replace(g, test=replace(g.test, min_speech_seconds=test))
        return g

    @staticmethod
    def _problem(gates: QualityGates, q: Quality | None, seconds: float) -> str | None:
        found = gates.problems(q) if q is not None else _speech_only(gates, seconds)
        return found[0] if found else None

    def recording_problem(self, q: Quality | None, seconds: float) -> tuple[str, str] | None:
        """``(code, reason)`` when an enrolment recording is refused, else None; ``q`` its
        measures (None for features: then ``seconds`` of net speech is all that is known)."""
        why = self._problem(self.recording, q, seconds)
        return None if why is None else (code_of(why), why)

    def speaker_problem(self, seconds: float, n_recordings: int) -> str | None:
        """Why a speaker with ``seconds`` of net speech in ``n_recordings`` is not enrolled."""
        if self.min_speaker_speech is not None and seconds < self.min_speaker_speech:
            return (f"insufficient speech: {seconds:.2f} s of net speech in {n_recordings} usable recording(s), a "
                    f"speaker needs at least {self.min_speaker_speech:g} s (add recordings)")
        return None

    def test_problem(self, q: Quality | None, seconds: float) -> str | None:
        """Why a test gets no decision (None when it gets one)."""
        return self._problem(self.test, q, seconds)


#: The defaults (speaker.quality's thresholds; docs/quality.md).
DEFAULT_GATE = Gate()
#: No gate at all (tests of the arithmetic on synthetic features; not for real use).
NO_GATE = Gate(QualityGates(None, None, None), None, QualityGates(None, None, None))
