"""Tests for speaker.features, checked against independent computations (librosa/scipy/numpy)."""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import librosa
import numpy as np
import pytest
import scipy.fft
import soundfile as sf

from speaker.audio import AudioError
from speaker.features import FeatureConfig, extract_features, vad

FIXTURES = Path(__file__).resolve().parent.parent / "audio_fixtures"
ALL_FIXTURES = sorted(FIXTURES.glob("*.wav"))
NB = FeatureConfig(sample_rate=8000)  # the fixtures are 8 kHz narrowband
DB = 10.0 / np.log(10.0)  # dB per natural-log unit of power


def _raw_log_energy(y: np.ndarray, win: int, hop: int) -> np.ndarray:
    """ln(mean square) of each frame, by explicit slicing (independent of the framing code)."""
    n = 1 + (len(y) - win) // hop
    y = y.astype(np.float64)
    power = [np.mean(y[t * hop : t * hop + win] ** 2) for t in range(n)]
    return np.log(np.maximum(power, 1e-10))


def _fixture(name: str) -> np.ndarray:
    y, rate = sf.read(FIXTURES / name, dtype="float64")
    assert rate == 8000
    return y - y.mean()


# --------------------------------------------------------------------------- FeatureConfig
def test_defaults_and_derived_sizes() -> None:
    cfg = FeatureConfig()
    assert cfg.to_dict() == {
        "sample_rate": 16000, "win_length_ms": 25.0, "hop_length_ms": 10.0, "n_fft": None,
        "window": "hamming", "preemphasis": 0.97, "n_mels": 40, "n_ceps": 20, "fmin": 20.0,
        "fmax": None, "lifter": 0.0, "use_energy": True, "deltas": True, "delta_deltas": True,
        "delta_width": 9, "vad": True, "vad_energy_threshold": 40.0,
        "vad_energy_mean_scale": 0.0, "vad_context": 2, "vad_proportion_threshold": 0.6,
        "normalization": "cmvn", "cmn_window": 301,
    }  # fmt: skip
    assert (cfg.win_samples, cfg.hop_samples, cfg.fft_size, cfg.fmax_hz, cfg.dim) == (
        400, 160, 512, 8000.0, 60)
    assert (NB.win_samples, NB.hop_samples, NB.fft_size, NB.fmax_hz) == (200, 80, 256, 4000.0)
    assert FeatureConfig(deltas=False, delta_deltas=False).dim == 20
    assert FeatureConfig(deltas=False).dim == 40
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_ceps = 13  # type: ignore[misc]


def test_json_round_trip() -> None:
    cfg = FeatureConfig(
        sample_rate=8000, fmax=3800.0, n_mels=24, n_ceps=13, normalization="cmn-sliding",
        cmn_window=151, use_energy=False, delta_deltas=False, lifter=22, vad_context=0,
        n_fft=512, window="hann",
    )
    text = cfg.to_json()
    assert isinstance(json.loads(text), dict)
    back = FeatureConfig.from_json(text)
    assert back == cfg and back.to_dict() == cfg.to_dict()
    default = FeatureConfig()
    assert FeatureConfig.from_dict(json.loads(json.dumps(default.to_dict()))) == default


def test_from_dict_missing_keys_take_defaults_and_numpy_scalars_are_converted() -> None:
    cfg = FeatureConfig.from_dict({"sample_rate": np.int64(8000), "preemphasis": np.float32(0.5)})
    assert cfg == FeatureConfig(sample_rate=8000, preemphasis=float(np.float32(0.5)))
    assert type(cfg.sample_rate) is int and type(cfg.preemphasis) is float
    json.dumps(cfg.to_dict())  # plain Python types


