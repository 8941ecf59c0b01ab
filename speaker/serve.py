"""``speaker serve``: speaker verification over HTTP, an ASGI app (FastAPI) on a :class:`SpeakerStore`.

:func:`create_app` builds the app around an open store; ``speaker serve`` (:mod:`speaker.cli.serve`)
runs it with uvicorn.  The decisions (error mapping, caps, authentication, threads, draining) are
written down in ``docs/serve.md``.

API (JSON responses; audio is the raw request body or the multipart part named ``file``)::

    POST   /v1/speakers/{id}/enrollments[?replace=true]   add one recording (speaker created on first use)
    GET    /v1/speakers                                   every speaker
    GET    /v1/speakers/{id}                              one speaker and its recordings
    DELETE /v1/speakers/{id}                              remove a speaker
    POST   /v1/speakers/{id}/verify                       {"speaker", "score", "llr", "decision", "reason", "threshold"}
    POST   /v1/identify[?top=N]                           the N best candidates with their decisions
    POST   /v1/calibration                                calibrate the store on its own enrolments
    GET    /v1/calibrations                               the calibrations the store keeps (current first)
    POST   /v1/calibrations/{id}/use                      make an earlier calibration current again
    GET    /healthz                                       liveness, and whether decisions are possible (no API key needed)

Decisions are ``accept``, ``reject`` or ``undecided`` with a ``reason``: without a calibration
and a threshold every decision is ``undecided`` (never accept), and so is a test with too little
net speech (``insufficient speech``).  An enrolment the quality gates refuse is a 422 whose
``error`` says why: ``insufficient_speech`` (a recording, or the speaker's recordings in all),
``clipped``, ``noise_only``.
    GET    /docs, /openapi.json                           OpenAPI

Errors are ``{"error": CODE, "detail": TEXT}``: 400 ``bad_request`` (a malformed speaker id,
query or multipart body), 401 ``unauthorized``, 404 ``unknown_speaker`` / ``not_found``,
409 ``conflict`` (the store refuses the change), 413 ``too_large`` (bytes) / ``too_long``
(seconds of audio), 422 ``bad_audio`` (the library's reason) / ``insufficient_speech`` /
``clipped`` / ``noise_only`` (the quality gates) / ``not_enough_enrolments`` (self-calibration) /
``bad_decision`` (e.g. ``target_far`` without a calibration kept with its trials), 500
``internal``, 503 ``store_unavailable``.

Threads: uploads are decoded and their features (and, for an enrolment, UBM statistics) computed
in a thread pool of ``threads`` workers, never on the event loop; the compiled core releases the
GIL.  Calls into the store are serialised with one lock unless the store class declares
``thread_safe = True``.  Model caching and its invalidation (also after another process or
replica changed the store) are the store's: every call reads the speaker's generation.
"""
from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ._batch import recording_stats
from .audio import AudioError, AudioTooLong, decode_bytes
from .calibration import Calibration
from .gates import Gate, Quality, speech_seconds
from .features import extract_features
from .store import EnrolmentItem, EnrolmentRefused, SpeakerStore, StoreError, check_speaker_id

__all__ = ["ServiceConfig", "ApiError", "create_app", "SPEAKER_ID"]

#: Speaker ids the service accepts in a URL: 1 to 128 of these characters (a stricter rule than
#: the store's :func:`speaker.store.check_speaker_id`, which it also passes).
SPEAKER_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@+=-]{0,127}")
#: The paths that need no API key.
OPEN_PATHS = frozenset({"/healthz"})


@dataclass(frozen=True)
class ServiceConfig:
    """What the service accepts and how it decides.

    max_bytes : largest request body in bytes (checked while the body is read)
    max_seconds : longest upload in seconds of audio (checked from the header, before decoding)
    threads : worker threads for decoding, features and scoring
    api_key : the key every endpoint but ``/healthz`` requires (None: no authentication)
    threshold, p_target, c_miss, c_fa, calibration, target_far : the decision rule of
        :meth:`speaker.store.SpeakerStore.verify` (``calibration`` None: the store's, read at
        every request, so ``speaker calibrate --store`` takes effect without a restart)
    gate : the quality gates of enrolments and tests (:class:`speaker.gates.Gate`; None: the
        store's)
    max_top : largest ``top`` of ``/v1/identify``
    """

    max_bytes: int = 20 * 1024 * 1024
    max_seconds: float = 300.0
    threads: int = 4
    api_key: str | None = None
    threshold: float | None = None
    p_target: float | None = None
    c_miss: float = 1.0
    c_fa: float = 1.0
    calibration: Calibration | None = None
    target_far: float | None = None
    gate: Gate | None = None
    max_top: int = 100


