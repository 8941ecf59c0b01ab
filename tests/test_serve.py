"""``speaker serve`` (issue 14): the real server (uvicorn in a subprocess on a free loopback port)
driven with httpx, plus a few in-process checks of the app (httpx's ASGITransport).

Scores are compared with :meth:`SpeakerStore.verify` called in this process on the file path
(another decoding path: the file read by name, not the uploaded bytes), and frame counts with
``extract_features`` of each file."""
from __future__ import annotations

import concurrent.futures as cf
import io
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest
import soundfile as sf

from conftest import FIX, speaker_cli, speaker_command

httpx = pytest.importorskip("httpx")
pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

KEY = "k" * 8 + "-test-key-0123456789"
CAP_BYTES = 256 * 1024
CAP_SECONDS = 10.0
THRESHOLD = -50.0
#: The tests of the module's server run on one xdist worker (one server started, not two).
SERVED = pytest.mark.xdist_group("serve")

# Run the command with a hook inside the enrolment transaction (just before the commit) for
# speakers whose id starts with "slow": it touches SERVE_TEST_MARK and sleeps SERVE_TEST_SLEEP s.
HOOKED = """
import os, sys, time
from speaker.store import SpeakerStore
def _hook(self, speaker_id):
    if speaker_id.startswith("slow"):
        open(os.environ["SERVE_TEST_MARK"], "w").close()
        time.sleep(float(os.environ["SERVE_TEST_SLEEP"]))
SpeakerStore._before_commit = _hook
from speaker.cli import main
sys.exit(main(sys.argv[1:]))
"""


#: The quality gates off: these tests check the HTTP face on one-digit recordings (well under a
#: second of speech); tests/test_decisions.py checks the gates.
UNGATED = ("--min-speech", 0, "--min-speaker-speech", 0, "--min-test-speech", 0)


def open_store(*args, **kwargs):
    """A SpeakerStore without quality gates (see UNGATED)."""
    from speaker.gates import NO_GATE
    from speaker.store import SpeakerStore
    return SpeakerStore(*args, gate=NO_GATE, **kwargs)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``speaker serve`` in its own process (``prefix``: a command to run it under), on a free
    loopback port, quality gates off; ready when /healthz answers one of ``ready`` (within 120 s)."""

    def __init__(self, *args, hooked: bool | str = False, env: dict | None = None, log: Path | None = None,
                 quiet: bool = True, prefix: Sequence[str] = (), ready: Sequence[int] = (200,), **popen):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [*prefix] + ([sys.executable, "-c", hooked if isinstance(hooked, str) else HOOKED] if hooked else speaker_command()) + \
            ["serve", "--port", str(self.port), *(["--quiet"] if quiet else []), *map(str, UNGATED), *map(str, args)]
        self.log = open(log, "w+") if log else subprocess.DEVNULL
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                     env={**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}, **popen)
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, f"server exited {self.proc.returncode}: {self.output()}"
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code in ready:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)

    def output(self) -> str:
        if self.log is subprocess.DEVNULL:
            return ""
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def read_reply(s: socket.socket) -> tuple[str, str]:
    """(head, body) of one HTTP/1.1 response with a Content-Length, read from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536) or b"?"
    head, _, rest = data.partition(b"\r\n\r\n")
    n = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    while len(rest) < n:
        rest += s.recv(65536)
    return head.decode("latin-1"), rest.decode()


def wav(name: str) -> Path:
    return FIX / name


def body(name: str) -> bytes:
    return wav(name).read_bytes()


def frames(path: Path, config) -> int:
    from speaker import extract_features
    return extract_features(path, config=config).shape[0]


def wav_bytes(y: np.ndarray, sr: int = 8000) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, y, sr, format="WAV", subtype="PCM_16")
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(cli_trained, tmp_path_factory):
    """A store created by the server from the session's small UBM (8 components, 8 kHz), with an
    API key, small caps and a low threshold (so that identify lists speakers)."""
    d = tmp_path_factory.mktemp("serve")
    (d / "key.txt").write_text(KEY + "\n")
    db = d / "speakers.db"
    srv = Server("--ubm", cli_trained / "ubm.npz", "--store", db, "--api-key-file", d / "key.txt",
                 "--max-bytes", CAP_BYTES, "--max-seconds", CAP_SECONDS, "--threads", 4,
                 "--threshold", THRESHOLD, log=d / "server.log")
    client = httpx.Client(base_url=srv.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=120)
    with open_store(db) as st:
        config = st.config
    yield srv, client, db, config
    client.close()
    srv.stop()
    assert srv.proc.returncode == 0, srv.output()


