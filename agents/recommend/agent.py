"""The recommendations pipeline's Faust adapter.

* ``recommend-decide`` reads ``clickstream`` (keyed by user) in batches: the users'
  state from ``recommend-users``, item neighbours and category trends from Redis, the
  catalog from memory; calls the pure :func:`agents.recommend.decide.decide`; publishes
  each fresh top-K on ``recommendations`` and writes it to Redis for readers; publishes
  attribution examples on ``training-examples`` and the batch's item/category signals
  on ``recommend-signals``.
* ``recommend-signals`` applies those signals to item- and category-keyed tables
  (co-visitation, popularity, trending) and mirrors them to Redis.
* ``catalog`` is validated by an agent (bad events are dead-lettered) and read in full by
  every worker into memory (compacted topic; a tombstone deletes).
* The ranker (``recommend_ranker``) learns online from the examples
  (:mod:`agents.learning.trainer`) and reaches every worker through ``model-updates``.
* Live drift (:mod:`agents.recommend.drift`): the ranker's top score per top-K and the
  shares of cold-start and exploration in its responses, in
  ``techshop_recommend_drift_state{signal}`` and as ``model-events`` records.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import orjson

import agents.recommend.decide as rec
from agents.learning.drift_events import ModelDrift
from agents.recommend import drift
from agents.recommend.candidates import CatalogIndex
from agents.recommend.metrics import RecommendMetrics
from agents.recommend.serving import RecommendationStore, install_read_endpoint
from agents.recommend.state import (
    CategoryTrending,
    ItemNeighbors,
    ItemSignal,
    UserState,
    merge_signals,
)
from streams.errors import ValidationError
from streams.intake import Admitted
from streams.snapshots import RedisSnapshots
from streams.validation import validate

if TYPE_CHECKING:
    from streams.app import TechShopApp

__all__ = ["register", "RANKER"]

log = logging.getLogger(__name__)
RANKER = "recommend_ranker"
STATE_TTL_S = 24 * 3600


class RankerHolder:
    """The ranker in use: the registry's latest ``recommend_ranker``, swapped on update."""

    def __init__(self, registry: Any, on_change: Any = None) -> None:
        self.registry = registry
        self.on_change = on_change
        self.ranker: Any = None
        self.checked = False

    def load_latest(self) -> None:
        if RANKER in self.registry.names():
            self._load("latest")
        self.checked = True

    def on_update(self, update: dict[str, Any]) -> None:
        if update.get("model") != RANKER:
            return
        if self.ranker is not None and self.ranker.version == str(update.get("version")):
            return
        self._load(str(update.get("version")))

    def _load(self, version: str) -> None:
        try:
            self.ranker = self.registry.load_scorer(RANKER, version)
            log.info("ranker now %s", self.ranker.model_id)
            if self.on_change is not None:
                self.on_change(self.ranker.model_id)
        except Exception as exc:  # keep what we had: the heuristic or the last version
            log.error("ranker %s@%s refused: %s", RANKER, version, exc)


def _load_item_state(key: str, value: dict[str, Any], neighbors: dict[str, ItemNeighbors],
                     trending: dict[str, CategoryTrending]) -> None:
    """Add a stored item (``i:``) or category (``c:``) state; unreadable ones (an older
    layout) are skipped, so the key starts afresh."""
    try:
        if key.startswith("i:"):
            neighbors[key] = ItemNeighbors.from_dict(value)
        else:
            trending[key] = CategoryTrending.from_dict(value)
    except (ValueError, KeyError, TypeError):
        log.warning("%s: stored state unreadable, starting afresh", key)


