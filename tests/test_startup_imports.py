"""What the short commands import, and the frames they take without librosa's start-up.

* ``speaker speakers`` lists a store without SciPy, scikit-learn, numba or librosa's
  modules (each a fraction of a second to import; ``benchmarks/bench_startup.py`` times it);
* ``speaker verify``, once the front-end's tables are cached, imports neither numba nor
  scipy.signal (librosa's filterbank and the delta filters come from the cache), nor
  scikit-learn (the store's models are ``gmmext.MixtureModel``s);
* ``import gmmext`` / ``from gmmext import GMMStats, MixtureModel`` do not import scikit-learn;
* the frames of the feature front-end are librosa.util.frame's.
No timing is asserted.
"""
import json
import subprocess
import sys

import numpy as np
import pytest

HEAVY = ("sklearn", "scipy.signal", "scipy.optimize", "numba", "librosa.filters", "librosa.core.audio",
         "librosa.util.utils")
#: What ``speaker verify`` does without: the front-end's builders and scikit-learn.
VERIFY_HEAVY = HEAVY + ("librosa.feature", "librosa.util")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_gmmext_statistics_import_no_sklearn():
    code = ("import numpy as np\nimport gmmext\n"
            "from gmmext import GMMStats, MixtureModel, ModelStack, single_thread_blas\n"
            "m = MixtureModel.from_parameters([0.5, 0.5], [[0.0], [1.0]], [[1.0], [2.0]])\n"
            "X = np.zeros((3, 1))\n"
            "m.score_samples(X, check_input=False), m.accumulate(X, check_input=False)\n"
            "m.map_step(m.accumulate(X, check_input=False), params='mwv')\n"
            "ModelStack([m, m.like(m.weights_, m.means_ + 1, m.covariances_)]).top_c_loglik(\n"
            "    X, m.top_components(X, 1, check_input=False)[0], check_input=False)")
    mods = _modules_after(code)        # scoring, statistics and MAP of a model made from parameters
    assert "gmmext._stats" in mods
    assert not {m for m in mods if m.split(".")[0] == "sklearn"}
    mods = _modules_after("from gmmext import GaussianMixture")       # the estimator does need it
    assert "sklearn.base" in mods


def _store(tmp_path):
    """A store (K=8 diagonal UBM) with speaker 'alice' enrolled from synthetic features."""
    from gmmext import GaussianMixture
    from speaker import FeatureConfig
    from speaker.store import SpeakerStore
    rng = np.random.default_rng(0)
    K, D = 8, FeatureConfig().dim
    ubm = GaussianMixture.from_parameters(np.full(K, 1 / K), rng.normal(size=(K, D)), np.ones((K, D)),
                                          covariance_type="diag")
    with SpeakerStore(tmp_path / "s.db", ubm) as st:
        st.enroll("alice", [rng.normal(size=(3000, D))])
    return tmp_path / "s.db"


def test_speakers_command_imports_no_heavy_module(tmp_path):
    _store(tmp_path)
    code = ("import io, contextlib\nfrom speaker.cli import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            f"    assert main(['speakers', '--store', {str(tmp_path / 's.db')!r}, '--quiet']) == 0\n"
            "assert 'alice' in buf.getvalue(), buf.getvalue()")
    mods = _modules_after(code)
    assert "speaker.store" in mods and "sqlalchemy" in mods          # it did open the store
    heavy = sorted(m for m in mods if any(m == h or m.startswith(h + ".") for h in HEAVY + ("scipy",)))
    assert not heavy, heavy                                          # nor any of SciPy


def test_verify_command_imports_no_front_end_builder(tmp_path, monkeypatch):
    """Once the front-end's tables are in the cache folder (the first run writes them), ``speaker
    verify`` imports neither numba, scipy.signal nor librosa's filter, feature or util modules."""
    import soundfile as sf
    monkeypatch.setenv("SPEAKER_CACHE_DIR", str(tmp_path / "cache"))
    _store(tmp_path)
    rng = np.random.default_rng(1)
    t = np.arange(3 * 16000) / 16000
    sf.write(tmp_path / "x.wav", 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + np.sin(2 * np.pi * 3 * t))
             + 0.01 * rng.normal(size=t.size), 16000)
    code = ("import io, contextlib\nfrom speaker.cli import main\nbuf = io.StringIO()\n"
            "with contextlib.redirect_stdout(buf):\n"
            f"    assert main(['verify', '--store', {str(tmp_path / 's.db')!r}, '--speaker', 'alice', "
            f"'--threshold', '0', {str(tmp_path / 'x.wav')!r}]) == 0\n"
            "assert buf.getvalue().startswith('alice '), buf.getvalue()")
    first = _modules_after(code)
    assert "numba" in first                       # the first run computed the tables with librosa
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 2
    mods = _modules_after(code)
    assert "speaker.features" in mods and "gmmext._core" in mods
    heavy = sorted(m for m in mods if any(m == h or m.startswith(h + ".") for h in VERIFY_HEAVY))
    assert not heavy, heavy


@pytest.mark.parametrize("win,hop", [(200, 80), (400, 160), (25, 25), (1000, 7)])
def test_frames_are_librosas(win, hop):
    import librosa
    y = np.arange(1000, dtype=np.float32)
    want = librosa.util.frame(y, frame_length=win, hop_length=hop, axis=0)
    np.testing.assert_array_equal(np.lib.stride_tricks.sliding_window_view(y, win)[::hop], want)