def enrol(client, sid, name, multipart=False, **params):
    if multipart:
        return client.post(f"/v1/speakers/{sid}/enrollments", params=params,
                           files={"file": ("../../etc/passwd", body(name), "audio/wav")})
    return client.post(f"/v1/speakers/{sid}/enrollments", params=params, content=body(name),
                       headers={"Content-Type": "audio/wav"})


def assert_error(r, status, code, words=()):
    assert r.status_code == status, r.text
    j = r.json()
    assert set(j) == {"error", "detail"} and j["error"] == code, j
    for w in words:
        assert w in j["detail"], j


@SERVED
def test_enrol_verify_identify_delete(served):
    srv, client, db, config = served
    files = {"george": ["0_george_0.wav", "1_george_0.wav", "2_george_0.wav"],
             "jackson": ["0_jackson_0.wav", "1_jackson_0.wav", "2_jackson_0.wav"]}
    for sid, names in files.items():
        for i, n in enumerate(names):
            r = enrol(client, sid, n, multipart=(sid == "jackson"))
            assert r.status_code == 200, r.text
            assert r.json()["recordings"] == i + 1 and r.json()["added"]
        assert r.json()["frames"] == sum(frames(wav(n), config) for n in names)
    again = enrol(client, "george", files["george"][0]).json()           # the same content: skipped
    assert not again["added"] and again["recordings"] == 3 and "already enrolled" in again["skipped"]

    with open_store(db) as st:                                          # an independent path: file by name
        for sid in files:
            for test in ("3_george_3.wav", "3_jackson_3.wav"):
                ref = st.verify(sid, wav(test), threshold=THRESHOLD)
                j = client.post(f"/v1/speakers/{sid}/verify", content=body(test)).json()
                assert j["speaker"] == sid and j["threshold"] == THRESHOLD and j["llr"] is None
                assert j["score"] == pytest.approx(ref.score, rel=1e-9, abs=1e-12)
                assert j["decision"] == ("accept" if ref.score >= THRESHOLD else "reject")
        ids, scores = st.scores_all(wav("3_george_3.wav"))
    hits = client.post("/v1/identify", params={"top": 2}, content=body("3_george_3.wav")).json()["speakers"]
    order = np.argsort(-scores)
    assert [h["speaker"] for h in hits] == [ids[j] for j in order[:2]]
    assert [h["score"] for h in hits] == pytest.approx([scores[j] for j in order[:2]], rel=1e-9)

    listed = {s["speaker"]: s for s in client.get("/v1/speakers").json()["speakers"]}
    assert {"george", "jackson"} <= set(listed) and listed["george"]["recordings"] == 3
    one = client.get("/v1/speakers/jackson").json()
    assert [r["sha256"] for r in one["recording_list"]] == \
        [__import__("hashlib").sha256(body(n)).hexdigest() for n in files["jackson"]]
    assert all("passwd" not in r["source"] for r in one["recording_list"])    # the client's name is not used

    r = enrol(client, "jackson", "4_jackson_4.wav", replace="true")
    assert r.json()["recordings"] == 1 and r.json()["frames"] == frames(wav("4_jackson_4.wav"), config)

    assert client.delete("/v1/speakers/jackson").json() == {"speaker": "jackson", "removed": True}
    assert_error(client.get("/v1/speakers/jackson"), 404, "unknown_speaker")
    assert_error(client.delete("/v1/speakers/jackson"), 404, "unknown_speaker")
    assert_error(client.post("/v1/speakers/jackson/verify", content=body("3_george_3.wav")), 404, "unknown_speaker")
    # the speaker is checked before the upload is decoded: not audio at all is still a 404 (was 422)
    assert_error(client.post("/v1/speakers/jackson/verify", content=b"not audio" * 100), 404, "unknown_speaker")