def register(app: TechShopApp) -> None:
    from agents.fraud.agent import open_registry
    from agents.learning.trainer import OnlineTrainer, register_trainer
    from streams.app import now_ms

    s = app.settings
    metrics = RecommendMetrics.create(app.registry)
    config = rec.RecConfig(k=s.recs_k, view_refresh_ms=s.recs_view_refresh_ms)
    registry = open_registry(app)
    def show_model(model_id: str) -> None:
        metrics.model_info.clear()
        metrics.model_info.labels(model_id).set(1)

    holder = RankerHolder(registry, show_model)

    def emit_event(record: dict[str, Any]) -> None:
        app.publisher.publish("model-events", record)

    # Keyed by the ranker's name: the online trainer's frequent versions share a
    # reference (learnt from the first live window; the trainer stores none).
    live_drift = ModelDrift(metrics.drift_state, emit_event, features=drift.FEATURES,
                            score=drift.SCORE, window=s.drift_window,
                            adwin_delta=s.drift_adwin_delta)
    for signal in (drift.SCORE, *drift.FEATURES):
        metrics.drift_state.labels(signal).set(0)
    app.add_readiness_check("recommend_ranker_checked", lambda: holder.checked)
    app.on_model_update(holder.on_update)
    store = RecommendationStore(s.serving_redis_url, s.topic_prefix)
    install_read_endpoint(app, store, metrics.read_seconds)
    signals = RedisSnapshots(s.serving_redis_url, f"{s.topic_prefix}recs:state:", STATE_TTL_S)
    catalog = CatalogIndex()
    users = app.faust.Table("recommend-users", default=None, key_type=str,
                            partitions=s.partitions)
    item_state = app.faust.Table("recommend-item-state", default=None, key_type=str,
                                 partitions=s.partitions)

    def on_catalog(item: dict[str, Any]) -> None:
        try:
            validate("catalog", item, 0, now_ms=now_ms(), limits=app.limits)
        except ValidationError:
            return  # the catalog agent dead-letters it
        catalog[item["item_id"]] = item

    def on_catalog_tombstone(key: bytes) -> None:
        catalog.pop(key.decode(errors="replace"), None)

    @app.faust.task
    async def start_readers() -> None:
        import asyncio

        from streams.broadcast import BroadcastReader

        holder.load_latest()
        BroadcastReader(s, app.codecs, "catalog", on_catalog,
                        on_tombstone=on_catalog_tombstone).start(asyncio.get_running_loop())

    async def on_clicks(batch: list[Admitted]) -> None:
        events = [item.event for item in batch]
        state_users: dict[str, UserState] = {}
        for user_id in {e["user_id"] for e in events}:
            stored = users.get(user_id)
            if stored is not None:
                try:
                    state_users[user_id] = UserState.from_dict(stored)
                except (ValueError, KeyError, TypeError):
                    log.warning("user %s: stored state unreadable, starting afresh", user_id)
        neighbors: dict[str, ItemNeighbors] = {}
        trending: dict[str, CategoryTrending] = {}
        # two rings: the users' items and categories, then the candidates they lead to
        for _ in range(2):
            keys = rec.state_keys(events, state_users, catalog, neighbors, trending)
            for key, value in signals.fetch(keys).items():
                _load_item_state(key, value, neighbors, trending)
        result = rec.decide(events, state_users, neighbors, trending, catalog, holder.ranker,
                            now_ms=now_ms(), config=config)
        for _, record in result.recommendations:
            app.publisher.publish("recommendations", record)
        for example in result.examples:
            app.publisher.publish("training-examples", example)
        for signal in merge_signals(result.signals):
            app.publisher.publish("recommend-signals", {
                "key": signal.key, "kind": signal.kind,
                "data": orjson.dumps(signal.to_dict()).decode(), "ts": signal.ts})
        # Readers see the top-K as soon as it is queued; the adapter flushes the whole
        # batch before Faust acks it (no flush per partition group here).
        store.put_many([record for _, record in result.recommendations])
        published = time.time()
        for position, record in result.recommendations:
            message = batch[position].message
            if message.timestamp_ms:
                metrics.latency.observe(max(0.0, published - message.timestamp_ms / 1000.0))
            metrics.published.labels(record["model"].split("@")[0]).inc()
        watched = drift.drift_inputs(result.recommendations, result.cold, result.explored)
        if watched.top_scores or len(watched.matrix):
            model = watched.model or live_drift.model or rec.HEURISTIC_MODEL.split("@")[0]
            live_drift.observe(model, watched.top_scores, watched.matrix,
                               max(e["ts"] for e in events))
        metrics.throttled.inc(len(result.throttled))
        metrics.examples.inc(len(result.examples))
        for source, count in result.candidates.items():
            metrics.candidates.labels(source).inc(count)
        for source, count in result.shown.items():
            metrics.shown.labels(source).inc(count)
        for example in result.examples:
            metrics.outcomes.labels(example["decided_by"].split("@")[0],
                                    "clicked" if example["label"] >= 0.5 else "ignored").inc()
        for user_id, user in state_users.items():
            users[user_id] = user.to_dict()

    async def on_signals(batch: list[Admitted]) -> None:
        parsed = [ItemSignal.from_dict(orjson.loads(item.event["data"])) for item in batch]
        touched_keys = sorted({sig.key for sig in parsed})
        neighbors: dict[str, ItemNeighbors] = {}
        trending: dict[str, CategoryTrending] = {}
        for key in touched_keys:
            stored = item_state.get(key)
            if stored is not None:
                _load_item_state(key, stored, neighbors, trending)
        rec.apply_item_signals(parsed, neighbors, trending)
        changed = {**{k: v.to_dict() for k, v in neighbors.items()},
                   **{k: v.to_dict() for k, v in trending.items()}}
        for key, value in changed.items():
            item_state[key] = value
        signals.store(changed)

    async def on_catalog_events(batch: list[Admitted]) -> None:
        metrics.catalog_items.set(len(catalog))

    register_trainer(app, "recommend", OnlineTrainer(
        app, registry, RANKER, rec.FEATURE_NAMES, lambda: rec.make_ranker()))
    app.input_agent("clickstream", on_clicks, name="recommend-decide")
    app.input_agent("recommend-signals", on_signals, name="recommend-signals")
    app.input_agent("catalog", on_catalog_events, name="recommend-catalog")
