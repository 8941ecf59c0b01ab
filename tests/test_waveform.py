"""Waveforms in memory as recordings of the speaker store (``speaker.Waveform``): the same
features, scores and enrolments as the files they were read from."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from conftest import FIX
from test_serve import open_store


@pytest.fixture()
def store(cli_trained, tmp_path):
    with open_store(tmp_path / "s.db", cli_trained / "ubm.npz") as st:
        yield st


def test_a_waveform_scores_as_its_file(store):
    from speaker import Waveform
    files = [FIX / f"{d}_george_0.wav" for d in range(5)]
    waves = [Waveform(*sf.read(f, dtype="float32")) for f in files]
    r_files = store.enroll("from_files", files)
    r_waves = store.enroll("from_waves", waves)
    assert r_files.n_frames == r_waves.n_frames and r_files.n_recordings == r_waves.n_recordings == 5
    test = FIX / "7_george_3.wav"
    y, rate = sf.read(test, dtype="int16")                       # integer PCM works too
    for sid in ("from_files", "from_waves"):
        by_file = store.verify(sid, test, threshold=0.0)
        by_wave = store.verify(sid, Waveform(y, rate), threshold=0.0)
        assert by_wave.score == pytest.approx(by_file.score, rel=1e-6, abs=1e-9)
    assert store.verify("from_waves", test, threshold=0.0).score == pytest.approx(
        store.verify("from_files", test, threshold=0.0).score, rel=1e-6, abs=1e-9)
    listed = {m.id for m in store.identify(Waveform(y, rate), 2, threshold=-1e9)}
    assert listed == {"from_files", "from_waves"}


def test_the_same_waveform_twice_is_one_recording_and_bad_audio_is_refused(store):
    from speaker import Waveform
    from speaker.audio import AudioError
    y, rate = sf.read(FIX / "3_lucas_1.wav", dtype="float32")
    r = store.enroll("lucas", [Waveform(y, rate), Waveform(y.copy(), rate)])
    assert r.n_recordings == 1 and "already enrolled" in next(iter(r.skipped.values()))
    with pytest.raises(AudioError, match="zero"):
        store.verify("lucas", Waveform(np.zeros(8000, np.float32), 8000), threshold=0.0)
