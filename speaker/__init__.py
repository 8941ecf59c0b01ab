"""speaker: GMM-UBM speaker verification on top of gmmext.

The recipe, one module per step:

* :mod:`speaker.audio`    - ``load_audio``: any libsndfile format to mono float32 at a fixed rate.
* :mod:`speaker.features` - ``FeatureConfig``, ``extract_features``: MFCC + deltas, energy VAD, CMVN.
* :mod:`speaker.ubm`      - ``train_ubm``: the universal background model by EM (streams over data).
* :mod:`speaker.adapt`    - ``map_adapt``: enrol a speaker by MAP adaptation of the UBM.
* :mod:`speaker.scoring`  - ``llr``, ``score_trials``: log-likelihood ratios, top-C fast scoring.
* :mod:`speaker.score_norm` - Z/T/ZT/S-norm and adaptive S-norm.
* :mod:`speaker.metrics`  - ``eer``, ``min_dcf``, ``det_curve``, DET plots.
* :mod:`speaker.model_io` - ``save_model``, ``load_model``: safe ``.npz`` model files.

The names below are imported on first use (PEP 562), so that ``import speaker`` is cheap and
the console script can take over Ctrl-C before numpy, librosa and gmmext load.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "map_adapt": "adapt", "AudioError": "audio", "load_audio": "audio",
    "FeatureConfig": "features", "extract_features": "features",
    "ModelError": "model_io", "ModelFile": "model_io", "load_model": "model_io", "save_model": "model_io",
    "llr": "scoring", "score_trials": "scoring", "train_ubm": "ubm",
}

__all__ = ["AudioError", "FeatureConfig", "ModelError", "ModelFile", "extract_features", "llr",
           "load_audio", "load_model", "map_adapt", "save_model", "score_trials", "train_ubm"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'speaker' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover
    from .adapt import map_adapt
    from .audio import AudioError, load_audio
    from .features import FeatureConfig, extract_features
    from .model_io import ModelError, ModelFile, load_model, save_model
    from .scoring import llr, score_trials
    from .ubm import train_ubm
