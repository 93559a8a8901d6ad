"""Recommendation quality on held-out synthetic traffic (users with hidden category
tastes), through the same decide() the workers run: the learned ranker's top-10 must
beat a popularity baseline computed in the same run, on the next click's hit-rate@10
and NDCG@10. Measured here (seed 99, 15,000 events): hit-rate 0.40 vs 0.24 (1.63x),
NDCG 0.25 vs 0.13 (1.92x); the test holds 1.15x so that regressions show."""

from __future__ import annotations

import pytest

from replay.recommend_backtest import recommend_backtest

pytestmark = pytest.mark.e2e

HELD_OUT_SEED = 99


def test_model_beats_popularity_on_the_next_click(record_property: pytest.RecordProperty
                                                  ) -> None:
    report = recommend_backtest(HELD_OUT_SEED, 15_000, progress=None)
    print(report.summary())
    for name in ("hit_rate", "ndcg", "pop_hit_rate", "pop_ndcg", "events_per_s"):
        record_property(f"recommend_{name}", getattr(report, name))
    assert report.evaluated > 3_000
    assert report.hit_rate > 1.15 * report.pop_hit_rate
    assert report.ndcg > 1.15 * report.pop_ndcg
    assert report.ranker_metrics["n_learned"] > 1_000  # the ranker decided, and learned
    assert report.models["recommend_ranker@0"] > 0.8 * report.published
    assert report.cold_served > 0 and report.cold_coverage == 1.0
    assert report.candidates["content"] > 0 and report.shown["explore"] > 0
