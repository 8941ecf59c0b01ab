"""speaker: GMM-UBM speaker verification on top of gmmext.

The recipe, one module per step:

* :mod:`speaker.audio`    - ``load_audio``, ``decode_bytes``: files, uploads and signals to mono float32
  at a fixed rate (WAV, FLAC, Ogg, WebM, MP4/M4A, MP3, ...), in bounded memory.
* :mod:`speaker.features` - ``FeatureConfig``, ``extract_features``: MFCC + deltas, energy VAD, CMVN.
* :mod:`speaker.quality`  - ``Quality``, ``QualityGates``: net speech, clipping, SNR, noise only
  (``extract_features_and_quality`` measures them in the same pass as the features).
* :mod:`speaker.featcache` - ``FeatureCache``, ``prepare_features``, ``FeatureFiles``: features of
  many files (parallel, cached, in memory or streamed).
* :mod:`speaker.ubm`      - ``train_ubm``: the universal background model by EM (streams over data).
* :mod:`speaker.cluster`  - ``dask_client``, ``DaskFeatures``: UBM training on a Dask cluster.
* :mod:`speaker.adapt`    - ``map_adapt``: enrol a speaker by MAP adaptation of the UBM.
* :mod:`speaker.scoring`  - ``llr``, ``score_trials``: log-likelihood ratios, top-C fast scoring.
* :mod:`speaker.score_norm` - Z/T/ZT/S-norm and adaptive S-norm.
* :mod:`speaker.metrics`  - ``eer``, ``min_dcf``, ``det_curve``.
* :mod:`speaker.det`      - ``plot_det``, ``save_det_plot(s)``: DET plots (matplotlib).
* :mod:`speaker.model_io` - ``save_model``, ``load_model``: safe ``.npz`` model files.
* :mod:`speaker.store`    - ``SpeakerStore``: enrolled speakers over time in a SQLite file or a PostgreSQL database.
* :mod:`speaker.calibration` - scores to LLRs, Cllr, minCllr, decision thresholds.
* :mod:`speaker.ivector`  - ``train_tv``, ``extract_ivectors``: the total-variability model (i-vectors).
* :mod:`speaker.plda`     - ``train_backend``, ``plda_llr``: LDA, WCCN, length norm, PLDA, cosine.
* :mod:`speaker.cli`      - the ``speaker`` command.

The names below are imported on first use (``speaker.train_ubm`` imports gmmext, ``speaker.
extract_features`` librosa), so that ``import speaker.cli`` stays quick and the console script
(:mod:`speaker._entry`) can take over Ctrl-C and SIGTERM before numpy, librosa and gmmext load.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "map_adapt": "adapt", "map_adapt_many": "adapt",
    "AudioError": "audio", "AudioTooLong": "audio", "load_audio": "audio", "decode_bytes": "audio",
    "FeatureConfig": "features", "extract_features": "features", "extract_features_and_quality": "features",
    "Quality": "quality", "QualityGates": "quality",
    "ModelError": "model_io", "ModelFile": "model_io", "load_model": "model_io", "save_model": "model_io",
    "llr": "scoring", "score_trials": "scoring", "Waveform": "sources",
    "train_ubm": "ubm",
    "SpeakerStore": "store", "StoreError": "store",
    "StoreUnavailable": "store", "StoreInvalid": "store",
    "TotalVariability": "ivector", "train_tv": "ivector", "extract_ivectors": "ivector",
    "load_tv": "ivector", "save_tv": "ivector",
    "PLDA": "plda", "Backend": "plda", "train_backend": "plda", "plda_llr": "plda",
    "load_backend": "plda", "save_backend": "plda",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'speaker' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # pragma: no cover
    from .adapt import map_adapt, map_adapt_many
    from .audio import AudioError, AudioTooLong, decode_bytes, load_audio
    from .features import FeatureConfig, extract_features, extract_features_and_quality
    from .model_io import ModelError, ModelFile, load_model, save_model
    from .quality import Quality, QualityGates
    from .scoring import llr, score_trials
    from .sources import Waveform
    from .ubm import train_ubm
