"""The recommendations backtest: a clickstream through the live decision code.

:func:`run_recommend` calls :func:`agents.recommend.decide.decide` (what the
``recommend-decide`` agent calls) on batches of clickstream events in event-time order,
with in-memory user state, item/category state updated from each batch's signals
(:func:`~agents.recommend.state.apply_item_signals`, what the ``recommend-signals``
agent does) and an event-time clock. The ranker is a fixed model version (it does not
learn during the run) or none (``heuristic``); every user gets the model's variant.

Quality is measured as in :mod:`replay.recommend_backtest`: for every click,
add-to-cart and purchase, the list on the user's screen when the visit to that item
began; hit-rate@k and NDCG@k for every k up to K, against a decayed-popularity top-K
computed at the same moments with the same exclusions; coverage is the share of the
catalog that appeared in at least one list.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agents.recommend.candidates import CatalogIndex
from agents.recommend.decide import VARIANTS, RecConfig, decide
from agents.recommend.state import (
    CategoryTrending,
    ItemNeighbors,
    UserState,
    apply_item_signals,
)
from replay.backtest.inputs import Where, load_events
from replay.progress import Bars
from replay.recommend_backtest import Screens, ScreenTrack
from streams.errors import ConfigError
from streams.settings import Settings

__all__ = ["RecVariant", "RecRun", "run_recommend", "RecommendJob", "recommend_job",
           "load_rec_variants"]

Progress = Callable[[int, int], None]
RANKER = "recommend_ranker"


@dataclass
class RecVariant:
    label: str
    ranker: Any  # a Scorer, or None for the heuristic
    #: The A/B arms users are split into (the worker's: ranker and popularity).
    arms: tuple[str, ...] = ("ranker",)


@dataclass
class _Tally:
    hits_at: list[float]
    ndcg_at: list[float]
    shown: set[str] = field(default_factory=set)


@dataclass
class RecRun:
    label: str
    k: int
    evaluated: int = 0
    model: _Tally | None = None
    popularity: _Tally | None = None
    published: int = 0
    throttled: int = 0
    repeats: int = 0
    models: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0

    def rates(self, tally: _Tally) -> dict[str, Any]:
        n = max(self.evaluated, 1)
        return {"hit_rate_at": [h / n for h in tally.hits_at],
                "ndcg_at": [g / n for g in tally.ndcg_at]}


def _score(tally: _Tally, items: list[str] | None, item_id: str) -> None:
    if items is None or item_id not in items:
        return
    rank = items.index(item_id)  # 0-based
    gain = 1.0 / math.log2(rank + 2)
    for j in range(rank, len(tally.hits_at)):
        tally.hits_at[j] += 1.0
        tally.ndcg_at[j] += gain


def run_recommend(events: Sequence[Mapping[str, Any]], catalog: Mapping[str, Mapping[str, Any]],
                  variant: RecVariant, *, k: int = 10, view_refresh_ms: int = 1000,
                  batch_size: int = 200, on_progress: Progress | None = None) -> RecRun:
    """Decide ``events`` in order with ``variant``; see the module doc."""
    cfg = RecConfig(k=k, view_refresh_ms=view_refresh_ms, variants=variant.arms)
    index = catalog if isinstance(catalog, CatalogIndex) else CatalogIndex(catalog.values())
    users: dict[str, UserState] = {}
    neighbors: dict[str, ItemNeighbors] = {}
    trending: dict[str, CategoryTrending] = {}
    screens = Screens(k)
    model, popularity = _Tally([0.0] * k, [0.0] * k), _Tally([0.0] * k, [0.0] * k)
    run = RecRun(variant.label, k, model=model, popularity=popularity)

    def score(tr: ScreenTrack, item_id: str) -> None:
        run.evaluated += 1
        _score(model, tr.ref_model, item_id)
        _score(popularity, tr.ref_pop, item_id)

    def shown(tr: ScreenTrack) -> None:
        model.shown.update(tr.last_model or ())
        popularity.shown.update(tr.last_pop or ())

    clock = 0
    started = time.perf_counter()
    for start in range(0, len(events), batch_size):
        batch: list[dict[str, Any]] = [dict(e) if not isinstance(e, dict) else e
                                       for e in events[start:start + batch_size]]
        clock = max(clock, max(int(e["ts"]) for e in batch))
        result = decide(batch, users, neighbors, trending, index, variant.ranker,
                        now_ms=clock, config=cfg)
        apply_item_signals(result.signals, neighbors, trending)
        screens.walk(batch, result.recommendations, score, shown)
        run.published += len(result.recommendations)
        run.throttled += len(result.throttled)
        run.repeats += len(result.repeats)
        run.models.update(rec["model"] for _, rec in result.recommendations)
        if on_progress is not None:
            on_progress(min(start + batch_size, len(events)), len(events))
    run.seconds = time.perf_counter() - started
    return run


def load_rec_variants(registry: Any, names: Sequence[str]) -> list[RecVariant]:
    """``recommend_ranker@N`` (or ``@latest``), ``heuristic`` and ``live`` (what a worker
    runs: the latest ranker, users split between it and the popularity arm); default:
    the latest ranker if the registry has one, and the heuristic."""
    from scorers.errors import ScorerError
    from streams.errors import TechShopError

    if not names:
        names = ([f"{RANKER}@latest"] if RANKER in registry.names() else []) + ["heuristic"]
    out = []
    for text in names:
        if text == "heuristic":
            out.append(RecVariant("heuristic", None))
            continue
        if text == "live":
            ranker = (registry.load_scorer(RANKER, "latest") if RANKER in registry.names()
                      else None)
            name = ranker.model_id if ranker is not None else "heuristic"
            out.append(RecVariant(f"live ({name} | popularity)", ranker, VARIANTS))
            continue
        name, _, version = text.partition("@")
        try:
            ranker = registry.load_scorer(name, version or "latest")
        except (TechShopError, ScorerError, OSError, KeyError, ValueError) as exc:
            raise ConfigError(f"model {text}: {exc}") from None
        out.append(RecVariant(ranker.model_id, ranker))
    return out


@dataclass
class RecommendJob:
    clicks: Where
    catalog: Where
    models: list[str] = field(default_factory=list)
    k: int = 10
    batch_size: int = 200
    model_dir: Path | None = None


def recommend_job(settings: Settings, job: RecommendJob, bars: Bars | None = None
                  ) -> dict[str, Any]:
    """Read, run every variant, and build the report dict."""
    from replay.backtest.jobs import open_registry
    from replay.report.recommend import recommend_report

    bars = bars or Bars(enabled=False)
    variants = load_rec_variants(open_registry(settings, job.model_dir), job.models)
    clicks = load_events(settings, job.clicks, on_progress=bars.task("reading clickstream"))
    items = load_events(settings, job.catalog, validate_events=False,
                        on_progress=bars.task("reading catalog"))
    # Arrival order matters to the index (items by category, in order of arrival); a
    # fixed order makes a topic and its export give the same figures.
    catalog = {item["item_id"]: item
               for item in sorted(items.events, key=lambda i: (int(i["ts"]), i["item_id"]))}
    if not catalog:
        raise ConfigError(f"no catalog items in {items.source}: recommendations need the "
                          "catalog (--catalog FILE)")
    runs = [run_recommend(clicks.events, catalog, v, k=job.k,
                          view_refresh_ms=settings.recs_view_refresh_ms,
                          batch_size=job.batch_size, on_progress=bars.task(f"deciding {v.label}"))
            for v in variants]
    return recommend_report(runs, n_catalog=len(catalog), data={
        "source": clicks.source, "catalog_source": items.source,
        "events_read": len(clicks.events) + sum(clicks.dead_letters.values()),
        "accepted": len(clicks.events), "dead_letters": dict(clicks.dead_letters),
        "event_ts": list(clicks.event_ts) if clicks.event_ts else None,
        "batch_size": job.batch_size})