def test_from_dict_rejects_unknown_keys() -> None:
    msg = r"unknown FeatureConfig key\(s\): n_mfcc, zzz; valid keys: sample_rate, "
    with pytest.raises(ValueError, match=msg):
        FeatureConfig.from_dict({"n_mfcc": 13, "zzz": 1, "sample_rate": 8000})
    with pytest.raises(TypeError):
        FeatureConfig.from_dict([("sample_rate", 8000)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": -8000}, "sample_rate"),
        ({"sample_rate": 16000.5}, "sample_rate"),
        ({"sample_rate": True}, "sample_rate"),
        ({"win_length_ms": 0}, "win_length_ms"),
        ({"win_length_ms": float("nan")}, "win_length_ms"),
        ({"hop_length_ms": -10}, "hop_length_ms"),
        ({"hop_length_ms": 0.01}, "hop_length_ms"),
        ({"n_fft": 256}, "n_fft"),  # < 400-sample window
        ({"window": "no-such-window"}, "window"),
        ({"preemphasis": 1.0}, "preemphasis"),
        ({"preemphasis": -0.1}, "preemphasis"),
        ({"n_mels": 0}, "n_mels"),
        ({"n_ceps": 41}, "n_ceps"),
        ({"n_ceps": 0}, "n_ceps"),
        ({"fmin": -1.0}, "fmin"),
        ({"fmax": 8001.0}, "fmax"),
        ({"sample_rate": 8000, "fmax": 7600.0}, "fmax"),
        ({"fmin": 5000.0, "fmax": 4000.0}, "fmin"),
        ({"lifter": -1.0}, "lifter"),
        ({"use_energy": 1}, "use_energy"),
        ({"deltas": "yes"}, "deltas"),
        ({"delta_width": 8}, "delta_width"),
        ({"delta_width": 1}, "delta_width"),
        ({"vad_energy_threshold": 0.0}, "vad_energy_threshold"),
        ({"vad_energy_mean_scale": 1.5}, "vad_energy_mean_scale"),
        ({"vad_context": -1}, "vad_context"),
        ({"vad_proportion_threshold": 0.0}, "vad_proportion_threshold"),
        ({"vad_proportion_threshold": 1.1}, "vad_proportion_threshold"),
        ({"normalization": "cmn"}, "normalization"),
        ({"cmn_window": 0}, "cmn_window"),
    ],
)
def test_invalid_values_rejected(changes: dict, field: str) -> None:
    with pytest.raises(ValueError, match=rf"FeatureConfig\.{field} "):
        FeatureConfig.from_dict(changes)


# --------------------------------------------------------------------------- extract_features
def test_fixture_features_shape_dtype() -> None:
    feats = extract_features(FIXTURES / "3_jackson_2.wav", config=NB)
    assert feats.dtype == np.float32 and feats.ndim == 2 and feats.shape[1] == 60
    assert feats.shape[0] > 10 and feats.flags.c_contiguous
    assert np.isfinite(feats).all()


def test_path_and_signal_give_same_features() -> None:
    path = FIXTURES / "4_lucas_0.wav"
    y, rate = sf.read(path, dtype="int16")
    np.testing.assert_allclose(
        extract_features(y, rate, NB), extract_features(path, config=NB), rtol=1e-5, atol=1e-5
    )


def test_upsampling_narrowband_warns() -> None:
    path = FIXTURES / "0_theo_0.wav"
    with pytest.warns(UserWarning, match=r"sample_rate=8000"):
        feats = extract_features(path)  # 16 kHz default on 8 kHz audio
    assert feats.shape[1] == 60 and np.isfinite(feats).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        extract_features(path, config=NB)
        extract_features(path, config=FeatureConfig(fmax=4000.0))


@pytest.mark.parametrize("name", ["0_george_0.wav", "9_yweweler_3.wav", "5_nicolas_4.wav"])
@pytest.mark.parametrize("cfg", [NB, FeatureConfig()], ids=["8k", "16k"])
def test_frame_count_without_vad(name: str, cfg: FeatureConfig) -> None:
    cfg = dataclasses.replace(cfg, vad=False, fmax=min(cfg.fmax_hz, 4000.0))
    duration = sf.info(FIXTURES / name).duration
    feats = extract_features(FIXTURES / name, config=cfg)
    expected = (duration - cfg.win_length_ms / 1000) / (cfg.hop_length_ms / 1000) + 1
    assert expected - 1 < feats.shape[0] <= expected


