"""Model files: round trip, atomic writes, and refusal of every kind of bad file."""
import io
import json
import zipfile

import numpy as np
import pytest

from gmmext import GaussianMixture
from speaker.adapt import map_adapt
from speaker.features import FeatureConfig
from speaker.model_io import ModelError, load_model, save_model, ubm_fingerprint
from conftest import random_params, speaker_cli


@pytest.fixture
def ubm():
    return GaussianMixture.from_parameters(*random_params(4, 3, seed=0))


@pytest.fixture
def speakers(ubm):
    rng = np.random.default_rng(1)
    return {f"spk{i}": map_adapt(ubm, rng.normal(size=(50, 3)), adapt="mwv") for i in range(3)}


def test_round_trip(tmp_path, ubm, speakers):
    cfg = FeatureConfig(sample_rate=8000)
    save_model(tmp_path / "ubm.npz", ubm, config=cfg)
    save_model(tmp_path / "spk.npz", speakers, ubm=ubm, config=cfg)
    u = load_model(tmp_path / "ubm.npz")
    assert u.kind == "ubm" and u.config == cfg
    for a in ("weights_", "means_", "covariances_"):
        np.testing.assert_array_equal(getattr(u.ubm, a), getattr(ubm, a))
    np.testing.assert_allclose(u.ubm.score_samples(np.zeros((2, 3))), ubm.score_samples(np.zeros((2, 3))))
    s = load_model(tmp_path / "spk.npz", ubm=u.ubm)
    assert s.kind == "speakers" and list(s.speakers) == list(speakers)
    np.testing.assert_array_equal(s.speakers["spk2"].covariances_, speakers["spk2"].covariances_)
    assert s.ubm_fingerprint == ubm_fingerprint(ubm)
    assert not list(tmp_path.glob(".*tmp"))          # no temporary files left behind


def test_speaker_models_from_another_ubm_are_refused(tmp_path, ubm, speakers):
    save_model(tmp_path / "spk.npz", speakers, ubm=ubm)
    other = GaussianMixture.from_parameters(*random_params(4, 3, seed=9))
    with pytest.raises(ModelError, match="different UBM"):
        load_model(tmp_path / "spk.npz", ubm=other)


def test_failed_write_keeps_the_old_file(tmp_path, ubm):
    target = tmp_path / "ubm.npz"
    save_model(target, ubm)
    before = target.read_bytes()
    with pytest.raises(ValueError):
        save_model(target, {"a b": ubm}, ubm=ubm)     # invalid id: nothing written
    with pytest.raises(Exception):
        save_model(target, {"x": object()}, ubm=ubm)
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ubm.npz"]


def _write(path, **arrays):
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _valid(ubm):
    return dict(format=np.array("gmmext-speaker"), format_version=np.array(1), kind=np.array("ubm"),
                feature_config=np.array(""), ubm_fingerprint=np.array(ubm_fingerprint(ubm)),
                weights=ubm.weights_, means=ubm.means_, covariances=ubm.covariances_)


@pytest.mark.parametrize("change,match", [
    (dict(format_version=np.array(2)), "format_version"),
    (dict(format=np.array("other")), "format"),
    (dict(kind=np.array("ivector")), "kind"),
    (dict(weights=np.full(4, 0.3)), "sum to 1"),
    (dict(weights=np.array([1.2, -0.2, 0.0, 0.0])), "non-negative"),
    (dict(means=np.zeros((4, 2))), "shapes"),
    (dict(covariances=-np.ones((4, 3))), "> 0"),
    (dict(covariances=np.full((4, 3), np.nan)), "NaN"),
    (dict(means=np.full((4, 3), np.inf)), "NaN or infinity"),
    (dict(means=np.zeros((4, 3), dtype=np.int64)), "dtype"),
    (dict(feature_config=np.array('{"bogus_key": 1}')), "feature_config"),
    (dict(feature_config=np.array("{not json")), "feature_config"),
    (dict(weights=np.array([0.7, 0.1, 0.1, 0.1])), "fingerprint"),
])
def test_malformed_files_are_refused(tmp_path, ubm, change, match):
    _write(tmp_path / "m.npz", **{**_valid(ubm), **change})
    with pytest.raises(ModelError, match=match):
        load_model(tmp_path / "m.npz")


def test_pickled_object_arrays_are_never_loaded(tmp_path, ubm):
    class Boom:
        def __reduce__(self):
            return (exec, ("open('%s', 'w').write('pwned')" % (tmp_path / "pwned"),))
    arrays = _valid(ubm)
    arrays["means"] = np.array([Boom()], dtype=object)
    _write(tmp_path / "evil.npz", **arrays)
    with pytest.raises(ModelError, match="cannot read|pickle"):
        load_model(tmp_path / "evil.npz")
    assert not (tmp_path / "pwned").exists()


