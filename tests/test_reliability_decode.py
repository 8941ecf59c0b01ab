"""Decoding under attack: every test reproduces an attack on the decoder, the lists or the
service, bounded in time (timeouts) and memory (the memory of each is measured), and checks that
it now costs what the mono signal at the analysis rate costs, or is refused in one line.

* a FLAC "decompression bomb" (8 channels at 384 kHz for 299 s in 2.2 MB) uploaded to
  ``speaker serve``: the server's peak RSS (``VmHWM``) grows by about its mono 8 kHz signal;
* a 64-channel Ogg Vorbis upload: refused from its header, before decoding;
* a long 384 kHz stereo FLAC in the library and in ``speaker extract``: memory of the 16 kHz mono
  output, not of the file's rate;
* the quality of a clipped 384 kHz file (clipping on the native samples): measured in the same
  decode, block by block, exactly, without holding the native signal;
* a FLAC of "unknown length" (STREAMINFO total samples 0): decoded to its end, bounded;
* a FIFO in a list: skipped and named, never opened; ``--list`` on an endless stream of zeros
  (a FIFO fed by a thread; ``/dev/zero`` itself through a private device node when the test may
  make one): one line, after reading at most one line's bound.
"""
from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from conftest import FIX, speaker_cli, speaker_command, speaker_process


def _speech(rate: int, seconds: float = 1.5) -> np.ndarray:
    """Bundled fixture speech (8 kHz) held at ``rate`` by repeating samples: int16 (samples,)."""
    y, r = sf.read(FIX / "5_theo_3.wav", dtype="int16")
    y = np.tile(y, int(np.ceil(seconds * r / len(y))))[: int(seconds * r)]
    return np.repeat(y, rate // r)


def write_mostly_silent(path: Path, rate: int, channels: int, seconds: int, every: int = 0) -> None:
    """A FLAC of ``seconds`` at ``rate`` Hz and ``channels`` channels, silent but for speech in
    channel 0 (at the start, and every ``every`` seconds): libFLAC codes the silence in a few
    bytes per block, so the file is small and its declared size huge. Written a second at a time."""
    speech = _speech(rate)
    with sf.SoundFile(path, "w", rate, channels, "PCM_16", format="FLAC") as f:
        silent = np.zeros((rate, channels), dtype=np.int16)
        for s in range(seconds):
            if s == 0 or (every and s % every == 0):
                block = silent.copy()
                n = min(len(speech), rate)
                block[:n, 0] = speech[:n]
                f.write(block)
            else:
                f.write(silent)


def _crc8(data: bytes) -> int:                               # FLAC's frame-header CRC (x^8+x^2+x+1)
    crc = 0
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = ((crc << 1) ^ 0x07) & 0xFF if crc & 0x80 else (crc << 1) & 0xFF
    return crc


_CRC16 = []
for _i in range(256):                                        # FLAC's frame CRC (x^16+x^15+x^2+1)
    _c = _i << 8
    for _ in range(8):
        _c = ((_c << 1) ^ 0x8005) & 0xFFFF if _c & 0x8000 else (_c << 1) & 0xFFFF
    _CRC16.append(_c)


def _crc16(data: bytes) -> int:
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ b]
    return crc


def _utf8_number(n: int) -> bytes:
    """A frame number as FLAC writes it (UTF-8's encoding of the number, up to 2**31)."""
    return chr(n).encode("utf-8", "surrogatepass") if n < 0x110000 else n.to_bytes(6, "big")


def flac_bomb_bytes(rate: int, channels: int, seconds: int, speech: np.ndarray, block: int = 4096) -> bytes:
    """A valid FLAC of ``channels`` x ``rate`` Hz x ``seconds`` (16-bit) in a few bytes per block:
    every subframe is CONSTANT zero, but channel 0 holds ``speech`` (int16) VERBATIM at the start.
    Written directly (libFLAC would take seconds on 918 million samples); soundfile (libsndfile,
    libFLAC: CRCs checked) reads it back in the test."""
    total = rate * seconds
    info = (block.to_bytes(2, "big") * 2 + b"\0" * 6
            + ((rate << 44) | ((channels - 1) << 41) | (15 << 36) | total).to_bytes(8, "big") + b"\0" * 16)
    out = [b"fLaC", bytes([0x80, 0, 0, 34]), info]
    for number, start in enumerate(range(0, total, block)):
        n = min(block, total - start)
        head = (bytes([0xFF, 0xF8, 0x70, ((channels - 1) << 4) | 0x08]) + _utf8_number(number)
                + (n - 1).to_bytes(2, "big"))
        head += bytes([_crc8(head)])
        piece = speech[start:start + n]
        if len(piece):
            samples = np.zeros(n, dtype=">i2")
            samples[:len(piece)] = piece
            sub = b"\x02" + samples.tobytes()                # VERBATIM channel 0
        else:
            sub = b"\x00\x00\x00"                              # CONSTANT 0
        frame = head + sub + b"\x00\x00\x00" * (channels - 1)
        out.append(frame + _crc16(frame).to_bytes(2, "big"))
    return b"".join(out)