@pytest.mark.parametrize("lifter", [0.0, 22.0])
def test_static_mfcc_matches_librosa_reference(lifter: float) -> None:
    """Cepstra equal librosa's mel spectrogram -> ln -> scipy DCT-II (ortho) (-> HTK lifter)."""
    cfg = dataclasses.replace(
        NB, vad=False, deltas=False, delta_deltas=False, normalization="none",
        use_energy=False, lifter=lifter,
    )  # fmt: skip
    y = _fixture("6_george_1.wav")
    a = cfg.preemphasis
    emph = np.concatenate([[y[0] * (1 - a)], y[1:] - a * y[:-1]])
    # librosa centres the win-sample window inside each n_fft frame; pad so frames line up.
    off = (cfg.fft_size - cfg.win_samples) // 2
    emph = np.pad(emph, (off, cfg.fft_size - cfg.win_samples - off))
    mel = librosa.feature.melspectrogram(
        y=emph, sr=8000, n_fft=cfg.fft_size, hop_length=cfg.hop_samples,
        win_length=cfg.win_samples, window="hamming", center=False, power=2.0,
        n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=4000.0, htk=True, norm=None,
    )  # fmt: skip
    ref = scipy.fft.dct(np.log(np.maximum(mel, 1e-10)), type=2, norm="ortho", axis=0)
    ref = ref[: cfg.n_ceps].T
    if lifter:
        ref = ref * (1 + lifter / 2 * np.sin(np.pi * np.arange(cfg.n_ceps) / lifter))
    feats = extract_features(FIXTURES / "6_george_1.wav", config=cfg)
    assert feats.shape == ref.shape == (1 + (len(y) - 200) // 80, 20)
    np.testing.assert_allclose(feats, ref, rtol=1e-3, atol=2e-3 * np.abs(ref).max())


def test_mfcc_16k_with_zero_padded_fft_matches_librosa_mfcc() -> None:
    rng = np.random.default_rng(3)
    t = np.arange(16000) / 16000
    y = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    y += 0.05 * np.sin(2 * np.pi * 3100 * t) + 0.01 * rng.standard_normal(t.size)
    y -= y.mean()
    cfg = FeatureConfig(vad=False, deltas=False, delta_deltas=False, normalization="none",
                        use_energy=False, preemphasis=0.0, n_mels=30, n_ceps=13, fmin=0.0)
    off = (512 - 400) // 2
    mel = librosa.feature.melspectrogram(
        y=np.pad(y, (off, 112 - off)), sr=16000, n_fft=512, hop_length=160, win_length=400,
        window="hamming", center=False, n_mels=30, fmin=0.0, fmax=8000.0, htk=True, norm=None,
    )  # fmt: skip
    log_mel = np.log(np.maximum(mel, 1e-10))
    ref = librosa.feature.mfcc(S=log_mel, n_mfcc=13, dct_type=2, norm="ortho").T
    feats = extract_features(y, 16000, cfg)
    assert feats.shape == ref.shape == (98, 13)
    np.testing.assert_allclose(feats, ref, rtol=1e-3, atol=2e-3 * np.abs(ref).max())


def test_c0_replaced_by_raw_log_energy() -> None:
    cfg = dataclasses.replace(NB, vad=False, deltas=False, delta_deltas=False, normalization="none")
    y = _fixture("2_theo_4.wav")
    feats = extract_features(FIXTURES / "2_theo_4.wav", config=cfg)
    np.testing.assert_allclose(feats[:, 0], _raw_log_energy(y, 200, 80), rtol=1e-5, atol=1e-4)


def _poly_derivative(x: np.ndarray, half: int, degree: int) -> np.ndarray:
    """Least-squares polynomial fit over t-half..t+half (edges replicated); its derivative at t."""
    padded = np.concatenate([np.repeat(x[:1], half, 0), x, np.repeat(x[-1:], half, 0)])
    n = np.arange(-half, half + 1)
    out = np.empty_like(x, dtype=np.float64)
    for t in range(len(x)):
        coef = np.polyfit(n, padded[t : t + 2 * half + 1], degree)  # highest power first
        out[t] = coef[-2] if degree == 1 else 2 * coef[-3]
    return out


def test_deltas_are_regression_derivatives() -> None:
    cfg = dataclasses.replace(NB, vad=False, normalization="none")
    feats = extract_features(FIXTURES / "8_jackson_1.wav", config=cfg).astype(np.float64)
    static, d1, d2 = feats[:, :20], feats[:, 20:40], feats[:, 40:]
    np.testing.assert_allclose(d1, _poly_derivative(static, 4, 1), atol=1e-4)
    np.testing.assert_allclose(d2, _poly_derivative(static, 4, 2), atol=1e-4)


def test_deltas_use_all_frames_then_vad_selects_rows() -> None:
    name = "5_lucas_1.wav"  # has ~60 frames of real silence after the word
    base = dataclasses.replace(NB, normalization="none")
    all_frames = extract_features(FIXTURES / name, config=dataclasses.replace(base, vad=False))
    kept = extract_features(FIXTURES / name, config=base)
    mask = vad(_raw_log_energy(_fixture(name), 200, 80), base)
    assert 0 < mask.sum() < 0.7 * len(mask)
    np.testing.assert_allclose(kept, all_frames[mask], rtol=1e-6, atol=1e-6)


def test_cmvn_zero_mean_unit_variance() -> None:
    feats = extract_features(FIXTURES / "1_yweweler_2.wav", config=NB).astype(np.float64)
    np.testing.assert_allclose(feats.mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(feats.std(axis=0), 1.0, atol=1e-4)


def test_sliding_cmn_matches_kaldi_centered_window() -> None:
    y = np.concatenate([_fixture(f"{d}_nicolas_0.wav") for d in range(6)])  # ~200 frames
    raw = extract_features(y, 8000, dataclasses.replace(NB, vad=False, normalization="none"))
    w = 51
    out = extract_features(
        y, 8000, dataclasses.replace(NB, vad=False, normalization="cmn-sliding", cmn_window=w))
    n = len(raw)
    assert n > 3 * w
    expected = np.empty_like(raw, dtype=np.float64)
    for t in range(n):
        start = min(max(t - w // 2, 0), n - w)  # window shifted, not truncated, at the edges
        expected[t] = raw[t] - raw[start : start + w].astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(out, expected, atol=1e-4)
    # shorter than the window: plain per-utterance mean subtraction
    short = extract_features(
        y[:8000], 8000, dataclasses.replace(NB, vad=False, normalization="cmn-sliding"))
    raw_short = extract_features(
        y[:8000], 8000, dataclasses.replace(NB, vad=False, normalization="none"))
    np.testing.assert_allclose(short, raw_short - raw_short.mean(axis=0), atol=1e-4)


def test_too_short_raises(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match=r"^<signal>: too short"):
        extract_features(np.random.default_rng(0).standard_normal(399), 16000)
    path = tmp_path / "tiny.wav"
    sf.write(path, np.random.default_rng(0).uniform(-0.5, 0.5, 150), 8000)
    with pytest.raises(AudioError, match=r"too short") as exc:
        extract_features(path, config=NB)
    assert str(exc.value).startswith(f"{path}: ")
    one = extract_features(np.random.default_rng(0).standard_normal(400), 16000)
    assert one.shape == (1, 60) and np.isfinite(one).all()


def test_load_errors_propagate(tmp_path: Path) -> None:
    path = tmp_path / "bad.wav"
    path.write_text("not audio")
    with pytest.raises(AudioError, match=r"cannot decode") as exc:
        extract_features(path, config=NB)
    assert str(exc.value).startswith(str(path))
    with pytest.raises(TypeError):
        extract_features(path, config={"sample_rate": 8000})  # type: ignore[arg-type]


# --------------------------------------------------------------------------- VAD
def _burst_signal(rate: int, pre: float, burst: float, post: float, noise_rms: float):
    """Low-level white noise with a harmonic tone burst; returns (signal, burst sample range)."""
    rng = np.random.default_rng(7)
    n_pre, n_burst, n_post = (int(rate * s) for s in (pre, burst, post))
    t = np.arange(n_burst) / rate
    tone = sum(0.3 / k * np.sin(2 * np.pi * 150 * k * t) for k in range(1, 8))
    ramp = int(0.01 * rate)  # 10 ms raised-cosine on/off
    env = np.ones(n_burst)
    env[:ramp] = env[-ramp:][::-1] = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
    y = noise_rms * rng.standard_normal(n_pre + n_burst + n_post)
    y[n_pre : n_pre + n_burst] += tone * env
    return y, (n_pre, n_pre + n_burst)


def _frame_labels(n_frames: int, win: int, hop: int, burst: tuple[int, int], guard: int):
    starts = np.arange(n_frames) * hop
    inside = (starts >= burst[0]) & (starts + win <= burst[1])
    outside = (starts + win + guard * hop <= burst[0]) | (starts - guard * hop >= burst[1])
    return inside, outside


@pytest.mark.parametrize(("pre", "post"), [(0.5, 0.5), (3.0, 3.0)])
def test_vad_keeps_burst_drops_silence(pre: float, post: float) -> None:
    cfg = FeatureConfig()
    y, burst = _burst_signal(16000, pre, 0.4, post, noise_rms=1e-3)  # noise at -60 dBFS
    log_e = _raw_log_energy(y, 400, 160)
    mask = vad(log_e, cfg)
    assert mask.dtype == bool and mask.shape == log_e.shape
    inside, outside = _frame_labels(len(mask), 400, 160, burst, guard=cfg.vad_context)
    assert mask[inside].all()
    assert mask[outside].mean() < 0.02
    # through the full pipeline: roughly the burst's frames remain
    n = extract_features(y, 16000, cfg).shape[0]
    assert inside.sum() <= n <= inside.sum() + 6 + 2 * cfg.vad_context


def test_vad_is_gain_invariant() -> None:
    y, _ = _burst_signal(16000, 0.5, 0.4, 0.5, noise_rms=1e-3)
    log_e = _raw_log_energy(y, 400, 160)
    for gain_db in (-40.0, 20.0):
        np.testing.assert_array_equal(vad(log_e + gain_db / DB), vad(log_e))


def test_vad_keeps_nearly_all_fixture_frames() -> None:
    kept = total = loud_dropped = 0
    for path in ALL_FIXTURES:
        log_e = _raw_log_energy(_fixture(path.name), 200, 80)
        mask = vad(log_e, NB)
        e_db = log_e * DB
        assert mask.any()
        if np.percentile(e_db, 95) - e_db.min() < 35:  # no real pause in the file
            assert mask.all(), path.name
        kept += mask.sum()
        total += len(mask)
        loud_dropped += np.sum(e_db[~mask] > e_db.max() - 30)
    assert kept / total >= 0.90
    # What is dropped is quiet (> 30 dB below the file's loudest frame), except the odd isolated
    # frame that the context smoothing removes (1 of ~1000 dropped frames on these files).
    assert loud_dropped <= 0.01 * (total - kept)


def test_vad_smoothing_and_mean_scale() -> None:
    e_db = np.array([-60.0] * 10 + [-10.0] * 10 + [-60.0] * 10 + [-10.0] + [-60.0] * 10)
    cfg = FeatureConfig(vad_context=0)
    np.testing.assert_array_equal(vad(e_db / DB, cfg), e_db > -50)
    smoothed = vad(e_db / DB, FeatureConfig())  # context 2, proportion 0.6
    assert smoothed[10:20].all() and not smoothed[:10].any() and not smoothed[30]
    # mean_scale = 1: threshold is mean - T
    cfg1 = FeatureConfig(vad_context=0, vad_energy_mean_scale=1.0, vad_energy_threshold=10.0)
    np.testing.assert_array_equal(vad(e_db / DB, cfg1), e_db > e_db.mean() - 10)


def test_vad_never_empty() -> None:
    assert vad(np.zeros(7)).all()  # flat energy: all speech
    spike = np.full(30, -12.0)
    spike[17] = 0.0  # one loud frame: smoothing alone would remove it
    mask = vad(spike, FeatureConfig(vad_energy_threshold=1.0))
    assert mask[17] and mask.sum() >= 1
    assert vad(np.zeros(0)).shape == (0,)
    for n in range(1, 7):  # shorter than the smoothing window
        assert vad(np.linspace(0.0, 1.0, n)).shape == (n,)
    with pytest.raises(ValueError):
        vad(np.array([0.0, np.nan]))


def test_filters_kept_between_calls_follow_every_setting() -> None:
    """The window and filterbank kept between calls are librosa's for each setting in turn (a
    changed band count, range or rate is never served an earlier setting's), and read-only;
    extraction with them equals the librosa reference of the test above."""
    from speaker.features import _filters

    for sr, n_mels, fmin, fmax in [(8000, 23, 20.0, 4000.0), (16000, 40, 0.0, 7000.0), (8000, 23, 64.0, 3800.0)]:
        win, mel = _filters("hamming", 200, sr, 256, n_mels, fmin, fmax)
        ref = librosa.filters.mel(sr=sr, n_fft=256, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=True,
                                  norm=None, dtype=np.float32)
        np.testing.assert_array_equal(mel, ref)
        np.testing.assert_array_equal(win, librosa.filters.get_window("hamming", 200, fftbins=True).astype(np.float32))
        assert not mel.flags.writeable and not win.flags.writeable
    cfg = dataclasses.replace(NB, vad=False, deltas=False, delta_deltas=False, normalization="none")
    first = extract_features(FIXTURES / "6_george_1.wav", config=cfg)
    _filters.cache_clear()
    np.testing.assert_array_equal(extract_features(FIXTURES / "6_george_1.wav", config=cfg), first)