def test_truncated_and_garbage_files(tmp_path, ubm):
    save_model(tmp_path / "ok.npz", ubm)
    data = (tmp_path / "ok.npz").read_bytes()
    for name, blob in [("trunc.npz", data[: len(data) // 2]), ("empty.npz", b""),
                       ("text.npz", b"hello world\n"), ("rand.npz", np.random.default_rng(0).bytes(500))]:
        (tmp_path / name).write_bytes(blob)
        with pytest.raises(ModelError, match=name):
            load_model(tmp_path / name)
    with pytest.raises(ModelError, match="missing"):
        _write(tmp_path / "partial.npz", weights=ubm.weights_)
        load_model(tmp_path / "partial.npz")
    with pytest.raises(ModelError):
        load_model(tmp_path / "does-not-exist.npz")


def test_bit_flips_never_crash(tmp_path, ubm):
    """Every single-byte corruption is either refused with ModelError or loads a valid model."""
    save_model(tmp_path / "ok.npz", ubm)
    data = bytearray((tmp_path / "ok.npz").read_bytes())
    rng = np.random.default_rng(0)
    for pos in rng.choice(len(data), size=150, replace=False):
        bad = bytearray(data)
        bad[pos] ^= 0xFF
        (tmp_path / "flip.npz").write_bytes(bytes(bad))
        try:
            m = load_model(tmp_path / "flip.npz")
        except ModelError:
            continue
        assert np.all(np.isfinite(m.ubm.means_)) and np.all(m.ubm.covariances_ > 0)


from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

_ARRAYS = st.one_of(
    st.builds(lambda v: np.array(v), st.sampled_from(["gmmext-speaker", "ubm", "speakers", "", "x" * 50])),
    st.builds(lambda v: np.array(v), st.integers(-2, 3)),
    st.builds(lambda shape, fill, dt: np.full(shape, fill, dtype=dt),
              st.lists(st.integers(0, 4), min_size=0, max_size=3).map(tuple),
              st.sampled_from([0.0, 0.25, 1.0, -1.0, np.nan, np.inf, 1e308]),
              st.sampled_from([np.float32, np.float64, np.int32, np.complex64])),
    st.builds(lambda n: np.array([f"s{i}" for i in range(n)]), st.integers(0, 3)),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzzed_npz_contents(tmp_path, ubm, data):
    """Arbitrary replacements of any key: ModelError, or a model that is valid in every respect."""
    arrays = _valid(ubm)
    keys = list(arrays) + ["speaker_ids", "extra"]
    for key in data.draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
        if data.draw(st.booleans()) and key in arrays:
            del arrays[key]
        else:
            arrays[key] = data.draw(_ARRAYS)
    _write(tmp_path / "fuzz.npz", **arrays)
    try:
        m = load_model(tmp_path / "fuzz.npz")
    except ModelError as exc:
        assert "fuzz.npz" in str(exc)
        return
    models = [m.ubm] if m.kind == "ubm" else list(m.speakers.values())
    for g in models:
        assert np.all(np.isfinite(g.means_)) and np.all(g.covariances_ > 0)
        assert abs(float(g.weights_.sum()) - 1) < 1e-3


def test_cli_refuses_bad_model_files_without_traceback(tmp_path, ubm):
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    (tmp_path / "t.txt").write_text("a x.wav\n")
    save_model(tmp_path / "ubm.npz", ubm)
    for args in (["--ubm", tmp_path / "bad.npz"], ["--ubm", tmp_path / "ubm.npz", "--models", tmp_path / "bad.npz"]):
        p = speaker_cli("score", *args, "--trials", tmp_path / "t.txt", "--out", tmp_path / "s.txt")
        assert p.returncode == 1 and "bad.npz" in p.stderr and "Traceback" not in p.stderr


def test_a_npy_feature_file_declaring_more_than_it_holds_is_refused_from_its_header(tmp_path):
    """A 200-byte .npy whose header declares 9.6 GB: numpy.load would allocate the declared
    array before finding the data missing; the one reader refuses it from the header."""
    import tracemalloc
    from speaker.features import FeatureConfig
    from speaker.sources import read_source
    p = tmp_path / "big.npy"
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (60_000_000, 40)})
        f.write(bytes(100))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"declares shape \(60000000, 40\) \(9600000000 bytes\) but holds 100"):
            read_source(str(p), FeatureConfig())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, peak
    np.save(tmp_path / "ok.npy", np.ones((5, 3), np.float32))
    assert read_source(str(tmp_path / "ok.npy"), FeatureConfig()).shape == (5, 3)
