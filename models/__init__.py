"""The model registry (signed, versioned artefacts) and offline training / export.

Imports ``scorers`` and ``schemas`` of ours, and no Faust. LightGBM and onnxmltools are
imported only inside :func:`train_gbdt`.
"""

from models.gbdt import (
    DEFAULT_PARAMS,
    Thresholds,
    TrainedModel,
    choose_thresholds,
    evaluate,
    roc_auc,
    train_gbdt,
)
from models.registry import LOADERS, Manifest, ModelRegistry, canonical_json, signing_key_from

__all__ = [
    "DEFAULT_PARAMS",
    "LOADERS",
    "Manifest",
    "ModelRegistry",
    "Thresholds",
    "TrainedModel",
    "canonical_json",
    "choose_thresholds",
    "evaluate",
    "roc_auc",
    "signing_key_from",
    "train_gbdt",
]
