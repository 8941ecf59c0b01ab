"""``speaker serve`` under a hostile client, and the API a web developer reads.

Every attack runs against a real server (uvicorn in a subprocess) on a loopback port; every loop
is bounded in count and time.  The server of this module has two named keys, one CORS origin,
short head/body timeouts and a small connection cap, and a planted bug (``DELETE
/v1/speakers/bug-500`` raises) for the 500 path.
"""
from __future__ import annotations

import json
import re
import resource
import select
import socket
import time

import pytest

from test_serve import KEY, Server, assert_error, body, open_store

httpx = pytest.importorskip("httpx")

OTHER_KEY = "other-key-" + "x" * 20
ORIGIN = "http://app.example.test"
MAX_CONNECTIONS = 12
HEAD_TIMEOUT = 3.0
BODY_TIMEOUT = 2.0
#: The server's process with a bug planted in one request, then the command line.
BUGGY = """
import sys
from speaker import serve
def remove(self, speaker_id, _remove=serve._Service.remove):
    if speaker_id == "bug-500":
        raise RuntimeError("a planted bug")
    return _remove(self, speaker_id)
serve._Service.remove = remove
from speaker.cli import main
sys.exit(main(sys.argv[1:]))
"""
HARD = pytest.mark.xdist_group("serve-hardening")


@pytest.fixture(scope="module")
def guarded(cli_trained, tmp_path_factory):
    d = tmp_path_factory.mktemp("hardened")
    (d / "keys.txt").write_text(f"# two clients\nalice: {KEY}\nbob: {OTHER_KEY}\n")
    log = d / "server.log"
    srv = Server("--ubm", cli_trained / "ubm.npz", "--store", d / "s.db", "--api-key-file", d / "keys.txt",
                 "--cors-origin", ORIGIN, "--head-timeout", HEAD_TIMEOUT, "--body-timeout", BODY_TIMEOUT,
                 "--max-connections", MAX_CONNECTIONS, "--threshold", -50, "--threads", 2,
                 hooked=BUGGY, log=log, quiet=False)
    yield srv, log
    srv.stop()


def _connect(srv) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    return s


def _closed_within(s: socket.socket, seconds: float) -> bytes | None:
    """What the server sent before closing ``s`` within ``seconds``, or None if it stayed open."""
    got, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        r, _, _ = select.select([s], [], [], 0.1)
        if r:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                return got
            if not chunk:
                return got
            got += chunk
    return None


def _auth(key=KEY) -> dict:
    return {"X-API-Key": key}


# ------------------------------------------------------------------ denial of service (issue 20, 4)
@HARD
def test_a_huge_request_head_is_refused_while_it_is_read(guarded):
    """1 MB of headers in 1 KB writes: the server answers 400 and closes after the first ~16 KB
    (its head limit), long before the client has sent it all."""
    srv, _ = guarded
    s = _connect(srv)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    sent, answer, deadline = 0, None, time.monotonic() + 30
    try:
        for _ in range(1024):                                   # at most 1 MB
            if time.monotonic() > deadline:
                break
            s.sendall(b"X-Padding: " + b"a" * 1000 + b"\r\n")
            sent += 1013
            if select.select([s], [], [], 0.05)[0]:
                answer = s.recv(65536)
                break
    except (BrokenPipeError, ConnectionResetError):
        answer = b"(closed)"
    s.close()
    assert answer is not None, "the server read 1 MB of headers without answering"
    assert answer.startswith(b"HTTP/1.1 400") or answer == b"(closed)", answer[:100]
    assert sent < 256 * 1024, sent
    assert httpx.get(srv.url + "/healthz").status_code == 200


@HARD
def test_a_long_url_is_refused(guarded):
    srv, _ = guarded
    r = httpx.get(srv.url + "/v1/speakers", params={"q": "a" * 5000}, headers=_auth())
    assert_error(r, 414, "uri_too_long")


