"""speaker/quality.py against independent references: clipped runs counted by itertools.groupby,
SNR estimates of recordings made from the fixtures plus noise at a known SNR, net speech against
the frames the features keep, and the same features as extract_features."""
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings, strategies as st

import speaker.quality as quality
from speaker.features import FeatureConfig, extract_features, extract_features_and_quality
from speaker.quality import Quality, QualityGates, clipping
from speaker.sources import read_source_and_quality

FIX = Path(__file__).resolve().parent.parent / "audio_fixtures"
CFG = FeatureConfig(sample_rate=8000)


def read(name):
    y, rate = sf.read(FIX / name, dtype="float64")
    return y, rate


def groupby_clipped(y, tol=quality.CLIP_TOLERANCE, min_run=quality.MIN_CLIP_RUN):
    """(clipped samples, runs) by walking the samples: runs of >= min_run at either peak."""
    hi, lo = max(y), min(y)
    n = runs = 0
    for side in ((lambda v: hi > 0 and v >= hi * (1 - tol)), (lambda v: lo < 0 and v <= lo * (1 - tol))):
        for at, grp in itertools.groupby(y, key=side):
            k = len(list(grp))
            if at and k >= min_run:
                n, runs = n + k, runs + 1
    return n, runs


@pytest.mark.parametrize("gain", [1.0, 3.0, 8.0, 30.0])
def test_clipping_counts_flat_runs_at_the_peak(gain):
    y, _ = read("3_theo_0.wav")
    x = np.clip(y / np.abs(y).max() * gain, -1.0, 1.0)
    frac, runs, peak = clipping(x.astype(np.float32))
    n_ref, runs_ref = groupby_clipped(x.astype(np.float32).tolist())
    assert (frac * x.size, runs) == (pytest.approx(n_ref), runs_ref)
    assert peak == pytest.approx(min(gain, 1.0), rel=1e-6)
    if gain == 1.0:
        assert runs == 0                                    # a natural waveform touches its peak, no plateau
    else:
        assert frac > 0.001 * gain                          # the more overdriven, the more clipped


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from([-0.7, -0.5, 0.0, 0.2, 0.7, 0.7000001]), min_size=1, max_size=60),
       st.integers(1, 9))
def test_clipping_in_blocks_equals_groupby(values, block):
    y = np.array(values, dtype=np.float32)
    old = quality._BLOCK
    quality._BLOCK = block                                  # runs across block boundaries
    try:
        frac, runs, _ = clipping(y)
    finally:
        quality._BLOCK = old
    n_ref, runs_ref = groupby_clipped(y.tolist())
    assert (round(frac * y.size), runs) == (n_ref, runs_ref)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.sampled_from([-1.0, -0.99995, -0.5, 0.0, 0.3, 0.59997, 0.6, 0.99991, 0.99995, 1.0]),
                min_size=1, max_size=80),
       st.lists(st.integers(1, 80), max_size=6), st.integers(1, 4))
def test_clip_meter_fed_in_any_blocks_equals_groupby_on_the_whole_signal(values, cuts, min_run):
    """The streaming meter (what the decoder feeds, block by block) against groupby on the whole
    signal: peaks that rise late (values kept at an earlier edge are dropped), runs across any
    cut, values on both sides of the edge within the tolerance."""
    y = np.array(values, dtype=np.float32)
    meter = quality.ClipMeter(min_run=min_run)
    bounds = [0, *sorted(c for c in cuts if c < y.size), y.size]
    for a, b in zip(bounds[:-1], bounds[1:]):
        meter.add(y[a:b])
    frac, runs, peak = meter.result()
    n_ref, runs_ref = groupby_clipped(y.tolist(), min_run=min_run)
    assert (round(frac * y.size), runs, meter.samples) == (n_ref, runs_ref, y.size)
    assert peak == float(np.abs(y).max())


def test_clip_meter_state_stays_small_on_a_long_noisy_signal():
    """What the meter keeps is bounded by the distinct float32 values near the peak, not by the
    signal's length: 5 minutes of 16-bit noise at 48 kHz fed in decoder-sized blocks."""
    rng = np.random.default_rng(0)
    meter = quality.ClipMeter()
    for _ in range(5):                                      # 5 x 2.9 M samples
        block = (rng.integers(-32768, 32768, 48000 * 60) / 32768.0).astype(np.float32)
        for i in range(0, block.size, 1 << 16):
            meter.add(block[i:i + (1 << 16)])
    kept = sum(v.size for side in meter._sides for v, _ in side.kept)
    assert kept <= 6 * 8                                    # <= 4 PCM codes within 1e-4 of full scale per side
    frac, runs, _ = meter.result()
    assert runs == 0 or frac < 1e-6                         # independent noise: no long plateau


