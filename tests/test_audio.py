"""Tests for speaker.audio: decoding, mixing, resampling, DC removal and error reporting."""

from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speaker.audio import AudioError, load_audio

FIXTURES = Path(__file__).resolve().parent.parent / "audio_fixtures"
SPEAKERS = ("george", "jackson", "lucas", "nicolas", "theo", "yweweler")


def _sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def _peak_hz(y: np.ndarray, rate: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1.0 / rate)[np.argmax(spec)])


# --------------------------------------------------------------------------- fixtures folder
def test_fixture_set_is_complete() -> None:
    wavs = sorted(p.name for p in FIXTURES.glob("*.wav"))
    expected = sorted(f"{d}_{s}_{i}.wav" for s in SPEAKERS for d in range(10) for i in range(5))
    assert wavs == expected
    assert sum(p.stat().st_size for p in FIXTURES.glob("*.wav")) < 3_000_000
    assert (FIXTURES / "README.md").is_file() and (FIXTURES / "LICENSE").is_file()


def test_fixture_loads_like_soundfile() -> None:
    path = FIXTURES / "7_theo_3.wav"
    raw, rate = sf.read(path, dtype="int16")
    assert rate == 8000
    expected = raw / 32768.0
    expected -= expected.mean()
    y = load_audio(path, target_rate=8000)
    assert y.dtype == np.float32 and y.ndim == 1 and y.flags.c_contiguous
    np.testing.assert_allclose(y, expected, atol=1e-6)


# --------------------------------------------------------------------------- formats
@pytest.mark.parametrize(
    ("fmt", "subtype", "atol"),
    [
        ("WAV", "PCM_16", 2 / 32768),
        ("WAV", "PCM_24", 1e-6),
        ("WAV", "PCM_32", 1e-6),
        ("WAV", "FLOAT", 1e-7),
        ("WAV", "DOUBLE", 1e-7),
        ("FLAC", "PCM_16", 2 / 32768),
        ("FLAC", "PCM_24", 1e-6),
    ],
)
def test_reads_formats(tmp_path: Path, fmt: str, subtype: str, atol: float) -> None:
    x = _sine(440.0, 16000, 0.3) + 0.01 * _sine(3000.0, 16000, 0.3)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, x, 16000, format=fmt, subtype=subtype)
    y = load_audio(path, target_rate=16000)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x - x.mean(), atol=atol)


def test_reads_ogg_vorbis(tmp_path: Path) -> None:
    x = _sine(1000.0, 16000, 0.5)
    path = tmp_path / "x.ogg"
    sf.write(path, x, 16000, format="OGG", subtype="VORBIS")
    y = load_audio(path, target_rate=16000)
    assert y.dtype == np.float32 and abs(len(y) - len(x)) < 1600
    assert abs(_peak_hz(y, 16000) - 1000.0) < 5.0


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    s = _sine(300.0, 8000, 0.25, 0.4)
    d = _sine(1700.0, 8000, 0.25, 0.3)
    path = tmp_path / "stereo.wav"
    sf.write(path, np.stack([s + d, s - d], axis=1), 8000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, target_rate=8000), s - s.mean(), atol=1e-6)


def test_multichannel_longer_than_one_read_block(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.3, 0.3, size=(200_003, 3))
    path = tmp_path / "three.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    expected = x.mean(axis=1)
    np.testing.assert_allclose(
        load_audio(path, target_rate=16000), expected - expected.mean(), atol=1e-6
    )


def test_resample_48k_to_16k_keeps_tone_frequency(tmp_path: Path) -> None:
    path = tmp_path / "48k.wav"
    sf.write(path, _sine(1000.0, 48000, 1.0), 48000, subtype="PCM_16")
    y = load_audio(path, target_rate=16000)
    assert y.dtype == np.float32
    assert len(y) == 16000
    assert abs(_peak_hz(y, 16000) - 1000.0) <= 1.0
    # amplitude preserved in the middle (away from filter edge effects)
    assert np.max(np.abs(y[2000:-2000])) == pytest.approx(0.5, abs=0.01)


def test_upsample_8k_to_16k(tmp_path: Path) -> None:
    path = tmp_path / "8k.wav"
    sf.write(path, _sine(500.0, 8000, 0.5), 8000)
    y = load_audio(path, target_rate=16000)
    assert len(y) == 8000 and abs(_peak_hz(y, 16000) - 500.0) <= 2.0


def test_dc_offset_removed(tmp_path: Path) -> None:
    x = _sine(200.0, 16000, 0.5, 0.4) + 0.3
    path = tmp_path / "dc.wav"
    sf.write(path, x, 16000, subtype="PCM_16")
    y = load_audio(path, target_rate=16000)
    assert abs(float(y.mean(dtype=np.float64))) < 1e-6
    np.testing.assert_allclose(y, x - x.mean(), atol=2 / 32768)
    y2 = load_audio(path, target_rate=8000)
    assert abs(float(y2.mean(dtype=np.float64))) < 1e-6


