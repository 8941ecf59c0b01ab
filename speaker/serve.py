"""``speaker serve``: speaker verification over HTTP, an ASGI app (FastAPI) on a :class:`SpeakerStore`.

:func:`create_app` builds the app around an open store; ``speaker serve`` (:mod:`speaker.cli.serve`)
runs it with uvicorn.  The decisions (error mapping, caps, authentication, threads, draining,
CORS, the page, streaming) are written down in ``docs/serve.md``.

API (JSON responses; audio is the raw request body or the multipart part named ``file``)::

    GET    /                                              the page (enrol and verify from a microphone)
    POST   /v1/speakers/{id}/enrollments[?replace=true]   add one recording (speaker created on first use)
    GET    /v1/speakers                                   every speaker
    GET    /v1/speakers/{id}                              one speaker and its recordings
    DELETE /v1/speakers/{id}                              remove a speaker
    POST   /v1/speakers/{id}/verify                       {"speaker", "score", "llr", "decision", "reason", "threshold", ...}
    WS     /v1/speakers/{id}/verify/stream?sample_rate=R  streaming verification with an early decision
    POST   /v1/identify[?top=N]                           the N best candidates with their decisions
    POST   /v1/calibration                                calibrate the store on its own enrolments
    GET    /v1/calibrations                               the calibrations the store keeps (current first)
    POST   /v1/calibrations/{id}/use                      make an earlier calibration current again
    GET    /healthz                                       liveness, and whether decisions are possible (no API key needed)
    GET    /docs, /openapi.json                           OpenAPI (Swagger UI served from the package)

Decisions are ``accept``, ``reject`` or ``undecided`` with a ``reason``: without a calibration
and a threshold every decision is ``undecided`` (never accept), and so is a test with too little
net speech (``insufficient speech``).  An enrolment the quality gates refuse is a 422 whose
``error`` says why: ``insufficient_speech`` (a recording), ``insufficient_speaker_speech`` (the
speaker's recordings in all: send more in the same request),
``clipped``, ``noise_only``.

Errors are ``{"error": CODE, "detail": TEXT}`` (:mod:`speaker._api` documents each code).
Requests first pass :class:`speaker._gate.RequestGate` (request ids, API keys, the access log, bugs ->
500 with ``Connection: close``); the connection-level limits are :mod:`speaker._server`'s.

Threads: uploads are decoded and their features (and, for an enrolment, UBM statistics) computed
in a thread pool of ``threads`` workers, never on the event loop, and so is multipart parsing;
the compiled core releases the GIL.  Calls into the store are serialised with one lock unless
the store class declares ``thread_safe = True``.  Model caching and its invalidation (also after
another process or replica changed the store) are the store's: every call reads the speaker's
generation.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request, Security, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.staticfiles import StaticFiles

from . import _api
from . import limits as _limits
from ._gate import RequestGate
from ._json import iso_time, recording_json, speaker_json
from ._batch import recording_stats
from .audio import AudioError, AudioTooLong
from .calibration import Calibration
from .gates import Gate
from .quality import Quality
from .features import extract_features, extract_features_and_quality
from .store import EnrolmentItem, EnrolmentRefused, SpeakerStore, StoreError, StoreInvalid, StoreUnavailable
from .stream import StreamConfig, StreamingVerifier

__all__ = ["ServiceConfig", "ApiError", "create_app", "SPEAKER_ID"]

#: Speaker ids the service accepts in a URL: the one rule of the package (:mod:`speaker.limits`).
SPEAKER_ID = _limits.SPEAKER_ID
#: Most parts a multipart/form-data upload may have (the audio is one of them).
MAX_PARTS = 16


@dataclass(frozen=True)
class ServiceConfig:
    """What the service accepts and how it decides.

    max_bytes : largest request body in bytes (checked while the body is read)
    max_seconds : longest upload in seconds of audio (checked from the header, before decoding)
    body_timeout : seconds a request body may take to arrive (a 408 after it)
    threads : worker threads for decoding, features and scoring
    api_keys : name -> key; every endpoint but the page, the documents and ``/healthz`` then
        requires one of them (empty: no authentication)
    cors_origins : origins a browser may call the API from (CORS; none by default)
    access_log : one log line per request (request id, key name, method, path, status, time)
    threshold, p_target, c_miss, c_fa, calibration, target_far : the decision rule of
        :meth:`speaker.store.SpeakerStore.verify` (``calibration`` None: the store's, read at
        every request, so ``speaker calibrate --store`` takes effect without a restart)
    gate : the quality gates of enrolments and tests (:class:`speaker.gates.Gate`; None: the
        store's)
    max_top : largest ``top`` of ``/v1/identify``
    backend : the back-end of verify / identify when a request names none (``gmm``, ``plda``,
        ``cosine``, ``fusion``: :data:`speaker.store_backend.BACKENDS`; a request's ``?backend=``
        chooses another)
    stream : the streaming verification's limits and sequential test (:class:`speaker.stream.StreamConfig`)
    """

    max_bytes: int = 20 * 1024 * 1024
    max_seconds: float = 300.0
    body_timeout: float = 60.0
    threads: int = 4
    api_keys: dict[str, str] = field(default_factory=dict)
    cors_origins: tuple[str, ...] = ()
    access_log: bool = True
    threshold: float | None = None
    p_target: float | None = None
    c_miss: float = 1.0
    c_fa: float = 1.0
    calibration: Calibration | None = None
    target_far: float | None = None
    gate: Gate | None = None
    max_top: int = 100
    backend: str = "gmm"
    stream: StreamConfig = field(default_factory=StreamConfig)


class ApiError(Exception):
    """An error response: HTTP ``status``, machine-readable ``error`` code and a ``detail`` line."""

    def __init__(self, status: int, error: str, detail: str, close: bool = False) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail, self.close = status, error, detail, close


def _error(status: int, error: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


def _multipart_files(body: bytes, content_type: str) -> list[bytes]:
    """The contents of the parts named ``file`` of a ``multipart/form-data`` body, in order,
    parsed in memory (python-multipart's push parser; the client's file names are ignored), of at
    most :data:`MAX_PARTS` parts.  Run in a worker thread: a body of many tiny parts costs seconds
    of Python."""
    from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "multipart/form-data body without a boundary")
    parts: list[tuple[dict, bytes]] = []
    cur: dict[str, Any] = {}

    def begin():
        if len(parts) >= MAX_PARTS:
            raise ValueError(f"more than {MAX_PARTS} parts")
        cur.update(headers={}, field=b"", value=b"", data=bytearray())

    def header_end():
        cur["headers"][cur["field"].lower()] = cur["value"]
        cur["field"], cur["value"] = b"", b""

    callbacks = {
        "on_part_begin": begin,
        "on_header_field": lambda d, s, e: cur.__setitem__("field", cur["field"] + d[s:e]),
        "on_header_value": lambda d, s, e: cur.__setitem__("value", cur["value"] + d[s:e]),
        "on_header_end": header_end,
        "on_part_data": lambda d, s, e: cur["data"].extend(d[s:e]),
        "on_part_end": lambda: parts.append((cur["headers"], bytes(cur["data"]))),
    }
    try:
        parser = MultipartParser(boundary, callbacks)
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise ApiError(400, "bad_request", f"malformed multipart body: {exc}") from None
    files = [data for headers, data in parts
             if parse_options_header(headers.get(b"content-disposition", b""))[1].get(b"name") == b"file"]
    if not files:
        raise ApiError(400, "bad_request", "multipart body has no part named 'file'")
    return files


@contextlib.contextmanager
def _audio_errors():
    """The library's refusals of an upload as answers: too long -> 413, unusable -> 422."""
    try:
        yield
    except AudioTooLong as exc:
        raise ApiError(413, "too_long", f"audio {exc.reason}") from None
    except AudioError as exc:
        raise ApiError(422, "bad_audio", exc.reason) from None
    except ValueError as exc:
        raise ApiError(422, "bad_audio", str(exc).replace("<signal>: ", "").replace("<array>: ", "")) from None


class _Service:
    """The store, its lock and the worker threads behind the endpoints."""

    def __init__(self, store: SpeakerStore, cfg: ServiceConfig) -> None:
        self.store, self.cfg = store, cfg
        self.lock = contextlib.nullcontext() if getattr(type(store), "thread_safe", False) else threading.Lock()
        self.pool = ThreadPoolExecutor(max(1, int(cfg.threads)), thread_name_prefix="speaker-serve")

    async def run(self, fn, *args):
        """``fn(*args)`` in a worker thread; store errors become :class:`ApiError`."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        except KeyError as exc:
            raise ApiError(404, "unknown_speaker", f"no speaker {exc.args[0]!r} in the store") from None
        except StoreUnavailable as exc:              # read-only, disk full, locked, unreachable
            raise ApiError(503, "store_unavailable", str(exc)) from None
        except StoreInvalid as exc:                  # the store's contents are not valid: the server's fault
            raise ApiError(500, "store_invalid", str(exc)) from None
        except StoreError as exc:                    # an operation the store refuses
            raise ApiError(409, "conflict", str(exc)) from None

    @staticmethod
    def speaker_id(value: str) -> str:
        why = _limits.speaker_id_problem(value)
        if why is not None:
            raise ApiError(400, "bad_request", why)
        return value

    async def upload(self, request: Request, many: bool = False) -> bytes | list[bytes]:
        """The uploaded audio: the raw body, or the multipart part ``file`` (with ``many``: the
        list of every part named ``file``, or of the raw body), at most ``max_bytes`` in all
        (a larger declared Content-Length is refused before reading; the count is checked after
        every chunk of the stream, so no more than ``max_bytes`` plus one chunk is ever held),
        arrived within ``body_timeout`` seconds (else 408, and the connection is closed).  A
        multipart body is parsed in a worker thread."""
        cap = self.cfg.max_bytes
        too_large = ApiError(413, "too_large", f"request body larger than {cap} bytes", close=True)
        declared = request.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > cap:
            raise too_large
        body = bytearray()

        async def read() -> None:
            async for chunk in request.stream():
                body.extend(chunk)
                if len(body) > cap:
                    raise too_large
        try:      # asyncio.wait_for, not asyncio.timeout (Python >= 3.11): the service runs on 3.10 too
            await asyncio.wait_for(read(), self.cfg.body_timeout)
        except asyncio.TimeoutError:
            raise ApiError(408, "timeout", f"the request body did not arrive within {self.cfg.body_timeout:g} s",
                           close=True) from None
        ctype = request.headers.get("content-type", "")
        if ctype.lower().startswith("multipart/form-data"):
            files = await asyncio.get_running_loop().run_in_executor(self.pool, _multipart_files, bytes(body), ctype)
        else:
            files = [bytes(body)]
        return files if many else files[0]

    # ---------------------------------------------------------------- run in worker threads
    def features(self, data: bytes) -> tuple[np.ndarray, Quality]:
        """(frames, D) features of an upload, decoded from memory and checked against the UBM
        (the service's face: the store's calls below get ``check_input=False``), and the
        recording's quality measures from the same decode (resampled while decoded, the clipping
        measured on the native samples block by block: memory follows the mono signal at the
        store's rate, whatever the upload declares); ApiError 413 / 422."""
        with _audio_errors():
            X, q = extract_features_and_quality(data, config=self.store.config, max_seconds=self.cfg.max_seconds)
            return self.store.features(X), q

    def gate(self) -> Gate:
        return self.cfg.gate if self.cfg.gate is not None else self.store.gate

    def enroll(self, speaker_id: str, files: list[bytes], replace: bool) -> dict:
        """Enrol the uploaded recordings (one request: one or several parts named ``file``);
        422 naming the part and the reason when the quality gates refuse one, or the speaker."""
        gate, items = self.gate(), []
        for n, data in enumerate(files):
            X, q = self.features(data)
            problem = gate.recording_problem(q, q.speech_seconds)
            if problem is not None:
                raise ApiError(422, problem[0], (f"part {n + 1} of {len(files)}: " if len(files) > 1 else "") + problem[1])
            digest = hashlib.sha256(data).hexdigest()     # of the file's bytes, as the store hashes files
            items.append(EnrolmentItem(f"upload:{digest[:16]}", digest,
                                       recording_stats(self.store.ubm, X, check_input=False), X, q))
        try:
            with self.lock:
                r = self.store.enroll_statistics(speaker_id, items, replace=replace, gate=gate)
        except EnrolmentRefused as exc:     # the speaker's recordings in all: a code of its own for clients
            code = "insufficient_speaker_speech" if exc.code == "insufficient_speech" else exc.code
            raise ApiError(422, code, f"{exc} (send several recordings in one request: multipart parts named "
                                      "'file')") from None
        return {"speaker": speaker_id, "recordings": r.n_recordings, "frames": r.n_frames,
                "speech_seconds": round(r.speech_seconds, 3), "added": bool(r.added), "added_recordings": len(r.added),
                "skipped": next(iter(r.skipped.values()), None)}

    def seconds(self, X: np.ndarray) -> float:
        """Speech in a feature array, in seconds (frames times the hop)."""
        return round(X.shape[0] * self.store.config.hop_length_ms / 1000.0, 3)

    def _decide(self, backend: str | None = None) -> dict:
        c = self.cfg
        return dict(threshold=c.threshold, p_target=c.p_target, c_miss=c.c_miss, c_fa=c.c_fa,
                    calibration=c.calibration, target_far=c.target_far, gate=self.gate(),
                    backend=c.backend if backend is None else backend)

    def _ruled(self, fn, *args, **kwargs):
        """A store call that makes a decision; a rule that cannot be made is a 422."""
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            if isinstance(exc, (StoreError, KeyError)):
                raise
            raise ApiError(422, "bad_decision", str(exc)) from None

    def verify(self, speaker_id: str, data: bytes, backend: str | None = None) -> dict:
        with self.lock:                           # an unknown speaker is a 404 before any decoding
            if speaker_id not in self.store:
                raise KeyError(speaker_id)
        return self.verify_features(speaker_id, *self.features(data), backend=backend)

    def verify_features(self, speaker_id: str, X: np.ndarray, q=None, backend: str | None = None) -> dict:
        with self.lock:                           # one read transaction: KeyError for an unknown speaker
            r = self._ruled(self.store.verify, speaker_id, X, check_input=False, quality=q, **self._decide(backend))
        return {"speaker": speaker_id, "score": r.score, "llr": r.llr, "decision": r.decision, "reason": r.reason,
                "threshold": r.threshold, "speech_seconds": self.seconds(X)}

    def identify(self, data: bytes, top: int, backend: str | None = None) -> dict:
        X, q = self.features(data)
        with self.lock:                           # one read transaction
            ranked = self._ruled(self.store.candidates, X, top, check_input=False, quality=q, **self._decide(backend))
        cands = [{"speaker": m.id, "score": m.score, "llr": m.llr, "decision": m.decision, "reason": m.reason}
                 for m in ranked]
        return {"speakers": [c for c in cands if c["decision"] == "accept"], "candidates": cands}

    def calibrate(self, body: dict) -> dict:
        from .selfcal import NotEnoughEnrolments, calibrate_from_enrollments
        kw = {}
        for key in ("prior", "target_far"):
            v = body.get(key)
            if v is not None:
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < 1:
                    raise ApiError(400, "bad_request", f"{key} must be a number in (0, 1)")
                kw[key] = float(v)
        if "duration_aware" in body:
            if not isinstance(body["duration_aware"], bool):
                raise ApiError(400, "bad_request", "duration_aware must be true or false")
            kw["duration_aware"] = body["duration_aware"]
        if "backend" in body:
            if body["backend"] not in ("gmm", "plda", "cosine", "fusion"):
                raise ApiError(400, "bad_request", "backend must be gmm, plda, cosine or fusion")
            kw["backend"] = body["backend"]
        extra = set(body) - {"prior", "target_far", "duration_aware", "backend"}
        if extra:
            raise ApiError(400, "bad_request", f"unknown keys {sorted(extra)} (prior, target_far, duration_aware, "
                                               "backend)")
        try:
            with self.lock:
                res = calibrate_from_enrollments(self.store, **kw)
        except NotEnoughEnrolments as exc:
            raise ApiError(422, "not_enough_enrolments", exc.missing) from None
        except ValueError as exc:
            if isinstance(exc, StoreError):
                raise
            raise ApiError(422, "not_enough_enrolments", f"cannot calibrate: {exc}") from None
        return self._calibration_json(res.id, res.calibration, res.fitted_on, res.report, True)

    @staticmethod
    def _calibration_json(cal_id, cal, fitted_on, report, current, created_at=None) -> dict:
        return {"id": cal_id, "current": current, "created_at": None if created_at is None else iso_time(created_at),
                "fitted_on": fitted_on, "calibration": json.loads(cal.to_json()), "report": report}

    def calibrations(self) -> dict:
        with self.lock:
            rows = self.store.calibrations()
        return {"calibrations": [self._calibration_json(r.id, r.calibration, r.fitted_on, r.report, r.current,
                                                        r.created_at) for r in rows]}

    def use_calibration(self, cal_id: int) -> dict:
        try:
            with self.lock:
                r = self.store.use_calibration(cal_id)
        except KeyError:
            raise ApiError(404, "not_found", f"no calibration {cal_id}") from None
        return self._calibration_json(r.id, r.calibration, r.fitted_on, r.report, True, r.created_at)

    def speakers(self, speaker_id: str | None = None) -> list[dict]:
        with self.lock, self.store.snapshot():    # one read transaction
            rows = self.store.speakers(speaker_id)
            recs = self.store.recordings(speaker_id) if speaker_id is not None else None
        out = [speaker_json(s) for s in rows]
        if speaker_id is not None:
            if not out:
                raise KeyError(speaker_id)
            out[0]["recording_list"] = [recording_json(*r) for r in recs]
        return out

    def remove(self, speaker_id: str) -> dict:
        with self.lock:
            self.store.remove(speaker_id)
        return {"speaker": speaker_id, "removed": True}

    def stream_session(self, speaker_id: str, sample_rate: int) -> StreamingVerifier:
        """A claimed speaker's streaming verifier: the model and calibration read once, now."""
        with self.lock, self.store.snapshot():
            model = self.store.model(speaker_id)             # KeyError for an unknown speaker
            cal = self.cfg.calibration if self.cfg.calibration is not None else self.store.calibration
            enrolled = self.store.speakers(speaker_id)[0].speech_seconds
        if self.cfg.threshold is not None:
            cal = None                                       # a raw threshold rules: no early decision
        test = self.cfg.stream.test                          # no decision on less speech than the gate's
        test = dataclasses.replace(test, min_speech=max(test.min_speech, self.gate().test.min_speech_seconds or 0.0))
        return StreamingVerifier(self.store.ubm, model, self.store.config, sample_rate, cal, test,
                                 top_c=self.store.top_c, enrol_seconds=enrolled)

    def verify_signal(self, speaker_id: str, pcm: bytes, rate: int) -> dict:
        """:meth:`verify` of a stream's whole audio (16-bit little-endian mono PCM at ``rate``)."""
        with _audio_errors():
            y = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
            X, q = extract_features_and_quality(y, sample_rate=rate, config=self.store.config)
            X = self.store.features(X)
        return self.verify_features(speaker_id, X, q)

    def warm_up(self) -> None:
        """Features and statistics of one second of noise: the first request then does not pay
        for the JIT compilation librosa triggers (about a second)."""
        rate = self.store.config.sample_rate
        noise = 0.1 * np.random.default_rng(0).standard_normal(rate).astype(np.float32)
        recording_stats(self.store.ubm, extract_features(noise, sample_rate=rate, config=self.store.config))

    def health(self) -> dict:
        with self.lock:
            n = len(self.store)
            try:
                rule = self.store.decision(**self._decide())
                decisions = {"possible": rule.threshold is not None, "rule": rule.rule}
            except ValueError as exc:
                decisions = {"possible": False, "rule": str(exc)}
            cal = self.store.current_calibration(self.cfg.backend) if self.cfg.calibration is None else None
        st = self.store
        out = {"status": "ok", "speakers": n, "calibrated": self.cfg.calibration is not None or cal is not None,
               "decisions": decisions, "ubm": {"components": st.K, "dims": st.D, "fingerprint": st.fingerprint},
               "backend": self.cfg.backend, "backends": list(st.backends())}
        if not decisions["possible"]:
            out["warning"] = ("no decisions: every verification and identification answers 'undecided' until the "
                              "store is calibrated (POST /v1/calibration) or the service is given a threshold")
        return out


_UPLOAD = {"requestBody": {"required": True, "description": "the recording: the raw file as the body, or a "
                                                            "multipart/form-data part named 'file'",
                           "content": {"audio/*": {"schema": {"type": "string", "format": "binary"}},
                                       "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                                       "multipart/form-data": {"schema": {
                                           "type": "object", "required": ["file"],
                                           "properties": {"file": {"type": "string", "format": "binary"}}}}}}}
