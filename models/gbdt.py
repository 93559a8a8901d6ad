"""Offline gradient-boosted trees for fraud: train with LightGBM, export to ONNX, and
choose and evaluate the REVIEW / DECLINE thresholds.

``train_gbdt`` imports LightGBM and onnxmltools when called, so scoring workers (which
only need :mod:`scorers` and onnxruntime) never load them; ``choose_thresholds``,
``evaluate`` and ``roc_auc`` are plain numpy.

Conventions: a score flags an event when ``score >= threshold``; REVIEW covers
``[review, decline)`` and DECLINE ``[decline, 1]``. Recall and false-positive rate of a
threshold count every flagged event (REVIEW and DECLINE together for ``review``).

>>> import numpy as np
>>> y = np.array([0] * 8 + [1] * 2)
>>> scores = np.array([0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.5, 0.7, 0.9])
>>> t = choose_thresholds(scores, y, target_recall=1.0, max_fpr=0.25)
>>> (t.review, t.review_recall, t.review_fpr, t.met_targets)
(0.7, 1.0, 0.0, True)
>>> roc_auc(scores, y)
1.0
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from scorers import FEATURE_NAMES_METADATA_KEY, ModelExportError, OnnxScorer, check_matrix

__all__ = [
    "DEFAULT_PARAMS",
    "Thresholds",
    "TrainedModel",
    "choose_thresholds",
    "evaluate",
    "roc_auc",
    "train_gbdt",
]

#: LightGBM parameters unless overridden: small, deterministic, quiet, 2 threads.
#: ``scale_pos_weight`` defaults to negatives / positives of the training labels.
DEFAULT_PARAMS: Mapping[str, Any] = {
    "objective": "binary",
    "n_estimators": 200,
    "num_leaves": 31,
    "learning_rate": 0.05,
    "min_child_samples": 20,
    "num_threads": 2,
    "deterministic": True,
    "force_row_wise": True,
    "verbose": -1,
}
ONNX_TOLERANCE = 1e-4  # float32 inputs vs LightGBM doubles: 1e-5 was seen exceeded
_CHECK_ROWS = 2000


@dataclass(frozen=True)
class TrainedModel:
    """An exported model: the ONNX bytes, its training metrics and what produced it."""

    onnx_bytes: bytes
    metrics: dict[str, float]
    params: dict[str, Any]
    feature_names: tuple[str, ...]
    importance: dict[str, float] = field(default_factory=dict)

    def scorer(self, name: str = "fraud_gbdt", version: str = "0") -> OnnxScorer:
        """The model as an :class:`~scorers.OnnxScorer` (before it is published)."""
        return OnnxScorer(self.onnx_bytes, name, version, self.feature_names)


def train_gbdt(
    X: Any,
    y: Any,
    feature_names: Sequence[str],
    *,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
    valid: tuple[Any, Any] | None = None,
) -> TrainedModel:
    """Train a LightGBM binary classifier and export it to ONNX (no ZipMap).

    The same data, seed and params give the same model. The export is checked: on up
    to 2,000 rows, onnxruntime's probabilities must match LightGBM's within 1e-5, or
    :class:`~scorers.ModelExportError`. ``valid`` (X, y) adds ``valid_auc``. Metrics:
    ``train_auc``, ``n_train``, ``positive_rate``, ``n_trees``, ``onnx_max_abs_diff``.
    """
    import lightgbm as lgb
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    names = tuple(feature_names)
    matrix = check_matrix(X, names)
    labels = np.asarray(y).reshape(-1).astype(np.int32)
    positives = int(labels.sum())
    if positives == 0 or positives == labels.shape[0]:
        raise ValueError("training labels need both classes")
    chosen: dict[str, Any] = {
        **DEFAULT_PARAMS,
        "scale_pos_weight": (labels.shape[0] - positives) / positives,
        **(params or {}),
        "seed": seed,
    }
    rounds = int(chosen.pop("n_estimators"))
    booster = lgb.train(
        chosen,
        lgb.Dataset(matrix, label=labels, feature_name=list(names), params={"verbose": -1}),
        num_boost_round=rounds,
    )
    onnx_model = convert_lightgbm(
        booster, initial_types=[("input", FloatTensorType([None, len(names)]))], zipmap=False
    )
    onnx_model.graph.name = "techshop_gbdt"  # not the converter's random uuid: same bytes
    for output in onnx_model.graph.output:  # the converter declares a batch of 1
        dims = output.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "N"
    meta = onnx_model.metadata_props.add()
    meta.key, meta.value = FEATURE_NAMES_METADATA_KEY, json.dumps(list(names))
    onnx_bytes = onnx_model.SerializeToString()

    sample = matrix[np.random.default_rng(seed).permutation(matrix.shape[0])[:_CHECK_ROWS]]
    exported = OnnxScorer(onnx_bytes, "check", "0", names, providers=["CPUExecutionProvider"])
    diff = float(np.max(np.abs(exported.score(sample) - booster.predict(sample))))
    if not diff <= ONNX_TOLERANCE:
        raise ModelExportError(f"ONNX export disagrees with LightGBM by {diff:.2e}")

    metrics = {
        "train_auc": roc_auc(exported.score(matrix), labels),
        "n_train": float(labels.shape[0]),
        "positive_rate": positives / labels.shape[0],
        "n_trees": float(booster.num_trees()),
        "onnx_max_abs_diff": diff,
    }
    if valid is not None:
        metrics["valid_auc"] = roc_auc(exported.score(valid[0]), valid[1])
    gains = booster.feature_importance(importance_type="gain")
    importance = {n: float(g) for n, g in zip(names, gains, strict=True)}
    return TrainedModel(
        onnx_bytes=onnx_bytes,
        metrics=metrics,
        params={**chosen, "n_estimators": rounds, "lightgbm": lgb.__version__},
        feature_names=names,
        importance=importance,
    )


@dataclass(frozen=True)
class Thresholds:
    """REVIEW and DECLINE thresholds with what they achieved on the data they were
    chosen on. ``met_recall`` / ``met_fpr`` say whether the REVIEW targets held; when
    both could not, the FPR limit was kept and ``met_recall`` is False."""

    review: float
    decline: float
    review_recall: float
    review_fpr: float
    decline_recall: float
    decline_fpr: float
    target_recall: float
    max_fpr: float
    met_recall: bool
    met_fpr: bool

    @property
    def met_targets(self) -> bool:
        return self.met_recall and self.met_fpr

    def as_dict(self) -> dict[str, float]:
        """The two thresholds, as a manifest records them."""
        return {"review": self.review, "decline": self.decline}

    def report(self) -> dict[str, Any]:
        """Everything, JSON-ready (for manifests' metrics and reports)."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__} | {
            "met_targets": self.met_targets
        }


