"""The service's gate: one ASGI middleware every HTTP request and WebSocket passes first.

In order, for each request:

1. **a request id**: the client's ``X-Request-ID`` when it is 1 to 128 characters of
   ``A-Z a-z 0-9 . _ : -``, else a new random one; echoed in the response's ``X-Request-ID`` and
   written in the access log line;
2. **the URL's length**: a path and query longer than :data:`MAX_URL` bytes is a 414 (the whole
   request head is bounded while it is read, ``speaker/_server.py``);
3. **the API key** (when keys are configured): ``Authorization: Bearer KEY`` or ``X-API-Key: KEY``
   (a WebSocket may also give ``?api_key=KEY``: a browser cannot set a WebSocket's headers),
   compared in constant time with every configured key, before any body is read.  The paths of
   :data:`OPEN_PATHS` / :data:`OPEN_PREFIXES` (the page, its files, the API's documents and the
   health probe) need no key.  The key's *name* goes to the log, never the key;
4. **any exception** the app lets through becomes a 500 ``internal`` with ``Connection: close``
   (logged with its traceback), and the exception stops here: the server then closes the
   connection after a complete answer, so a keep-alive client knows not to send its next request
   on it (Starlette's own handler re-raises, and uvicorn then dropped the connection without a
   word).
"""
from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from urllib.parse import parse_qs

__all__ = ["RequestGate", "OPEN_PATHS", "OPEN_PREFIXES", "MAX_URL", "LOG", "redact_keys"]

#: Paths that need no API key: the page, the API's documents, the health probe.
OPEN_PATHS = frozenset({"/", "/healthz", "/docs", "/openapi.json", "/favicon.ico"})
#: Path prefixes that need no API key: the page's files and Swagger UI's.
OPEN_PREFIXES = ("/web/", "/docs/static/")
#: Longest path + query string (bytes) of a request.
MAX_URL = 4096
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
#: The access log (a child of uvicorn's error log, so it shares uvicorn's handler and level).
LOG = logging.getLogger("uvicorn.error.speaker")


_KEY_IN_QUERY = re.compile(r"(api_key=)[^&\s\"']*")


def redact_keys(record: logging.LogRecord) -> bool:
    """A logging filter: a WebSocket's ``?api_key=KEY`` in any log line (uvicorn logs a
    WebSocket's URL with its query) becomes ``api_key=***``.  Install it on uvicorn's loggers."""
    text = record.getMessage()
    if "api_key=" in text:
        record.msg, record.args = _KEY_IN_QUERY.sub(r"\1***", text), ()
    return True


async def _json(send, status: int, error: str, detail: str, headers: list) -> None:
    body = json.dumps({"error": error, "detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class RequestGate:
    """ASGI middleware: request ids, the URL limit, API keys, the access log, exceptions -> 500.

    ``keys``: name -> key (``{}``: no authentication); ``access_log``: write one line per request.
    """

    def __init__(self, app, keys: dict[str, str] | None = None, access_log: bool = True) -> None:
        self.app = app
        self.keys = [(name, key.encode("utf-8")) for name, key in (keys or {}).items()]
        self.access_log = access_log

    def _key_name(self, given: bytes | None) -> str | None:
        """The name of the key ``given`` matches (every key is compared, in constant time each)."""
        found = None
        for name, key in self.keys:
            if given is not None and hmac.compare_digest(given, key):
                found = name
        return found

    def _credentials(self, scope, headers: dict) -> bytes | None:
        auth, given = headers.get(b"authorization", b""), headers.get(b"x-api-key")
        if auth[:7].lower() == b"bearer ":
            given = auth[7:]
        if given is None and scope["type"] == "websocket":
            values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("api_key")
            given = values[-1].encode("latin-1") if values else None
        return None if given is None else given.strip()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        headers = dict(scope["headers"])
        rid = headers.get(b"x-request-id", b"")
        rid = rid.decode() if _REQUEST_ID.fullmatch(rid) else uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        echo = [(b"x-request-id", rid.encode())]
        status, key_name = [0], None
        ws = scope["type"] == "websocket"

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), *echo]}
            elif message["type"] == "websocket.accept":
                status[0] = 101
                message = {**message, "headers": [*message.get("headers", []), *echo]}
            elif message["type"] == "websocket.close" and not status[0]:
                status[0] = 403
            await send(message)

        try:
            path = scope["path"]
            if len(scope.get("raw_path") or path.encode()) + len(scope.get("query_string", b"")) > MAX_URL:
                status[0] = 414
                if ws:
                    await send({"type": "websocket.close", "code": 1009})
                else:
                    await _json(send, 414, "uri_too_long", f"the URL is longer than {MAX_URL} bytes",
                                echo + [(b"connection", b"close")])
                return
            if self.keys and not (not ws and (path in OPEN_PATHS or path.startswith(OPEN_PREFIXES))):
                given = self._credentials(scope, headers)
                key_name = self._key_name(given)
                if key_name is None:
                    status[0] = 401
                    if ws:
                        await send({"type": "websocket.close", "code": 1008,
                                    "reason": "missing or wrong API key"})
                    else:
                        why = ("missing API key (send 'Authorization: Bearer KEY' or 'X-API-Key: KEY')"
                               if given is None else "wrong API key")
                        await _json(send, 401, "unauthorized", why, echo + [(b"www-authenticate", b"Bearer")])
                    return
                state["api_key_name"] = key_name
            await self.app(scope, receive, send_logged)
        except Exception as exc:  # noqa: BLE001 - a bug below: one answer, the connection closed after it
            from ._reasons import describe
            LOG.error("request %s: %s %s failed", rid, scope.get("method", "WEBSOCKET"), scope["path"], exc_info=exc)
            if not ws and not status[0]:
                status[0] = 500
                await _json(send, 500, "internal", describe(exc), echo + [(b"connection", b"close")])
            elif not ws:
                raise                                    # the answer had started: the server must drop it
        finally:
            if self.access_log:
                client = scope.get("client") or ("-", 0)
                LOG.info('%s:%s %s key=%s "%s %s" %s %.1f ms', client[0], client[1], rid, key_name or "-",
                         scope.get("method", "WS"), scope["path"], status[0], 1000 * (time.perf_counter() - t0))