@HARD
def test_idle_and_half_open_connections_are_dropped_after_the_head_timeout(guarded):
    srv, _ = guarded
    idle = [_connect(srv) for _ in range(3)]
    half = [_connect(srv) for _ in range(2)]
    for s in half:
        s.sendall(b"GET /healthz HTT")
    for s in idle + half:
        assert _closed_within(s, HEAD_TIMEOUT + 10) is not None, "a connection without a request head stayed open"
        s.close()


@HARD
def test_connections_beyond_the_cap_are_refused_and_the_server_recovers(guarded):
    """MAX_CONNECTIONS + 5 silent connections: the extra ones get 503 at once; after the head
    timeout every silent one is gone and an ordinary request is served."""
    srv, _ = guarded
    held = [_connect(srv) for _ in range(MAX_CONNECTIONS)]
    time.sleep(0.2)
    extra = [_connect(srv) for _ in range(5)]
    for s in extra:
        got = _closed_within(s, 5)
        assert got is not None and got.startswith(b"HTTP/1.1 503"), got
        assert json.loads(got.partition(b"\r\n\r\n")[2])["error"] == "busy"
        s.close()
    for s in held:
        assert _closed_within(s, HEAD_TIMEOUT + 10) is not None
        s.close()
    assert httpx.get(srv.url + "/healthz", timeout=10).status_code == 200


@HARD
def test_a_body_that_does_not_arrive_gets_408_and_the_connection_closed(guarded):
    srv, _ = guarded
    s = _connect(srv)
    s.sendall(f"POST /v1/speakers/slow/enrollments HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n"
              "Content-Type: audio/wav\r\nContent-Length: 100000\r\n\r\n".encode() + b"RIFF")
    got = _closed_within(s, BODY_TIMEOUT + 15)
    s.close()
    assert got is not None and got.startswith(b"HTTP/1.1 408"), got
    head, _, rest = got.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower() and json.loads(rest)["error"] == "timeout"


LIMITS = """
import resource, sys
from speaker.cli.serve import _connection_cap
from speaker._server import raise_descriptor_limit
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, int(sys.argv[1])))
print(_connection_cap(1000, raise_descriptor_limit), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 1064, reason="hard limit of open files < 1064")
def test_the_descriptor_soft_limit_is_raised_at_start_up():
    """A process started with a soft limit of 256 open files (the limit that let 300 idle
    connections lock every client out) raises it to the connection cap plus its reserve; under a
    hard limit of 300 it keeps the cap below it and says so."""
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-c", LIMITS, "4096"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1000", "1064"]
    out = subprocess.run([sys.executable, "-c", LIMITS, "300"], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["236", "300"] and "at most 236 connections" in out.stderr


# ------------------------------------------------------------------ multipart (issue 20, 5)
@HARD
def test_a_multipart_body_of_many_parts_is_refused(guarded):
    srv, _ = guarded
    parts = b"".join(b"--B\r\nContent-Disposition: form-data; name=\"p%d\"\r\n\r\nx\r\n" % i for i in range(5000))
    r = httpx.post(srv.url + "/v1/speakers/a/verify", content=parts + b"--B--\r\n",
                   headers={**_auth(), "Content-Type": "multipart/form-data; boundary=B"}, timeout=60)
    assert_error(r, 400, "bad_request", ["more than 16 parts"])
    assert httpx.get(srv.url + "/healthz").status_code == 200


def test_multipart_bodies_are_parsed_off_the_event_loop(cli_trained, tmp_path, monkeypatch):
    """The parser runs in a worker thread of the service, never on the event loop's thread."""
    import asyncio
    import threading

    from speaker import serve
    threads = []
    real = serve._multipart_files

    def spy(data, ctype):
        threads.append(threading.current_thread().name)
        return real(data, ctype)
    monkeypatch.setattr(serve, "_multipart_files", spy)
    with open_store(tmp_path / "s.db", cli_trained / "ubm.npz") as st:
        app = serve.create_app(st, serve.ServiceConfig(threshold=0.0))

        async def go():
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                    r = await c.post("/v1/speakers/a/enrollments",
                                     files={"file": ("x.wav", body("0_lucas_0.wav"), "audio/wav")})
                    return r, threading.current_thread().name
        r, loop_thread = asyncio.run(go())
    assert r.status_code == 200, r.text
    assert threads and all(t.startswith("speaker-serve") and t != loop_thread for t in threads)


