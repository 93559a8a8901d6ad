"""Recommendations in process: synthetic shoppers through the very decide() the agent runs.

:func:`recommend_backtest` generates a catalog and a clickstream (users with hidden
category tastes, sessions that stick to a category, power-law item popularity,
cold-start users), and runs the events in order, in batches, exactly as the agent does:
:func:`~agents.recommend.decide.decide` on in-memory state, then
:func:`~agents.recommend.state.apply_item_signals` with the batch's signals, and the
ranker learns from the training examples the batch emitted (as the online trainer
would, without its publication delay).

Quality is the next click. For every click, add-to-cart and purchase, the reference
list is the top-K that was on the user's screen when they went to that item: the last
one published *before the visit began* (the view that opens the item; in this
traffic a click always follows a view of the same item, and the list that view
published excludes it, as the contract wants). A hit is the item in that list;
NDCG@K is ``1 / log2(rank + 1)`` for a hit. The popularity baseline is computed in
the same run at the same moments: the top-K of decayed shop-wide popularity (same
event weights and half-life as the model's popularity), with the same exclusions.
Every user is scored on both (the A/B split is for live traffic). ``strict_*``
figures use the last list before the event itself instead.

``python -m replay.recommend_backtest --seed 7 --events 30000`` prints a report.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.recommend.candidates import CatalogIndex
from agents.recommend.decide import FEATURE_NAMES, RecConfig, decide, make_ranker
from agents.recommend.state import (
    ACTIONS,
    EVENT_WEIGHTS,
    CategoryTrending,
    ItemNeighbors,
    UserState,
    apply_item_signals,
)
from replay.generator import TrafficGenerator

__all__ = ["Report", "PopularityBaseline", "ScreenTrack", "Screens", "recommend_backtest"]

Progress = Callable[[str], None]
START_TS_MS = 1_765_000_000_000


class PopularityBaseline:
    """Decayed shop-wide popularity: ``top`` is the best ``k`` not excluded."""

    def __init__(self, half_life_ms: int = ItemNeighbors.POPULARITY_HALF_LIFE_MS) -> None:
        self.half_life = half_life_ms
        self.ref: int | None = None
        self.scores: dict[str, float] = {}
        self.ranked: list[str] = []

    def update(self, events: Sequence[dict[str, Any]]) -> None:
        for ev in events:
            ts = int(ev["ts"])
            if self.ref is None:
                self.ref = ts
            w = EVENT_WEIGHTS.get(ev["event_type"], 1.0) * 2.0 ** ((ts - self.ref) / self.half_life)
            self.scores[ev["item_id"]] = self.scores.get(ev["item_id"], 0.0) + w
        self.ranked = sorted(self.scores, key=lambda i: (-self.scores[i], i))

    def top(self, k: int, exclude: set[str]) -> list[str]:
        out: list[str] = []
        for item_id in self.ranked:
            if item_id in exclude:
                continue
            out.append(item_id)
            if len(out) == k:
                break
        return out


@dataclass
class Report:
    seed: int
    n_events: int
    batch_size: int = 200
    evaluated: int = 0
    hits: float = 0.0
    ndcg_sum: float = 0.0
    pop_hits: float = 0.0
    pop_ndcg_sum: float = 0.0
    strict_hits: float = 0.0
    pop_strict_hits: float = 0.0
    published: int = 0
    throttled: int = 0
    examples: int = 0
    positives: int = 0
    cold_served: int = 0
    cold_full: int = 0
    candidates: Counter[str] = field(default_factory=Counter)
    shown: Counter[str] = field(default_factory=Counter)
    models: Counter[str] = field(default_factory=Counter)
    decide_seconds: float = 0.0  # wall clock
    decide_cpu_seconds: float = 0.0  # this process's CPU time (steadier on a busy machine)
    batch_ms: list[float] = field(default_factory=list)
    ranker_metrics: dict[str, float] = field(default_factory=dict)

    def _rate(self, x: float) -> float:
        return x / self.evaluated if self.evaluated else 0.0

    @property
    def hit_rate(self) -> float:
        return self._rate(self.hits)

    @property
    def ndcg(self) -> float:
        return self._rate(self.ndcg_sum)

    @property
    def pop_hit_rate(self) -> float:
        return self._rate(self.pop_hits)

    @property
    def pop_ndcg(self) -> float:
        return self._rate(self.pop_ndcg_sum)

    @property
    def lift_hit_rate(self) -> float:
        return self.hit_rate / self.pop_hit_rate if self.pop_hit_rate else math.inf

    @property
    def lift_ndcg(self) -> float:
        return self.ndcg / self.pop_ndcg if self.pop_ndcg else math.inf

    @property
    def cold_coverage(self) -> float:
        """Share of cold-start publications that carried K items."""
        return self.cold_full / self.cold_served if self.cold_served else 0.0

    @property
    def events_per_s(self) -> float:
        return self.n_events / self.decide_seconds if self.decide_seconds else 0.0

    @property
    def batch_ms_p99(self) -> float:
        return float(np.percentile(self.batch_ms, 99)) if self.batch_ms else 0.0

    def summary(self) -> str:
        per_event_us = 1e6 * self.decide_seconds / max(self.n_events, 1)
        return "\n".join([
            f"{self.n_events:,} clickstream events (seed {self.seed}), {self.evaluated:,} "
            f"clicks/carts/purchases evaluated",
            f"hit-rate@10  model {self.hit_rate:.4f}  popularity {self.pop_hit_rate:.4f}  "
            f"lift {self.lift_hit_rate:.2f}x",
            f"NDCG@10      model {self.ndcg:.4f}  popularity {self.pop_ndcg:.4f}  "
            f"lift {self.lift_ndcg:.2f}x",
            f"strict (list just before the event): model {self._rate(self.strict_hits):.4f}  "
            f"popularity {self._rate(self.pop_strict_hits):.4f}",
            f"published {self.published:,}, throttled views {self.throttled:,}; models "
            f"{dict(self.models)}",
            f"training examples {self.examples:,} ({self.positives:,} positive); ranker "
            f"{ {k: round(v, 4) for k, v in self.ranker_metrics.items()} }",
            f"candidates by source {dict(self.candidates)}; shown by source {dict(self.shown)}",
            f"cold-start publications {self.cold_served:,}, with K items "
            f"{self.cold_coverage:.1%}",
            f"decide(): {self.events_per_s:,.0f} events/s ({per_event_us:.0f} us/event wall, "
            f"{1e6 * self.decide_cpu_seconds / max(self.n_events, 1):.0f} us CPU), batch of "
            f"{self.batch_size} p99 {self.batch_ms_p99:.1f} ms",
        ])


@dataclass(slots=True)
class ScreenTrack:
    """Per user, what the evaluation remembers (lists are item ids, best first)."""

    item: str = ""
    ref_model: list[str] | None = None  # on screen when the visit to ``item`` began
    ref_pop: list[str] | None = None
    last_model: list[str] | None = None  # the last published
    last_pop: list[str] | None = None
    purchased: set[str] = field(default_factory=set)


class Screens:
    """The lists on each user's screen, model and popularity baseline, in event order.

    :meth:`walk` goes through a decided batch: ``on_action(track, item_id)`` for every
    click, add-to-cart and purchase of a user who has been shown a list (``track.ref_*``:
    the lists on screen when the visit to the item began, ``track.last_*``: the last ones
    before the event); ``on_publish(track)`` after every list the batch published
    (``track.last_*`` are then that list and the baseline's top-K at that moment). The
    baseline then learns the batch."""

    def __init__(self, k: int) -> None:
        self.k = k
        self.baseline = PopularityBaseline()
        self.tracks: dict[str, ScreenTrack] = {}

    def walk(self, batch: list[dict[str, Any]], recs: list[tuple[int, dict[str, Any]]],
             on_action: Callable[[ScreenTrack, str], None],
             on_publish: Callable[[ScreenTrack], None] | None = None) -> None:
        published = dict(recs)
        for pos, ev in enumerate(batch):
            uid, item_id, etype = ev["user_id"], ev["item_id"], ev["event_type"]
            tr = self.tracks.get(uid)
            if tr is None:
                tr = self.tracks[uid] = ScreenTrack()
            if item_id != tr.item:
                tr.item, tr.ref_model, tr.ref_pop = item_id, tr.last_model, tr.last_pop
            if etype in ACTIONS and tr.ref_model is not None:
                on_action(tr, item_id)
            if etype == "purchase":
                tr.purchased.add(item_id)
            rec = published.get(pos)
            if rec is not None:
                tr.last_model = [i["item_id"] for i in rec["items"]]
                tr.last_pop = self.baseline.top(self.k, tr.purchased | {item_id})
                if on_publish is not None:
                    on_publish(tr)
        self.baseline.update(batch)


def _gain(items: list[str] | None, item_id: str) -> tuple[float, float]:
    if items is None or item_id not in items:
        return 0.0, 0.0
    return 1.0, 1.0 / math.log2(items.index(item_id) + 2)


def recommend_backtest(seed: int, n_events: int, *, learn: bool = True, batch_size: int = 200,
                       n_users: int = 2000, n_items: int = 1200, rate: float = 20.0,
                       config: RecConfig | None = None, progress: Progress | None = print,
                       progress_every: int = 10_000, start_ts_ms: int = START_TS_MS) -> Report:
    """Run ``n_events`` synthetic clickstream events (after the catalog) through
    ``decide``; ``learn`` False: no ranker (the fixed heuristic ranks). Every user gets
    the model's variant (``config`` defaults to ``variants=("ranker",)``)."""
    cfg = config or RecConfig(variants=("ranker",))
    gen = TrafficGenerator(seed=seed, start_ts_ms=start_ts_ms, rates={"clickstream": rate},
                           n_items=n_items, n_users=n_users)
    index = CatalogIndex()
    users: dict[str, UserState] = {}
    neighbors: dict[str, ItemNeighbors] = {}
    trending: dict[str, CategoryTrending] = {}
    ranker = make_ranker(seed) if learn else None
    screens = Screens(cfg.k)
    report = Report(seed=seed, n_events=n_events, batch_size=batch_size)
    score = _score_into(report)
    batch: list[dict[str, Any]] = []
    seen = 0
    next_progress = progress_every
    for event in gen:
        if event.topic == "catalog":
            index[event.key] = event.value
            continue
        batch.append(event.value)
        seen += 1
        if len(batch) < batch_size and seen < n_events:
            continue
        t0, c0 = time.perf_counter(), time.process_time()
        result = decide(batch, users, neighbors, trending, index, ranker,
                        now_ms=int(batch[-1]["ts"]), config=cfg, rng_seed=seed)
        elapsed = time.perf_counter() - t0
        report.decide_cpu_seconds += time.process_time() - c0
        report.decide_seconds += elapsed
        report.batch_ms.append(1000.0 * elapsed)
        apply_item_signals(result.signals, neighbors, trending)
        if result.examples:
            report.examples += len(result.examples)
            labels = [ex["label"] for ex in result.examples]
            report.positives += int(sum(labels))
            if ranker is not None:
                ranker.learn(np.array([[ex["features"][n] for n in FEATURE_NAMES]
                                       for ex in result.examples]), np.array(labels))
        screens.walk(batch, result.recommendations, score)
        report.published += len(result.recommendations)
        report.throttled += len(result.throttled)
        report.candidates.update(result.candidates)
        report.shown.update(result.shown)
        report.models.update(rec["model"] for _, rec in result.recommendations)
        cold = set(result.cold)
        for pos, rec in result.recommendations:
            if pos in cold:
                report.cold_served += 1
                report.cold_full += len(rec["items"]) == cfg.k
        batch = []
        if progress is not None and (seen >= next_progress or seen >= n_events):
            next_progress += progress_every
            report.n_events = seen
            progress(f"{seen:,} events: hit-rate@10 model {report.hit_rate:.4f} vs "
                     f"popularity {report.pop_hit_rate:.4f}, {report.events_per_s:,.0f} "
                     f"events/s in decide()")
        if seen >= n_events:
            break
    report.n_events = seen
    if ranker is not None:
        report.ranker_metrics = ranker.metrics()
    return report


def _score_into(report: Report) -> Callable[[ScreenTrack, str], None]:
    """Score an action against the lists shown before it, into ``report``."""

    def score(tr: ScreenTrack, item_id: str) -> None:
        report.evaluated += 1
        hit, gain = _gain(tr.ref_model, item_id)
        report.hits += hit
        report.ndcg_sum += gain
        hit, gain = _gain(tr.ref_pop, item_id)
        report.pop_hits += hit
        report.pop_ndcg_sum += gain
        report.strict_hits += _gain(tr.last_model, item_id)[0]
        report.pop_strict_hits += _gain(tr.last_pop, item_id)[0]

    return score


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events", type=int, default=30_000)
    parser.add_argument("--no-learn", action="store_true", help="rank with the heuristic")
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--items", type=int, default=1200)
    parser.add_argument("--rate", type=float, default=20.0, help="clickstream events/s")
    parser.add_argument("--batch", type=int, default=200)
    args = parser.parse_args(argv)
    report = recommend_backtest(args.seed, args.events, learn=not args.no_learn,
                                batch_size=args.batch, n_users=args.users, n_items=args.items,
                                rate=args.rate)
    print(report.summary())


if __name__ == "__main__":
    main()