# --------------------------------------------------------------------------- numpy input
def test_numpy_float_signal_not_modified() -> None:
    x = _sine(250.0, 16000, 0.2) + 0.1
    before = x.copy()
    y = load_audio(x, 16000, target_rate=16000)
    np.testing.assert_array_equal(x, before)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, x - x.mean(), atol=1e-6)


def test_numpy_int16_and_stereo_signal() -> None:
    x = _sine(250.0, 8000, 0.2)
    pcm = np.round(x * 32767).astype(np.int16)
    np.testing.assert_allclose(
        load_audio(pcm, 8000, target_rate=8000), pcm / 32768.0 - (pcm / 32768.0).mean(), atol=1e-6
    )
    stereo = np.stack([x, -x + 0.2 * x], axis=1).astype(np.float32)  # mean = 0.1 * x
    np.testing.assert_allclose(
        load_audio(stereo, 8000, target_rate=8000), 0.1 * (x - x.mean()), atol=1e-6
    )


def test_numpy_signal_resampled() -> None:
    y = load_audio(_sine(1000.0, 48000, 0.5), 48000, target_rate=16000)
    assert len(y) == 8000 and abs(_peak_hz(y, 16000) - 1000.0) <= 2.0


def test_argument_errors(tmp_path: Path) -> None:
    x = _sine(250.0, 8000, 0.2)
    with pytest.raises(ValueError, match="sample_rate is required"):
        load_audio(x, target_rate=8000)
    path = tmp_path / "a.wav"
    sf.write(path, x, 8000)
    with pytest.raises(ValueError, match="only for numpy"):
        load_audio(path, 8000, target_rate=8000)
    with pytest.raises(ValueError, match="target_rate"):
        load_audio(path, target_rate=0)
    with pytest.raises(TypeError):
        load_audio(x.tolist(), 8000, target_rate=8000)  # type: ignore[arg-type]
    with pytest.raises(AudioError, match=r"^<signal>: .*channels"):
        load_audio(np.stack([x, x]), 8000, target_rate=8000)  # (channels, samples)


# --------------------------------------------------------------------------- AudioError cases
def _assert_names(exc: pytest.ExceptionInfo[AudioError], path: Path, reason: str) -> None:
    msg = str(exc.value)
    assert msg.startswith(f"{path}: "), msg
    assert re.search(reason, msg, flags=re.IGNORECASE), msg
    assert exc.value.source == str(path)


def test_error_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.wav"
    with pytest.raises(AudioError) as exc:
        load_audio(path, target_rate=16000)
    _assert_names(exc, path, "no such file")


def test_error_zero_byte_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    with pytest.raises(AudioError) as exc:
        load_audio(path, target_rate=16000)
    _assert_names(exc, path, r"empty file \(0 bytes\)")


def test_error_wav_with_no_samples(tmp_path: Path) -> None:
    path = tmp_path / "nosamples.wav"
    sf.write(path, np.zeros(0), 16000)
    with pytest.raises(AudioError) as exc:
        load_audio(path, target_rate=16000)
    _assert_names(exc, path, "no samples")


def test_error_random_bytes(tmp_path: Path) -> None:
    path = tmp_path / "noise.wav"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(AudioError) as exc:
        load_audio(path, target_rate=16000)
    _assert_names(exc, path, "cannot decode audio")


def test_error_text_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("this is not audio\n" * 50)
    with pytest.raises(AudioError) as exc:
        load_audio(path, target_rate=16000)
    _assert_names(exc, path, r"cannot decode audio \(FFmpeg: .+\)")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_error_non_finite_float_wav(tmp_path: Path, bad: float) -> None:
    x = _sine(300.0, 16000, 0.1)
    x[100] = bad
    path = tmp_path / "nan.wav"
    sf.write(path, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError) as exc:
        load_audio(path, target_rate=16000)
    _assert_names(exc, path, "non-finite")


def test_error_all_zero(tmp_path: Path) -> None:
    path = tmp_path / "silence.wav"
    sf.write(path, np.zeros(8000), 8000, subtype="PCM_16")
    with pytest.raises(AudioError) as exc:
        load_audio(path, target_rate=16000)
    _assert_names(exc, path, "digital silence")


def test_error_constant_dc(tmp_path: Path) -> None:
    path = tmp_path / "dc.wav"
    sf.write(path, np.full(8000, 0.25), 8000, subtype="FLOAT")
    with pytest.raises(AudioError) as exc:
        load_audio(path, target_rate=8000)
    _assert_names(exc, path, "constant")


