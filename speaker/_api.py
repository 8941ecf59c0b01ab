"""The HTTP API's documented shapes: response models (OpenAPI component schemas) and the error
responses of each status code with their own examples.

Field names are the package's JSON names (:mod:`speaker._json`): ``speaker``, ``recordings``,
``frames``, ISO 8601 UTC times.  Only :mod:`speaker.serve` imports this module (pydantic comes
with FastAPI, the ``serve`` extra).
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["ErrorBody", "Health", "Speaker", "SpeakerDetail", "SpeakerList", "Enrollment", "Removed",
           "Verification", "Candidate", "Identification", "CalibrationInfo", "CalibrationList", "StreamMessage",
           "errors"]

_TIME = dict(json_schema_extra={"format": "date-time"}, examples=["2026-01-31T12:00:00Z"])
_ID = dict(description="speaker id", examples=["alice"])
Decision = Literal["accept", "reject", "undecided"]


class ErrorBody(BaseModel):
    """Every error: a machine-readable code and one line for people."""

    error: str = Field(description="machine-readable code, see docs/serve.md", examples=["bad_audio"])
    detail: str = Field(description="one line saying what was wrong", examples=["contains no samples"])


class UbmInfo(BaseModel):
    components: int = Field(description="Gaussian components K", examples=[512])
    dims: int = Field(description="feature dimensions D", examples=[60])
    fingerprint: str = Field(description="SHA-256 fingerprint of the UBM's parameters")


class Decisions(BaseModel):
    possible: bool = Field(description="whether the service can accept or reject (a calibration or a threshold)")
    rule: str = Field(description="the decision rule, in words")


class Health(BaseModel):
    """The service is up: the UBM is loaded and the store can be read."""

    status: Literal["ok"]
    speakers: int = Field(description="speakers in the store")
    calibrated: bool = Field(description="whether a calibration is in force")
    decisions: Decisions
    ubm: UbmInfo
    warning: str | None = Field(None, description="present when every decision would be 'undecided'")


class Recording(BaseModel):
    source: str = Field(description="where the recording came from (`upload:<hash>` for uploads)",
                        examples=["upload:5f2b0c4c2d1e9a77"])
    sha256: str = Field(description="SHA-256 of the recording's bytes")
    frames: int = Field(description="speech frames kept (10 ms each)")
    enrolled_at: str = Field(description="when it was enrolled (ISO 8601, UTC)", **_TIME)


class Speaker(BaseModel):
    speaker: str = Field(**_ID)
    recordings: int = Field(description="recordings enrolled")
    frames: int = Field(description="speech frames enrolled (10 ms each)")
    speech_seconds: float = Field(description="net speech of its recordings, seconds")
    enrolled_at: str = Field(description="first enrolment (ISO 8601, UTC)", **_TIME)
    updated_at: str = Field(description="last change (ISO 8601, UTC)", **_TIME)
    kind: Literal["stats", "model"] = Field(description="'stats': enrolled from recordings; 'model': imported "
                                                        "as a model (cannot be extended)")


class SpeakerDetail(Speaker):
    recording_list: list[Recording]


class SpeakerList(BaseModel):
    speakers: list[Speaker]


class Enrollment(BaseModel):
    """What one enrolment did."""

    speaker: str = Field(**_ID)
    recordings: int = Field(description="the speaker's recordings now")
    frames: int = Field(description="the speaker's speech frames now")
    speech_seconds: float = Field(description="the speaker's net speech now, seconds")
    added: bool = Field(description="whether a recording was added (false: skipped, see `skipped`)")
    added_recordings: int = Field(description="recordings this request added")
    skipped: str | None = Field(description="why a recording was not added (e.g. the same content again), else null")


class Removed(BaseModel):
    speaker: str = Field(**_ID)
    removed: Literal[True]


class Verification(BaseModel):
    """Is the recording the claimed speaker?"""

    speaker: str = Field(**_ID)
    score: float = Field(description="raw score: average log-likelihood ratio per frame (nats)")
    llr: float | None = Field(description="calibrated log-likelihood ratio (natural log) of the whole recording; "
                                          "null without a calibration")
    decision: Decision = Field(description="'undecided' when the service has no rule to decide with "
                                           "(see `reason`)")
    threshold: float | None = Field(description="what was compared: on `llr` when calibrated, else on `score`")
    reason: str | None = Field(None, description="the rule that decided, or why the decision is 'undecided'")
    speech_seconds: float = Field(description="speech found in the recording, seconds")


class Candidate(BaseModel):
    speaker: str = Field(**_ID)
    score: float = Field(description="raw score (nats per frame)")
    llr: float | None = Field(description="calibrated LLR, null without a calibration")
    decision: Decision
    reason: str | None = Field(None, description="the rule that decided, or why the decision is 'undecided'")


class Identification(BaseModel):
    """The best-scoring speakers, best first: ``speakers`` those accepted (empty when none is),
    ``candidates`` all of them with their decisions."""

    speakers: list[Candidate]
    candidates: list[Candidate]


class CalibrationInfo(BaseModel):
    """A calibration the store keeps."""

    id: int
    current: bool = Field(description="whether it is the one in force")
    created_at: str | None = Field(description="when it was fitted (ISO 8601, UTC)", **_TIME)
    fitted_on: str = Field(description="what it was fitted on, in words")
    calibration: dict = Field(description="the calibration as its JSON file holds it: `a`, `b`, `prior`, and for a "
                                          "duration-aware or fused one its systems, measures and terms")
    report: dict = Field(description="metrics and operating points measured when it was fitted")


class CalibrationList(BaseModel):
    calibrations: list[CalibrationInfo]


class StreamMessage(BaseModel):
    """A message of ``/v1/speakers/{id}/verify/stream`` (JSON text frames, server to client)."""

    speech_seconds: float = Field(description="speech heard so far, seconds")
    score: float | None = Field(description="raw score of the speech so far (nats per frame); null before any")
    llr: float | None = Field(description="calibrated LLR of the speech so far; null without a calibration")
    evidence: float | None = Field(description="the sequential test's statistic (calibrated LLR accumulated per "
                                               "frame); null without a calibration")
    decision: Decision
    accept_at: float | None = Field(description="the test accepts when `evidence` reaches this (Wald's "
                                                "ln((1 - miss) / far)); null without a calibration")
    reject_at: float | None = Field(description="the test rejects when `evidence` falls to this (Wald's "
                                                "ln(miss / (1 - far))); null without a calibration")
    final: bool = Field(description="the last message: the decision stands and the server closes the socket")
    early: bool = Field(False, description="(final) decided by the sequential test before the end of the audio")
    reason: str | None = Field(None, description="why the decision is 'undecided', or why the stream stopped")


_ERROR_EXAMPLES = {
    400: ("bad_request", "bad speaker id 'a b': 1 to 128 characters of A-Z a-z 0-9 _ . @ + = -, "
                         "not starting with . @ + = -"),
    401: ("unauthorized", "missing API key (send 'Authorization: Bearer KEY' or 'X-API-Key: KEY')"),
    404: ("unknown_speaker", "no speaker 'alice' in the store"),
    408: ("timeout", "the request body did not arrive within 60 s"),
    409: ("conflict", "speaker 'alice' was imported as a model without statistics: it cannot be extended"),
    413: ("too_large", "request body larger than 20971520 bytes"),
    414: ("uri_too_long", "the URL is longer than 4096 bytes"),
    422: ("insufficient_speech", "0.8 s of net speech; an enrolment recording needs at least 1.5 s"),
    500: ("internal", "RuntimeError: an unexpected failure (a bug)"),
    503: ("store_unavailable", "the store is locked beyond its timeout"),
}
_ERROR_WHEN = {
    400: "malformed speaker id, query or multipart body",
    401: "missing or wrong API key",
    404: "no such speaker",
    408: "the body was not sent in time",
    409: "the store refuses the change",
    413: "the body passed the byte cap (`too_large`) or the audio the duration cap (`too_long`)",
    414: "the URL is too long",
    422: "the audio was refused: `error` is `bad_audio` (undecodable, silent, too short), or a quality "
         "gate (`insufficient_speech`, `clipped`, `noise_only`; `insufficient_speaker_speech` for the speaker's "
         "recordings in all), `not_enough_enrolments` (self-calibration) "
         "or `bad_decision` (a decision rule that cannot be made); `detail` says why",
    500: "a bug: one line, never a traceback; the connection is closed after it",
    503: "the store cannot be read or written",
}


def errors(*codes: int) -> dict:
    """FastAPI ``responses=`` for these status codes: the :class:`ErrorBody` schema, what the code
    means and an example of its own."""
    out = {}
    for c in codes:
        code, detail = _ERROR_EXAMPLES[c]
        out[c] = {"model": ErrorBody, "description": _ERROR_WHEN[c],
                  "content": {"application/json": {"example": {"error": code, "detail": detail}}}}
    return out