@SERVED
def test_errors(served):
    srv, client, db, config = served
    assert enrol(client, "errs", "0_lucas_0.wav").status_code == 200
    v = "/v1/speakers/errs/verify"
    for bad in ("a%20b", "x" * 129, ".hidden", "%E2%82%AC"):
        assert_error(client.post(f"/v1/speakers/{bad}/verify", content=body("0_lucas_1.wav")), 400, "bad_request",
                     ["speaker id"])
    assert_error(client.post(v, content=b"not audio at all" * 10), 422, "bad_audio", ["cannot decode"])
    assert_error(client.post(v, content=b""), 422, "bad_audio", ["empty"])
    assert_error(client.post(v, content=wav_bytes(np.zeros(8000, np.float32))), 422, "bad_audio", ["silence"])
    assert_error(client.post(v, content=body("0_lucas_1.wav")[:60]), 422, "bad_audio")
    assert_error(client.post(v, files={"other": ("x.wav", body("0_lucas_1.wav"))}), 400, "bad_request", ["'file'"])
    assert_error(client.post(v, content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data"}),
                 400, "bad_request", ["boundary"])
    long = wav_bytes(0.1 * np.random.default_rng(0).standard_normal(int(8000 * (CAP_SECONDS + 1))))
    assert len(long) < CAP_BYTES
    assert_error(client.post(v, content=long), 413, "too_long", [f"{CAP_SECONDS:g} s"])
    assert_error(client.post(v, content=b"\0" * (CAP_BYTES + 1)), 413, "too_large", [str(CAP_BYTES)])
    assert_error(client.post("/v1/identify", params={"top": 0}, content=body("0_lucas_1.wav")), 400, "bad_request")
    assert_error(client.get("/nowhere"), 404, "not_found")
    assert_error(client.put("/v1/speakers"), 405, "method_not_allowed")
    assert client.post(v, content=body("0_lucas_1.wav")).status_code == 200   # the speaker is still there


@SERVED
def test_upload_over_the_byte_cap_is_refused_while_it_is_being_sent(served):
    """A chunked upload gets its 413 as soon as it passes the cap, before the body ends."""
    srv, client, db, config = served
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(f"POST /v1/speakers/errs/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        chunk = b"\1" * (64 * 1024)
        for _ in range(CAP_BYTES // len(chunk) + 1):
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        head, reply = read_reply(s)                             # the body was never finished
    assert head.startswith("HTTP/1.1 413") and '"too_large"' in reply


@SERVED
def test_declared_content_length_over_the_cap_is_refused_before_reading(served):
    srv, client, db, config = served
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(f"POST /v1/speakers/errs/verify HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                  f"Content-Length: {CAP_BYTES * 100}\r\n\r\n".encode())
        head, reply = read_reply(s)                             # no byte of the body was sent
    assert head.startswith("HTTP/1.1 413") and '"too_large"' in reply


@SERVED
def test_api_key(served):
    srv, client, db, config = served
    url = srv.url + "/v1/speakers"
    assert_error(httpx.get(url), 401, "unauthorized", ["missing"])
    assert httpx.get(url).headers["www-authenticate"] == "Bearer"
    assert_error(httpx.get(url, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized", ["wrong"])
    assert_error(httpx.get(url, headers={"X-API-Key": KEY[:-1]}), 401, "unauthorized", ["wrong"])
    assert_error(httpx.get(url, headers={"Authorization": f"Basic {KEY}"}), 401, "unauthorized")
    assert_error(httpx.get(url, params={"api_key": KEY}), 401, "unauthorized")    # a query key: WebSockets only
    assert_error(httpx.post(srv.url + "/v1/speakers/x/enrollments", content=body("0_lucas_0.wav")), 401,
                 "unauthorized")
    assert httpx.get(url, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    assert httpx.get(url, headers={"authorization": f"bearer {KEY}"}).status_code == 200
    assert httpx.get(url, headers={"X-API-Key": KEY}).status_code == 200
    for open_path in ("/openapi.json", "/docs", "/", "/docs/static/swagger-ui.css"):    # no key needed
        assert httpx.get(srv.url + open_path).status_code == 200, open_path
    h = httpx.get(srv.url + "/healthz").json()                    # no key needed
    from speaker import extract_features
    assert h["status"] == "ok" and h["ubm"]["components"] == 8
    assert h["ubm"]["dims"] == extract_features(wav("0_lucas_0.wav"), config=config).shape[1]


@SERVED
def test_concurrent_enrolments_lose_nothing(served):
    srv, client, db, config = served
    same = [f"{dg}_george_{i}.wav" for dg in range(5, 10) for i in (1, 2)]          # 10 recordings, one speaker
    other = [(f"conc{j}", f"{j}_lucas_{i}.wav") for j in range(6) for i in (2, 3)]  # 6 speakers x 2
    jobs = [("crowd", n) for n in same] + other
    with cf.ThreadPoolExecutor(12) as ex:
        codes = list(ex.map(lambda job: enrol(httpx.Client(base_url=srv.url, timeout=120,
                                                           headers={"X-API-Key": KEY}), *job).status_code, jobs))
    assert codes == [200] * len(jobs)
    with open_store(db) as st:
        info = {s.id: s for s in st.speakers()}
        assert info["crowd"].n_recordings == len(same)
        assert info["crowd"].n_frames == sum(frames(wav(n), config) for n in same)
        assert int(round(st.stats("crowd").n_samples)) == info["crowd"].n_frames
        for j in range(6):
            names = [n for s, n in other if s == f"conc{j}"]
            assert info[f"conc{j}"].n_recordings == 2
            assert info[f"conc{j}"].n_frames == sum(frames(wav(n), config) for n in names)


@SERVED
def test_changes_by_another_process_are_seen(served):
    """Another writer (this process, its own connection) enrols, extends and removes a speaker:
    the service's cached models follow the store's generations."""
    srv, client, db, config = served
    test = "4_jackson_2.wav"
    with open_store(db) as st:
        st.enroll("outside", [wav("0_jackson_1.wav")])
        first = client.post("/v1/speakers/outside/verify", content=body(test)).json()["score"]
        assert first == pytest.approx(st.verify("outside", wav(test)).score, rel=1e-9)
        st.enroll("outside", [wav(f"{dg}_jackson_1.wav") for dg in range(1, 6)])
        second = client.post("/v1/speakers/outside/verify", content=body(test)).json()["score"]
        assert second != first and second == pytest.approx(st.verify("outside", wav(test)).score, rel=1e-9)
        assert client.get("/v1/speakers/outside").json()["recordings"] == 6
        st.remove("outside")
    assert_error(client.post("/v1/speakers/outside/verify", content=body(test)), 404, "unknown_speaker")


def _enrol_in_thread(url, sid, name):
    out = {}

    def go():
        try:
            out["r"] = httpx.post(f"{url}/v1/speakers/{sid}/enrollments", content=body(name), timeout=120)
        except httpx.TransportError as exc:
            out["exc"] = exc
    t = threading.Thread(target=go)
    t.start()
    return t, out


def _wait_for(path: Path, proc, timeout=120):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)


def test_sigkill_mid_enrolment_leaves_the_store_consistent(cli_trained, tmp_path):
    db, mark = tmp_path / "s.db", tmp_path / "mark"
    with open_store(db, cli_trained / "ubm.npz") as st:
        st.enroll("slowk", [wav("0_lucas_0.wav")])
        before = st.stats("slowk")
    srv = Server("--store", db, hooked=True, env={"SERVE_TEST_MARK": str(mark), "SERVE_TEST_SLEEP": "60"})
    t, out = _enrol_in_thread(srv.url, "slowk", "1_lucas_0.wav")
    _wait_for(mark, srv.proc)                        # inside the transaction, the new row written
    srv.proc.kill()
    srv.proc.wait()
    t.join(60)
    assert "exc" in out and "r" not in out
    with open_store(db) as st:                     # a fresh store: as before the enrolment
        assert [s.n_recordings for s in st.speakers()] == [1]
        after = st.stats("slowk")
        assert after.n_samples == before.n_samples and np.array_equal(after.sum_x, before.sum_x)
        st.enroll("slowk", [wav("1_lucas_0.wav")])   # and still writable
        assert len(st.recordings("slowk")) == 2


def test_sigterm_drains_the_request_in_flight_and_exits_0(cli_trained, tmp_path):
    db, mark = tmp_path / "s.db", tmp_path / "mark"
    srv = Server("--ubm", cli_trained / "ubm.npz", "--store", db, hooked=True, log=tmp_path / "log",
                 env={"SERVE_TEST_MARK": str(mark), "SERVE_TEST_SLEEP": "2"})
    t, out = _enrol_in_thread(srv.url, "slowt", "1_lucas_0.wav")
    _wait_for(mark, srv.proc)
    srv.proc.send_signal(signal.SIGTERM)
    t.join(60)
    assert out["r"].status_code == 200 and out["r"].json()["recordings"] == 1
    assert srv.proc.wait(60) == 0, srv.output()
    assert "SIGTERM" in srv.output()
    assert "WARNING" in srv.output() and "no calibration and no --threshold" in srv.output()   # said at start-up
    with open_store(db) as st:
        assert st.speakers()[0].n_recordings == 1


def test_non_loopback_without_a_key_is_refused(cli_trained, tmp_path):
    db = tmp_path / "s.db"
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.org"):
        r = speaker_cli("serve", "--ubm", cli_trained / "ubm.npz", "--store", db, "--host", host, check=1)
        assert "refusing" in r.stderr and "--api-key-file" in r.stderr
    assert not db.exists()                               # refused before anything was opened
    (tmp_path / "short").write_text("abc\n")
    r = speaker_cli("serve", "--store", db, "--host", "0.0.0.0", "--api-key-file", tmp_path / "short", check=1)
    assert "at least 16" in r.stderr
    from speaker.cli.serve import is_loopback
    assert all(map(is_loopback, ["127.0.0.1", "127.8.9.1", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "myhost"]))


def test_help_imports_no_web_framework():
    code = ("import sys, speaker.cli; speaker.cli.build_parser(); "
            "print(' '.join(m for m in ('fastapi', 'starlette', 'uvicorn', 'pydantic') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


# --------------------------------------------------------------------- in process (ASGI)

@pytest.fixture(scope="module")
def store_copy(cli_trained, tmp_path_factory):
    d = tmp_path_factory.mktemp("inproc")
    st = open_store(d / "s.db", cli_trained / "ubm.npz")
    st.enroll("george", [wav(f"{dg}_george_0.wav") for dg in range(4)])
    st.enroll("lucas", [wav(f"{dg}_lucas_0.wav") for dg in range(4)])
    yield st
    st.close()


def in_process(app, requests):
    """Send ``requests`` ((method, url, body) tuples) to ``app`` in this process (httpx's
    ASGITransport; no lifespan: the worker threads are shut down here); their JSON answers."""
    import asyncio

    async def go():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as c:
            return [(await c.request(m, u, content=b)).json() for m, u, b in requests]
    try:
        return asyncio.run(go())
    finally:
        app.state.service.pool.shutdown()


def test_identify_none_and_calibrated_llr_in_process(store_copy):
    from speaker.calibration import Calibration
    from speaker.serve import ServiceConfig, create_app
    test = body("5_george_3.wav")
    none, = in_process(create_app(store_copy, ServiceConfig(threshold=1e6)), [("POST", "/v1/identify?top=3", test)])
    assert none["speakers"] == [] and [c["decision"] for c in none["candidates"]] == ["reject", "reject"]
    cal = Calibration(2.0, 0.5)
    j, hits = in_process(create_app(store_copy, ServiceConfig(calibration=cal, p_target=0.01)),
                         [("POST", "/v1/speakers/george/verify", test), ("POST", "/v1/identify?top=2", test)])
    ref = store_copy.verify("george", wav("5_george_3.wav"), calibration=cal, p_target=0.01)
    assert j["llr"] == pytest.approx(2.0 * j["score"] + 0.5) and j["score"] == pytest.approx(ref.score, rel=1e-9)
    assert j["threshold"] == pytest.approx(np.log(0.99 / 0.01))          # the Bayes threshold at p = 0.01
    assert j["decision"] == ("accept" if j["llr"] >= j["threshold"] else "reject") == \
        ("accept" if ref.accept else "reject")
    assert all(h["llr"] == pytest.approx(2.0 * h["score"] + 0.5) for h in hits["speakers"])


def test_store_calls_are_serialised_unless_the_store_is_thread_safe(store_copy):
    import contextlib

    from speaker.serve import create_app
    from speaker.store import SpeakerStore
    assert SpeakerStore.thread_safe
    app = create_app(store_copy)
    assert isinstance(app.state.service.lock, contextlib.nullcontext)       # no lock needed
    app.state.service.pool.shutdown()

    class NotThreadSafe(SpeakerStore):
        thread_safe = False
    store_copy.__class__ = NotThreadSafe
    try:
        app = create_app(store_copy)
        lock = app.state.service.lock
        assert lock.acquire(blocking=False) and (lock.release() is None)    # a real lock
        app.state.service.pool.shutdown()
    finally:
        store_copy.__class__ = SpeakerStore


@pytest.mark.parametrize("top_c", [None, 3])
def test_verify_and_identify_answer_the_same_score_in_process(store_copy, top_c):
    """The service's verify and identify give a speaker the same score, to the last bit (JSON
    floats round-trip), and the library's own for the same file, exact and top-C; each request's
    scoring is one read transaction of the store (a verify reads whether the speaker exists in
    one more, before its upload is decoded)."""
    import sqlalchemy as sa
    from speaker.serve import ServiceConfig, create_app
    test = "5_george_3.wav"
    with open_store(store_copy.path, top_c=top_c) as st:
        app = create_app(st, ServiceConfig(threshold=-1e9))
        begun = []
        sa.event.listen(st._db.engine, "begin", begun.append)
        requests = [("POST", f"/v1/speakers/{s}/verify", body(test)) for s in ("george", "lucas")]
        *verified, found = in_process(app, requests + [("POST", "/v1/identify?top=2", body(test))])
        assert len(begun) == 2 * 2 + 1
        listed = {h["speaker"]: h["score"] for h in found["speakers"]}
        for j in verified:
            assert j["score"] == listed[j["speaker"]] == st.verify(j["speaker"], wav(test), threshold=-1e9).score