@pytest.fixture(scope="module")
def flac_bomb(tmp_path_factory) -> Path:
    """8 channels, 384 kHz, 299 s: 918 million samples (3.7 GB as float32) in 2.2 MB,
    speech in its first 1.5 s."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.flac"
    path.write_bytes(flac_bomb_bytes(384_000, 8, 299, _speech(384_000)))
    return path


def _vm_hwm(pid: int) -> int:
    """Peak resident memory of a process, in bytes (Linux ``VmHWM``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


# ------------------------------------------------------------------------------ over HTTP
@pytest.mark.long(13)
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_flac_bomb_over_http_costs_its_mono_signal(flac_bomb, cli_trained, tmp_path):
    httpx = pytest.importorskip("httpx")
    from test_serve import Server
    info = sf.info(flac_bomb)                              # libsndfile: a valid FLAC, as declared
    assert (info.channels, info.samplerate, round(info.duration)) == (8, 384_000, 299)
    head, _ = sf.read(flac_bomb, frames=384_000, dtype="int16")
    np.testing.assert_array_equal(head[:, 0], _speech(384_000)[:384_000])
    assert not head[:, 1:].any() and flac_bomb.stat().st_size < 2.5e6
    srv = Server("--ubm", cli_trained / "ubm.npz", "--store", tmp_path / "s.db", "--max-bytes", 4 << 20,
                 "--max-seconds", 300, "--threads", 1, log=tmp_path / "server.log")
    try:
        with httpx.Client(base_url=srv.url, timeout=300) as client:
            warm = client.post("/v1/speakers/warm/enrollments", content=(FIX / "0_george_0.wav").read_bytes())
            assert warm.status_code == 200, warm.text
            before = _vm_hwm(srv.proc.pid)
            r = client.post("/v1/speakers/bomb/enrollments", content=flac_bomb.read_bytes())
            grown = _vm_hwm(srv.proc.pid) - before
    finally:
        srv.stop()
    assert r.status_code == 200, r.text                    # the bomb holds speech: it is enrolled
    mono = 299 * 8000 * 4                                   # its float32 mono signal at 8 kHz: 9.6 MB
    print(f"\nFLAC bomb ({flac_bomb.stat().st_size} bytes, 8 ch x 384 kHz x 299 s = "
          f"{8 * 384_000 * 299 * 4 / 1e9:.1f} GB as float32): server peak RSS grew {grown / 1e6:.1f} MB "
          f"(mono 8 kHz signal {mono / 1e6:.1f} MB)")
    assert grown < 12 * mono, f"{grown / 1e6:.0f} MB"       # 115 MB; was 7 GB


def test_64_channel_ogg_vorbis_is_refused_from_its_header(tmp_path):
    from speaker.audio import AudioError, decode_bytes
    path = tmp_path / "c64.ogg"
    sf.write(path, np.zeros((48_000, 64), dtype=np.float32), 48_000, format="OGG", subtype="VORBIS")
    assert sf.info(path).channels == 64
    data = path.read_bytes()
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match="64 channels: 1 to 8 are accepted"):
            decode_bytes(data, 16000, max_seconds=300)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak                            # nothing decoded


def test_8_channel_ogg_vorbis_decodes_in_the_memory_of_its_mono_output(tmp_path):
    from speaker.audio import decode_bytes
    y = np.zeros((48_000 * 20, 8), dtype=np.float32)
    y[: 48_000, 0] = _speech(48_000, 1.0) / 32768.0
    path = tmp_path / "c8.ogg"
    sf.write(path, y, 48_000, format="OGG", subtype="VORBIS")
    data = path.read_bytes()
    del y
    tracemalloc.start()
    try:
        z, rate = decode_bytes(data, 16000, max_seconds=300)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out = 20 * 16000 * 4
    assert rate == 16000 and abs(len(z) - 20 * 16000) < 1000
    assert peak < 2 * out + (4 << 20), (peak, out)          # all channels as float32: 31 MB


