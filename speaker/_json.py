"""The JSON face of the library's rows, shared by ``speaker serve`` and the command line's ``--json``.

One field name per concept, everywhere JSON leaves the package: a speaker is ``speaker``, its
recording count ``recordings``, its frame count ``frames``; times are ISO 8601 UTC strings
(``2026-01-31T12:00:00Z``), never Unix floats.
"""
from __future__ import annotations

import time

__all__ = ["iso_time", "speaker_json", "recording_json", "cohort_json"]


def iso_time(t: float) -> str:
    """A Unix time as ISO 8601 UTC to the second: ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def speaker_json(info) -> dict:
    """A :class:`speaker.store.SpeakerInfo` as JSON: ``speaker``, ``recordings``, ``frames``,
    ``speech_seconds``, ``enrolled_at``, ``updated_at`` (ISO 8601), ``kind`` (``stats`` or ``model``)."""
    return {"speaker": info.id, "recordings": info.n_recordings, "frames": info.n_frames,
            "speech_seconds": round(float(getattr(info, "speech_seconds", 0.0)), 3),
            "enrolled_at": iso_time(info.enrolled_at), "updated_at": iso_time(info.updated_at), "kind": info.kind}


def recording_json(source: str, sha256: str, frames: int, enrolled_at: float) -> dict:
    """One row of :meth:`speaker.store.SpeakerStore.recordings` as JSON."""
    return {"source": source, "sha256": sha256, "frames": frames, "enrolled_at": iso_time(enrolled_at)}


def cohort_json(info) -> dict:
    """A :class:`speaker.store.CohortInfo` as JSON: ``recording`` (its id), ``source``, ``sha256``,
    ``frames``, ``added_at`` (ISO 8601)."""
    return {"recording": info.id, "source": info.source, "sha256": info.sha256, "frames": info.n_frames,
            "added_at": iso_time(info.added_at)}
