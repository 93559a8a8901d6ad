"""The fraud pipeline's Faust adapter.

* ``fraud-decide`` reads ``transactions`` (keyed by card) in batches, calls the pure
  :func:`agents.fraud.decide.decide`, publishes ``fraud-decisions``, and, once they are
  delivered, stores each decision's provenance (``fraud-decided``, keyed by txn_id: the
  idempotence record and the features the label join needs) and the card state
  (``fraud-cards``). Both tables are RocksDB-backed and changelogged.
* Each decided transaction is re-keyed by merchant and by device onto ``fraud-entities``;
  ``fraud-entities`` updates those velocity windows (``fraud-entity-windows`` table)
  and mirrors them to Redis, where ``fraud-decide`` reads them for the next batches.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from agents.fraud.decide import FraudModels, FraudState, decide
from agents.fraud.features import CardState, EntityWindow
from agents.fraud.metrics import FraudMetrics
from agents.fraud.models import FraudModelHolder
from models.registry import ModelRegistry
from models.registry import open_registry as registry_at
from streams.errors import ProcessingError
from streams.intake import Admitted
from streams.snapshots import RedisSnapshots

if TYPE_CHECKING:
    from streams.app import TechShopApp

__all__ = ["register", "EntityCache", "open_registry"]

log = logging.getLogger(__name__)
ENTITY_TTL_S = 2 * 3600


def open_registry(app: TechShopApp) -> ModelRegistry:
    """The deployment's model registry (``TECHSHOP_MODEL_DIR``); refusals are counted in
    ``techshop_model_refused_total``."""
    from models.metrics import refused_counter

    s = app.settings
    key = s.model_signing_key.get_secret_value() if s.model_signing_key else None
    refused = refused_counter(app.registry)
    return registry_at(s.models_path, key,
                       on_refused=lambda name, _, reason: refused.labels(name, reason).inc())


class EntityCache:
    """Merchant and device velocity windows, materialised in Redis for every worker."""

    def __init__(self, redis_url: str, prefix: str) -> None:
        self.snapshots = RedisSnapshots(redis_url, f"{prefix}fraud:entity:", ENTITY_TTL_S)

    def fetch(self, txns: list[dict[str, Any]]
              ) -> tuple[dict[str, EntityWindow], dict[str, EntityWindow]]:
        """The windows of the batch's merchants and devices (absent ones left out)."""
        merchants = {t["merchant_id"] for t in txns}
        devices = {t["device_id"] for t in txns}
        found = self.snapshots.fetch([f"m:{m}" for m in merchants] + [f"d:{d}" for d in devices])
        windows = {key: _entity_window(value) for key, value in found.items()}
        return ({k[2:]: w for k, w in windows.items() if k.startswith("m:")},
                {k[2:]: w for k, w in windows.items() if k.startswith("d:")})

    def store(self, windows: dict[str, EntityWindow]) -> None:
        self.snapshots.store({entity: w.to_dict() for entity, w in windows.items()})


def _entity_window(stored: dict[str, Any] | None) -> EntityWindow:
    if stored:
        try:
            return EntityWindow.from_dict(stored)
        except (ValueError, KeyError, TypeError):  # an older layout: start afresh
            pass
    return EntityWindow()