# ------------------------------------------------------------------------------ the command line
@pytest.fixture(scope="module")
def long_384k(tmp_path_factory) -> Path:
    """300 s of stereo at 384 kHz (230 million samples: 460 MB as mono float32), speech every 10 s."""
    path = tmp_path_factory.mktemp("hi") / "long_384k.flac"
    write_mostly_silent(path, 384_000, 2, 300, every=10)
    return path


@pytest.mark.long(4)
def test_library_memory_follows_the_output_rate_not_the_file_rate(long_384k):
    from speaker.audio import load_audio
    tracemalloc.start()
    try:
        y = load_audio(long_384k, target_rate=16000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    out = 300 * 16000 * 4
    assert abs(len(y) - 300 * 16000) < 100
    assert peak < out + (8 << 20), (peak, out)               # the output (19 MB) and a few blocks


@pytest.mark.long(9)
def test_extract_memory_follows_the_analysis_rate_not_the_file_rate(long_384k, tmp_path):
    """``speaker extract`` on the 300-s 384 kHz file and on a 1-s file: the peak RSS differs by
    about the 16 kHz signal and its features, not by the 460 MB of the file's mono signal."""
    short = tmp_path / "short.flac"
    write_mostly_silent(short, 384_000, 2, 1)

    def peak_rss(audio: Path, out: Path) -> int:
        (tmp_path / f"{out.name}.lst").write_text(f"{audio}\n")
        code = ("import resource, subprocess, sys\n"
                f"p = subprocess.run({speaker_command()!r} + sys.argv[1:], capture_output=True, text=True)\n"
                "assert p.returncode == 0, p.stderr\n"
                "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
        p = subprocess.run([sys.executable, "-c", code, "extract", "--list", str(tmp_path / f"{out.name}.lst"),
                            "--out", str(out), "--quiet"], capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
        return int(p.stdout.split()[-1]) * 1024

    small, large = peak_rss(short, tmp_path / "a"), peak_rss(long_384k, tmp_path / "b")
    print(f"\nspeaker extract peak RSS: 1 s file {small / 1e6:.0f} MB, 300 s at 384 kHz stereo "
          f"{large / 1e6:.0f} MB")
    assert large - small < 150e6, (small, large)             # the file's mono float32 alone is 460 MB


@pytest.mark.long(8)
def test_quality_is_measured_in_the_same_bounded_decode(tmp_path):
    """extract_features_and_quality on a clipped 384 kHz stereo FLAC: the clipping is that of the
    whole native mono signal (counted here by numpy on soundfile's samples, at once), while the
    call never holds that signal: its traced peak is that of extract_features on the same file
    (the features' own arrays) within 2 MB, under the native mono signal's 15 MB of float32."""
    from speaker.features import extract_features, extract_features_and_quality
    from speaker.quality import CLIP_TOLERANCE, MIN_CLIP_RUN
    seconds, rate = 10, 384_000
    one = np.clip(_speech(rate, 1.0).astype(np.int32) * 4, -32768, 32767).astype(np.int16)   # 12 dB over
    pcm = np.tile(one, seconds)
    path = tmp_path / "loud384k.flac"
    sf.write(path, np.stack([pcm, pcm // 2], axis=1), rate, subtype="PCM_16")

    native, _ = sf.read(path, dtype="float32")
    x = native.mean(axis=1, dtype=np.float64).astype(np.float32).astype(np.float64)
    n_in = runs = 0
    for z in (x, -x):                                         # each side at its own peak
        at = np.concatenate([[0], (z >= z.max() * (1 - CLIP_TOLERANCE)).astype(np.int8), [0]])
        d = np.diff(at)
        lengths = np.flatnonzero(d == -1) - np.flatnonzero(d == 1)
        long = lengths[lengths >= MIN_CLIP_RUN]
        n_in, runs = n_in + int(long.sum()), runs + int(long.size)
    mono_bytes = x.size * 4
    del native, x

    extract_features_and_quality(one, sample_rate=rate)      # first-call imports and caches, untraced
    peaks = []
    for extract in (extract_features, extract_features_and_quality):
        tracemalloc.start()
        try:
            out = extract(path)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
    q = out[1]
    assert runs > 0 and (q.clipped_runs, round(q.clipped_fraction * seconds * rate)) == (runs, n_in)
    assert q.seconds == seconds
    assert peaks[1] < min(peaks[0] + (2 << 20), mono_bytes), (peaks, mono_bytes)


# ------------------------------------------------------------------------------ FLAC of unknown length
def _zero_total_samples(data: bytes) -> bytes:
    """The FLAC with STREAMINFO's 36-bit total-samples field set to 0 ("unknown", as a streaming
    encoder writes it). STREAMINFO follows "fLaC" and its 4-byte block header; the field takes the
    low 4 bits of byte 13 of the block and the 4 bytes after."""
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0
    b = bytearray(data)
    base = 8
    b[base + 13] &= 0xF0
    b[base + 14:base + 18] = b"\0\0\0\0"
    return bytes(b)


def test_flac_of_unknown_length_is_decoded_to_its_end_and_bounded(tmp_path):
    from speaker.audio import AudioTooLong, decode_bytes, load_audio
    y = _speech(16000, 3.0)
    sf.write(tmp_path / "known.flac", y, 16000, subtype="PCM_16")
    data = _zero_total_samples((tmp_path / "known.flac").read_bytes())
    (tmp_path / "unknown.flac").write_bytes(data)
    z = load_audio(tmp_path / "unknown.flac", target_rate=16000)
    ref = y / 32768.0
    np.testing.assert_allclose(z, ref - ref.mean(), atol=1e-6)     # every sample, none invented
    with pytest.raises(AudioTooLong, match="longer than 1 s .decoding stopped"):
        decode_bytes(data, 16000, max_seconds=1)


# ------------------------------------------------------------------------------ FIFOs and devices
def test_a_fifo_in_a_list_is_skipped_without_being_opened(tmp_path):
    for name in ("pipe.wav", "pipe.npy", "pipe.ark"):
        os.mkfifo(tmp_path / name)                           # nobody ever writes: opening would block
    good = ["0_george_0.wav", "1_lucas_0.wav"]
    entries = [FIX / good[0], "pipe.wav", "pipe.npy", "pipe.ark:12", FIX / good[1]]
    (tmp_path / "l.lst").write_text("".join(f"u{i} {e}\n" for i, e in enumerate(entries)))
    p = speaker_process("extract", "--list", tmp_path / "l.lst", "--out", tmp_path / "f", "--sample-rate", 8000,
                        timeout=120)
    assert p.returncode == 0, p.stderr
    assert "pipe.wav: is a FIFO (named pipe), not a regular file" in p.stderr
    assert "pipe.ark:12: is a FIFO (named pipe), not a regular file" in p.stderr
    assert "pipe.npy" in p.stderr and "not a regular file" in p.stderr
    assert sorted(x.name for x in (tmp_path / "f").rglob("*.npy")) == ["u0.npy", "u4.npy"]


def _feed_zeros(fifo: Path, limit: int) -> threading.Thread:
    """A thread writing zeros into ``fifo`` until the reader closes it or ``limit`` bytes."""
    def run():
        try:
            with open(fifo, "wb") as f:
                block = b"\0" * (1 << 16)
                for _ in range(limit >> 16):
                    f.write(block)
        except (BrokenPipeError, OSError):
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_list_of_endless_zeros_is_one_line_after_a_bounded_read(tmp_path):
    from speaker.limits import MAX_LIST_LINE
    fifo = tmp_path / "zeros.lst"
    os.mkfifo(fifo)
    writer = _feed_zeros(fifo, 64 << 20)                     # ends by itself after 64 MiB
    p = speaker_cli("extract", "--list", fifo, "--out", tmp_path / "f")
    writer.join(60)
    assert p.returncode != 0 and not writer.is_alive()
    assert f"line longer than {MAX_LIST_LINE} characters" in p.stderr and "Traceback" not in p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_list_on_a_private_dev_zero_is_one_line(tmp_path):
    node = tmp_path / "zero"
    try:
        os.mknod(node, stat.S_IFCHR | 0o600, os.makedev(1, 5))
        with open(node, "rb") as f:
            assert f.read(4) == b"\0" * 4
    except (PermissionError, OSError) as exc:
        pytest.skip(f"cannot make and read a character device in a temporary folder here ({exc})")

    def limit_memory():                                      # a regression must not take the machine
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
    p = subprocess.run(speaker_command() + ["extract", "--list", str(node), "--out", str(tmp_path / "f")],
                       capture_output=True, text=True, timeout=120, preexec_fn=limit_memory)
    assert p.returncode != 0 and "line longer than" in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not (tmp_path / "f").exists()