#: The page and its files (HTML, CSS, JavaScript; no build step, nothing from another host).
WEB = resources.files("speaker") / "web"


def _swagger_ui():
    """Where Swagger UI's files are (the ``swagger-ui-bundle-v2`` package ships them), or None."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    return swagger_ui_path


#: ``?backend=`` of verify / identify (default: the service's ``--backend``).
_BACKEND_QUERY = Query(None, pattern="^(gmm|plda|cosine|fusion)$",
                       description="gmm, plda, cosine or fusion (default: the service's --backend); plda, cosine and "
                                   "fusion need an i-vector back-end bound to the store, fusion its fusion calibration")


def create_app(store: SpeakerStore, config: ServiceConfig | None = None) -> FastAPI:
    """The ASGI app serving ``store`` (an open :class:`SpeakerStore`; the app does not close it).

    Run it with uvicorn (``speaker serve``), or in-process with any ASGI client.  The lifespan's
    start-up warms the feature extraction up (:meth:`_Service.warm_up`); its end shuts the worker
    threads down after their work.
    """
    cfg = config or ServiceConfig()
    svc = _Service(store, cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await asyncio.get_running_loop().run_in_executor(svc.pool, svc.warm_up)
        yield
        svc.pool.shutdown(wait=True)

    app = FastAPI(title="speaker", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="GMM-UBM speaker verification over a speaker store: enrol, verify, identify; "
                              "a streaming verification with an early decision over the WebSocket "
                              "`/v1/speakers/{id}/verify/stream?sample_rate=R` (binary messages of 16-bit "
                              "little-endian mono PCM, then the text `end`; JSON messages back, the "
                              "`StreamMessage` schema, the last with `final: true`). "
                              "Errors are `{\"error\": CODE, \"detail\": TEXT}`.")
    app.state.service = svc
    # The key is checked by the gate (before the body is read); these dependencies only declare
    # the schemes, so that the documents show them (Swagger UI's Authorize button).
    secured = ([Security(APIKeyHeader(name="X-API-Key", auto_error=False, scheme_name="ApiKey")),
                Security(HTTPBearer(auto_error=False, scheme_name="Bearer"))] if cfg.api_keys else [])
    app.add_middleware(RequestGate, keys=cfg.api_keys, access_log=cfg.access_log)
    if cfg.cors_origins:
        from starlette.middleware.cors import CORSMiddleware
        app.add_middleware(CORSMiddleware, allow_origins=list(cfg.cors_origins), allow_credentials=False,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["content-type", "x-api-key", "authorization", "x-request-id"],
                           expose_headers=["x-request-id"], max_age=600)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return _error(exc.status, exc.error, exc.detail, {"Connection": "close"} if exc.close else None)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request, exc: RequestValidationError):
        why = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return _error(400, "bad_request", why)

    common = (400, 401, 500, 503) if cfg.api_keys else (400, 500, 503)
    upload = (404, 408, 413, 422)

    @app.post("/v1/speakers/{speaker_id}/enrollments", openapi_extra=_UPLOAD, response_model=_api.Enrollment,
              responses=_api.errors(*common, 408, 409, 413, 422), dependencies=secured, tags=["speakers"],
              summary="add one recording to a speaker (created on first use)")
    async def enroll(speaker_id: str, request: Request,
                     replace: bool = Query(False, description="start the speaker over with this recording")):
        sid = svc.speaker_id(speaker_id)
        return await svc.run(svc.enroll, sid, await svc.upload(request, many=True), replace)

    @app.get("/v1/speakers", summary="every enrolled speaker", response_model=_api.SpeakerList,
             responses=_api.errors(*common), dependencies=secured, tags=["speakers"])
    async def speakers():
        return {"speakers": await svc.run(svc.speakers)}

    @app.get("/v1/speakers/{speaker_id}", summary="one speaker and its recordings", response_model=_api.SpeakerDetail,
             responses=_api.errors(*common, 404), dependencies=secured, tags=["speakers"])
    async def speaker(speaker_id: str):
        return (await svc.run(svc.speakers, svc.speaker_id(speaker_id)))[0]

    @app.delete("/v1/speakers/{speaker_id}", summary="remove a speaker", response_model=_api.Removed,
                responses=_api.errors(*common, 404), dependencies=secured, tags=["speakers"])
    async def remove(speaker_id: str):
        return await svc.run(svc.remove, svc.speaker_id(speaker_id))

    @app.post("/v1/speakers/{speaker_id}/verify", openapi_extra=_UPLOAD, response_model=_api.Verification,
              responses=_api.errors(*common, *upload), dependencies=secured, tags=["decisions"],
              summary="is this recording the speaker?")
    async def verify(speaker_id: str, request: Request, backend: str | None = _BACKEND_QUERY):
        sid = svc.speaker_id(speaker_id)
        return await svc.run(svc.verify, sid, await svc.upload(request), backend)

    @app.post("/v1/identify", openapi_extra=_UPLOAD, response_model=_api.Identification,
              responses=_api.errors(*common, 408, 413, 422), dependencies=secured, tags=["decisions"],
              summary="the best-scoring speakers with their decisions ('speakers': those accepted; open set)")
    async def identify(request: Request, top: int = Query(1, ge=1, le=cfg.max_top, description="how many"),
                       backend: str | None = _BACKEND_QUERY):
        return await svc.run(svc.identify, await svc.upload(request), top, backend)

    @app.post("/v1/calibration", response_model=_api.CalibrationInfo, responses=_api.errors(*common, 413, 422),
              dependencies=secured, tags=["calibration"],
              summary="calibrate the store on its own enrolments (JSON body: optional prior, target_far, "
                      "duration_aware, backend)")
    async def calibrate(request: Request):
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > 65536:
                raise ApiError(413, "too_large", "a calibration request is a small JSON object (at most 64 KB)")
        try:
            data = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "bad_request", "the body must be a JSON object (or empty)") from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object (or empty)")
        return await svc.run(svc.calibrate, data)

    @app.get("/v1/calibrations", summary="the calibrations the store keeps, newest first",
             response_model=_api.CalibrationList, responses=_api.errors(*common), dependencies=secured,
             tags=["calibration"])
    async def calibrations():
        return await svc.run(svc.calibrations)

    @app.post("/v1/calibrations/{cal_id}/use", summary="make a kept calibration current again",
              response_model=_api.CalibrationInfo, responses=_api.errors(*common, 404), dependencies=secured,
              tags=["calibration"])
    async def use_calibration(cal_id: int):
        return await svc.run(svc.use_calibration, cal_id)

    @app.get("/healthz", summary="liveness: UBM loaded, store readable, whether decisions are possible "
                                 "(no API key needed)", response_model=_api.Health, responses=_api.errors(503),
             response_model_exclude_none=True, tags=["service"])         # "warning" only when there is one
    async def healthz():
        try:
            return await svc.run(svc.health)
        except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
            return _error(503, "store_unavailable", str(exc))

    _stream_endpoint(app, svc)
    _documents_and_page(app)
    app.openapi = lambda: _openapi(app)
    return app


def _openapi(app: FastAPI) -> dict:
    """The OpenAPI document, once, without FastAPI's own 422 (a bad query or id is our 400, and
    422 always means "the audio": each upload endpoint documents its own)."""
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi
        doc = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
        for methods in doc.get("paths", {}).values():
            for op in methods.values():
                r = op.get("responses", {}).get("422", {})
                if "HTTPValidationError" in json.dumps(r):
                    del op["responses"]["422"]
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        # the WebSocket's messages (OpenAPI has no WebSocket operations: the schema is listed)
        schemas["StreamMessage"] = _api.StreamMessage.model_json_schema(ref_template="#/components/schemas/{model}")
        app.openapi_schema = doc
    return app.openapi_schema


#: Sample rates a stream may declare (Hz).
STREAM_RATES = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000)


def _stream_endpoint(app: FastAPI, svc: _Service) -> None:
    """``/v1/speakers/{id}/verify/stream``: binary messages of 16-bit little-endian mono PCM, then the
    text ``end``; JSON messages back (:class:`speaker._api.StreamMessage`), the last with ``final``.
    An error is one JSON message ``{"error", "detail"}`` and the socket is closed (1008: the
    request; 1009: a message too large; 1011: a bug; 1013: too many streams, try again later)."""
    cfg = svc.cfg.stream
    open_streams = [0]

    @app.websocket("/v1/speakers/{speaker_id}/verify/stream")
    async def verify_stream(ws: WebSocket, speaker_id: str):
        await ws.accept()

        async def fail(code: int, error: str, detail: str) -> None:
            await ws.send_json({"error": error, "detail": detail})
            await ws.close(code)

        if open_streams[0] >= cfg.max_streams:
            return await fail(1013, "busy", f"{cfg.max_streams} streams are open; try again later")
        open_streams[0] += 1
        try:
            await _run_stream(ws, svc, speaker_id, fail)
        except WebSocketDisconnect:
            pass
        finally:
            open_streams[0] -= 1


async def _run_stream(ws: WebSocket, svc: _Service, speaker_id: str, fail) -> None:
    cfg = svc.cfg.stream
    rate = ws.query_params.get("sample_rate", "16000")
    if not rate.isdigit() or int(rate) not in STREAM_RATES:
        return await fail(1008, "bad_request", f"sample_rate must be one of {', '.join(map(str, STREAM_RATES))}")
    rate = int(rate)
    try:
        sid = svc.speaker_id(speaker_id)
        verifier = await svc.run(svc.stream_session, sid, rate)
    except ApiError as exc:
        return await fail(1008, exc.error, exc.detail)
    loop = asyncio.get_running_loop()
    pcm = bytearray()
    fresh = bytearray()                     # audio not yet given to the verifier
    step = 2 * max(1, int(cfg.update_seconds * rate))
    cap = 2 * int(cfg.max_seconds * rate)
    undecided = None if verifier.calibration is not None else \
        "no calibration: the stream cannot decide early; the decision comes at the end"
    reason = None
    bounds = ({"accept_at": verifier.test.accept_at, "reject_at": verifier.test.reject_at}
              if verifier.calibration is not None else {"accept_at": None, "reject_at": None})
    while True:
        try:
            msg = await asyncio.wait_for(ws.receive(), cfg.idle_timeout)
        except asyncio.TimeoutError:      # = TimeoutError from 3.11 on; a separate class on 3.10
            return await fail(1008, "timeout", f"no message for {cfg.idle_timeout:g} s")
        if msg["type"] == "websocket.disconnect":
            return
        if msg.get("text") is not None:
            if msg["text"].strip() != "end":
                return await fail(1008, "bad_request", "text messages: only 'end'")
            break
        data = msg.get("bytes") or b""
        if len(data) > cfg.max_message_bytes:
            return await fail(1009, "too_large", f"a message larger than {cfg.max_message_bytes} bytes")
        if len(data) % 2:
            return await fail(1008, "bad_request", "binary messages are 16-bit samples: an even number of bytes")
        data = data[:max(0, cap - len(pcm))]
        pcm += data
        fresh += data
        if len(fresh) >= step or len(pcm) >= cap:
            block = np.frombuffer(bytes(fresh), dtype="<i2").astype(np.float32) / 32768.0
            fresh.clear()
            ev = await loop.run_in_executor(svc.pool, verifier.push, block)
            early = ev.decision != "undecided"
            await ws.send_json({"speech_seconds": ev.speech_seconds, "score": ev.score, "llr": ev.llr,
                                "evidence": ev.evidence, "decision": ev.decision, "final": early,
                                "early": early, "reason": None if early else undecided, **bounds})
            if early:
                return await ws.close(1000)
        if len(pcm) >= cap:
            reason = f"the stream reached its limit of {cfg.max_seconds:g} s of audio"
            break
    if not pcm:
        return await fail(1008, "bad_audio", "no audio before 'end'")
    try:
        r = await svc.run(svc.verify_signal, svc.speaker_id(speaker_id), bytes(pcm), rate)
    except ApiError as exc:
        return await fail(1008, exc.error, exc.detail)
    ev = verifier.evidence()
    await ws.send_json({"speech_seconds": r["speech_seconds"], "score": r["score"], "llr": r["llr"],
                        "evidence": ev.evidence, "decision": r["decision"], "final": True, "early": False,
                        "reason": reason or r.get("reason"), **bounds})
    await ws.close(1000)


def _documents_and_page(app: FastAPI) -> None:
    """``/docs`` (Swagger UI from the package's files, no CDN), ``/`` and ``/web/*`` (the page)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    ui = _swagger_ui()
    if ui is not None:
        app.mount("/docs/static", StaticFiles(directory=str(ui)), name="swagger-ui")

        @app.get("/docs", include_in_schema=False)
        async def docs():
            return get_swagger_ui_html(openapi_url="/openapi.json", title="speaker API",
                                       swagger_js_url="/docs/static/swagger-ui-bundle.js",
                                       swagger_css_url="/docs/static/swagger-ui.css",
                                       swagger_favicon_url="/docs/static/favicon-32x32.png",
                                       oauth2_redirect_url=None,
                                       swagger_ui_parameters={"persistAuthorization": False})
    if WEB.is_dir():
        app.mount("/web", StaticFiles(directory=str(WEB)), name="web")

        @app.get("/", include_in_schema=False)
        async def page():
            return FileResponse(str(WEB / "index.html"), media_type="text/html")