def register(app: TechShopApp) -> None:
    from streams.app import now_ms

    s = app.settings
    metrics = FraudMetrics.create(app.registry)

    def show_models(models: FraudModels) -> None:
        metrics.model_info.clear()
        metrics.model_info.labels("rules", models.rules.model_id).set(1)
        if models.champion is not None:
            metrics.model_info.labels("champion", models.champion.model_id).set(1)
        if models.challenger is not None:
            role = "canary" if models.canary_percent > 0 else "challenger"
            metrics.model_info.labels(role, models.challenger.model_id).set(1)

    holder = FraudModelHolder(open_registry(app), budget_ms=s.fraud_model_budget_ms,
                              on_change=show_models)
    app.fraud_models = holder  # type: ignore[attr-defined]
    app.add_readiness_check("fraud_models_checked", lambda: holder.checked)
    from agents.fraud.lifecycle import LiveDrift

    def emit_event(record: dict[str, Any]) -> None:
        app.publisher.publish("model-events", record)

    live_drift = LiveDrift(holder, metrics, emit_event, window=s.drift_window,
                           adwin_delta=s.drift_adwin_delta)
    cache = EntityCache(s.serving_redis_url, s.topic_prefix)
    cards = app.faust.Table("fraud-cards", default=None, key_type=str,
                            partitions=s.partitions)
    decided = app.faust.Table("fraud-decided", default=None, key_type=str,
                              partitions=s.partitions)
    windows = app.faust.Table("fraud-entity-windows", default=None, key_type=str,
                              partitions=s.partitions)
    app.fraud_decided = decided  # type: ignore[attr-defined]
    from agents.learning import fraud_feedback

    sweep, on_decided = fraud_feedback.register(app, holder, metrics)

    @app.faust.task
    async def load_models() -> None:
        holder.load_latest()

    app.on_model_update(holder.on_update)

    async def on_transactions(batch: list[Admitted]) -> None:
        txns = [item.event for item in batch]
        already = {t["txn_id"]: True for t in txns if decided.get(t["txn_id"]) is not None}
        state_cards = {}
        for card_id in {t["card_id"] for t in txns}:
            stored = cards.get(card_id)
            if stored is not None:
                try:
                    state_cards[card_id] = CardState.from_dict(stored)
                except (ValueError, KeyError, TypeError):  # an older layout: start afresh
                    log.warning("card %s: stored state unreadable, starting afresh", card_id)
        merchants, devices = cache.fetch(txns)
        state = FraudState(cards=state_cards, merchants=merchants, devices=devices)
        result = decide(txns, state, holder.models, now_ms=now_ms(), already=already,
                        grace_ms=s.fraud_grace_ms)
        for position in result.late:
            metrics.late_events.inc()
            app.reject(batch[position].message, ProcessingError(
                f"transaction {txns[position]['txn_id']} is more than {s.fraud_grace_ms} ms "
                "behind its card's newest event time", "late_event"))
        if result.repeats:
            metrics.repeats.inc(len(result.repeats))
        if result.fallback_reason is not None:
            metrics.fallbacks.labels(result.fallback_reason.split(":")[0]).inc()
        elif result.champion_ms:
            metrics.score_seconds.observe(result.champion_ms / 1000.0)
            mine = [d.decision["variant"] == "champion" for d in result.decided]
            if any(mine):  # the champion's own rows (not the canary's)
                live_drift.observe(result.scores[mine], result.matrix[mine], txns[-1]["ts"])
        shadow = [d.provenance["challenger"]["model"] for d in result.decided
                  if d.provenance["challenger"] is not None and d.decision["variant"] != "canary"]
        if shadow:
            metrics.shadow_scored.labels(shadow[0]).inc(len(shadow))
        for item in result.decided:
            txn = txns[item.position]
            app.publisher.publish("fraud-decisions", item.decision)
            for entity in (f"m:{txn['merchant_id']}", f"d:{txn['device_id']}"):
                app.publisher.publish("fraud-entities", {"entity": entity,
                                                         "card_id": txn["card_id"],
                                                         "ts": txn["ts"]})
        await app.publisher.flush()
        # Delivered: now make the decisions durable (a crash before this line means a
        # redelivery decides again: a duplicate, never a loss).
        published = time.time()
        for item in result.decided:
            message = batch[item.position].message
            # The window values are columns of the feature vector; storing them twice
            # only slows the changelog down. The decision itself is on fraud-decisions.
            stored = {k: v for k, v in item.provenance.items() if k != "windows"}
            decided[item.decision["txn_id"]] = {
                **stored, "partition": message.partition, "offset": message.offset,
                "reasons": item.decision["reasons"], "labelled": False,
            }
            if message.timestamp_ms:
                metrics.latency.observe(max(0.0, published - message.timestamp_ms / 1000.0))
            metrics.decisions.labels(item.decision["decision"], item.decision["variant"]).inc()
            on_decided(message.partition, item.decision["ts"], item.decision["txn_id"])
        for card_id, card in state.cards.items():
            cards[card_id] = card.to_dict()
        sweep(batch[0].message.partition)

    async def on_entities(batch: list[Admitted]) -> None:
        touched: dict[str, EntityWindow] = {}
        for item in batch:
            entity = item.event["entity"]
            window = touched.get(entity)
            if window is None:
                window = _entity_window(windows.get(entity))
                touched[entity] = window
            window.observe(item.event["ts"], item.event["card_id"])
        for entity, window in touched.items():
            windows[entity] = window.to_dict()
        cache.store(touched)

    app.input_agent("transactions", on_transactions, name="fraud-decide")
    app.input_agent("fraud-entities", on_entities, name="fraud-entities")
