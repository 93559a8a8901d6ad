"""Model-agnostic scoring: one :class:`Scorer` protocol and its implementations.

- :class:`OnnxScorer` — an ONNX binary classifier (GBDT champion) in onnxruntime
- :class:`RiverScorer` — an online River model that learns in order
- :class:`RulesScorer` — transparent rules with per-row reasons (the fallback)

Imports only ``schemas`` of ours, and no Faust.
"""

from scorers.base import FloatMatrix, Scorer, Scores, check_labels, check_matrix, model_id
from scorers.errors import (
    FeatureMismatchError,
    ModelExportError,
    ModelIntegrityError,
    ModelNotFoundError,
    ScorerError,
)
from scorers.onnx_scorer import FEATURE_NAMES_METADATA_KEY, OnnxScorer, default_providers
from scorers.river_scorer import RiverScorer, default_river_model
from scorers.rules import (
    DEFAULT_COLUMNS,
    DEFAULT_RULES,
    DEFAULT_THRESHOLDS,
    DEFAULT_WEIGHTS,
    RulesScorer,
)

__all__ = [
    "DEFAULT_COLUMNS",
    "DEFAULT_RULES",
    "DEFAULT_THRESHOLDS",
    "DEFAULT_WEIGHTS",
    "FEATURE_NAMES_METADATA_KEY",
    "FeatureMismatchError",
    "FloatMatrix",
    "ModelExportError",
    "ModelIntegrityError",
    "ModelNotFoundError",
    "OnnxScorer",
    "RiverScorer",
    "RulesScorer",
    "Scorer",
    "ScorerError",
    "Scores",
    "check_labels",
    "check_matrix",
    "default_providers",
    "default_river_model",
    "model_id",
]