# ------------------------------------------------------------------ 500 and keep-alive (issue 20, 6)
@HARD
def test_after_a_500_the_connection_is_closed_with_connection_close(guarded):
    srv, log = guarded
    s = _connect(srv)
    s.sendall(f"DELETE /v1/speakers/bug-500 HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\n\r\n".encode())
    got = _closed_within(s, 15)
    s.close()
    assert got is not None, "the connection stayed open after the 500"
    head, _, rest = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 500") and b"connection: close" in head.lower(), head
    assert json.loads(rest) == {"error": "internal", "detail": "RuntimeError: a planted bug"}
    with httpx.Client(base_url=srv.url, headers=_auth()) as c:      # a keep-alive client goes on
        for _ in range(3):
            assert c.delete("/v1/speakers/bug-500").status_code == 500
            assert c.get("/v1/speakers").status_code == 200
    assert "a planted bug" in log.read_text()                         # logged with its traceback


# ------------------------------------------------------------------ the API (issue 24, 4)
@HARD
def test_named_keys_request_ids_and_the_access_log(guarded):
    srv, log = guarded
    r = httpx.get(srv.url + "/v1/speakers", headers={**_auth(OTHER_KEY), "X-Request-ID": "abc-123"})
    assert r.status_code == 200 and r.headers["x-request-id"] == "abc-123"
    r = httpx.get(srv.url + "/v1/speakers", headers=_auth(KEY))
    generated = r.headers["x-request-id"]
    assert r.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", generated)
    bad = httpx.get(srv.url + "/v1/speakers", headers={"X-Request-ID": "no spaces allowed"})
    assert bad.status_code == 401 and bad.headers["x-request-id"] != "no spaces allowed"
    deadline = time.monotonic() + 10
    while "abc-123" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    text = log.read_text()
    assert re.search(r"abc-123 key=bob \"GET /v1/speakers\" 200", text), text[-2000:]
    assert re.search(generated + r" key=alice \"GET /v1/speakers\" 200", text)
    assert KEY not in text and OTHER_KEY not in text


