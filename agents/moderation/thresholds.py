"""Threshold recalibration from reviewer verdicts, run by the one reader of
``training-examples`` (examples of family ``moderation`` are routed here by
:func:`agents.learning.trainer.register_trainer`).

Every ``TECHSHOP_MODERATION_RECALIBRATE_EVERY`` verdicts it computes new thresholds
(:func:`agents.moderation.feedback.recalibrate`) from the verdicts kept so far and the
sample of recent traffic every decision agent pushes to Redis; when they differ, the
classifier is published again with the new thresholds (same artefact, ``parent_version``
the old one) and announced on ``model-updates``: every worker swaps to it, so the
thresholds stay with the model version.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import orjson

from agents.moderation.decide import to_flat
from agents.moderation.feedback import recalibrate
from models.moderation import CLASSIFIER

if TYPE_CHECKING:
    from agents.moderation.metrics import ModerationMetrics
    from agents.moderation.models import ModerationModelHolder
    from streams.app import TechShopApp

__all__ = ["RECENT_KEEP", "ThresholdTrainer", "recent_key"]

log = logging.getLogger(__name__)
RECENT_KEEP = 2000
KEEP_EXAMPLES = 5000


def recent_key(prefix: str) -> str:
    """The Redis list of recent uploads' category scores (JSON), newest first."""
    return f"{prefix}moderation:recent"


class ThresholdTrainer:
    """Meets the trainer interface :func:`register_trainer` routes to
    (``learn(examples)``, ``maybe_publish(ts)``)."""

    def __init__(self, app: TechShopApp, holder: ModerationModelHolder,
                 metrics: ModerationMetrics, redis: Any) -> None:
        self.app, self.holder, self.metrics, self.redis = app, holder, metrics, redis
        self.examples: deque[dict[str, Any]] = deque(maxlen=KEEP_EXAMPLES)
        self.since = 0

    def learn(self, examples: list[dict[str, Any]]) -> None:
        self.examples.extend(examples)
        self.since += len(examples)

    def maybe_publish(self, ts: int) -> None:
        s = self.app.settings
        if self.since < s.moderation_recalibrate_every or self.holder.stages is None:
            return
        self.since = 0
        try:
            recent = [orjson.loads(v) for v in
                      self.redis.lrange(recent_key(s.topic_prefix), 0, RECENT_KEEP - 1)]
        except Exception as exc:  # Redis away: recalibrate on verdicts alone
            log.warning("recent traffic sample unavailable: %s", exc)
            recent = []
        current = self.holder.thresholds
        new = recalibrate(list(self.examples), recent, current,
                          capacity=s.moderation_review_capacity,
                          min_precision=s.moderation_min_precision)
        if to_flat(new) == to_flat(current):
            return
        self.publish(new, ts)

    def publish(self, thresholds: Any, ts: int) -> Any:
        """The classifier again, with ``thresholds``, as a new registry version."""
        from agents.learning.trainer import announce_update

        registry = self.holder.registry
        manifest, data = registry.load(CLASSIFIER, "latest")
        flat = {**manifest.thresholds, **to_flat(thresholds)}
        new = registry.publish(
            CLASSIFIER, manifest.kind, data, feature_names=manifest.feature_names,
            thresholds=flat, metrics={**manifest.metrics, "verdicts": len(self.examples)},
            params={**manifest.params, "thresholds_from": "verdicts"},
            parent_version=manifest.version)
        announce_update(self.app, registry, new, "champion", ts)
        self.metrics.recalibrations.inc()
        log.info("moderation thresholds recalibrated from %d verdicts: %s@%s %s",
                 len(self.examples), CLASSIFIER, new.version, flat)
        return new
