"""A corpus of broken and unusual audio: the library names the file and the reason, or copes;
the command line skips what it cannot use, says so, and scores the rest."""
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import FIX, speaker_cli
from speaker import AudioError, FeatureConfig, extract_features

CFG = FeatureConfig(sample_rate=8000)


def _speech(sr, seconds=0.6, channels=1, seed=0):
    """A real fixture recording resampled to ``sr`` (and copied to every channel)."""
    import librosa
    y, r = sf.read(FIX / "5_theo_3.wav", dtype="float32")
    y = librosa.resample(y, orig_sr=r, target_sr=sr)[: int(seconds * sr)]
    return np.repeat(y[:, None], channels, axis=1) if channels > 1 else y


def make_corpus(d: Path) -> dict[str, str | None]:
    """name -> expected AudioError reason fragment, or None when the file must be processed."""
    c = {}
    (d / "empty.wav").write_bytes(b"")
    c["empty.wav"] = "empty|0 bytes|no samples"
    sf.write(d / "zero_frames.wav", np.zeros(0, dtype=np.float32), 8000)
    c["zero_frames.wav"] = "no samples|empty"
    sf.write(d / "good.wav", _speech(8000), 8000)
    (d / "truncated_header.wav").write_bytes((d / "good.wav").read_bytes()[:30])
    c["truncated_header.wav"] = "decode|read|format|header"
    (d / "random.wav").write_bytes(np.random.default_rng(0).bytes(4000))
    c["random.wav"] = "decode|read|format"
    (d / "notes.wav").write_text("this is a text file, not audio\n" * 20)
    c["notes.wav"] = "decode|read|format"
    y = _speech(8000)
    y_nan = y.copy()
    y_nan[100] = np.nan
    sf.write(d / "nan.wav", y_nan, 8000, subtype="FLOAT")
    c["nan.wav"] = "NaN|non-finite"
    y_inf = y.copy()
    y_inf[50] = np.inf
    sf.write(d / "inf.wav", y_inf, 8000, subtype="FLOAT")
    c["inf.wav"] = "inf|non-finite"
    sf.write(d / "silent.wav", np.zeros(8000, dtype=np.int16), 8000)
    c["silent.wav"] = "silen|zero"
    sf.write(d / "one_sample.wav", np.array([0.5], dtype=np.float32), 8000)
    c["one_sample.wav"] = "short|constant|DC"
    sf.write(d / "eight_channels.wav", _speech(8000, channels=8), 8000)
    c["eight_channels.wav"] = None
    sf.write(d / "rate_192k.wav", _speech(192000), 192000)
    c["rate_192k.wav"] = None
    sf.write(d / "pcm_u8.wav", _speech(8000), 8000, subtype="PCM_U8")
    c["pcm_u8.wav"] = None
    sf.write(d / "clip_50ms.wav", _speech(8000, seconds=0.05), 8000)
    c["clip_50ms.wav"] = None
    sf.write(d / "good.flac", _speech(8000), 8000, subtype="PCM_24")
    c["good.flac"] = None
    c["good.wav"] = None
    return c


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("corpus")
    return d, make_corpus(d)


def test_library_names_the_file_and_reason(corpus):
    import re
    d, cases = corpus
    for name, reason in cases.items():
        path = d / name
        if reason is None:
            f = extract_features(path, config=CFG)
            assert f.dtype == np.float32 and f.shape[0] >= 1 and f.shape[1] == CFG.dim, name
            assert np.all(np.isfinite(f)), name
        else:
            with pytest.raises(AudioError) as err:
                extract_features(path, config=CFG)
            assert str(path) in str(err.value), name
            assert re.search(reason, str(err.value), re.I), (name, str(err.value))


def test_multichannel_and_odd_rates_match_the_plain_file(corpus):
    d, _ = corpus
    ref = extract_features(d / "good.wav", config=CFG)
    multi = extract_features(d / "eight_channels.wav", config=CFG)
    np.testing.assert_allclose(multi, ref, atol=1e-3)   # the mix-down of identical channels
    hi = extract_features(d / "rate_192k.wav", config=CFG)
    assert abs(hi.shape[0] - ref.shape[0]) <= 2


@pytest.mark.long(14)
def test_one_hour_file_with_bounded_memory(tmp_path):
    """One hour at 8 kHz (57.6 MB of int16): processed in a child process whose peak RSS is
    measured; the features alone are 86 MB, the float32 signal 115 MB."""
    script = tmp_path / "hour.py"
    script.write_text(f"""
import numpy as np, soundfile as sf, resource, sys
sr, n = 8000, 3600 * 8000
with sf.SoundFile({str(tmp_path / 'hour.wav')!r}, 'w', sr, 1, 'PCM_16') as f:
    rng = np.random.default_rng(0)
    for s in range(0, n, sr * 60):      # written a minute at a time
        t = np.arange(s, s + sr * 60) / sr
        f.write((0.3 * np.sin(2 * np.pi * 220 * t) * (np.sin(2 * np.pi * 0.5 * t) > 0)
                 + 0.01 * rng.standard_normal(t.size)).astype(np.float32))
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
from speaker import extract_features, FeatureConfig
feats = extract_features({str(tmp_path / 'hour.wav')!r}, config=FeatureConfig(sample_rate=8000))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(feats.shape[0], feats.shape[1], peak // 1024)
""")
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    frames, dims, peak_mb = map(int, p.stdout.split())
    assert dims == 60 and frames > 0.4 * 360_000      # half of the signal is tone, kept by the VAD
    assert peak_mb < 1500, f"peak RSS {peak_mb} MB for a one-hour file"


def test_cli_skips_every_broken_file_and_scores_the_rest(corpus, tmp_path):
    d, cases = corpus
    work = tmp_path / "w"
    shutil.copytree(d, work)
    for name in ("1_george_2.wav", "2_lucas_2.wav", "3_theo_2.wav", "4_jackson_2.wav"):
        shutil.copy(FIX / name, work)
    names = sorted(cases)
    (work / "ubm.lst").write_text("\n".join(["1_george_2.wav", "2_lucas_2.wav"] + names + ["3_theo_2.wav"]) + "\n")
    (work / "enroll.txt").write_text("theo 3_theo_2.wav broken_missing.wav\ngeorge 1_george_2.wav\n")
    (work / "trials.txt").write_text("".join(f"{m} {n} nontarget\n" for n in names for m in ("theo", "george")))
    run = speaker_cli                    # in this process: the commands, not the interpreter, are tested
    p = run("train-ubm", "--list", work / "ubm.lst", "--out", work / "ubm.npz", "--components", 4,
            "--sample-rate", 8000, "--iters", 3)
    assert p.returncode == 0, p.stderr
    bad = [n for n in names if cases[n] is not None]
    for n in bad:
        assert n in p.stderr, n
    assert f"skipped {len(bad)} file" in p.stderr and "Traceback" not in p.stderr
    p = run("enroll", "--ubm", work / "ubm.npz", "--enroll", work / "enroll.txt", "--out", work / "m.npz")
    assert p.returncode == 0 and "broken_missing.wav" in p.stderr
    p = run("score", "--ubm", work / "ubm.npz", "--models", work / "m.npz", "--trials", work / "trials.txt",
            "--out", work / "scores.txt")
    assert p.returncode == 0, p.stderr
    scored = {line.split()[1] for line in (work / "scores.txt").read_text().splitlines()}
    assert scored == {n for n in names if cases[n] is None}
    assert f"skipped {2 * len(bad)} trial" in p.stderr
