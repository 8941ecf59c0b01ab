"""The server side of ``speaker serve`` below the app: what uvicorn does before a request exists.

A hostile client can hurt a server before any request is complete: with megabytes of header
lines, with connections that send nothing (or half a request line) and hold a descriptor each, or
with more connections than the process may open.  :func:`protocol_class` is uvicorn's own h11
protocol with three guards added, all applied while the request head is being read:

* **the request head** (request line and headers) is at most ``max_head_bytes``: h11 refuses a
  longer one as soon as its buffer passes the limit (uvicorn answers 400 and closes), so no more
  than the limit plus one read is ever held, whatever the client sends;
* **a head timeout**: a connection whose request head has not arrived ``head_timeout`` seconds
  after it opened (or after its previous response) is closed; this also drops idle and
  half-open connections;
* **a cap on connections**: a connection beyond ``max_connections`` (HTTP and WebSocket
  together) is answered 503 and closed at once, before anything is read.

:func:`raise_descriptor_limit` raises the process's soft limit of open files towards its hard
limit at start-up, so that the cap, not the operating system, says no.  Body timeouts and the
URL length are the app's (``speaker/serve.py``, ``speaker/_gate.py``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["ConnectionLimits", "protocol_class", "raise_descriptor_limit", "RESERVED_DESCRIPTORS"]

#: Descriptors kept for everything but client connections (the store, logs, libraries, threads).
RESERVED_DESCRIPTORS = 64


@dataclass(frozen=True)
class ConnectionLimits:
    """max_head_bytes: largest request line + headers (bytes); head_timeout: seconds for a request
    head to arrive; max_connections: open client connections (HTTP and WebSocket)."""

    max_head_bytes: int = 16 * 1024
    head_timeout: float = 10.0
    max_connections: int = 1000


def _refusal(status: bytes, error: str, detail: str) -> bytes:
    body = json.dumps({"error": error, "detail": detail}).encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def protocol_class(limits: ConnectionLimits):
    """uvicorn's ``H11Protocol`` with the guards of this module (pass it as ``uvicorn.Config(http=...)``
    together with ``h11_max_incomplete_event_size=limits.max_head_bytes``)."""
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    busy = _refusal(b"503 Service Unavailable", "busy",
                    f"more than {limits.max_connections} open connections; try again later")

    class GuardedH11Protocol(H11Protocol):
        _head_timer = None

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > limits.max_connections:
                self.connections.discard(self)
                transport.write(busy)
                transport.close()
                return
            self._arm_head_timer()

        def connection_lost(self, exc) -> None:
            self._disarm_head_timer()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm_head_timer()              # the next request's head, on a kept-alive connection

        def handle_websocket_upgrade(self, event) -> None:
            self._disarm_head_timer()
            super().handle_websocket_upgrade(event)

        def _arm_head_timer(self) -> None:
            self._disarm_head_timer()
            self._head_timer = self.loop.call_later(limits.head_timeout, self._head_timed_out)

        def _disarm_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_timed_out(self) -> None:
            self._head_timer = None
            # their_state leaves IDLE when a whole request head has been parsed
            if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self._unset_keepalive_if_required()
                self.transport.close()

    return GuardedH11Protocol


def raise_descriptor_limit(wanted: int) -> tuple[int, int]:
    """Raise the soft limit of open files to ``wanted`` (at most the hard limit) if it is lower;
    returns the (soft, hard) limits in force afterwards.  Where the platform has no such limit
    (no ``resource`` module) returns ``(wanted, wanted)``."""
    try:
        import resource
    except ImportError:                                   # Windows
        return wanted, wanted
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard
