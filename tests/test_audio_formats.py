"""The formats browsers and phones record, decoded like the lossless file they were made from.

Recordings of the shared speechocean762 set (16 kHz FLAC, read here with soundfile, i.e.
libsndfile: a decoder independent of the one under test) are encoded at test time with PyAV's
encoders (tests/_encode.py) as WAV, FLAC, Ogg/Opus, WebM/Opus written as a stream (no duration,
no index: as Chrome's MediaRecorder writes it), M4A/AAC with its index at the end, fragmented
MP4/AAC (Safari) and MP3.  Each is decoded by ``speaker.audio`` from a path and from bytes, and
must:

* decode losslessly for WAV and FLAC: the features equal those of libsndfile's samples, exactly;
* be aligned with the original (codec delays removed: the cross-correlation peaks at lag 0) and
  as long as it, within one codec frame;
* score like the lossless file: the LLR of every (model, test) pair against a small UBM within
  :data:`MAX_LLR_DELTA` of the lossless file's (measured figures in docs/reliability.md).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from _encode import KINDS, encode, is_fragmented_mp4, moov_after_mdat, webm_is_streamed


def _shared_set(name: str) -> Path | None:
    """``shared/data/NAME`` beside the repository (or a folder above it), if present."""
    env = os.environ.get("SPEAKER_TEST_DATA")
    if env and (Path(env) / name).is_dir():
        return Path(env) / name
    for parent in Path(__file__).resolve().parents:
        if (parent / "shared" / "data" / name / "wav.scp").is_file():
            return parent / "shared" / "data" / name
    return None


SO = _shared_set("speechocean762")
pytestmark = pytest.mark.skipif(SO is None, reason="the shared speechocean762 recordings are not beside the "
                                                   "repository (shared/data/speechocean762, or $SPEAKER_TEST_DATA)")

#: Largest mean and largest single |LLR(format) - LLR(lossless)| accepted, in nats per frame, for
#: the lossy codecs at 64 kbit/s.  Measured by benchmarks/bench_decode.py on 400 trials (10 models,
#: 40 tests; there the target and non-target LLRs differ by 2.1 on average): mean 0.02-0.035,
#: max 0.11-0.22 (docs/reliability.md).  Lossless files must give exactly the same LLRs.
MAX_MEAN_DELTA, MAX_DELTA = 0.06, 0.3


def _speakers() -> dict[str, list[Path]]:
    scp = dict(line.split() for line in (SO / "wav.scp").read_text().splitlines() if line.strip())
    out: dict[str, list[Path]] = {}
    for line in (SO / "utt2spk").read_text().splitlines():
        if line.strip():
            utt, spk = line.split()
            out.setdefault(spk, []).append(SO / scp[utt])
    return {s: sorted(p) for s, p in sorted(out.items())}


@pytest.fixture(scope="module")
def trial_set(tmp_path_factory):
    """A UBM (32 components) on 10 speakers' lossless files, 4 other speakers enrolled from 3
    lossless files each, and 2 further recordings of each of them as tests (lossless samples)."""
    from speaker import FeatureConfig, extract_features, map_adapt, train_ubm
    config = FeatureConfig()
    spk = _speakers()
    names = list(spk)
    ubm_files = [p for s in names[:10] for p in spk[s][:3]]
    feats = [extract_features(*sf.read(p, dtype="float32"), config=config) for p in ubm_files]
    ubm = train_ubm(feats, 32, n_iter=6, random_state=0)
    models, tests = {}, {}
    for s in names[10:14]:
        models[s] = map_adapt(ubm, [extract_features(*sf.read(p, dtype="float32"), config=config)
                                    for p in spk[s][:3]])
        for p in spk[s][3:5]:
            tests[p.stem] = sf.read(p, dtype="float32")
    return config, ubm, models, tests, tmp_path_factory.mktemp("formats")


def _llrs(ubm, models, feats) -> np.ndarray:
    from speaker import llr
    return np.array([llr(m, ubm, feats) for m in models.values()])


@pytest.mark.long(7)
def test_every_format_scores_like_the_lossless_file(trial_set, capsys):
    from speaker import extract_features
    from speaker.audio import decode_bytes, load_audio
    config, ubm, models, tests, d = trial_set
    ref = {t: _llrs(ubm, models, extract_features(y, sr, config=config)) for t, (y, sr) in tests.items()}
    spread = np.ptp(np.concatenate(list(ref.values())))
    report = []
    for kind in KINDS:
        deltas = []
        for t, (y, sr) in tests.items():
            data = encode(y, sr, kind)
            if kind == "webm-opus-stream":
                assert webm_is_streamed(data), "the WebM must be written as a stream"
            if kind == "m4a-aac":
                assert moov_after_mdat(data), "the M4A must have its index at the end"
            if kind == "mp4-aac-fragmented":
                assert is_fragmented_mp4(data)
            path = d / f"{t}{KINDS[kind].suffix}"
            path.write_bytes(data)
            z = load_audio(path, target_rate=sr)
            zb, rate = decode_bytes(data, sr)
            assert rate == sr and np.array_equal(z, zb)          # a path and its bytes decode alike
            assert abs(len(z) - len(y)) <= 2048, (kind, len(z), len(y))
            m = min(len(z), len(y)) - 600
            lags = [float(np.dot(z[300 + lag:300 + lag + m], y[300:300 + m])) for lag in range(-300, 301)]
            assert int(np.argmax(lags)) - 300 == 0, f"{kind}: decoded signal is shifted"
            feats = extract_features(path, config=config)
            if KINDS[kind].bit_rate is None:                      # lossless: the very same features
                np.testing.assert_array_equal(feats, extract_features(y, sr, config=config))
            deltas.append(_llrs(ubm, models, feats) - ref[t])
        deltas = np.abs(deltas)
        report.append(f"{kind:>20}: |LLR - lossless LLR| mean {deltas.mean():.4f}, max {deltas.max():.4f} "
                      f"over {deltas.size} trials (LLRs span {spread:.2f})")
        if KINDS[kind].bit_rate is None:
            assert deltas.max() == 0, report[-1]
        assert deltas.mean() <= MAX_MEAN_DELTA and deltas.max() <= MAX_DELTA, report[-1]
    with capsys.disabled():
        print("\n" + "\n".join(report))
