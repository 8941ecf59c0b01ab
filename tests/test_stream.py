"""Streaming verification: the online front-end against the batch one, the sequential test's
thresholds against Wald's formulas, and the WebSocket protocol of ``speaker serve`` (in process
with Starlette's test client; the real server is driven in ``test_serve_hardening.py`` and by the
browser in ``test_web.py``)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import soundfile as sf

from conftest import FIX
from test_serve import open_store

pytest.importorskip("fastapi")

KEY = "stream-test-key-0123456789"
#: Starlette's test client (in-process WebSockets) warns that it prefers httpx2 to httpx.
pytestmark = pytest.mark.filterwarnings("ignore:Using `httpx` with")


def _tones(seconds: float, rate: int = 16000, block: int = 1000) -> np.ndarray:
    """Sinusoids whose periods divide ``block``: every block of the signal has a zero mean, so the
    online front-end's running DC offset is the batch front-end's (zero)."""
    t = np.arange(int(seconds * rate)) / rate
    f0 = rate / block                                             # 16 Hz: whole periods per block
    y = sum(a * np.sin(2 * np.pi * f0 * k * t) for a, k in ((0.3, 12), (0.2, 30), (0.1, 83), (0.05, 225)))
    y *= 1 + 0.5 * np.sin(2 * np.pi * f0 * t)                     # a changing level
    return (y - y.mean()).astype(np.float32)


def _online(cfg, y, step):
    from speaker.stream import OnlineFeatures
    front = OnlineFeatures(cfg)
    return np.concatenate([front.push(y[i:i + step]) for i in range(0, len(y), step)]), front


def test_online_cepstra_and_deltas_equal_the_batch_front_end():
    """Without VAD and normalisation the online features are the batch features (all frames but
    the last delta_width // 2, whose delta window is not complete until the audio ends), whatever
    the block size."""
    from speaker.features import FeatureConfig, extract_features
    cfg = FeatureConfig(vad=False, normalization="none")
    y = _tones(3.0)
    batch = extract_features(y, sample_rate=16000, config=cfg)
    for step in (4000, 1000, 3000):                               # blocks of whole periods: DC stays 0
        online, _ = _online(cfg, y, step)
        assert online.shape == (batch.shape[0] - cfg.delta_width // 2, cfg.dim)
        np.testing.assert_allclose(online, batch[:online.shape[0]], rtol=1e-4, atol=2e-3)


def test_online_cmvn_is_the_cumulative_mean_and_variance():
    """Frame by frame (one hop per push): the first ``warmup`` frames are normalised with their
    own mean and standard deviation, each later frame with those of every frame up to it."""
    from speaker.features import FeatureConfig
    from speaker.stream import OnlineFeatures
    raw_cfg = FeatureConfig(vad=False, normalization="none")
    cfg = FeatureConfig(vad=False, normalization="cmvn")
    y = _tones(2.0)
    raw, _ = _online(raw_cfg, y, 160)
    front = OnlineFeatures(cfg, warmup=50)
    out = np.concatenate([front.push(y[i:i + 160]) for i in range(0, len(y), 160)])
    F = raw[:out.shape[0]].astype(np.float64)
    w = 50
    np.testing.assert_allclose(out[:w], (F[:w] - F[:w].mean(0)) / F[:w].std(0), rtol=1e-3, atol=1e-3)
    for t in (w, w + 17, out.shape[0] - 1):
        expect = (F[t] - F[:t + 1].mean(0)) / F[:t + 1].std(0)
        np.testing.assert_allclose(out[t], expect, rtol=1e-3, atol=1e-3)


def test_online_vad_drops_silence_once_speech_was_heard():
    """Half a second of near-silence, speech-like tones, silence, tones: the online VAD keeps the
    tones and drops the silences (it waits for a level to judge by), as the batch VAD does."""
    from speaker.features import FeatureConfig, extract_features
    cfg = FeatureConfig()
    quiet = (1e-4 * np.random.default_rng(0).standard_normal(8000)).astype(np.float32)
    tone = _tones(1.0)
    y = np.concatenate([quiet, tone, quiet, tone])
    online, front = _online(cfg, y, 4000)
    kept_batch = extract_features(y, sample_rate=16000, config=cfg).shape[0]
    assert abs(online.shape[0] - kept_batch) <= 10 and 180 <= online.shape[0] <= 200
    assert front.speech_seconds == pytest.approx(online.shape[0] * 0.01)


def test_sequential_test_thresholds_and_evidence():
    from speaker.calibration import Calibration
    from speaker.stream import SequentialTest
    t = SequentialTest(target_far=0.01, target_miss=0.05, min_speech=1.0, reference_seconds=3.0)
    assert t.accept_at == pytest.approx(math.log(95.0)) and t.reject_at == pytest.approx(math.log(0.05 / 0.99))
    cal = Calibration(a=2.0, b=-1.0)
    # 300 frames of 10 ms = the reference: the evidence is the calibrated LLR of the mean score
    assert t.evidence(cal, total=300 * 0.7, frames=300, frame_seconds=0.01) == pytest.approx(2 * 0.7 - 1)
    assert t.evidence(cal, total=150 * 0.7, frames=150, frame_seconds=0.01) == pytest.approx((2 * 0.7 - 1) / 2)
    assert t.decide(10.0, 0.9) == "undecided" and t.decide(10.0, 1.0) == "accept"
    assert t.decide(-10.0, 2.0) == "reject" and t.decide(0.0, 5.0) == "undecided" and t.decide(None, 9) == "undecided"
    for bad in ({"target_far": 0.5}, {"target_miss": 0}, {"min_speech": -1}, {"reference_seconds": 0}):
        with pytest.raises(ValueError):
            SequentialTest(**bad)


# ------------------------------------------------------------------ the WebSocket
def _pcm(names, rate=8000) -> bytes:
    y = np.concatenate([sf.read(FIX / n, dtype="float32")[0] for n in names])
    assert sf.info(FIX / names[0]).samplerate == rate
    return (np.clip(y, -1, 1) * 32767).astype("<i2").tobytes()


GEORGE = [f"{d}_george_{i}.wav" for d in range(10) for i in (3, 4)]


@pytest.fixture(scope="module")
def stream_store(cli_trained, tmp_path_factory):
    """george and lucas enrolled from 20 recordings each; a calibration fitted on the fixtures'
    own trials (its scale only has to separate the two)."""
    from speaker.calibration import fit_calibration
    db = tmp_path_factory.mktemp("stream") / "s.db"
    with open_store(db, cli_trained / "ubm.npz") as st:
        for s in ("george", "lucas"):
            st.enroll(s, [FIX / f"{d}_{s}_{i}.wav" for d in range(10) for i in range(2)])
        tests = [FIX / f"{d}_{s}_2.wav" for s in ("george", "lucas") for d in range(10)]
        scores, labels = [], []
        for t in tests:
            for s in ("george", "lucas"):
                scores.append(st.score(s, t))
                labels.append(s in t.name)
        st.calibration = fit_calibration(np.array(scores), np.array(labels))
    return db


def _client(db, **cfg):
    from starlette.testclient import TestClient

    from speaker.serve import ServiceConfig, create_app
    from speaker.stream import SequentialTest, StreamConfig
    store = open_store(db)
    stream = StreamConfig(test=SequentialTest(min_speech=0.5, reference_seconds=1.0),
                          **{k: v for k, v in cfg.items() if k in ("max_streams", "idle_timeout", "max_message_bytes")})
    app = create_app(store, ServiceConfig(stream=stream, **{k: v for k, v in cfg.items()
                                                            if k in ("api_keys", "calibration", "threshold")}))
    return TestClient(app), store


def _converse(ws, pcm: bytes, chunk: int = 4000) -> list[dict]:
    """Send 0.25 s of 8 kHz audio at a time (one evidence message each), then 'end'."""
    msgs = []
    for i in range(0, len(pcm) - chunk + 1, chunk):
        ws.send_bytes(pcm[i:i + chunk])
        msgs.append(ws.receive_json())
        assert "error" not in msgs[-1], msgs[-1]
        if msgs[-1]["final"]:
            return msgs
    ws.send_bytes(pcm[len(pcm) - len(pcm) % chunk:])
    ws.send_text("end")
    while not msgs or not msgs[-1]["final"]:
        msgs.append(ws.receive_json())
    return msgs


def test_stream_decides_early_for_the_speaker_and_an_impostor(stream_store):
    """With a calibrated store the stream accepts george's own voice and rejects lucas's claim to
    be george before the audio ends; evidence grows with the speech heard."""
    client, store = _client(stream_store)
    pcm = _pcm(GEORGE)
    seconds = len(pcm) / 2 / 8000
    with client:
        for claimed, expect in (("george", "accept"), ("lucas", "reject")):
            with client.websocket_connect(f"/v1/speakers/{claimed}/verify/stream?sample_rate=8000") as ws:
                msgs = _converse(ws, pcm)
            last = msgs[-1]
            assert last["final"] and last["early"] and last["decision"] == expect, msgs[-3:]
            assert last["speech_seconds"] >= 0.5 and last["speech_seconds"] < seconds
            heard = [m["speech_seconds"] for m in msgs]
            assert heard == sorted(heard)
            assert all(m["decision"] == "undecided" for m in msgs[:-1])
            assert set(last) == {"speech_seconds", "score", "llr", "evidence", "decision", "final", "early", "reason",
                                 "accept_at", "reject_at"}
    store.close()


def test_without_a_calibration_the_stream_decides_at_the_end_as_post_verify(stream_store, tmp_path):
    """No calibration (a raw threshold): every message is undecided with the reason, and the final
    answer is POST /verify's for the same audio (the batch path on a WAV of the same samples)."""
    import shutil
    db = tmp_path / "nocal.db"
    shutil.copy(stream_store, db)
    with open_store(db) as st:
        st.calibration = None
    client, store = _client(db, threshold=0.0)
    pcm = _pcm(GEORGE[:6])
    wav = tmp_path / "same.wav"
    sf.write(wav, np.frombuffer(pcm, "<i2"), 8000, subtype="PCM_16")
    with client:
        with client.websocket_connect("/v1/speakers/george/verify/stream?sample_rate=8000") as ws:
            msgs = _converse(ws, pcm)
        posted = client.post("/v1/speakers/george/verify", content=wav.read_bytes()).json()
    assert all(m["decision"] == "undecided" and "no calibration" in m["reason"] for m in msgs[:-1])
    last = msgs[-1]
    assert last["final"] and not last["early"]
    assert (last["decision"], last["score"], last["speech_seconds"]) == \
        (posted["decision"], posted["score"], posted["speech_seconds"])
    store.close()


def test_stream_limits_and_errors(stream_store):
    from starlette.websockets import WebSocketDisconnect
    client, store = _client(stream_store, api_keys={"web": KEY}, max_streams=1, idle_timeout=0.5,
                            max_message_bytes=4096)
    base = "/v1/speakers/george/verify/stream"
    with client:
        with pytest.raises(WebSocketDisconnect) as e:                       # no key
            with client.websocket_connect(base + "?sample_rate=8000") as ws:
                ws.receive_json()
        assert e.value.code == 1008

        def error_of(url, send=None):
            with client.websocket_connect(url) as ws:
                if send is not None:
                    ws.send_bytes(send) if isinstance(send, bytes) else ws.send_text(send)
                msg = ws.receive_json()
                with pytest.raises(WebSocketDisconnect) as closed:
                    ws.receive_json()
            return msg["error"], closed.value.code
        q = f"&api_key={KEY}"
        assert error_of(base + "?sample_rate=12345" + q) == ("bad_request", 1008)
        assert error_of("/v1/speakers/nobody/verify/stream?sample_rate=8000" + q) == ("unknown_speaker", 1008)
        assert error_of(base + "?sample_rate=8000" + q, b"\x00" * 4097 + b"\x00") == ("too_large", 1009)
        assert error_of(base + "?sample_rate=8000" + q, b"\x00" * 3) == ("bad_request", 1008)
        assert error_of(base + "?sample_rate=8000" + q, "hello") == ("bad_request", 1008)
        assert error_of(base + "?sample_rate=8000" + q) == ("timeout", 1008)       # idle for 0.5 s
        assert error_of(base + "?sample_rate=8000" + q, "end") == ("bad_audio", 1008)
        with client.websocket_connect(base + "?sample_rate=8000", headers={"X-API-Key": KEY}) as first:
            first.send_bytes(b"\x00\x00" * 100)
            assert error_of(base + "?sample_rate=8000" + q) == ("busy", 1013)      # one stream at a time
    store.close()
