"""The front-end's cached tables (speaker._tables): librosa's / SciPy's values, whether computed or
read back; every bad cache file a miss that is replaced; and the features built on them equal to
librosa's MFCC pipeline (librosa.feature.melspectrogram -> ln -> librosa.feature.mfcc,
librosa.feature.delta) for the project's default configuration."""
import dataclasses
import os

import librosa
import numpy as np
import pytest
import scipy.signal

from speaker import FeatureConfig, extract_features
from speaker import _tables
from speaker.features import _delta, _delta_filters, _filters


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(_tables.CACHE_ENV, str(folder))
    _filters.cache_clear()
    _delta_filters.cache_clear()
    yield folder
    _filters.cache_clear()
    _delta_filters.cache_clear()


def _librosa_filters(sr=16000, win=400, n_fft=512, n_mels=40, fmin=20.0, fmax=8000.0, window="hamming"):
    return (librosa.filters.get_window(window, win, fftbins=True).astype(np.float32),
            librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=fmax, htk=True, norm=None,
                                dtype=np.float32))


@pytest.mark.parametrize("window", ["hamming", "hann", "blackmanharris"])
def test_tables_are_librosas_computed_and_read_back(cache, window):
    args = (window, 400, 16000, 512, 40, 20.0, 8000.0)
    want = _librosa_filters(window=window)
    for _ in range(2):                               # computed (and written), then read from the file
        win, mel = _filters(*args)
        np.testing.assert_array_equal(win, want[0])
        np.testing.assert_array_equal(mel, want[1])
        assert not win.flags.writeable and not mel.flags.writeable
        _filters.cache_clear()
    assert len(list(cache.glob("filters-*.npz"))) == 1
    for width in (3, 9):
        for order in (1, 2):
            np.testing.assert_array_equal(_delta_filters(width)[order - 1],
                                          scipy.signal.savgol_coeffs(width, order, deriv=order, use="conv"))
    assert len(list(cache.glob("delta-*.npz"))) == 2


def _one_file(cache):
    _filters("hamming", 400, 16000, 512, 40, 20.0, 8000.0)
    _filters.cache_clear()
    (path,) = cache.glob("filters-*.npz")
    return path


def _tamper_values(path):
    z = dict(np.load(path))
    z["mel"] = z["mel"] * 1.5                       # out of range
    np.savez(path, **z)


def _tamper_key(path):
    z = dict(np.load(path))
    z["key"] = np.array(str(z["key"]).replace("hamming", "hanning"))
    np.savez(path, **z)


def _tamper_shape(path):
    z = dict(np.load(path))
    z["mel"] = z["mel"][:, :-1]
    np.savez(path, **z)


def _tamper_nan(path):
    z = dict(np.load(path))
    z["window"][3] = np.nan
    np.savez(path, **z)


def _garbage(path):
    path.write_bytes(os.urandom(300))


def _pickled(path):
    z = dict(np.load(path))
    z["extra"] = np.array([{"a": 1}], dtype=object)
    np.savez(path, **z)


@pytest.mark.parametrize("tamper", [_tamper_values, _tamper_key, _tamper_shape, _tamper_nan, _garbage, _pickled])
def test_a_bad_cache_file_is_a_miss_and_replaced(cache, tamper):
    path = _one_file(cache)
    tamper(path)
    win, mel = _filters("hamming", 400, 16000, 512, 40, 20.0, 8000.0)
    want = _librosa_filters()
    np.testing.assert_array_equal(win, want[0])
    np.testing.assert_array_equal(mel, want[1])
    z = np.load(path)                                # replaced by the valid tables
    np.testing.assert_array_equal(z["mel"], want[1])
    assert set(z.files) == {"key", "window", "mel"}


