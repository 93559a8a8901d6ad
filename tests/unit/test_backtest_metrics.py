"""The report's figures against brute force."""

from __future__ import annotations

import numpy as np

from replay.backtest.metrics import (
    Costs,
    confusion,
    cost,
    cost_curve,
    histograms,
    pr_curve,
    rates,
    threshold_curve,
)


def _data(seed: int = 0, n: int = 3000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.05
    scores = np.clip(rng.normal(np.where(y, 0.7, 0.2), 0.15), 0, 1).round(3)
    return scores, y, rng.lognormal(3, 1, n)


def test_threshold_curve_is_brute_force() -> None:
    scores, y, _ = _data()
    grid = [0.0, 0.1, 0.25, 0.5, 0.7, 0.95, 1.0]
    curve = threshold_curve(scores, y, grid)
    for i, t in enumerate(grid):
        flagged = scores >= t
        assert curve["flagged"][i] == flagged.sum()
        assert abs(curve["recall"][i] - (flagged & y).sum() / y.sum()) < 1e-6
        assert abs(curve["fpr"][i] - (flagged & ~y).sum() / (~y).sum()) < 1e-6
        if flagged.any():
            assert abs(curve["precision"][i] - (flagged & y).sum() / flagged.sum()) < 1e-6


def test_pr_curve_runs_from_low_recall_to_full_recall() -> None:
    scores, y, _ = _data(1)
    pr = pr_curve(scores, y, max_points=50)
    assert len(pr["recall"]) <= 50
    assert pr["recall"] == sorted(pr["recall"]) and pr["recall"][-1] == 1.0
    assert abs(pr["precision"][-1] - y.mean()) < 1e-6
    assert pr_curve(scores, np.zeros_like(y)) == {"recall": [], "precision": [], "threshold": []}


def test_confusion_rates_cost_and_histograms_agree() -> None:
    scores, y, amounts = _data(2)
    d = np.where(scores >= 0.8, "DECLINE", np.where(scores >= 0.5, "REVIEW", "APPROVE"))
    conf = confusion(list(d), y)
    assert sum(conf["fraud"].values()) == y.sum() and sum(conf["legit"].values()) == (~y).sum()
    r = rates(conf)
    assert abs(r["recall"] - ((scores >= 0.5) & y).sum() / y.sum()) < 1e-12
    costs = Costs(chargeback_fee=10, review=1, false_decline=20)
    c = cost(list(d), y, amounts, costs)
    missed = y & (scores < 0.5)
    assert abs(c["missed_fraud"] - (amounts[missed].sum() + 10 * missed.sum())) < 1e-6
    assert c["reviews"] == ((scores >= 0.5) & (scores < 0.8)).sum()
    assert c["total"] == c["missed_fraud"] + c["reviews"] + c["false_declines"]
    curve = cost_curve(scores, y, amounts, costs, decline=0.8, grid=[0.5])
    assert abs(curve[0] - c["total"]) < 0.01
    h = histograms(scores, y, bins=20)
    assert sum(h["fraud"]) == y.sum() and sum(h["legit"]) == (~y).sum()
    assert len(h["edges"]) == 21
