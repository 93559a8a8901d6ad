"""Synthetic traffic onto the topics of a running stack, paced in real time.

Used by ``techshop generate`` and ``techshop demo``: events are Avro-encoded with the
topics' codecs and produced with batching (Tansu's CPU climbs with unbatched sends).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from replay.fraud_backtest import world_size
from replay.generator import FraudConfig, TrafficGenerator, paced
from replay.reviewers import ReviewPlan, SimulatedReviewers
from streams.errors import TechShopError
from streams.metrics import StreamMetrics
from streams.publisher import Codecs, Publisher
from streams.settings import Settings
from streams.topics import TopicCatalog

__all__ = ["LiveTraffic", "DEMO_FRAUD_CONFIG"]

log = logging.getLogger(__name__)

#: Chargebacks within seconds to minutes, so a demo shows the learning loop.
DEMO_FRAUD_CONFIG = FraudConfig(label_delay_min_ms=5_000, label_delay_median_ms=30_000,
                                label_delay_max_ms=120_000)


@dataclass
class LiveTraffic:
    """Produce generated events until ``stop()``, ``duration_s`` or ``max_events``."""

    settings: Settings
    source: object
    rates: Mapping[str, float]
    seed: int = 0
    speed: float = 1.0
    duration_s: float | None = None
    max_events: int | None = None
    fraud: FraudConfig = DEMO_FRAUD_CONFIG
    #: simulated reviewers work through review-queue (see :mod:`replay.reviewers`)
    reviewers: bool = True
    sent: Counter[str] = field(default_factory=Counter)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Produce in the calling thread until stopped."""
        catalog = TopicCatalog(self.settings.topic_prefix)
        codecs = Codecs(self.source, catalog)  # type: ignore[arg-type]
        publisher = Publisher(self.settings.kafka_client_config(), codecs,
                              StreamMetrics.create(CollectorRegistry()), linger_ms=50)
        uploads = Path(self.settings.upload_roots[0])
        uploads.mkdir(parents=True, exist_ok=True)
        cards, users = world_size(self.rates.get("transactions", 200.0))
        generator = TrafficGenerator(seed=self.seed, start_ts_ms=int(time.time() * 1000),
                                     images_dir=uploads, rates=dict(self.rates),
                                     fraud=self.fraud, keep_ground_truth=False,
                                     n_cards=cards, n_users=users)
        pacer = paced(generator, speed=self.speed)
        self._pacer = pacer
        reviewers = None
        if self.reviewers and self.rates.get("image-uploads", 0.0) > 0:
            reviewers = SimulatedReviewers(self.settings, self.source,
                                           _ground_truth(generator), ReviewPlan(seed=self.seed))
            reviewers.start()
        deadline = None if self.duration_s is None else time.monotonic() + self.duration_s
        total = 0
        try:
            for event in pacer:
                if self._stop.is_set() or (deadline and time.monotonic() > deadline):
                    break
                publisher.publish(event.topic, event.value, key=event.key)
                self.sent[event.topic] += 1
                total += 1
                if self.max_events is not None and total >= self.max_events:
                    log.warning("traffic stopped after %d events (--max-events): the embedded "
                                "broker keeps every record in memory", total)
                    break
        finally:
            if reviewers is not None:
                reviewers.stop()
                self.sent["moderation-reviews"] += reviewers.posted
            publisher.close()

    def start(self) -> LiveTraffic:
        def target() -> None:
            try:
                self.run()
            except (TechShopError, OSError) as exc:
                self.error = exc
                log.error("traffic generator stopped: %s", exc)

        self._thread = threading.Thread(target=target, name="traffic", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        pacer = getattr(self, "_pacer", None)
        if pacer is not None:
            pacer.stop()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


def _ground_truth(generator: TrafficGenerator) -> Callable[[str, int], dict[str, Any] | None]:
    """A reviewer's verdict from the generator's ground truth; None for others' uploads."""
    def verdict(upload_id: str, ts: int) -> dict[str, Any] | None:
        try:
            return generator.review_event(upload_id, ts)
        except KeyError:
            return None
    return verdict