@HARD
def test_cors_preflight_from_an_allowed_origin_only(guarded):
    srv, _ = guarded
    ask = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type,x-api-key"}
    r = httpx.options(srv.url + "/v1/speakers/a/verify", headers={"Origin": ORIGIN, **ask})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ORIGIN
    assert {"content-type", "x-api-key"} <= {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    r = httpx.options(srv.url + "/v1/speakers/a/verify", headers={"Origin": "http://evil.example.test", **ask})
    assert "access-control-allow-origin" not in r.headers
    r = httpx.get(srv.url + "/v1/speakers", headers={"Origin": ORIGIN, **_auth()})
    assert r.headers["access-control-allow-origin"] == ORIGIN


def test_no_cors_without_an_origin_configured(cli_trained, tmp_path):
    from speaker import serve
    from speaker.store import SpeakerStore
    import asyncio

    async def ask(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.options("/v1/speakers", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "GET"})
    with SpeakerStore(tmp_path / "s.db", cli_trained / "ubm.npz") as st:
        app = serve.create_app(st)
        r = asyncio.run(ask(app))
        app.state.service.pool.shutdown()
    assert "access-control-allow-origin" not in r.headers and r.status_code in (400, 405)


@HARD
def test_the_openapi_document_is_complete_and_the_docs_need_no_cdn(guarded):
    srv, _ = guarded
    doc = httpx.get(srv.url + "/openapi.json").json()
    schemas = doc["components"]["schemas"]
    assert {"ApiKey", "Bearer"} <= set(doc["components"]["securitySchemes"])
    examples = set()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            ok = op["responses"]["200"]["content"]["application/json"]["schema"]
            name = ok["$ref"].rsplit("/", 1)[1]
            assert schemas[name]["properties"], (path, method)
            if path != "/healthz":
                assert op["security"] == [{"ApiKey": []}, {"Bearer": []}], (path, method)
            for code, resp in op["responses"].items():
                if code != "200":
                    ex = resp["content"]["application/json"]["example"]
                    examples.add((code, ex["error"], ex["detail"]))
    assert "HTTPValidationError" not in schemas                     # FastAPI's 422 is our 400
    codes = {c for c, _, _ in examples}
    assert {"400", "401", "404", "408", "413", "422", "500", "503"} <= codes
    assert len({(e, d) for _, e, d in examples}) == len(codes)       # one example per code, all different
    html = httpx.get(srv.url + "/docs").text
    assert re.findall(r"(?:src|href)=\"([^\"]+)\"", html) and all(
        u.startswith("/docs/static/") for u in re.findall(r"(?:src|href)=\"([^\"]+)\"", html))
    assert "http://" not in html and "https://" not in html
    assert httpx.get(srv.url + "/docs/static/swagger-ui-bundle.js").status_code == 200


@HARD
def test_times_are_iso_8601_and_fields_are_named_as_in_the_cli(guarded):
    srv, _ = guarded
    c = httpx.Client(base_url=srv.url, headers=_auth(), timeout=60)
    r = c.post("/v1/speakers/iso/enrollments", content=body("0_lucas_0.wav"))
    assert r.status_code == 200 and r.json()["speech_seconds"] > 0
    row, = [s for s in c.get("/v1/speakers").json()["speakers"] if s["speaker"] == "iso"]
    one = c.get("/v1/speakers/iso").json()
    for t in (row["enrolled_at"], row["updated_at"], one["recording_list"][0]["enrolled_at"]):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t), t
    assert set(row) == {"speaker", "recordings", "frames", "speech_seconds", "enrolled_at", "updated_at", "kind"}
    c.delete("/v1/speakers/iso")


# ------------------------------------------------------------------ the stream on the real server
@HARD
def test_the_stream_on_the_real_server(guarded):
    """uvicorn's WebSocket protocol: the key as ?api_key=, no key -> the handshake is refused,
    a message over the size cap closes the socket (1009), a stream ends with a final answer."""
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    import numpy as np
    import soundfile as sf
    from conftest import FIX
    srv, _ = guarded
    with httpx.Client(base_url=srv.url, headers=_auth(), timeout=60) as c:
        assert c.post("/v1/speakers/streamer/enrollments", content=body("0_george_0.wav")).status_code == 200
    ws_url = f"ws://127.0.0.1:{srv.port}/v1/speakers/streamer/verify/stream?sample_rate=8000"
    with pytest.raises(InvalidStatus):
        connect(ws_url, open_timeout=10).close()
    with connect(ws_url + f"&api_key={KEY}", open_timeout=10) as ws:
        with pytest.raises(ConnectionClosed) as e:
            ws.send(b"\0" * (64 * 1024 + 2))
            ws.recv(timeout=10)
        assert e.value.rcvd.code == 1009
    y = np.concatenate([sf.read(FIX / f"{d}_george_1.wav", dtype="float32")[0] for d in range(4)])
    pcm = (y * 32767).astype("<i2").tobytes()
    with connect(ws_url + f"&api_key={OTHER_KEY}", open_timeout=10) as ws:
        for i in range(0, len(pcm), 4000):
            ws.send(pcm[i:i + 4000])
        ws.send("end")
        msgs = []
        for _ in range(100):
            msgs.append(json.loads(ws.recv(timeout=30)))
            if msgs[-1].get("final"):
                break
    assert msgs[-1]["final"] and msgs[-1]["decision"] in ("accept", "reject") and msgs[-1]["speech_seconds"] > 0
