"""The recommendations backtest over a given clickstream equals the synthetic one."""

from __future__ import annotations

from pathlib import Path

from agents.recommend.decide import VARIANTS
from replay.backtest.recommend import RecVariant, run_recommend
from replay.recommend_backtest import recommend_backtest
from tests.helpers import clickstream


def test_same_figures_as_the_synthetic_backtest_for_the_same_events() -> None:
    n = 6000
    catalog, clicks = clickstream(0, n, n_items=1200, n_users=2000)  # recommend_backtest's
    run = run_recommend(clicks, catalog, RecVariant("heuristic", None), k=10, batch_size=200)
    reference = recommend_backtest(0, n, learn=False, progress=None)
    assert run.evaluated == reference.evaluated > 500
    assert run.model is not None and run.popularity is not None
    assert abs(run.model.hits_at[-1] - reference.hits) < 1e-9
    assert abs(run.model.ndcg_at[-1] - reference.ndcg_sum) < 1e-9
    assert abs(run.popularity.hits_at[-1] - reference.pop_hits) < 1e-9
    rates = run.rates(run.model)
    assert rates["hit_rate_at"] == sorted(rates["hit_rate_at"])
    assert run.published == reference.published
    assert len(run.model.shown) > len(run.popularity.shown)  # coverage beyond the best-sellers


def test_live_splits_users_between_the_arms_as_the_worker_does(tmp_path: Path) -> None:
    from models.registry import ModelRegistry, signing_key_from
    from replay.backtest.recommend import load_rec_variants

    registry = ModelRegistry(tmp_path, signing_key_from(tmp_path / "signing.key"))
    live, heuristic = load_rec_variants(registry, ["live", "heuristic"])
    assert live.label == "live (heuristic | popularity)" and live.arms == VARIANTS
    catalog, clicks = clickstream(1, 2000, n_items=300, n_users=300)
    split = run_recommend(clicks, catalog, live)
    alone = run_recommend(clicks, catalog, heuristic)
    assert len(split.models) > len(alone.models)  # the popularity arm's model too
    assert split.published == alone.published
