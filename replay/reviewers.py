"""Simulated human reviewers for live demos: they work through ``review-queue`` and post
verdicts on ``moderation-reviews``, so the moderation feedback loop runs in a demo.

A reviewer takes each queued upload, waits a human-looking delay (``delay_s``, uniform),
then posts the generator's ground truth (:meth:`TrafficGenerator.review_event`): REJECT
for anything that breaks the policy, APPROVE otherwise. Uploads the generator did not
make (someone else's traffic on the same stack) are left for real reviewers.

>>> due = ReviewPlan(delay_s=(2.0, 4.0), seed=1)
>>> 2.0 <= due.delay() <= 4.0
True
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition
from prometheus_client import CollectorRegistry

from streams.admin import quiet_client_config
from streams.codec import DecodeError
from streams.metrics import StreamMetrics
from streams.publisher import Codecs, Publisher
from streams.settings import Settings
from streams.topics import TopicCatalog

__all__ = ["ReviewPlan", "SimulatedReviewers"]

log = logging.getLogger(__name__)

#: upload_id, event ts -> a ``moderation-reviews`` value, or None when the upload is unknown
Verdicts = Callable[[str, int], "dict[str, Any] | None"]


@dataclass
class ReviewPlan:
    """How long a reviewer takes per upload (seconds, uniform between the bounds)."""

    delay_s: tuple[float, float] = (3.0, 20.0)
    seed: int = 0
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def delay(self) -> float:
        return self._rng.uniform(*self.delay_s)


class SimulatedReviewers:
    """Consume ``review-queue`` from its end and publish verdicts after a delay."""

    def __init__(self, settings: Settings, source: Any, verdicts: Verdicts,
                 plan: ReviewPlan | None = None) -> None:
        self.settings, self.verdicts, self.plan = settings, verdicts, plan or ReviewPlan()
        self.codecs = Codecs(source, TopicCatalog(settings.topic_prefix))
        self.publisher = Publisher(settings.kafka_client_config(), self.codecs,
                                   StreamMetrics.create(CollectorRegistry()), linger_ms=50)
        self.posted = 0
        self._due: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> SimulatedReviewers:
        self._thread = threading.Thread(target=self._run, name="reviewers", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        queue = self.codecs.catalog.physical("review-queue")
        consumer = Consumer({**quiet_client_config(self.settings),
                             "group.id": f"{self.settings.topic_prefix}techshop-demo-reviewers",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 200})
        try:
            metadata = consumer.list_topics(queue, timeout=10).topics.get(queue)
            if metadata is None or metadata.error is not None:
                log.warning("simulated reviewers: no topic %s; none will review", queue)
                return
            consumer.assign([TopicPartition(queue, p, OFFSET_END) for p in metadata.partitions])
            codec = self.codecs["review-queue"]
            while not self._stop.is_set():
                message = consumer.poll(0.5)
                if message is not None and message.error() is None:
                    self._queue(codec, message.value())
                self._post_due()
        except Exception:  # a demo helper: log, never take the demo down
            log.exception("simulated reviewers stopped")
        finally:
            consumer.close()
            self.publisher.close()

    def _queue(self, codec: Any, value: bytes | None) -> None:
        try:
            decision = codec.decode(value)
        except DecodeError as exc:
            log.debug("simulated reviewers skip an undecodable record: %s", exc)
            return
        due = time.monotonic() + self.plan.delay()
        heapq.heappush(self._due, (due, decision["upload_id"], int(decision["ts"])))

    def _post_due(self) -> None:
        now = time.monotonic()
        posted = False
        while self._due and self._due[0][0] <= now:
            _, upload_id, ts = heapq.heappop(self._due)
            verdict = self.verdicts(upload_id, int(time.time() * 1000))
            if verdict is None:
                continue
            self.publisher.publish("moderation-reviews", verdict, key=upload_id)
            self.posted += 1
            posted = True
        if posted:
            self.publisher.flush_sync()
