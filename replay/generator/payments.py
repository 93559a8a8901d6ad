"""Card transactions with injected fraud, and the delayed labels (chargebacks) that follow.

:class:`PaymentSimulator` is an endless, event-time-ordered stream of ``transactions``
events (schema ``transaction``, key ``card_id``) mixed with ``fraud-labels`` events
(schema ``fraud_label``, key ``card_id``): one label for every fraudulent transaction
(``is_fraud`` true, hours to days later), and a few confirmed-legitimate ones. Which
transactions are fraud, and by which pattern, is ground truth kept *outside* the events:
:meth:`PaymentSimulator.is_fraud` and :meth:`PaymentSimulator.fraud_pattern`.

Legitimate traffic follows each card's habits (home country and currency, usual
devices, favourite merchants, log-normal amounts, an occasional trip abroad or a new
phone); fraud episodes (:mod:`replay.generator.fraud`) start at random so that about
``fraud_rate`` of all transactions are fraudulent.

>>> sim = PaymentSimulator(seed=1, n_cards=200, n_merchants=300, n_users=150)
>>> events = sim.take(2_000)
>>> txns = [e for e in events if e.topic == "transactions"]
>>> txns[0].key == txns[0].value["card_id"]
True
>>> sorted(txns[0].value)  # doctest: +NORMALIZE_WHITESPACE
['amount', 'card_id', 'country', 'currency', 'device_id', 'ip', 'merchant_category',
 'merchant_id', 'ts', 'txn_id', 'user_id']
>>> isinstance(sim.is_fraud(txns[0].value["txn_id"]), bool)
True
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections import Counter
from collections.abc import Mapping
from types import MappingProxyType

from replay.generator._common import (
    DEFAULT_START_TS_MS,
    GeneratedEvent,
    numpy_rng,
    py_rng,
    run_tag,
)
from replay.generator.fraud import FraudConfig, PlannedTxn, plan_episode
from replay.generator.world import COUNTRIES, PaymentWorld

__all__ = ["PaymentSimulator"]

_CURRENCY = {country: spec[0] for country, spec in COUNTRIES.items()}
_MAX_DEVICES = 5


class PaymentSimulator:
    """Transactions at ``rate_per_s`` (legitimate + fraud) and their labels, in time order.

    ``fraud_rate`` is the target share of fraudulent transactions (default 1.5 %);
    ``fraud`` tunes the patterns and label delays. ``p_travel`` and ``p_new_device`` are
    the per-transaction chances of a legitimate purchase abroad or from a new device
    (the look-alikes that make fraud hard to tell). With ``keep_ground_truth`` false,
    :meth:`is_fraud` stops working but memory stays flat on endless runs. With
    ``warm_start`` the stream starts as if it had been running for
    ``fraud.warmup_ms`` already (episodes begun earlier go on after the start), so the
    fraud rate is steady from the first transaction.
    """

    def __init__(
        self,
        seed: int = 0,
        start_ts_ms: int = DEFAULT_START_TS_MS,
        rate_per_s: float = 200.0,
        fraud_rate: float = 0.015,
        n_cards: int = 5000,
        n_merchants: int = 3000,
        n_users: int = 2000,
        fraud: FraudConfig | None = None,
        p_travel: float = 0.015,
        p_new_device: float = 0.003,
        keep_ground_truth: bool = True,
        warm_start: bool = True,
        batch: int = 4096,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        if not 0.0 <= fraud_rate < 0.5:
            raise ValueError(f"fraud_rate must be in [0, 0.5), got {fraud_rate}")
        self.world = PaymentWorld(seed, n_cards=n_cards, n_merchants=n_merchants,
                                  n_users=n_users)
        self.fraud_config = cfg = fraud if fraud is not None else FraudConfig()
        self.fraud_rate = fraud_rate
        self._tag = run_tag(seed)
        self._np = numpy_rng(seed, "payments", "traffic")
        self._rng = py_rng(seed, "payments", "fraud")
        self._start = start_ts_ms
        self._t = 0.0
        self._batch = batch
        self._p_travel = p_travel
        self._p_new_device = p_travel + p_new_device
        self._p_label = cfg.legit_label_rate
        # Episodes per legitimate transaction so that fraud is ``fraud_rate`` of the total.
        fl, el = cfg.expected_fraud_txns(), cfg.expected_legit_txns()
        self._q = fraud_rate / (fl * (1 - fraud_rate) - fraud_rate * el) if fraud_rate else 0.0
        # Legitimate arrivals are slowed so that the total rate is ``rate_per_s``.
        normal_rate = rate_per_s / (1.0 + self._q * (fl + el))
        self._mean_gap_ms = 1000.0 / normal_rate
        mix = [(p, w) for p, w in cfg.mix.items() if w > 0]
        self._mix_names = [p for p, _ in mix]
        self._mix_cdf = list(itertools.accumulate(w for _, w in mix))
        activity = self.world.activity
        self._card_p = activity / activity.sum()
        self._keep = keep_ground_truth
        self._truth: dict[str, str] = {}
        self.stats: Counter[str] = Counter()
        self._planned: list[tuple[int, int, PlannedTxn]] = []
        self._labels: list[tuple[int, int, str, str, bool]] = []
        self._seq = 0
        self._count = 0
        self._i = 0
        self._n = 0
        self._refill()
        if warm_start and self._q > 0:
            self._warm_up(self._q * normal_rate / 1000.0)

    # -- ground truth -------------------------------------------------------------------

    def is_fraud(self, txn_id: str) -> bool:
        """Whether transaction ``txn_id`` (already generated) is fraudulent."""
        return txn_id in self._truth

    def fraud_pattern(self, txn_id: str) -> str | None:
        """The fraud pattern of ``txn_id`` (one of ``FRAUD_PATTERNS``), None if legitimate."""
        return self._truth.get(txn_id)

    @property
    def ground_truth(self) -> Mapping[str, str]:
        """Every fraudulent txn_id generated so far, with its pattern (read-only view)."""
        return MappingProxyType(self._truth)

    # -- the stream ---------------------------------------------------------------------

    @property
    def next_ts(self) -> int:
        ts = self._ts[self._i]
        if self._planned and self._planned[0][0] < ts:
            ts = self._planned[0][0]
        if self._labels and self._labels[0][0] < ts:
            ts = self._labels[0][0]
        return ts

    def pop(self) -> GeneratedEvent:
        """The next event: a transaction, or a label whose time has come."""
        normal_ts = self._ts[self._i]
        planned, labels = self._planned, self._labels
        if labels and labels[0][0] <= normal_ts and (not planned or labels[0][0] <= planned[0][0]):
            ts, _, txn_id, card_id, is_fraud = heapq.heappop(labels)
            value = {"txn_id": txn_id, "is_fraud": is_fraud, "ts": ts, "card_id": card_id}
            return GeneratedEvent("fraud-labels", card_id, value, ts)
        if planned and planned[0][0] < normal_ts:
            return self._emit_planned(heapq.heappop(planned)[2])
        return self._emit_normal()

    def take(self, n: int) -> list[GeneratedEvent]:
        """The next ``n`` events (transactions and labels)."""
        pop = self.pop
        return [pop() for _ in range(n)]

    # -- internals ----------------------------------------------------------------------

    def _refill(self) -> None:
        rng, b = self._np, self._batch
        cum = self._t + (rng.exponential(self._mean_gap_ms, b)).cumsum()
        self._ts: list[int] = (self._start + cum.astype("int64")).tolist()
        self._t = float(cum[-1])
        self._cards: list[int] = rng.choice(len(self._card_p), b, p=self._card_p).tolist()
        self._u1: list[float] = rng.random(b).tolist()
        self._u2: list[float] = rng.random(b).tolist()
        self._u3: list[float] = rng.random(b).tolist()
        self._z: list[float] = rng.standard_normal(b).tolist()
        self._octet: list[str] = rng.integers(1, 255, b).astype(str).tolist()
        self._i, self._n = 0, b

    def _emit_normal(self) -> GeneratedEvent:
        i = self._i
        ts = self._ts[i]
        world = self.world
        card = world.cards[self._cards[i]]
        u = self._u2[i]
        label_p = self._p_label
        if u < self._p_travel:
            country = card.travel_country
            merchant = card.travel_merchants[int(self._u1[i] * len(card.travel_merchants))]
            device = card.devices[0]
            ip = world.ip_in(country)
            label_p *= 10
        else:
            country = card.home
            merchant = card.merchants[int(self._u1[i] * len(card.merchants))]
            devices = card.devices
            if u < self._p_new_device:
                device = world.new_device()
                if len(devices) >= _MAX_DEVICES:
                    del devices[1]
                devices.append(device)
            elif u > 0.85:
                device = devices[int((u - 0.85) * 1e6) % len(devices)]
            else:
                device = devices[0]
            ip = card.ip_prefix + self._octet[i]
        amount = world.local(
            math.exp(card.mu + world.merchant_log[merchant] + card.sigma * self._z[i]), country
        )
        txn_id = self._next_txn_id()
        value = {
            "txn_id": txn_id,
            "card_id": card.card_id,
            "user_id": card.user_id,
            "merchant_id": world.merchant_ids[merchant],
            "merchant_category": world.merchant_category[merchant],
            "amount": amount,
            "currency": _CURRENCY[country],
            "country": country,
            "device_id": device,
            "ip": ip,
            "ts": ts,
        }
        self.stats["legit"] += 1
        u3 = self._u3[i]
        if u3 < self._q:
            self._start_episode(ts)
        elif u3 < self._q + label_p:
            self._schedule_label(ts, txn_id, card.card_id, False)
        self._i = i + 1
        if self._i == self._n:
            self._refill()
        return GeneratedEvent("transactions", card.card_id, value, ts)

    def _emit_planned(self, p: PlannedTxn) -> GeneratedEvent:
        world = self.world
        card = world.cards[p.card]
        txn_id = self._next_txn_id()
        value = {
            "txn_id": txn_id,
            "card_id": card.card_id,
            "user_id": card.user_id,
            "merchant_id": world.merchant_ids[p.merchant],
            "merchant_category": world.merchant_category[p.merchant],
            "amount": p.amount,
            "currency": _CURRENCY[p.country],
            "country": p.country,
            "device_id": p.device_id,
            "ip": p.ip,
            "ts": p.ts,
        }
        if p.is_fraud and p.pattern is not None:
            self.stats[p.pattern] += 1
            if self._keep:
                self._truth[txn_id] = p.pattern
            self._schedule_label(p.ts, txn_id, card.card_id, True)
        else:
            self.stats["legit"] += 1
            if self._rng.random() < self._p_label:
                self._schedule_label(p.ts, txn_id, card.card_id, False)
        return GeneratedEvent("transactions", card.card_id, value, p.ts)

    def _next_txn_id(self) -> str:
        self._count += 1
        return f"t-{self._tag}-{self._count:09d}"

    def _start_episode(self, ts: int) -> None:
        rng = self._rng
        k = bisect.bisect_left(self._mix_cdf, rng.random() * self._mix_cdf[-1])
        pattern = self._mix_names[min(k, len(self._mix_names) - 1)]
        self.stats["episodes"] += 1
        for p in plan_episode(pattern, self.world, rng, self.fraud_config, ts):
            self._seq += 1
            heapq.heappush(self._planned, (p.ts, self._seq, p))

    def _warm_up(self, episodes_per_ms: float) -> None:
        rng, start = self._rng, self._start
        t = -float(self.fraud_config.warmup_ms)
        while True:
            t += rng.expovariate(episodes_per_ms)
            if t >= 0:
                return
            k = bisect.bisect_left(self._mix_cdf, rng.random() * self._mix_cdf[-1])
            pattern = self._mix_names[min(k, len(self._mix_names) - 1)]
            for p in plan_episode(pattern, self.world, rng, self.fraud_config, start + int(t)):
                if p.ts >= start:
                    self._seq += 1
                    heapq.heappush(self._planned, (p.ts, self._seq, p))

    def _schedule_label(self, ts: int, txn_id: str, card_id: str, is_fraud: bool) -> None:
        self._seq += 1
        due = ts + self.fraud_config.label_delay(self._rng)
        heapq.heappush(self._labels, (due, self._seq, txn_id, card_id, is_fraud))

