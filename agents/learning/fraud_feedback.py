"""The fraud learning loop: labels joined with decision-time features, and the online
trainer.

* :func:`training_example` and :class:`LabelWindow` are pure: what an example looks
  like, and which stored decisions have outlived the label window (no chargeback in
  ``TECHSHOP_FRAUD_LABEL_WINDOW_MS`` of event time: a legitimate transaction).
* ``fraud-labels`` agent: a label finds its decision's provenance in ``fraud-decided``
  (same card key, so the same partition) and becomes a ``training-examples`` record; a
  label for an unknown transaction waits one label window, then is dead-lettered
  ``label.unmatched``.
* ``fraud-trainer`` agent: the only reader of ``training-examples`` (one partition,
  in order, :mod:`agents.learning.trainer`); the River challenger learns from each
  example (prequential metrics) and every N examples or T seconds a new version goes to
  the registry and ``model-updates``, which every worker applies without a restart.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from agents.fraud.features import FEATURE_NAMES
from agents.learning.windows import LabelWindow

if TYPE_CHECKING:
    from agents.fraud.metrics import FraudMetrics
    from agents.fraud.models import FraudModelHolder
    from streams.app import TechShopApp

__all__ = ["LabelWindow", "training_example", "register"]

log = logging.getLogger(__name__)
MODEL_FAMILY = "fraud"


def training_example(provenance: Mapping[str, Any], label: bool, label_ts: int
                     ) -> dict[str, Any]:
    """The ``training-examples`` record for a decided transaction and its label."""
    return {
        "example_id": provenance["txn_id"], "model": MODEL_FAMILY,
        "entity_id": provenance["card_id"],
        "features": dict(zip(FEATURE_NAMES, provenance["features"], strict=False)),
        "label": 1.0 if label else 0.0, "score": float(provenance["score"]),
        "decided_by": provenance["model"], "event_ts": int(provenance["ts"]),
        "ts": int(label_ts),
    }


def register(app: TechShopApp, holder: FraudModelHolder, metrics: FraudMetrics) -> Any:
    """Register the labels and trainer agents; returns the sweep to call per batch."""
    from streams.errors import ProcessingError
    from streams.intake import Admitted, RawMessage

    s = app.settings
    decided = app.fraud_decided  # type: ignore[attr-defined]
    pending = app.faust.Table("fraud-pending-labels", default=None, key_type=str,
                              partitions=s.partitions)
    decisions_window = LabelWindow(s.fraud_label_window_ms)
    labels_window = LabelWindow(s.fraud_label_window_ms)
    rebuilt = {"done": False}

    def emit(provenance: Mapping[str, Any], label: bool, label_ts: int) -> None:
        app.publisher.publish("training-examples", training_example(provenance, label,
                                                                    label_ts))
        metrics.training_examples.labels("fraud" if label else "legit").inc()

    def rebuild() -> None:
        for txn_id, entry in decided.items():
            decisions_window.add(entry["partition"], entry["ts"], txn_id)
        for txn_id, entry in pending.items():
            labels_window.add(entry["partition"], entry["ts"], txn_id)
        rebuilt["done"] = True

    def on_decided(partition: int, ts: int, txn_id: str) -> None:
        decisions_window.add(partition, ts, txn_id)
        labels_window.watermarks[partition] = max(labels_window.watermarks[partition], ts)

    def sweep(partition: int) -> None:
        """Called by the decision agent after each batch of ``partition``."""
        if not rebuilt["done"]:
            rebuild()
        for _, txn_id in decisions_window.expired(partition):
            entry = decided.get(txn_id)
            if entry is None:
                continue
            if not entry.get("labelled"):
                emit(entry, False, decisions_window.watermarks[partition])
            del decided[txn_id]
        for _, txn_id in labels_window.expired(partition):
            waiting = pending.pop(txn_id, None)
            if waiting is None:
                continue
            entry = decided.get(txn_id)
            if entry is not None:
                _apply_label(entry, waiting["is_fraud"], waiting["ts"])
                continue
            metrics.labels_unmatched.inc()
            app.reject(RawMessage(waiting["topic"], waiting["partition"], waiting["offset"],
                                  _unb64(waiting["key"]), _unb64(waiting["value"])),
                       ProcessingError(f"no transaction {txn_id} within the label window",
                                       "label.unmatched"))

    def _apply_label(entry: Mapping[str, Any], is_fraud: bool, label_ts: int) -> None:
        emit(entry, is_fraud, label_ts)
        decided[entry["txn_id"]] = {**entry, "labelled": True}

    async def on_labels(batch: list[Admitted]) -> None:
        for item in batch:
            label, message = item.event, item.message
            entry = decided.get(label["txn_id"])
            if entry is not None:
                if not entry.get("labelled"):
                    _apply_label(entry, label["is_fraud"], label["ts"])
                continue
            pending[label["txn_id"]] = {
                "ts": label["ts"], "is_fraud": label["is_fraud"], "topic": message.topic,
                "partition": message.partition, "offset": message.offset,
                "key": _b64(message.key), "value": _b64(message.value),
            }
            labels_window.add(message.partition, label["ts"], label["txn_id"])

    from agents.fraud.lifecycle import FraudEvaluator
    from agents.fraud.models import CHALLENGER, FAMILY
    from agents.learning.trainer import OnlineTrainer, register_trainer
    from models.prequential import MaturityGate, PrequentialWindow
    from models.records import update_record
    from models.routing import PromotionPolicy
    from scorers.river_scorer import RiverScorer
    from streams.app import now_ms

    def emit_event(record: dict[str, Any]) -> None:
        app.publisher.publish("model-events", record)

    def promoted() -> None:
        """Tell every worker (this one included) to load the new routing."""
        models = holder.reload()
        if models.champion is not None:
            name, _, version = models.champion.model_id.rpartition("@")
            manifest = holder.registry.manifest(name, version)
            app.publisher.publish("model-updates", update_record(
                holder.registry, manifest, "routing", now_ms()))

    evaluator = FraudEvaluator(
        holder, metrics, emit_event, window=s.prequential_window,
        fpr_target=s.fraud_fpr_target,
        policy=PromotionPolicy(s.promote_min_examples, s.promote_min_positives,
                               s.promote_margin),
        auto_promote=s.model_auto_promote, on_promoted=promoted,
        drift_window=s.drift_window, adwin_delta=s.drift_adwin_delta)
    app.fraud_evaluator = evaluator  # type: ignore[attr-defined]
    register_trainer(app, MODEL_FAMILY, OnlineTrainer(
        app, holder.registry, CHALLENGER, FEATURE_NAMES,
        lambda: RiverScorer(FEATURE_NAMES, name=CHALLENGER, version="0"),
        gate=MaturityGate(s.label_maturity_ms),
        prequential=PrequentialWindow(s.prequential_window, s.fraud_fpr_target),
        routing_family=FAMILY, observers=[evaluator]))
    app.input_agent("fraud-labels", on_labels, name="fraud-labels")
    return sweep, on_decided


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)
