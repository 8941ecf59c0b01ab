#!/usr/bin/env python
"""Decoding: how fast per format, and how far a lossy upload's score is from the lossless file's.

(a) Speed.  Ten seconds of 16 kHz speech (the first recordings of the data folder, joined) are
    encoded with PyAV's encoders (``tests/_encode.py``: WAV, FLAC, Ogg/Opus, WebM/Opus written as
    a stream, M4A/AAC with its index at the end, fragmented MP4/AAC, MP3; lossy ones at
    64 kbit/s) and decoded from memory by ``speaker.audio.decode_bytes(data, 16000)`` (checks,
    mix-down, resampling when the codec's rate differs, DC removal: everything a service upload
    gets), best of ``--repeats``; for the formats libsndfile reads, ``soundfile.read`` of the same
    bytes is timed too (decoding only, no checks) and the ratio given.
(b) Distance.  A 64-component UBM on ``--ubm-speakers`` speakers (4 lossless recordings each),
    ``--speakers`` other speakers enrolled by MAP from 4 lossless recordings, 4 more of each as
    tests, every (model, test) pair scored (LLR, nats per frame) from the lossless file read by
    soundfile and from each encoded file decoded by ``speaker.audio``: the mean and largest
    |difference|, the mean target and non-target LLR, and the EER from each.

Examples::

    python benchmarks/bench_decode.py --data /path/to/shared/data/speechocean762
    python benchmarks/bench_decode.py --data ... --out benchmarks/results_decode.txt
"""
from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))
from _common import best_time, environment, load_line  # noqa: E402
from _encode import KINDS, encode  # noqa: E402

SOUNDFILE_READS = {"wav", "flac", "ogg-opus", "mp3"}


def speakers(data: Path) -> dict[str, list[Path]]:
    scp = dict(line.split() for line in (data / "wav.scp").read_text().splitlines() if line.strip())
    out: dict[str, list[Path]] = {}
    for line in (data / "utt2spk").read_text().splitlines():
        if line.strip():
            utt, spk = line.split()
            out.setdefault(spk, []).append(data / scp[utt])
    return {s: sorted(p) for s, p in sorted(out.items())}


def speed(spk: dict[str, list[Path]], repeats: int) -> list[str]:
    import soundfile as sf
    from speaker.audio import decode_bytes
    files = [p for ps in spk.values() for p in ps]
    y = np.concatenate([sf.read(p, dtype="float32")[0] for p in files[:6]])[:160_000]
    lines = ["", "(a) decoding 10 s of 16 kHz speech from memory, best of %d (ms)" % repeats,
             f"{'format':>20} {'bytes':>8} {'speaker.audio':>14} {'soundfile':>10} {'ratio':>6}"]
    for kind in KINDS:
        data = encode(y, 16000, kind)
        decode_bytes(data, 16000)                                # warm-up (imports)
        ours = best_time(lambda: decode_bytes(data, 16000), repeats)
        ref = ""
        if kind in SOUNDFILE_READS:
            t = best_time(lambda: sf.read(io.BytesIO(data), dtype="float32"), repeats)
            ref = f"{t * 1e3:10.2f} {ours / t:6.1f}"
        lines.append(f"{kind:>20} {len(data):>8} {ours * 1e3:14.2f} {ref}")
    from speaker import FeatureConfig, extract_features
    z, _ = decode_bytes(encode(y, 16000, "wav"), 16000)
    t = best_time(lambda: extract_features(z, 16000, config=FeatureConfig()), repeats)
    lines.append(f"for scale: extract_features of the decoded 10 s (default FeatureConfig): {t * 1e3:.2f} ms")
    return lines


def eer(scores: np.ndarray, target: np.ndarray) -> float:
    from speaker.metrics import eer as _eer
    return float(_eer(scores, target))


def distance(spk: dict[str, list[Path]], ubm_speakers: int, n_speakers: int) -> list[str]:
    import soundfile as sf
    from speaker import FeatureConfig, extract_features, llr, map_adapt, train_ubm
    config = FeatureConfig()
    names = list(spk)
    feats = [extract_features(*sf.read(p, dtype="float32"), config=config)
             for s in names[:ubm_speakers] for p in spk[s][:4]]
    ubm = train_ubm(feats, 64, n_iter=6, random_state=0)
    chosen = names[ubm_speakers:ubm_speakers + n_speakers]
    models = {s: map_adapt(ubm, [extract_features(*sf.read(p, dtype="float32"), config=config)
                                 for p in spk[s][:4]]) for s in chosen}
    tests = [(p, s) for s in chosen for p in spk[s][4:8]]
    target = np.array([[s == m for m in models] for _, s in tests]).ravel()

    def scores(feats_of) -> np.ndarray:
        return np.array([[llr(m, ubm, feats_of(p)) for m in models.values()] for p, _ in tests]).ravel()

    ref = scores(lambda p: extract_features(*sf.read(p, dtype="float32"), config=config))
    lines = ["", f"(b) {len(ref)} trials ({len(models)} models x {len(tests)} tests; UBM 64 components on "
                 f"{ubm_speakers} other speakers): LLR from each format vs the lossless file read by soundfile",
             f"lossless: mean target LLR {ref[target].mean():.3f}, mean non-target {ref[~target].mean():.3f}, "
             f"EER {100 * eer(ref, target):.2f} %",
             f"{'format':>20} {'mean |dLLR|':>12} {'max |dLLR|':>11} {'EER %':>6}"]
    from speaker.audio import decode_bytes
    for kind in KINDS:
        def feats_of(p: Path, kind=kind) -> np.ndarray:
            y, sr = sf.read(p, dtype="float32")
            z, rate = decode_bytes(encode(y, sr, kind), config.sample_rate)
            return extract_features(z, rate, config=config)
        s = scores(feats_of)
        d = np.abs(s - ref)
        lines.append(f"{kind:>20} {d.mean():12.4f} {d.max():11.4f} {100 * eer(s, target):6.2f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=ROOT / ".." / "shared" / "data" / "speechocean762",
                    help="Kaldi-style data folder (wav.scp, utt2spk) of 16 kHz recordings")
    ap.add_argument("--repeats", type=int, default=20, help="timed decodes per format (best kept)")
    ap.add_argument("--ubm-speakers", type=int, default=20, help="speakers whose recordings train the UBM")
    ap.add_argument("--speakers", type=int, default=10, help="speakers enrolled and tested")
    ap.add_argument("--out", type=Path, help="also write the report to this file")
    args = ap.parse_args()
    spk = speakers(args.data)
    lines = environment()
    lines += speed(spk, args.repeats)
    lines += distance(spk, args.ubm_speakers, args.speakers)
    lines += ["", load_line()]
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