def test_asymmetric_and_scaled_clipping_is_found():
    y, _ = read("7_lucas_1.wav")
    x = y / np.abs(y).max()
    x = np.minimum(x * 4, 0.8) * 0.5                        # clipped on the positive side only, then scaled
    frac, runs, peak = clipping(x.astype(np.float32))
    n_ref, runs_ref = groupby_clipped(x.astype(np.float32).tolist())
    assert (frac * x.size, runs) == (pytest.approx(n_ref), runs_ref)
    assert runs > 0 and 0.8 * np.sum(x >= 0.4 * (1 - 1e-6)) <= n_ref   # most of the flat top is in runs
    assert peak == pytest.approx(max(0.4, -x.min()), rel=1e-6)


def test_clipping_of_a_clipped_int16_file_through_the_front_end(tmp_path):
    y, rate = read("5_george_2.wav")
    pcm = np.clip(np.round(y / np.abs(y).max() * 4 * 32768), -32768, 32767).astype(np.int16)  # 12 dB over
    sf.write(tmp_path / "loud.wav", pcm, rate, subtype="PCM_16")
    feats, q = extract_features_and_quality(tmp_path / "loud.wav", config=CFG)
    n_ref, runs_ref = groupby_clipped((pcm / 32768.0).tolist())
    assert q.clipped_runs == runs_ref > 0 and q.clipped_fraction * pcm.size == pytest.approx(n_ref)
    assert q.peak_dbfs == pytest.approx(0.0, abs=1e-3)
    assert q.seconds == pytest.approx(pcm.size / rate)
    assert "clipped" in " ".join(QualityGates().problems(q))


def test_the_fixtures_are_not_clipped_nor_noise_only():
    """The real recordings pass the clipping and noise-only gates (their measured rates over the
    whole shared corpora are in docs/quality.md)."""
    names = sorted(p.name for p in FIX.glob("*.wav"))
    assert len(names) == 300
    fracs = [clipping(read(n)[0].astype(np.float32))[0] for n in names]
    assert max(fracs) < quality.MAX_CLIPPED_FRACTION
    for n in names[::10]:
        _, q = extract_features_and_quality(FIX / n, config=CFG)
        assert not q.noise_only, (n, q)


def speech_with_pauses(rng, n=6, pause=0.3):
    names = sorted(p.name for p in FIX.glob("*_jackson_*.wav"))
    parts = []
    for name in rng.choice(names, n, replace=False):
        y, rate = read(name)
        parts += [y - y.mean(), np.zeros(int(pause * rate))]
    return np.concatenate(parts), rate


def colored_noise(rng, n, rate, beta):
    """Gaussian noise of power spectrum 1/f**beta above 20 Hz, unit variance."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / rate)
    spec[f < 20] = 0
    x = np.fft.irfft(spec / np.maximum(f, 1) ** (beta / 2), n)
    return x / x.std()


@pytest.mark.parametrize("beta, tol", [(0, 1.5), (1, 2.5)])          # white, pink
@pytest.mark.parametrize("snr", [0.0, 5.0, 10.0, 20.0])
def test_snr_estimate_of_speech_plus_noise_at_a_known_snr(snr, beta, tol):
    """Known SNR: mean square of the speech samples (pauses excluded) over the noise's variance."""
    rng = np.random.default_rng(int(snr) + 100 * beta)
    clean, rate = speech_with_pauses(rng)
    speech_power = np.mean(clean[clean != 0] ** 2)
    x = clean + colored_noise(rng, clean.size, rate, beta) * math.sqrt(speech_power / 10 ** (snr / 10))
    _, q = extract_features_and_quality(x.astype(np.float32), rate, CFG)
    assert q.snr_db == pytest.approx(snr, abs=tol)
    if snr != 5:                                            # the noise-only threshold's own value
        assert q.noise_only == (snr < 5)


@pytest.mark.parametrize("seconds", [1.0, 3.0])
@pytest.mark.parametrize("kind", ["white", "pink", "brown", "hum"])
def test_noise_alone_is_noise_only(kind, seconds):
    rng = np.random.default_rng(7)
    n = int(seconds * 8000)
    x = {"white": lambda: rng.standard_normal(n), "pink": lambda: colored_noise(rng, n, 8000, 1),
         "brown": lambda: colored_noise(rng, n, 8000, 2),
         "hum": lambda: np.sin(2 * np.pi * 50 * np.arange(n) / 8000) + 0.05 * rng.standard_normal(n)}[kind]()
    _, q = extract_features_and_quality((0.1 * x).astype(np.float32), 8000, CFG)
    assert q.noise_only and q.snr_db < quality.NOISE_ONLY_SNR_DB
    assert any(p.startswith("noise only") for p in QualityGates().problems(q))


