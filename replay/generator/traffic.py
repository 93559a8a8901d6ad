"""All the shop's synthetic traffic, merged into one event-time-ordered stream.

:class:`TrafficGenerator` yields :class:`GeneratedEvent` records for the logical topics
``catalog`` (the whole catalog first, then optional price updates), ``clickstream``,
``transactions``, ``image-uploads`` and ``fraud-labels`` (at their delayed event time),
keyed as the contract says. Each topic runs at its configured rate with exponential
inter-arrival times; the same ``seed`` gives the very same events, ids included,
however the stream is consumed. Nothing here talks to Kafka: hand the events to a
producer, to an in-memory sink, or to :func:`~replay.generator.pacing.paced` for
real-time release.

Determinism: the same seed, parameters and library versions (Python, numpy, Pillow)
give byte-identical events and image files. Label times run ahead of their
transactions by hours to days (:class:`~replay.generator.fraud.FraudConfig`): to
publish a history unpaced, start it far enough in the past (e.g. ``now - duration -
7 days``) that no event lies beyond the contract's one hour of allowed future.

>>> gen = TrafficGenerator(seed=7, rates={"transactions": 500.0, "clickstream": 50.0},
...                        n_items=120, n_cards=300, n_users=200)
>>> first = gen.take(120)
>>> first[0].topic, all(e.topic == "catalog" for e in first[:120])
('catalog', True)
>>> window = list(gen.events_until(gen.start_ts_ms + 2_000))
>>> sorted({e.topic for e in window})
['clickstream', 'transactions']
>>> txns = gen.take(1_000, topics={"transactions"})
>>> sum(gen.is_fraud(e.value["txn_id"]) for e in txns) < 100
True
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import Any

from replay.generator._common import (
    DEFAULT_START_TS_MS,
    EventSource,
    GeneratedEvent,
    py_rng,
)
from replay.generator.catalog import Catalog
from replay.generator.fraud import FraudConfig
from replay.generator.images import ImageLabel, ImageUploadSimulator
from replay.generator.payments import PaymentSimulator
from replay.generator.shoppers import ShopperSimulator

__all__ = ["DEFAULT_RATES", "RATED_TOPICS", "TOPICS", "TrafficGenerator"]

#: Every logical topic the generator can emit, in the order used to break time ties.
TOPICS = ("catalog", "clickstream", "transactions", "image-uploads", "fraud-labels")
#: The topics whose rate is configurable (``fraud-labels`` follow the transactions).
RATED_TOPICS = ("catalog", "clickstream", "transactions", "image-uploads")
#: Events per second when ``rates`` is not given (``catalog``: price updates per second).
DEFAULT_RATES: Mapping[str, float] = {"catalog": 0.0, "clickstream": 100.0,
                                      "transactions": 200.0, "image-uploads": 2.0}


class _PriceUpdates:
    """Occasional re-pricing of catalog items, as ``catalog`` events."""

    def __init__(self, catalog: Catalog, seed: int, start_ts_ms: int, rate_per_s: float):
        self._catalog = catalog
        self._rng = py_rng(seed, "catalog", "updates")
        self._start = start_ts_ms
        self._mean_gap_ms = 1000.0 / rate_per_s
        self._t = self._rng.expovariate(1.0) * self._mean_gap_ms

    @property
    def next_ts(self) -> int:
        return self._start + int(self._t)

    def pop(self) -> GeneratedEvent:
        ts = self.next_ts
        value = self._catalog.price_update(ts)
        self._t += self._rng.expovariate(1.0) * self._mean_gap_ms
        return GeneratedEvent("catalog", value["item_id"], value, ts)


class TrafficGenerator:
    """Catalog, clickstream, transactions, image uploads and fraud labels from one seed.

    ``rates`` maps topics of :data:`RATED_TOPICS` to events per second (missing or 0:
    not generated; default :data:`DEFAULT_RATES`). ``images_dir`` is where image files
    are written (required when ``image-uploads`` has a rate). ``fraud_rate`` is the
    target share of fraudulent transactions; ``fraud`` tunes patterns and label delays.
    Ground truth stays outside the events: :meth:`is_fraud`, :meth:`fraud_pattern`,
    :meth:`image_label`, :meth:`review_verdict`, :meth:`tastes`.
    """

    def __init__(
        self,
        seed: int = 0,
        start_ts_ms: int = DEFAULT_START_TS_MS,
        images_dir: str | Path | None = None,
        rates: Mapping[str, float] | None = None,
        fraud_rate: float = 0.015,
        *,
        fraud: FraudConfig | None = None,
        n_items: int = 1200,
        n_users: int = 2000,
        n_cards: int = 5000,
        n_merchants: int = 3000,
        new_users_per_minute: float = 6.0,
        policy_rate: float = 0.15,
        broken_rate: float = 0.02,
        emit_catalog: bool = True,
        keep_ground_truth: bool = True,
    ) -> None:
        rates = dict(DEFAULT_RATES if rates is None else rates)
        unknown = set(rates) - set(RATED_TOPICS)
        if unknown:
            raise ValueError(f"no rate can be set for {sorted(unknown)}; "
                             f"rated topics are {RATED_TOPICS} (labels follow transactions)")
        if any(r < 0 for r in rates.values()):
            raise ValueError(f"rates must be >= 0, got {rates}")
        self.seed = seed
        self.start_ts_ms = start_ts_ms
        self.rates = {t: float(rates.get(t, 0.0)) for t in RATED_TOPICS}
        self.catalog = Catalog(seed, n_items=n_items)
        self.shoppers: ShopperSimulator | None = None
        self.payments: PaymentSimulator | None = None
        self.images: ImageUploadSimulator | None = None
        sources: list[EventSource] = []
        if self.rates["catalog"] > 0:
            sources.append(_PriceUpdates(self.catalog, seed, start_ts_ms, self.rates["catalog"]))
        if self.rates["clickstream"] > 0:
            self.shoppers = ShopperSimulator(
                self.catalog, seed, start_ts_ms, self.rates["clickstream"], n_users=n_users,
                new_users_per_minute=new_users_per_minute,
            )
            sources.append(self.shoppers)
        if self.rates["transactions"] > 0:
            self.payments = PaymentSimulator(
                seed, start_ts_ms, self.rates["transactions"], fraud_rate, n_cards=n_cards,
                n_merchants=n_merchants, n_users=n_users, fraud=fraud,
                keep_ground_truth=keep_ground_truth,
            )
            sources.append(self.payments)
        if self.rates["image-uploads"] > 0:
            if images_dir is None:
                raise ValueError("images_dir is required when image-uploads has a rate")
            self.images = ImageUploadSimulator(
                images_dir, self.catalog, seed, start_ts_ms, self.rates["image-uploads"],
                policy_rate=policy_rate, broken_rate=broken_rate,
            )
            sources.append(self.images)
        self._sources = sources
        self._heap = [(s.next_ts, i) for i, s in enumerate(sources)]
        heapq.heapify(self._heap)
        self._initial: deque[GeneratedEvent] = deque(
            GeneratedEvent("catalog", v["item_id"], v, start_ts_ms)
            for v in (self.catalog.events(start_ts_ms) if emit_catalog else [])
        )
        self.now = start_ts_ms
        self.counts: dict[str, int] = dict.fromkeys(TOPICS, 0)

    @property
    def topics(self) -> tuple[str, ...]:
        """The logical topics this generator emits, given its rates."""
        on = {"catalog"} if self._initial or self.rates["catalog"] > 0 else set()
        on |= {t for t in RATED_TOPICS if self.rates[t] > 0}
        if self.payments is not None:
            on.add("fraud-labels")
        return tuple(t for t in TOPICS if t in on)

    # -- the stream ---------------------------------------------------------------------

    def __next__(self) -> GeneratedEvent:
        """The next event in event-time order (``StopIteration`` once nothing is left,
        which happens only when no topic has a rate)."""
        if self._initial:
            event = self._initial.popleft()
        elif self._heap:
            _, i = self._heap[0]
            source = self._sources[i]
            event = source.pop()
            heapq.heapreplace(self._heap, (source.next_ts, i))
        else:
            raise StopIteration
        self.now = event.ts
        self.counts[event.topic] += 1
        return event

    @property
    def next_ts(self) -> int | None:
        """Event time of the next event, None if nothing is enabled."""
        if self._initial:
            return self._initial[0].ts
        return self._heap[0][0] if self._heap else None

    def __iter__(self) -> Iterator[GeneratedEvent]:
        """The generator is its own (endless) iterator."""
        return self

    def events_until(self, ts_ms: int) -> Iterator[GeneratedEvent]:
        """Every not-yet-yielded event with ``ts <= ts_ms``, in event-time order."""
        while True:
            nxt = self.next_ts
            if nxt is None or nxt > ts_ms:
                return
            yield next(self)

    def history(self, duration_ms: int) -> list[GeneratedEvent]:
        """All events of the next ``duration_ms`` of event time after :attr:`now`."""
        return list(self.events_until(self.now + duration_ms))

    def take(self, n: int, topics: Collection[str] | None = None) -> list[GeneratedEvent]:
        """The next ``n`` events of ``topics`` (all if None); others are generated, dropped.

        Fewer only if the generator runs dry (no topic has a rate).

        ``take(100_000, topics={"transactions"})`` is the fast way to a labelled history
        for training: the labels are :meth:`is_fraud` / :meth:`fraud_pattern`.
        """
        if topics is not None:
            missing = set(topics) - set(self.topics)
            if missing:
                raise ValueError(f"this generator emits no {sorted(missing)}")
        wanted = None if topics is None else frozenset(topics)
        out: list[GeneratedEvent] = []
        while len(out) < n and self.next_ts is not None:
            event = next(self)
            if wanted is None or event.topic in wanted:
                out.append(event)
        return out

    # -- ground truth -------------------------------------------------------------------

    def is_fraud(self, txn_id: str) -> bool:
        """Whether generated transaction ``txn_id`` is fraudulent (never in the event)."""
        return self.payments is not None and self.payments.is_fraud(txn_id)

    def fraud_pattern(self, txn_id: str) -> str | None:
        """The fraud pattern of ``txn_id``, None for a legitimate transaction."""
        return None if self.payments is None else self.payments.fraud_pattern(txn_id)

    def image_label(self, upload_id: str) -> ImageLabel:
        """Ground truth of a generated upload (``KeyError`` if unknown)."""
        if self.images is None:
            raise KeyError(upload_id)
        return self.images.label(upload_id)

    def review_verdict(self, upload_id: str) -> str:
        """``'APPROVE'`` or ``'REJECT'``: a human reviewer's verdict on ``upload_id``."""
        return self.image_label(upload_id).verdict

    def review_event(self, upload_id: str, ts: int, reviewer: str = "synthetic-reviewer"
                     ) -> dict[str, Any]:
        """A ``moderation-reviews`` value for ``upload_id`` from the ground truth."""
        if self.images is None:
            raise KeyError(upload_id)
        return self.images.review_event(upload_id, ts, reviewer)

    def tastes(self, user_id: str) -> dict[str, float]:
        """The category preferences of a clickstream user (``KeyError`` if unknown)."""
        if self.shoppers is None:
            raise KeyError(user_id)
        return self.shoppers.tastes(user_id)
