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
* :mod:`speaker.store`    - ``SpeakerStore``: enrolled speakers over time in one SQLite file.
* :mod:`speaker.calibration` - scores to LLRs, Cllr, minCllr, decision thresholds.
"""
from .adapt import map_adapt
from .audio import AudioError, load_audio
from .features import FeatureConfig, extract_features
from .model_io import ModelError, ModelFile, load_model, save_model
from .scoring import llr, score_trials
from .store import SpeakerStore, StoreError
from .ubm import train_ubm

__all__ = ["AudioError", "FeatureConfig", "ModelError", "ModelFile", "extract_features", "llr",
           "load_audio", "load_model", "map_adapt", "save_model", "score_trials", "train_ubm",
           "SpeakerStore", "StoreError"]