class ApiError(Exception):
    """An error response: HTTP ``status``, machine-readable ``error`` code and a ``detail`` line."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail


def _error(status: int, error: str, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers=headers)


class _ApiKey:
    """ASGI middleware: every HTTP request but :data:`OPEN_PATHS` needs ``Authorization: Bearer KEY``
    or ``X-API-Key: KEY``, compared in constant time (``hmac.compare_digest``) before the body
    is read."""

    def __init__(self, app, key: str) -> None:
        self.app, self.key = app, key.encode("utf-8")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            headers = dict(scope["headers"])
            auth, given = headers.get(b"authorization", b""), headers.get(b"x-api-key")
            if auth[:7].lower() == b"bearer ":
                given = auth[7:].strip()
            if given is None:
                why = "missing API key (send 'Authorization: Bearer KEY' or 'X-API-Key: KEY')"
            elif not hmac.compare_digest(given.strip(), self.key):
                why = "wrong API key"
            else:
                why = None
            if why is not None:
                await _error(401, "unauthorized", why, {"WWW-Authenticate": "Bearer"})(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _multipart_files(body: bytes, content_type: str) -> list[bytes]:
    """The contents of the parts named ``file`` of a ``multipart/form-data`` body, in order,
    parsed in memory (python-multipart's push parser; the client's file names are ignored)."""
    from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise ApiError(400, "bad_request", "multipart/form-data body without a boundary")
    parts: list[tuple[dict, bytes]] = []
    cur: dict[str, Any] = {}

    def begin():
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
        except StoreError as exc:
            if "cannot write" in str(exc) or "locked" in str(exc):
                raise ApiError(503, "store_unavailable", str(exc)) from None
            raise ApiError(409, "conflict", str(exc)) from None

    @staticmethod
    def speaker_id(value: str) -> str:
        if not SPEAKER_ID.fullmatch(value):
            raise ApiError(400, "bad_request", f"bad speaker id {value[:140]!r}: 1 to 128 characters of "
                                               "A-Z a-z 0-9 _ . @ + = -, not starting with . @ + = -")
        check_speaker_id(value)
        return value

    async def upload(self, request: Request, many: bool = False) -> bytes | list[bytes]:
        """The uploaded audio: the raw body, or the multipart part ``file`` (with ``many``: the
        list of every part named ``file``, or of the raw body), at most ``max_bytes`` in all
        (a larger declared Content-Length is refused before reading; the count is checked after
        every chunk of the stream, so no more than ``max_bytes`` plus one chunk is ever held)."""
        cap = self.cfg.max_bytes
        too_large = ApiError(413, "too_large", f"request body larger than {cap} bytes")
        declared = request.headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > cap:
            raise too_large
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > cap:
                raise too_large
        ctype = request.headers.get("content-type", "")
        files = (_multipart_files(bytes(body), ctype) if ctype.lower().startswith("multipart/form-data")
                 else [bytes(body)])
        return files if many else files[0]

    # ---------------------------------------------------------------- run in worker threads
    def features(self, data: bytes) -> np.ndarray:
        """(frames, D) features of an upload, decoded from memory and checked against the UBM
        (the service's face: the store's calls below get ``check_input=False``); ApiError 413 / 422."""
        try:
            signal, rate = decode_bytes(data, max_seconds=self.cfg.max_seconds)
            X = extract_features(signal, sample_rate=rate, config=self.store.config)
            return self.store.features(X)
        except AudioTooLong as exc:
            raise ApiError(413, "too_long", f"audio {exc.reason}") from None
        except AudioError as exc:
            raise ApiError(422, "bad_audio", exc.reason) from None
        except ValueError as exc:
            raise ApiError(422, "bad_audio", str(exc).replace("<signal>: ", "").replace("<array>: ", "")) from None

    def gate(self) -> Gate:
        return self.cfg.gate if self.cfg.gate is not None else self.store.gate

    def enroll(self, speaker_id: str, files: list[bytes], replace: bool) -> dict:
        """Enrol the uploaded recordings (one request: one or several parts named ``file``);
        422 naming the part and the reason when the quality gates refuse one, or the speaker."""
        gate, items = self.gate(), []
        for n, data in enumerate(files):
            X = self.features(data)
            q = Quality(speech_seconds(X.shape[0], self.store.config))
            problem = gate.recording_problem(q)
            if problem is not None:
                raise ApiError(422, problem[0], (f"part {n + 1} of {len(files)}: " if len(files) > 1 else "") + problem[1])
            digest = hashlib.sha256(data).hexdigest()     # of the file's bytes, as the store hashes files
            items.append(EnrolmentItem(f"upload:{digest[:16]}", digest,
                                       recording_stats(self.store.ubm, X, check_input=False), X, q))
        try:
            with self.lock:
                r = self.store.enroll_statistics(speaker_id, items, replace=replace, gate=gate)
        except EnrolmentRefused as exc:
            raise ApiError(422, exc.code, f"{exc} (send several recordings in one request: multipart parts named "
                                          "'file')") from None
        return {"speaker": speaker_id, "recordings": r.n_recordings, "frames": r.n_frames,
                "speech_seconds": r.speech_seconds, "added": bool(r.added), "added_recordings": len(r.added),
                "skipped": next(iter(r.skipped.values()), None)}

    def _decide(self) -> dict:
        c = self.cfg
        return dict(threshold=c.threshold, p_target=c.p_target, c_miss=c.c_miss, c_fa=c.c_fa,
                    calibration=c.calibration, target_far=c.target_far, gate=self.gate())

    def _ruled(self, fn, *args, **kwargs):
        """A store call that makes a decision; a rule that cannot be made is a 422."""
        try:
            return fn(*args, **kwargs)
        except ValueError as exc:
            if isinstance(exc, (StoreError, KeyError)):
                raise
            raise ApiError(422, "bad_decision", str(exc)) from None

    def verify(self, speaker_id: str, data: bytes) -> dict:
        X = self.features(data)
        with self.lock:                           # one read transaction: KeyError for an unknown speaker
            r = self._ruled(self.store.verify, speaker_id, X, check_input=False, **self._decide())
        return {"speaker": speaker_id, "score": r.score, "llr": r.llr, "decision": r.decision, "reason": r.reason,
                "threshold": r.threshold}

    def identify(self, data: bytes, top: int) -> dict:
        X = self.features(data)
        with self.lock:                           # one read transaction
            ranked = self._ruled(self.store.candidates, X, top, check_input=False, **self._decide())
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
        extra = set(body) - {"prior", "target_far"}
        if extra:
            raise ApiError(400, "bad_request", f"unknown keys {sorted(extra)} (prior, target_far)")
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
        return {"id": cal_id, "current": current, "created_at": created_at, "fitted_on": fitted_on,
                "calibration": {"a": cal.a, "b": cal.b, "prior": cal.prior}, "report": report}

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
        out = [{"speaker": s.id, "recordings": s.n_recordings, "frames": s.n_frames, "enrolled_at": s.enrolled_at,
                "updated_at": s.updated_at, "kind": s.kind} for s in rows]
        if speaker_id is not None:
            if not out:
                raise KeyError(speaker_id)
            out[0]["recording_list"] = [{"source": src, "sha256": h, "frames": n, "enrolled_at": t}
                                        for src, h, n, t in recs]
        return out

    def remove(self, speaker_id: str) -> dict:
        with self.lock:
            self.store.remove(speaker_id)
        return {"speaker": speaker_id, "removed": True}

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
            cal = self.store.current_calibration() if self.cfg.calibration is None else None
        st = self.store
        out = {"status": "ok", "speakers": n, "calibrated": self.cfg.calibration is not None or cal is not None,
               "decisions": decisions, "ubm": {"components": st.K, "dims": st.D, "fingerprint": st.fingerprint}}
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
_ERR = {"description": "error", "content": {"application/json": {"example": {"error": "bad_audio",
                                                                             "detail": "contains no samples"}}}}
_ERRORS = {c: _ERR for c in (400, 401, 404, 413, 422)}


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

    app = FastAPI(title="speaker", version="1", lifespan=lifespan,
                  description="GMM-UBM speaker verification over a speaker store: enrol, verify, identify.")
    app.state.service = svc
    if cfg.api_key is not None:
        app.add_middleware(_ApiKey, key=cfg.api_key)

    @app.exception_handler(ApiError)
    async def _api_error(request, exc: ApiError):
        return _error(exc.status, exc.error, exc.detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request, exc: StarletteHTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _error(exc.status_code, code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request, exc: RequestValidationError):
        why = "; ".join(f"{'.'.join(str(x) for x in e.get('loc', ()))}: {e.get('msg')}" for e in exc.errors())
        return _error(400, "bad_request", why)

    @app.exception_handler(Exception)
    async def _internal(request, exc: Exception):
        from ._reasons import describe
        return _error(500, "internal", describe(exc))

    @app.post("/v1/speakers/{speaker_id}/enrollments", openapi_extra=_UPLOAD, responses=_ERRORS,
              summary="add one recording to a speaker (created on first use)")
    async def enroll(speaker_id: str, request: Request,
                     replace: bool = Query(False, description="start the speaker over with this recording")):
        sid = svc.speaker_id(speaker_id)
        return await svc.run(svc.enroll, sid, await svc.upload(request, many=True), replace)

    @app.get("/v1/speakers", summary="every enrolled speaker", responses=_ERRORS)
    async def speakers():
        return {"speakers": await svc.run(svc.speakers)}

    @app.get("/v1/speakers/{speaker_id}", summary="one speaker and its recordings", responses=_ERRORS)
    async def speaker(speaker_id: str):
        return (await svc.run(svc.speakers, svc.speaker_id(speaker_id)))[0]

    @app.delete("/v1/speakers/{speaker_id}", summary="remove a speaker", responses=_ERRORS)
    async def remove(speaker_id: str):
        return await svc.run(svc.remove, svc.speaker_id(speaker_id))

    @app.post("/v1/speakers/{speaker_id}/verify", openapi_extra=_UPLOAD, responses=_ERRORS,
              summary="is this recording the speaker?")
    async def verify(speaker_id: str, request: Request):
        sid = svc.speaker_id(speaker_id)
        return await svc.run(svc.verify, sid, await svc.upload(request))

    @app.post("/v1/identify", openapi_extra=_UPLOAD, responses=_ERRORS,
              summary="the best-scoring speakers with their decisions ('speakers': those accepted; open set)")
    async def identify(request: Request, top: int = Query(1, ge=1, le=cfg.max_top, description="how many")):
        return await svc.run(svc.identify, await svc.upload(request), top)

    @app.post("/v1/calibration", responses=_ERRORS,
              summary="calibrate the store on its own enrolments (JSON body: optional prior, target_far)")
    async def calibrate(request: Request):
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > 65536:
                raise ApiError(413, "too_large", "a calibration request is a small JSON object (at most 64 KB)")
        try:
            import json
            data = json.loads(body) if body.strip() else {}
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "bad_request", "the body must be a JSON object (or empty)") from None
        if not isinstance(data, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object (or empty)")
        return await svc.run(svc.calibrate, data)

    @app.get("/v1/calibrations", summary="the calibrations the store keeps, newest first", responses=_ERRORS)
    async def calibrations():
        return await svc.run(svc.calibrations)

    @app.post("/v1/calibrations/{cal_id}/use", summary="make a kept calibration current again", responses=_ERRORS)
    async def use_calibration(cal_id: int):
        return await svc.run(svc.use_calibration, cal_id)

    @app.get("/healthz", summary="liveness: UBM loaded, store readable (no API key needed)")
    async def healthz():
        try:
            return await svc.run(svc.health)
        except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
            return _error(503, "store_unavailable", str(exc))

    return app