def test_error_directory(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as exc:
        load_audio(tmp_path, target_rate=8000)
    _assert_names(exc, tmp_path, "directory")


def test_error_signal_cases() -> None:
    with pytest.raises(AudioError, match=r"^<signal>: .*no samples"):
        load_audio(np.zeros(0, dtype=np.float32), 8000, target_rate=8000)
    with pytest.raises(AudioError, match=r"^<signal>: .*non-finite"):
        load_audio(np.array([0.1, np.nan, 0.2]), 8000, target_rate=8000)
    with pytest.raises(AudioError, match=r"^<signal>: .*digital silence"):
        load_audio(np.zeros(100, dtype=np.int16), 8000, target_rate=8000)


def test_audio_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(AudioError("a.wav", "broken")))
    assert str(err) == "a.wav: broken" and err.source == "a.wav" and err.reason == "broken"


# --------------------------------------------------------------------------- bytes (uploads)
def test_decode_bytes_matches_reading_the_file_with_soundfile() -> None:
    from speaker.audio import AudioTooLong, decode_bytes
    path = FIXTURES / "0_george_0.wav"
    ref, rate = sf.read(path, dtype="float32")               # libsndfile: an independent decoder
    y, sr = decode_bytes(path.read_bytes())
    assert sr == rate == 8000 and y.dtype == np.float32
    np.testing.assert_allclose(y, ref - ref.mean(dtype=np.float64), atol=1e-7)
    y16, sr16 = decode_bytes(bytearray(path.read_bytes()), 16000)      # resampled while decoding
    assert sr16 == 16000
    np.testing.assert_allclose(y16, load_audio(path, target_rate=16000), atol=0)
    with pytest.raises(AudioTooLong, match="longer than 0.1 s"):
        decode_bytes(path.read_bytes(), max_seconds=0.1)
    with pytest.raises(AudioError, match="<upload>: cannot decode"):
        decode_bytes(b"RIFF....WAVEfmt ")
    with pytest.raises(AudioError, match="<upload>: empty"):
        decode_bytes(b"")
    with pytest.raises(ValueError, match="max_seconds"):
        decode_bytes(path.read_bytes(), max_seconds=0)
    with pytest.raises(TypeError, match="bytes"):
        decode_bytes(str(path))  # type: ignore[arg-type]


def test_metadata_that_is_not_utf8_is_no_error(tmp_path: Path) -> None:
    """A tag in Latin-1 (a WAV's LIST/INFO title) is metadata, not audio: the samples are read
    as libsndfile reads them, whichever PyAV is installed (up to 18 it needs an argument to
    replace such bytes, 19 refuses that argument)."""
    import struct
    pcm = (_sine(300.0, 8000, 0.5) * 20000).astype("<i2").tobytes()
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    title = b"Caf\xe9 \xff\xfe\x00"                        # not UTF-8
    info = b"INFO" + b"INAM" + struct.pack("<I", len(title)) + title
    chunks = (b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"LIST" + struct.pack("<I", len(info))
              + info + b"data" + struct.pack("<I", len(pcm)) + pcm)
    path = tmp_path / "latin1_title.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks)
    ref, rate = sf.read(path, dtype="float32")               # libsndfile: an independent decoder
    y = load_audio(path, target_rate=rate)
    np.testing.assert_allclose(y, ref - ref.mean(dtype=np.float64), atol=1e-7)


def test_output_is_a_fixed_point(tmp_path: Path) -> None:
    """A signal load_audio returned comes back bit for bit (so an upload decoded to a signal and
    then given to extract_features has the features of the file)."""
    x = _sine(440.0, 44100, 0.7, 0.3) + 0.05
    path = tmp_path / "x.wav"
    sf.write(path, x, 44100, subtype="PCM_24")
    for rate in (44100, 16000):
        y = load_audio(path, target_rate=rate)
        assert abs(float(y.mean(dtype=np.float64))) < 1e-6 * float(np.abs(y).max())
        assert np.array_equal(load_audio(y, rate, target_rate=rate), y)


def test_playlists_are_not_opened(tmp_path: Path) -> None:
    """A concat script or an HLS playlist named like audio would make FFmpeg open the files it
    names (plain ``av.open`` on the path does): only audio container formats are probed."""
    import av
    target = tmp_path / "secret.wav"
    sf.write(target, _sine(300.0, 8000, 0.3), 8000)
    (tmp_path / "concat.wav").write_text("ffconcat version 1.0\nfile secret.wav\n")
    (tmp_path / "hls.wav").write_text("#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nsecret.wav\n#EXT-X-ENDLIST\n")
    with av.open(str(tmp_path / "concat.wav")) as c:            # the attack is real
        assert c.format.name == "concat" and sum(f.samples for f in c.decode(audio=0)) == 2400
    from speaker.audio import decode_bytes
    for name in ("concat.wav", "hls.wav"):
        with pytest.raises(AudioError, match="cannot decode audio"):
            load_audio(tmp_path / name, target_rate=8000)
        with pytest.raises(AudioError, match="cannot decode audio"):
            decode_bytes((tmp_path / name).read_bytes())
