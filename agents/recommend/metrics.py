"""The recommendations pipeline's Prometheus metrics, created once per registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["RecommendMetrics"]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class RecommendMetrics:
    latency: Histogram
    published: Counter
    throttled: Counter
    examples: Counter
    catalog_items: Gauge
    candidates: Counter
    shown: Counter
    outcomes: Counter
    model_info: Gauge
    read_seconds: Histogram
    drift_state: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RecommendMetrics:
        return cls(
            latency=Histogram("techshop_recommend_latency_seconds",
                              "Click produced (record timestamp) -> top-K published",
                              buckets=LATENCY_BUCKETS, registry=registry),
            published=Counter("techshop_recommend_published_total",
                              "Top-K records published, by variant", ["variant"],
                              registry=registry),
            throttled=Counter("techshop_recommend_throttled_views_total",
                              "Views that updated state without publishing (refresh limit)",
                              registry=registry),
            examples=Counter("techshop_recommend_training_examples_total",
                             "Attribution examples (impression joined with what followed)",
                             registry=registry),
            catalog_items=Gauge("techshop_recommend_catalog_items",
                                "Catalog items this worker knows", registry=registry),
            candidates=Counter("techshop_recommend_candidates_total",
                               "Candidates generated, by source", ["source"], registry=registry),
            shown=Counter("techshop_recommend_shown_total",
                          "Items shown in published top-K lists, by source", ["source"],
                          registry=registry),
            outcomes=Counter("techshop_recommend_outcomes_total",
                             "Attributed impressions by variant and outcome (click-through "
                             "per variant = clicked / (clicked + ignored))",
                             ["variant", "outcome"], registry=registry),
            model_info=Gauge("techshop_recommend_model_info", "Ranker in use (1 = in use)",
                             ["model"], registry=registry),
            read_seconds=Histogram("techshop_recommend_read_seconds",
                                   "GET /recommendations/<user> latency",
                                   buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1),
                                   registry=registry),
            drift_state=Gauge("techshop_recommend_drift_state",
                              "Drift per signal: 0 stable, 1 warning, 2 drift",
                              ["signal"], registry=registry),
        )