def test_a_cache_file_of_valid_tables_is_read_not_recomputed(cache):
    """A valid file is what is used (this is what makes the cache a cache): a change inside the
    table's range is served as is."""
    path = _one_file(cache)
    z = dict(np.load(path))
    z["mel"] = z["mel"] * np.float32(0.5)
    np.savez(path, **z)
    np.testing.assert_array_equal(_filters("hamming", 400, 16000, 512, 40, 20.0, 8000.0)[1], z["mel"])


def test_unwritable_or_disabled_cache_still_gives_the_tables(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for value in (str(blocker / "sub"), ""):
        monkeypatch.setenv(_tables.CACHE_ENV, value)
        _filters.cache_clear()
        win, mel = _filters("hamming", 400, 16000, 512, 40, 20.0, 8000.0)
        np.testing.assert_array_equal(mel, _librosa_filters()[1])
    _filters.cache_clear()
    assert _tables.cache_dir() is None
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("width,n", [(9, 300), (9, 3), (3, 1), (5, 40), (301, 200)])
def test_deltas_are_librosas(width, n):
    x = (5 * np.random.default_rng(width + n).standard_normal((n, 20))).astype(np.float32)
    for order in (1, 2):
        ref = librosa.feature.delta(x, width=width, order=order, axis=0, mode="nearest")
        got = _delta(x, width, order)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6 * np.abs(ref).max() + 1e-12)


def test_default_features_equal_librosas_mfcc_pipeline(cache):
    """The project's default FeatureConfig (16 kHz, 25 / 10 ms, 512-point FFT, Hamming, 0.97
    pre-emphasis, 40 HTK mel bands from 20 Hz, 20 cepstra with c0 the frame log-energy, deltas and
    delta-deltas over 9 frames), without VAD and normalisation, against librosa."""
    cfg0 = FeatureConfig()
    cfg = dataclasses.replace(cfg0, vad=False, normalization="none")
    rng = np.random.default_rng(3)
    t = np.arange(2 * 16000) / 16000
    y = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    y += 0.05 * np.sin(2 * np.pi * 3100 * t) + 0.01 * rng.standard_normal(t.size)
    y = (y - y.mean()).astype(np.float32)
    for _ in range(2):                               # tables computed, then read from the cache
        _filters.cache_clear()
        _delta_filters.cache_clear()
        feats = extract_features(y, 16000, cfg)
    win, hop, n_fft = cfg.win_samples, cfg.hop_samples, cfg.fft_size
    a = cfg.preemphasis
    emph = np.concatenate([[y[0] * (1 - a)], y[1:] - a * y[:-1]]).astype(np.float32)
    off = (n_fft - win) // 2                         # librosa centres the window in the n_fft frame
    mel = librosa.feature.melspectrogram(
        y=np.pad(emph, (off, n_fft - win - off)), sr=16000, n_fft=n_fft, hop_length=hop, win_length=win,
        window=cfg.window, center=False, power=2.0, n_mels=cfg.n_mels, fmin=cfg.fmin, fmax=cfg.fmax_hz,
        htk=True, norm=None)
    ceps = librosa.feature.mfcc(S=np.log(np.maximum(mel, 1e-10)), n_mfcc=cfg.n_ceps, dct_type=2, norm="ortho").T
    frames = librosa.util.frame(y, frame_length=win, hop_length=hop, axis=0).astype(np.float64)
    ceps[:, 0] = np.log(np.maximum((frames ** 2).mean(axis=1), 1e-10))
    ref = np.hstack([ceps] + [librosa.feature.delta(ceps, width=cfg.delta_width, order=o, axis=0, mode="nearest")
                              for o in (1, 2)])
    assert feats.shape == ref.shape == (1 + (y.size - win) // hop, cfg0.dim)
    for lo, hi in ((0, 20), (20, 40), (40, 60)):
        scale = np.abs(ref[:, lo:hi]).max()
        np.testing.assert_allclose(feats[:, lo:hi], ref[:, lo:hi], rtol=0, atol=2e-5 * scale)
