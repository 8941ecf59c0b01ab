"""``speaker serve``: speaker verification over HTTP, an ASGI app (FastAPI) on a :class:`SpeakerStore`.

:func:`create_app` builds the app around an open store; ``speaker serve`` (:mod:`speaker.cli.serve`)
runs it with uvicorn.  The decisions (error mapping, caps, authentication, threads, draining) are
written down in ``docs/serve.md``.

API (JSON responses; audio is the raw request body or the multipart part named ``file``)::

    POST   /v1/speakers/{id}/enrollments[?replace=true]   add one recording (speaker created on first use)
    GET    /v1/speakers                                   every speaker
    GET    /v1/speakers/{id}                              one speaker and its recordings
    DELETE /v1/speakers/{id}                              remove a speaker
    POST   /v1/speakers/{id}/verify                       {"speaker", "score", "llr", "decision", "threshold"}
    POST   /v1/identify[?top=N]                           the N best speakers that pass the decision
    GET    /healthz                                       liveness (no API key needed)
    GET    /docs, /openapi.json                           OpenAPI

Errors are ``{"error": CODE, "detail": TEXT}``: 400 ``bad_request`` (a malformed speaker id,
query or multipart body), 401 ``unauthorized``, 404 ``unknown_speaker`` / ``not_found``,
409 ``conflict`` (the store refuses the change), 413 ``too_large`` (bytes) / ``too_long``
(seconds of audio), 422 ``bad_audio`` (the library's reason), 500 ``internal``, 503
``store_unavailable``.

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
from .features import extract_features
from .store import SpeakerStore, StoreError, check_speaker_id

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
    threshold, p_target, c_miss, c_fa, calibration : the decision rule of
        :meth:`speaker.store.SpeakerStore.verify` (``calibration`` None: the store's, read at
        every request, so ``speaker calibrate --store`` takes effect without a restart)
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


def _multipart_file(body: bytes, content_type: str) -> bytes:
    """The content of the part named ``file`` of a ``multipart/form-data`` body, parsed in memory
    (python-multipart's push parser; the client's file name is ignored)."""
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
    for headers, data in parts:
        _, opts = parse_options_header(headers.get(b"content-disposition", b""))
        if opts.get(b"name") == b"file":
            return data
    raise ApiError(400, "bad_request", "multipart body has no part named 'file'")


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

    async def upload(self, request: Request) -> bytes:
        """The uploaded audio: the raw body, or the multipart part ``file``, at most ``max_bytes``
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
        if ctype.lower().startswith("multipart/form-data"):
            return _multipart_file(bytes(body), ctype)
        return bytes(body)

    # ---------------------------------------------------------------- run in worker threads
    def features(self, data: bytes) -> np.ndarray:
        """(frames, D) features of an upload, decoded from memory and checked against the UBM
        (the service's face: the store's calls below get ``check_input=False``); ApiError 413 / 422."""
        try:
            signal, rate = decode_bytes(data, self.store.config.sample_rate, max_seconds=self.cfg.max_seconds)
            X = extract_features(signal, sample_rate=rate, config=self.store.config)
            return self.store.features(X)
        except AudioTooLong as exc:
            raise ApiError(413, "too_long", f"audio {exc.reason}") from None
        except AudioError as exc:
            raise ApiError(422, "bad_audio", exc.reason) from None
        except ValueError as exc:
            raise ApiError(422, "bad_audio", str(exc).replace("<signal>: ", "").replace("<array>: ", "")) from None

    def enroll(self, speaker_id: str, data: bytes, replace: bool) -> dict:
        X = self.features(data)
        digest = hashlib.sha256(data).hexdigest()     # of the file's bytes, as the store hashes files
        stats = recording_stats(self.store.ubm, X, check_input=False)
        with self.lock:
            r = self.store.enroll_statistics(speaker_id, [(f"upload:{digest[:16]}", digest, stats)], replace=replace)
        return {"speaker": speaker_id, "recordings": r.n_recordings, "frames": r.n_frames,
                "added": bool(r.added), "skipped": next(iter(r.skipped.values()), None)}

    def _decide(self) -> dict:
        c = self.cfg
        return dict(threshold=c.threshold, p_target=c.p_target, c_miss=c.c_miss, c_fa=c.c_fa,
                    calibration=c.calibration)

    def verify(self, speaker_id: str, data: bytes) -> dict:
        X = self.features(data)
        with self.lock:                           # one read transaction: KeyError for an unknown speaker
            r = self.store.verify(speaker_id, X, check_input=False, **self._decide())
        return {"speaker": speaker_id, "score": r.score, "llr": r.llr,
                "decision": "accept" if r.accept else "reject", "threshold": r.threshold}

    def identify(self, data: bytes, top: int) -> dict:
        X = self.features(data)
        with self.lock:                           # one read transaction
            hits = self.store.identify(X, top, check_input=False, **self._decide())
        return {"speakers": [{"speaker": m.id, "score": m.score, "llr": m.llr} for m in hits]}

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
        st = self.store
        return {"status": "ok", "speakers": n,
                "ubm": {"components": st.K, "dims": st.D, "fingerprint": st.fingerprint}}


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
        return await svc.run(svc.enroll, sid, await svc.upload(request), replace)

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
              summary="the best-scoring speakers that pass the decision (open set)")
    async def identify(request: Request, top: int = Query(1, ge=1, le=cfg.max_top, description="how many")):
        return await svc.run(svc.identify, await svc.upload(request), top)

    @app.get("/healthz", summary="liveness: UBM loaded, store readable (no API key needed)")
    async def healthz():
        try:
            return await svc.run(svc.health)
        except Exception as exc:  # noqa: BLE001 - any failure is "unhealthy"
            return _error(503, "store_unavailable", str(exc))

    return app
