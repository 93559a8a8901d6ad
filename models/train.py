"""Offline retraining from recorded ``training-examples``: gradient-boosted trees → ONNX,
registered as the family's challenger with its lineage.

The examples are the decision-time feature snapshots joined with their labels (what
the online trainer learns from), so a retrained model sees exactly the features the
live decision saw, never later ones. They are ordered by event time; the last
``valid_fraction`` (in time) chooses the thresholds and gives the validation metrics,
the rest trains. The version stores, besides the ONNX artefact, ``reference.json``
(histograms of the validation scores and key features: the drift reference) and a
lineage (parent champion, event-time data range, number of examples, source).

>>> rows = [{"model": "fraud", "label": 1.0, "event_ts": 5, "ts": 9, "features": {"a": 1}}]
>>> [e["event_ts"] for e in parse_examples(['{"model": "fraud", "label": 0, "event_ts": 7,'
...                                         ' "ts": 8, "features": {"a": 0}}'], "fraud")]
[7]
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.drift import reference_json
from models.gbdt import choose_thresholds, evaluate, train_gbdt
from models.registry import Manifest, ModelRegistry
from models.routing import Routing, RoutingStore

__all__ = ["RetrainReport", "examples_to_matrix", "parse_examples", "retrain"]

Progress = Callable[[str], None]
_REQUIRED = ("label", "event_ts", "features")


def parse_examples(lines: Iterable[str | bytes], family: str) -> list[dict[str, Any]]:
    """``training-examples`` records of ``family`` from JSON lines (``techshop consume
    training-examples`` output); a malformed line is a ``ValueError`` naming it."""
    out: list[dict[str, Any]] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"line {number}: not JSON: {exc}") from None
        if isinstance(record, dict) and "value" in record and "model" not in record:
            record = record["value"]  # `techshop consume --meta` output
        if not isinstance(record, dict) or any(k not in record for k in _REQUIRED):
            raise ValueError(f"line {number}: not a training example (needs "
                             f"{', '.join(_REQUIRED)})")
        if record.get("model", family) == family:
            out.append(record)
    return out


def examples_to_matrix(examples: Sequence[dict[str, Any]], feature_names: Sequence[str]
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(X float32 in ``feature_names`` order, y bool); missing features are 0."""
    X = np.array([[float(ex["features"].get(n, 0.0)) for n in feature_names]
                  for ex in examples], dtype=np.float32).reshape(len(examples),
                                                                 len(feature_names))
    y = np.array([float(ex["label"]) >= 0.5 for ex in examples], dtype=bool)
    return X, y


@dataclass
class RetrainReport:
    manifest: Manifest
    routing: Routing
    validation: dict[str, float]
    n_train: int
    n_valid: int
    data_range: tuple[int, int]
    seconds: float


def retrain(registry: ModelRegistry, examples: Sequence[dict[str, Any]],
            feature_names: Sequence[str], *, name: str, family: str,
            default_routing: Routing | None = None, key_features: Sequence[str] = (),
            seed: int = 0, valid_fraction: float = 0.2, target_recall: float = 0.995,
            max_fpr: float = 0.005, params: dict[str, Any] | None = None,
            source: str = "", progress: Progress = lambda _: None) -> RetrainReport:
    """Train on ``examples``, register the result as ``name``'s next version and make it
    the ``family``'s challenger (the champion is untouched). Needs both classes in the
    training part and the validation part."""
    started = time.monotonic()
    if not 0.05 <= valid_fraction <= 0.5:
        raise ValueError("the validation fraction must be within 0.05..0.5")
    ordered = sorted(examples, key=lambda ex: int(ex["event_ts"]))
    X, y = examples_to_matrix(ordered, feature_names)
    cut = int(len(ordered) * (1.0 - valid_fraction))
    for part, labels in (("training", y[:cut]), ("validation", y[cut:])):
        if labels.size == 0 or labels.all() or not labels.any():
            raise ValueError(f"the {part} part ({labels.size} examples) needs both frauds "
                             "and legitimate transactions: record more examples")
    progress(f"{len(ordered):,} examples ({int(y.sum()):,} positive); training on the first "
             f"{cut:,}, validating on the last {len(ordered) - cut:,} (event time)")
    trained = train_gbdt(X[:cut], y[:cut], feature_names, seed=seed, params=params,
                         valid=(X[cut:], y[cut:]))
    progress(f"trained {int(trained.metrics['n_trees'])} trees; exported to ONNX "
             f"(max difference {trained.metrics['onnx_max_abs_diff']:.1e})")
    scores = trained.scorer().score(X[cut:])
    thresholds = choose_thresholds(scores, y[cut:], target_recall=target_recall,
                                   max_fpr=max_fpr)
    validation = evaluate(scores, y[cut:], thresholds)
    store = RoutingStore(registry)
    if not store.path(family).exists():  # pin "@latest" before a new version exists
        store.update(family, lambda r: r, "pin", default_routing)
    before = store.get(family, default_routing)
    champion = store.resolve(before.champion)
    columns = {"score": scores, **{f: X[cut:, list(feature_names).index(f)]
                                   for f in key_features}}
    data_range = (int(ordered[0]["event_ts"]), int(ordered[-1]["event_ts"]))
    manifest = registry.publish(
        name, "onnx", trained.onnx_bytes, feature_names=feature_names,
        thresholds=thresholds.as_dict(),
        metrics={**trained.metrics, **{f"valid_{k}": v for k, v in validation.items()}},
        params={"seed": seed, **trained.params},
        parent_version=champion[1] if champion and champion[0] == name else None,
        files={"reference.json": reference_json(columns)},
        lineage={"trainer": "offline", "source": source, "data_range": list(data_range),
                 "n_examples": len(ordered), "n_train": cut,
                 "champion_at_training": None if champion is None else "@".join(champion)})
    progress(f"registered {manifest.model_id}: validation recall {validation['recall']:.4f} "
             f"at FPR {validation['fpr']:.4f}, AUC {validation['auc']:.4f}")
    routing = store.set_challenger(family, manifest.model_id, default_routing,
                                   action="retrain")
    return RetrainReport(manifest, routing, validation, cut, len(ordered) - cut, data_range,
                         time.monotonic() - started)
