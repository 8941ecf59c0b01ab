"""Reliability, round two (issue 11): outputs that would destroy inputs, hostile files that eat
memory, one bad file that stops a job, unclear errors.  The command line runs in-process."""
import errno
import json
import os
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import small_recipe

from speaker import cli, scoring, ubm
from speaker.audio import AudioError, load_audio
from speaker.features import FeatureConfig, extract_features
from speaker.model_io import ModelError, load_model

FIX = Path(__file__).resolve().parent.parent / "audio_fixtures"
SPK = ["george", "jackson", "lucas"]
CFG8 = FeatureConfig(sample_rate=8000)


def run(capsys, *args):
    """(exit code, stderr) of ``speaker ARGS`` in this process (argparse errors included)."""
    try:
        rc = cli.main([str(a) for a in args])
    except SystemExit as exc:
        rc = exc.code
    return rc, capsys.readouterr().err


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Lists over three speakers (relative to the folder of copies), a UBM and models."""
    return small_recipe(tmp_path_factory.mktemp("round2"))


def _score(d, out, *extra):
    return ["score", "--ubm", d / "ubm.npz", "--models", d / "models.npz", "--trials", d / "trials.txt",
            "--out", out, "--quiet", *extra]


# ---------------------------------------------------------------- 1. an output may name an input
def test_outputs_that_are_inputs_are_refused_before_any_work(work, tmp_path, capsys):
    d = work
    protected = {p: p.read_bytes() for p in (d / "ubm.npz", d / "trials.txt", d / "ubm.lst", d / "models.npz")}
    link = tmp_path / "link.npz"
    link.symlink_to(d / "ubm.npz")
    cases = [
        ["enroll", "--ubm", d / "ubm.npz", "--enroll", d / "enroll.txt", "--out", d / "ubm.npz"],
        ["enroll", "--ubm", d / "ubm.npz", "--enroll", d / "enroll.txt", "--out", link],       # through a link
        _score(d, d / "trials.txt"),
        _score(d, d / "models.npz"),
        ["train-ubm", "--list", d / "ubm.lst", "--out", tmp_path / "u.npz", "--components", 2,
         "--sample-rate", 8000, "--checkpoint", d / "ubm.lst"],
        ["train-ubm", "--list", d / "ubm.lst", "--out", d / "0_george_0.wav", "--components", 2,
         "--sample-rate", 8000],                                                                 # a listed file
    ]
    for args in cases:
        rc, err = run(capsys, *args)
        assert rc == 1, err
        assert "refusing to overwrite an input" in err and len(err.strip().splitlines()) == 1, err
    for p, before in protected.items():
        assert p.read_bytes() == before, p
    assert (d / "ubm.lst").exists() and (d / "0_george_0.wav").stat().st_size > 1000


# ---------------------------------------------------------------- 2. extract: same base names
def test_extract_keeps_files_with_the_same_base_name_apart(tmp_path, capsys):
    for sub, src in (("d1", "0_george_0.wav"), ("d2", "5_lucas_1.wav")):
        (tmp_path / sub).mkdir()
        shutil.copy(FIX / src, tmp_path / sub / "utt.wav")
    (tmp_path / "a.lst").write_text("d1/utt.wav\nd2/utt.wav\n")
    rc, err = run(capsys, "extract", "--list", tmp_path / "a.lst", "--out", tmp_path / "f", "--sample-rate", 8000,
                  "--quiet")
    assert rc == 0, err
    lines = (tmp_path / "f" / "feats.lst").read_text().split("\n")[:2]
    paths = [ln.split()[1] for ln in lines]
    assert len(set(paths)) == 2
    for p, sub in zip(paths, ("d1", "d2")):
        np.testing.assert_allclose(np.load(p), extract_features(tmp_path / sub / "utt.wav", config=CFG8))
    # two entries that would get the same name: an error, nothing written
    (tmp_path / "b.lst").write_text(f"u1 {tmp_path / 'd1/utt.wav'}\nu1 {tmp_path / 'd2/utt.wav'}\n")
    rc, err = run(capsys, "extract", "--list", tmp_path / "b.lst", "--out", tmp_path / "g", "--sample-rate", 8000)
    assert rc == 1 and "would both be written as 'u1'" in err
    assert not (tmp_path / "g").exists()


# ---------------------------------------------------------------- 3. --resume and changed audio
def test_resume_refuses_audio_changed_under_the_same_path(work, tmp_path, capsys, monkeypatch):
    names = [f"{dg}_{s}_0.wav" for s in SPK for dg in range(3)]
    for n in names:
        shutil.copy(work / n, tmp_path / n)
    (tmp_path / "u.lst").write_text("\n".join(names) + "\n")
    args = ["train-ubm", "--list", tmp_path / "u.lst", "--out", tmp_path / "u.npz", "--components", 4,
            "--sample-rate", 8000, "--iters", 3, "--quiet"]
    real = ubm.train_ubm

    def stop_after_one_pass(*a, **kw):
        def cb(i, gm, stats):
            raise KeyboardInterrupt
        return real(*a, **kw, callback=cb)

    monkeypatch.setattr(ubm, "train_ubm", stop_after_one_pass)
    rc, err = run(capsys, *args)
    assert rc == 130 and (tmp_path / "u.ckpt.npz").exists()
    monkeypatch.setattr(ubm, "train_ubm", real)
    # change the samples of one file, keeping its size and modification time
    victim = tmp_path / names[4]
    st = victim.stat()
    y, sr = sf.read(victim, dtype="int16")
    sf.write(victim, (y[::-1] // 2).astype(np.int16), sr, subtype="PCM_16")
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert victim.stat().st_size == st.st_size and victim.stat().st_mtime_ns == st.st_mtime_ns
    rc, err = run(capsys, *args, "--resume")
    assert rc == 1 and "other training data" in err, err
    assert not (tmp_path / "u.npz").exists()


# ---------------------------------------------------------------- 4 (command line). non-finite scores
def test_score_never_writes_a_non_finite_score(work, tmp_path, capsys, monkeypatch):
    real = scoring.score_trials

    def one_nan(*a, **kw):
        s = np.asarray(real(*a, **kw), dtype=np.float64)
        s[1], s[3] = np.nan, -np.inf
        return s

    monkeypatch.setattr(scoring, "score_trials", one_nan)
    rc, err = run(capsys, *_score(work, tmp_path / "s.txt"))
    assert rc == 0, err
    rows = (tmp_path / "s.txt").read_text().splitlines()
    n = len((work / "trials.txt").read_text().splitlines())
    assert len(rows) == n - 2
    assert all(np.isfinite(float(r.split()[2])) for r in rows)
    assert "skipped 2 trial(s)" in err and "score is nan" in err and "score is -inf" in err
    rc, err = run(capsys, *_score(work, tmp_path / "s2.txt", "--strict"))
    assert rc == 1 and not (tmp_path / "s2.txt").exists()


# ---------------------------------------------------------------- 5. stored feature_config bounded
@pytest.mark.parametrize("text, why", [
    ('{"delta_width": 2147483649}', "delta_width"),
    ('{"sample_rate": 100000000}', "sample_rate"),
    ('{"n_mels": 1000000, "n_ceps": 20}', "n_mels"),
    ('{"cmn_window": 1000000000}', "cmn_window"),
    ('{"win_length_ms": 1e9}', "win_length_ms"),
    ('{"n_fft": 1073741824}', "n_fft"),
    ('{"n_ceps": 100, "n_mels": 100}', "dimensions"),
    ("[" * 100_000 + "]" * 100_000, "characters"),
    ("[" * 20_000 + "]" * 20_000, "nested deeper"),
    ('{"a": ' * 30 + "1" + "}" * 30, "nested deeper"),
], ids=["delta_width", "sample_rate", "n_mels", "cmn_window", "win_length", "n_fft", "dim", "100k-deep",
        "20k-deep", "30-deep-objects"])
def test_feature_config_is_bounded_on_load(text, why):
    with pytest.raises(ValueError, match=why):
        FeatureConfig.from_json(text)


def test_model_with_hostile_feature_config_is_refused(work, tmp_path):
    src = load_model(work / "ubm.npz")
    for cfg in ('{"delta_width": 2147483649}', "[" * 100_000 + "]" * 100_000):
        with np.load(work / "ubm.npz") as z:
            arrays = {k: z[k] for k in z.files}
        arrays["feature_config"] = np.array(cfg)
        np.savez(tmp_path / "h.npz", **arrays)
        with pytest.raises(ModelError, match="feature_config"):
            load_model(tmp_path / "h.npz")
    assert src.config == CFG8


def test_cli_config_nested_or_huge_is_one_line(work, tmp_path, capsys):
    for body in ("[" * 100_000 + "]" * 100_000, '{"sample_rate": 100000000}'):
        (tmp_path / "c.json").write_text(body)
        rc, err = run(capsys, "train-ubm", "--list", work / "ubm.lst", "--out", tmp_path / "u.npz",
                      "--components", 2, "--config", tmp_path / "c.json")
        assert rc == 1 and len(err.strip().splitlines()) == 1 and "bad feature configuration" in err, err
    rc, err = run(capsys, "train-ubm", "--list", work / "ubm.lst", "--out", tmp_path / "u.npz",
                  "--components", 2, "--config", "/dev/zero")
    assert rc == 1 and "larger than" in err, err


# ---------------------------------------------------------------- 6. zip bombs
def _npz_with_member(path, arrays: dict, fake: dict, full: bool = True):
    """An .npz with real ``arrays`` plus members whose .npy header declares ``fake`` shapes
    (name -> (shape, dtype)), followed by that many zero bytes (compressed: a zip bomb) when
    below 64 MiB and ``full``, else by a few bytes only."""
    import io
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, a in arrays.items():
            buf = io.BytesIO()
            np.save(buf, a)
            zf.writestr(k + ".npy", buf.getvalue())
        for k, (shape, dtype) in fake.items():
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                       "shape": shape})
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            zf.writestr(k + ".npy", buf.getvalue() + bytes(nbytes if full and nbytes < 1 << 26 else 64))


@pytest.mark.parametrize("fake, why", [
    ({"means": ((1 << 31,), "<f4")}, "elements"),
    ({"means": ((5000, 20), "<f8")}, "components"),
    ({"means": ((64, 4096), "<f8")}, "dimensions"),
    ({"means": ((4, 20), "<f8"), "short": True}, "declared size"),     # the entry is smaller than its header says
    ({"feature_config": ((), "<U100000")}, "short scalar"),
    ({"speaker_ids": ((3,), "|O")}, "pickled"),
], ids=["2^31-elements", "K>4096", "D>200", "short-entry", "huge-config-string", "object-ids"])
def test_npz_members_are_checked_from_their_headers_before_reading(work, tmp_path, monkeypatch, fake, why):
    fake = dict(fake)
    full = not fake.pop("short", False)
    with np.load(work / "ubm.npz") as z:
        arrays = {k: z[k] for k in z.files if k not in fake}
    _npz_with_member(tmp_path / "bomb.npz", arrays, fake, full)
    import speaker.model_io as mio

    def no_load(*a, **kw):
        raise AssertionError("numpy.load reached")

    monkeypatch.setattr(mio.np, "load", no_load)
    with pytest.raises(ModelError, match=why):
        load_model(tmp_path / "bomb.npz")


def test_real_zip_bomb_is_refused_cheaply(tmp_path):
    """4 MB of compressed zeros that would inflate to 4 GB: refused from the header alone."""
    import io
    import tracemalloc
    n = 1 << 29                                      # float64 elements: 4 GiB
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("means.npy", "w", force_zip64=True) as f:
            buf = io.BytesIO()
            np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": (n,)})
            f.write(buf.getvalue())
            block = bytes(1 << 24)
            for _ in range(8):                       # only 128 MB written: enough to compress, cheap
                f.write(block)
    tracemalloc.start()
    with pytest.raises(ModelError, match="elements"):
        load_model(tmp_path / "bomb.npz")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 20 << 20


def test_checkpoint_headers_are_checked(tmp_path):
    from speaker.ubm import CheckpointError, read_checkpoint
    _npz_with_member(tmp_path / "c.npz", {"format": np.array("speaker-ubm-checkpoint")},
                     {"means": ((1 << 20, 300), "<f8")})
    with pytest.raises(CheckpointError, match="cannot read checkpoint: member .means. declares shape"):
        read_checkpoint(tmp_path / "c.npz")


# ---------------------------------------------------------------- 7. absurd sample rates, lengths
def test_absurd_sample_rates_and_lengths_are_refused_before_resampling(tmp_path):
    y = (np.random.default_rng(0).standard_normal(100_000) * 3000).astype(np.int16)
    for rate in (1, 999, 400_000):
        sf.write(tmp_path / f"r{rate}.wav", y, rate, subtype="PCM_16")
        with pytest.raises(AudioError, match="sample rate"):
            load_audio(tmp_path / f"r{rate}.wav", target_rate=16000)
    with pytest.raises(AudioError, match="hours"):
        load_audio(np.ones(6 * 3600 * 1000 + 1, dtype=np.int8), 1000, target_rate=8000)
    sf.write(tmp_path / "ok.wav", y, 1000, subtype="PCM_16")            # the bounds themselves are fine
    assert load_audio(tmp_path / "ok.wav", target_rate=8000).shape == (800_000,)


# ---------------------------------------------------------------- 8-10. one bad file never stops a batch
def test_huge_float_samples_are_skipped_and_named(work, tmp_path, capsys):
    y, sr = sf.read(FIX / "1_george_1.wav", dtype="float32")
    sf.write(tmp_path / "loud.wav", y * 1e20, sr, subtype="FLOAT")
    with pytest.raises(AudioError, match="full scale"):
        load_audio(tmp_path / "loud.wav", target_rate=8000)
    (tmp_path / "e.txt").write_text(f"george {tmp_path / 'loud.wav'} {work / '0_george_1.wav'}\n"
                                    f"lucas {work / '0_lucas_1.wav'}\n")
    rc, err = run(capsys, "enroll", "--ubm", work / "ubm.npz", "--enroll", tmp_path / "e.txt",
                  "--out", tmp_path / "m.npz")
    assert rc == 0, err
    assert "loud.wav" in err and "full scale" in err
    assert set(load_model(tmp_path / "m.npz", ubm=load_model(work / "ubm.npz").ubm).speakers) == {"george", "lucas"}


def test_npy_with_the_wrong_dimension_is_skipped_and_named(work, tmp_path, capsys):
    good = [extract_features(work / f"{dg}_george_0.wav", config=CFG8) for dg in range(4)]
    for i, f in enumerate(good):
        np.save(tmp_path / f"g{i}.npy", f)
    np.save(tmp_path / "bad.npy", good[0][:, :-1])
    (tmp_path / "e.txt").write_text("george g0.npy bad.npy g1.npy\njackson g2.npy g3.npy\n")
    rc, err = run(capsys, "enroll", "--ubm", work / "ubm.npz", "--enroll", tmp_path / "e.txt",
                  "--out", tmp_path / "m.npz")
    assert rc == 0, err
    assert "bad.npy" in err and "59 dimensions, expected 60" in err
    (tmp_path / "u.lst").write_text("g0.npy\nbad.npy\ng1.npy\ng2.npy\ng3.npy\n")
    rc, err = run(capsys, "train-ubm", "--list", tmp_path / "u.lst", "--out", tmp_path / "u.npz", "--components", 2,
                  "--iters", 1)
    assert rc == 0, err
    assert "bad.npy" in err and "from 4 files" in err


def test_bad_cache_entries_are_re_extracted(tmp_path):
    from speaker.featcache import FeatureCache
    srcs = [str(FIX / f"{dg}_lucas_0.wav") for dg in range(4)]
    store = FeatureCache(CFG8, cache_dir=tmp_path / "c")
    store.load(srcs)
    entries = [store._cache_path(s) for s in srcs]
    assert all(e.exists() for e in entries)
    np.save(entries[0], np.zeros((100, 60), dtype=np.int64))
    np.save(entries[1], np.ones(60, dtype=np.float32))
    np.save(entries[2], np.ones((10, 59), dtype=np.float32))
    np.save(entries[3], np.full((10, 60), np.nan, dtype=np.float32))
    again = FeatureCache(CFG8, cache_dir=tmp_path / "c")
    again.load(srcs)
    assert not again.errors
    for s in srcs:
        np.testing.assert_array_equal(again.features[s], extract_features(s, config=CFG8))


# ---------------------------------------------------------------- 11. tracebacks; numeric options
@pytest.mark.parametrize("option, value", [
    ("--threads", "100000"), ("--threads", "0"), ("--sample-rate", "0"), ("--sample-rate", "1"),
    ("--var-floor", "nan"), ("--var-floor", "-1"), ("--var-floor", "inf"), ("--components", "0"),
    ("--components", "100000"), ("--iters", "-1"), ("--jobs", "0"), ("--seed", "-1"),
])
def test_numeric_options_are_validated(work, tmp_path, capsys, option, value):
    rc, err = run(capsys, "train-ubm", "--list", work / "ubm.lst", "--out", tmp_path / "u.npz",
                  "--components", 2, option, value)
    assert rc == 2, err
    assert err.splitlines()[-1].startswith("speaker train-ubm: error: argument " + option), err
    assert not (tmp_path / "u.npz").exists()


@pytest.mark.parametrize("option, value", [("--relevance-factor", "nan"), ("--relevance-factor", "0"),
                                           ("--top-c", "0"), ("--top-c", "1000000")])
def test_score_numeric_options_are_validated(work, tmp_path, capsys, option, value):
    rc, err = run(capsys, *_score(work, tmp_path / "s.txt", option, value))
    assert rc == 2 and "argument " + option in err, err


def test_unexpected_errors_are_one_line(work, tmp_path, capsys, monkeypatch):
    for exc in (MemoryError(), RecursionError("maximum recursion depth exceeded"), RuntimeError()):
        def boom(*a, **kw):
            raise exc
        monkeypatch.setattr(scoring, "score_trials", boom)
        rc, err = run(capsys, *_score(work, tmp_path / "s.txt"))
        assert rc == 1 and "Traceback" not in err
        assert err.strip().splitlines() == [f"speaker score: error: {type(exc).__name__}: "
                                            f"{str(exc) or ('out of memory' if type(exc) is MemoryError else 'no detail given')}"]


# ---------------------------------------------------------------- unclear errors
def test_symlink_loop_and_broken_link_are_said(tmp_path):
    (tmp_path / "a.wav").symlink_to(tmp_path / "b.wav")
    (tmp_path / "b.wav").symlink_to(tmp_path / "a.wav")
    with pytest.raises(AudioError, match="symbolic link loop"):
        load_audio(tmp_path / "a.wav", target_rate=8000)
    (tmp_path / "c.wav").symlink_to(tmp_path / "gone.wav")
    with pytest.raises(AudioError, match="broken symbolic link"):
        load_audio(tmp_path / "c.wav", target_rate=8000)


def test_garbage_npz_and_devices_are_named_for_what_they_are(work, tmp_path):
    from speaker.ubm import CheckpointError, read_checkpoint
    (tmp_path / "g.npz").write_bytes(os.urandom(5000))
    cases = [(tmp_path / "g.npz", "not a zip archive"), ("/dev/zero", "not a regular file"),
             (tmp_path, "not a regular file")]
    for path, why in cases:
        with pytest.raises(ModelError) as e:
            load_model(path)
        assert why in str(e.value) and "pickled" not in str(e.value)
        with pytest.raises(CheckpointError) as e:
            read_checkpoint(path)
        assert why in str(e.value) and "pickled" not in str(e.value)
    data = (work / "ubm.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a zip archive"):
        read_checkpoint(tmp_path / "t.npz")


def test_bad_kaldi_ark_entries_have_a_reason(work, tmp_path, capsys):
    (tmp_path / "empty.ark").write_bytes(b"")
    (tmp_path / "junk.ark").write_bytes(b"\0B" + b"\x04" * 3)
    (tmp_path / "e.txt").write_text(f"george empty.ark:0 junk.ark:0 {work / '0_george_1.wav'}\n")
    rc, err = run(capsys, "enroll", "--ubm", work / "ubm.npz", "--enroll", tmp_path / "e.txt",
                  "--out", tmp_path / "m.npz")
    assert rc == 0, err
    for line in err.splitlines():
        if ".ark:0" in line:
            reason = line.split("cannot read Kaldi archive entry:", 1)[1].strip()
            assert len(reason) > 10 and not reason.endswith(":"), line


def test_disk_full_names_the_file(work, tmp_path, capsys, monkeypatch):
    import speaker._atomic as at

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(at.os, "fsync", full)
    rc, err = run(capsys, *_score(work, tmp_path / "s.txt"))
    assert rc == 1 and f"cannot write {tmp_path / 's.txt'}: No space left on device" in err, err
    assert not (tmp_path / "s.txt").exists() and not list(tmp_path.glob(".*.tmp"))


def test_ubm_given_as_models_is_said(work, tmp_path, capsys):
    rc, err = run(capsys, "score", "--ubm", work / "ubm.npz", "--models", work / "ubm.npz", "--trials",
                  work / "trials.txt", "--out", tmp_path / "s.txt")
    assert rc == 1 and "this is a UBM, not a models file" in err and "unknown model id" not in err, err


def test_lists_strip_a_bom_and_take_tab_separated_paths_with_spaces(work, tmp_path, capsys):
    from speaker.lists import read_enroll_list, read_trials
    (tmp_path / "v.txt").write_bytes("\ufeff1 0_george_1.wav 1_george_2.wav\n0 0_george_1.wav 1_lucas_2.wav\n"
                                     .encode("utf-8"))
    fmt, trials = read_trials(tmp_path / "v.txt", work)
    assert fmt == "voxceleb" and trials[0].label is True
    (tmp_path / "k.txt").write_bytes("\ufeffgeorge 1_george_2.wav target\n".encode("utf-8"))
    assert read_trials(tmp_path / "k.txt", work)[1][0].model == "george"
    shutil.copy(work / "0_george_1.wav", tmp_path / "my file.wav")
    (tmp_path / "e.txt").write_text(f"george\tmy file.wav\t{work / '1_george_1.wav'}\n")
    assert read_enroll_list(tmp_path / "e.txt")["george"][0][1] == str(tmp_path / "my file.wav")
    rc, err = run(capsys, "enroll", "--ubm", work / "ubm.npz", "--enroll", tmp_path / "e.txt",
                  "--out", tmp_path / "m.npz", "--strict")
    assert rc == 0, err
    # and scored under that name: the score line is TAB-separated, read back by eval
    (tmp_path / "t.txt").write_text("george\tmy file.wav\ttarget\ngeorge\t0_lucas_2.wav\tnontarget\n")
    shutil.copy(work / "0_lucas_2.wav", tmp_path / "0_lucas_2.wav")
    rc, err = run(capsys, "score", "--ubm", work / "ubm.npz", "--models", tmp_path / "m.npz", "--trials",
                  tmp_path / "t.txt", "--out", tmp_path / "s.txt", "--strict")
    assert rc == 0, err
    assert (tmp_path / "s.txt").read_text().splitlines()[0].split("\t")[:2] == ["george", "my file.wav"]
    rc, err = run(capsys, "eval", "--scores", tmp_path / "s.txt", "--trials", tmp_path / "t.txt")
    assert rc == 0, err


def test_rewritten_output_keeps_its_mode_and_symlink(work, tmp_path, capsys):
    out = tmp_path / "s.txt"
    out.write_text("old\n")
    os.chmod(out, 0o600)
    assert run(capsys, *_score(work, out))[0] == 1 and out.read_text() == "old\n"    # needs --overwrite
    assert run(capsys, *_score(work, out), "--overwrite")[0] == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_text() != "old\n"
    target = tmp_path / "real.txt"
    target.write_text("old\n")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    assert run(capsys, *_score(work, link), "--overwrite")[0] == 0
    assert link.is_symlink() and target.read_text().count("\n") > 3


def test_relative_path_mistake_is_summarised_with_a_hint(work, tmp_path, capsys):
    (tmp_path / "u.lst").write_text("".join(f"{dg}_{s}_0.wav\n" for s in SPK for dg in range(10)) + "\n")
    shutil.copy(work / "0_george_0.wav", tmp_path / "0_george_0.wav")
    rc, err = run(capsys, "train-ubm", "--list", tmp_path / "u.lst", "--out", tmp_path / "u.npz",
                  "--components", 2, "--sample-rate", 8000)
    lines = err.strip().splitlines()
    assert "skipped 29 file(s):" in lines[0]
    assert len(lines) <= 14, err
    assert "... and 19 more" in err
    assert f"the list's own folder: {tmp_path}" in err
    one = [ln for ln in lines if "1_george_0.wav" in ln][0]
    assert one.count("1_george_0.wav") == 1 and one.endswith("no such file")