def _curve(
    scores: npt.NDArray[np.float64], y: npt.NDArray[np.bool_]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Candidate thresholds in decreasing order, with recall and FPR of each; the first
    flags nothing (just above the top score)."""
    order = np.argsort(-scores, kind="stable")
    s, labels = scores[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.shape[0] - 1]  # end of each tie group
    tp = np.cumsum(labels)[last]
    fp = np.cumsum(~labels)[last]
    thresholds = np.r_[np.nextafter(s[0], np.inf), s[last]]
    recall = np.r_[0.0, tp / labels.sum()]
    fpr = np.r_[0.0, fp / (~labels).sum()]
    return thresholds, recall, fpr


def _scores_labels(scores: Any, y: Any) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(y).reshape(-1).astype(bool)
    if s.shape != labels.shape:
        raise ValueError(f"{s.shape[0]} scores but {labels.shape[0]} labels")
    if not labels.any() or labels.all():
        raise ValueError("labels need both classes")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return s, labels


def choose_thresholds(
    scores: Any, y: Any, *, target_recall: float = 0.95, max_fpr: float = 0.01
) -> Thresholds:
    """Thresholds chosen on validation scores and labels.

    REVIEW: the highest threshold whose recall reaches ``target_recall``, if its FPR is
    within ``max_fpr``; otherwise the lowest threshold within ``max_fpr`` (the FPR
    limit wins, the recall shortfall is reported). DECLINE: the lowest threshold at or
    above REVIEW whose FPR is within ``max_fpr / 10``. A threshold above every score
    (flagging nothing) is a valid answer when nothing else fits.
    """
    s, labels = _scores_labels(scores, y)
    thresholds, recall, fpr = _curve(s, labels)
    eps = 1e-12  # rates are ratios of counts: compare with a hair of tolerance
    i_recall = int(np.argmax(recall >= target_recall - eps))
    i_fpr = int(np.searchsorted(fpr, max_fpr + eps, side="right") - 1)
    review = i_recall if fpr[i_recall] <= max_fpr + eps else i_fpr
    i_decline = int(np.searchsorted(fpr, max_fpr / 10 + eps, side="right") - 1)
    decline = min(i_decline, review)
    return Thresholds(
        review=float(thresholds[review]),
        decline=float(thresholds[decline]),
        review_recall=float(recall[review]),
        review_fpr=float(fpr[review]),
        decline_recall=float(recall[decline]),
        decline_fpr=float(fpr[decline]),
        target_recall=target_recall,
        max_fpr=max_fpr,
        met_recall=bool(recall[review] >= target_recall - eps),
        met_fpr=bool(fpr[review] <= max_fpr + eps),
    )


def roc_auc(scores: Any, y: Any) -> float:
    """Area under the ROC curve by ranks (Mann-Whitney U), ties counted as half."""
    s, labels = _scores_labels(scores, y)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    ranks = (ends - (counts - 1) / 2.0)[inverse]
    n_pos = int(labels.sum())
    n_neg = labels.shape[0] - n_pos
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def evaluate(scores: Any, y: Any, thresholds: Thresholds | Mapping[str, float]) -> dict[str, float]:
    """Recall, FPR and precision of flagging (REVIEW + DECLINE) and of DECLINE alone,
    the share of events sent to each outcome, and the ROC AUC."""
    s, labels = _scores_labels(scores, y)
    if isinstance(thresholds, Thresholds):
        thresholds = thresholds.as_dict()
    flagged = s >= thresholds["review"]
    declined = s >= thresholds["decline"]
    n, n_pos = labels.shape[0], int(labels.sum())
    n_neg = n - n_pos

    def rates(mask: npt.NDArray[np.bool_]) -> tuple[float, float, float]:
        tp = int((mask & labels).sum())
        fp = int((mask & ~labels).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        return tp / n_pos, fp / n_neg, precision

    recall, fpr, precision = rates(flagged)
    d_recall, d_fpr, d_precision = rates(declined)
    return {
        "n": float(n),
        "positives": float(n_pos),
        "recall": recall,
        "fpr": fpr,
        "precision": precision,
        "decline_recall": d_recall,
        "decline_fpr": d_fpr,
        "decline_precision": d_precision,
        "flagged_rate": float(flagged.mean()),
        "review_rate": float((flagged & ~declined).mean()),
        "decline_rate": float(declined.mean()),
        "auc": roc_auc(s, labels),
    }