def test_short_clips_get_no_noise_only_verdict_but_too_little_speech():
    """50 ms of noise, and a trimmed digit whose frames are all steady speech (SNR estimate
    below the noise-only threshold): no noise-only verdict under 1 s; the speech gate refuses."""
    rng = np.random.default_rng(3)
    _, noise = extract_features_and_quality((0.1 * rng.standard_normal(400)).astype(np.float32), 8000, CFG)
    _, digit = extract_features_and_quality(FIX / "9_theo_4.wav", config=CFG)
    for q in (noise, digit):
        assert q.snr_db < quality.NOISE_ONLY_SNR_DB and q.seconds < 1 and not q.noise_only
        assert [p.split(":")[0] for p in QualityGates().problems(q)] == ["insufficient speech"]


def test_clean_speech_with_digital_silence_has_the_top_snr():
    clean, rate = speech_with_pauses(np.random.default_rng(1))
    _, q = extract_features_and_quality(clean.astype(np.float32), rate, CFG)
    assert q.snr_db == quality.SNR_MAX_DB and q.clipped_runs == 0


@pytest.mark.parametrize("vad", [True, False])
def test_net_speech_is_the_frames_the_vad_keeps(vad):
    """With the VAD on, net speech is the frames the features keep, times the hop; padding the
    recording with near-silence adds duration but no speech; off, the VAD still measures."""
    y, rate = read("2_yweweler_3.wav")
    pad = np.r_[np.zeros(rate), y, np.zeros(rate)] + np.random.default_rng(0).normal(0, 1e-6, y.size + 2 * rate)
    cfg = FeatureConfig(sample_rate=8000, vad=vad)
    for x in (y, pad):
        feats, q = extract_features_and_quality(x.astype(np.float32), rate, cfg)
        assert q.seconds == pytest.approx(x.size / rate)
        if vad:
            assert q.speech_seconds == pytest.approx(feats.shape[0] * 0.01)
        else:
            assert feats.shape[0] == 1 + (x.size - 200) // 80
    _, q_y = extract_features_and_quality(y.astype(np.float32), rate, cfg)
    _, q_pad = extract_features_and_quality(pad.astype(np.float32), rate, cfg)
    assert abs(q_pad.speech_seconds - q_y.speech_seconds) <= 0.05 < q_pad.seconds - q_pad.speech_seconds - 1.9


def test_features_are_those_of_extract_features_and_read_source(tmp_path):
    f = FIX / "9_nicolas_4.wav"
    feats, q = extract_features_and_quality(f, config=CFG)
    assert np.array_equal(feats, extract_features(f, config=CFG))
    feats2, q2 = read_source_and_quality(str(f), CFG)
    assert np.array_equal(feats2, feats) and q2 == q
    np.save(tmp_path / "x.npy", feats)
    feats3, q3 = read_source_and_quality(str(tmp_path / "x.npy"), CFG)
    assert np.array_equal(feats3, feats) and q3 is None


def test_quality_round_trips_and_refuses_bad_rows():
    q = Quality(seconds=3.0, speech_seconds=2.5, snr_db=20.0, clipped_fraction=0.001, clipped_runs=2, peak_dbfs=-1.0)
    assert Quality.from_dict(q.to_dict()) == q
    for bad in ([], {**q.to_dict(), "x": 1}, {k: v for k, v in q.to_dict().items() if k != "snr_db"},
                {**q.to_dict(), "snr_db": float("nan")}, {**q.to_dict(), "clipped_fraction": 2.0},
                {**q.to_dict(), "clipped_runs": 1.5}, {**q.to_dict(), "speech_seconds": "2"},
                {**q.to_dict(), "clipped_runs": True}, {**q.to_dict(), "seconds": -1.0}):
        with pytest.raises(ValueError):
            Quality.from_dict(bad)


def test_gates_name_each_problem_and_can_be_turned_off():
    q = Quality(seconds=1.5, speech_seconds=0.4, snr_db=-2.0, clipped_fraction=0.05, clipped_runs=9, peak_dbfs=0.0)
    problems = QualityGates().problems(q)
    assert [p.split(":")[0] for p in problems] == ["insufficient speech", "clipped", "noise only"]
    assert QualityGates(None, None, None).problems(q) == []
    assert QualityGates.for_test().min_speech_seconds == quality.MIN_TEST_SPEECH
    good = Quality(seconds=5.0, speech_seconds=4.0, snr_db=30.0, clipped_fraction=0.0, clipped_runs=0, peak_dbfs=-6.0)
    assert QualityGates().problems(good) == []
    with pytest.raises(ValueError):
        QualityGates(min_speech_seconds=-1)
    with pytest.raises(ValueError):
        QualityGates(max_clipped_fraction=float("nan"))
