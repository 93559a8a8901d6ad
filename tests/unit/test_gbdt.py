"""Offline GBDT: LightGBM training, its ONNX export, threshold choice and evaluation."""

from __future__ import annotations

import itertools

import numpy as np
import onnx
import pytest

import models.gbdt as gbdt
from models import choose_thresholds, evaluate, roc_auc, train_gbdt
from scorers import FeatureMismatchError, ModelExportError, OnnxScorer

FEATURES = tuple(f"f{i}" for i in range(20))


def dataset(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    X[rng.random(X.shape) < 0.02] = np.nan  # LightGBM and the ONNX trees: missing values
    logit = 2.0 * np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) - 4
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return X, y


X_TRAIN, Y_TRAIN = dataset(3000, seed=0)
X_VALID, Y_VALID = dataset(2000, seed=1)


@pytest.fixture(scope="module")
def trained() -> gbdt.TrainedModel:
    return train_gbdt(X_TRAIN, Y_TRAIN, FEATURES, seed=0, valid=(X_VALID, Y_VALID))


# -- training and export -----------------------------------------------------------------


def test_onnx_agrees_with_lightgbm(trained: gbdt.TrainedModel) -> None:
    import lightgbm as lgb

    params = dict(trained.params)
    rounds = params.pop("n_estimators")
    params.pop("lightgbm")
    booster = lgb.train(params, lgb.Dataset(X_TRAIN, label=Y_TRAIN), num_boost_round=rounds)
    onnx_scores = trained.scorer().score(X_VALID)
    np.testing.assert_allclose(onnx_scores, booster.predict(X_VALID), rtol=0, atol=1e-5)
    assert trained.metrics["onnx_max_abs_diff"] <= 1e-5


def test_training_is_small_balanced_and_learns(trained: gbdt.TrainedModel) -> None:
    positives = int(Y_TRAIN.sum())
    assert trained.params["scale_pos_weight"] == pytest.approx(
        (len(Y_TRAIN) - positives) / positives
    )
    assert trained.params["num_leaves"] == 31 and trained.params["num_threads"] == 2
    assert trained.metrics["n_trees"] == 200
    assert trained.metrics["valid_auc"] > 0.8
    assert trained.metrics["positive_rate"] == pytest.approx(positives / len(Y_TRAIN))
    assert set(trained.importance) == set(FEATURES)
    assert max(trained.importance, key=trained.importance.__getitem__) == "f0"


def test_the_export_is_deterministic_and_names_its_features(
    trained: gbdt.TrainedModel,
) -> None:
    again = train_gbdt(X_TRAIN, Y_TRAIN, FEATURES, seed=0, valid=(X_VALID, Y_VALID))
    assert again.onnx_bytes == trained.onnx_bytes
    model = onnx.load_from_string(trained.onnx_bytes)
    assert {o.name for o in model.graph.output} == {"label", "probabilities"}
    assert all(o.type.tensor_type.shape.dim[0].dim_param == "N" for o in model.graph.output)
    with pytest.raises(FeatureMismatchError):
        OnnxScorer(trained.onnx_bytes, "m", "1", FEATURES[::-1])


def test_a_disagreeing_export_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gbdt, "ONNX_TOLERANCE", -1.0)
    with pytest.raises(ModelExportError):
        train_gbdt(X_TRAIN[:500], Y_TRAIN[:500], FEATURES, params={"n_estimators": 5})


def test_training_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="both classes"):
        train_gbdt(X_TRAIN[:50], np.zeros(50), FEATURES)


# -- thresholds --------------------------------------------------------------------------

# 1,000 legitimate scores 0.000 .. 0.999; 20 frauds: 18 above every legitimate score,
# 2 in the middle of them. Every answer below can be counted by hand.
LEGIT = np.arange(1000) / 1000
FRAUD = np.r_[0.9995 + np.arange(18) * 1e-5, 0.5, 0.5]
SCORES = np.r_[LEGIT, FRAUD]
LABELS = np.r_[np.zeros(1000, dtype=int), np.ones(20, dtype=int)]


def test_review_is_the_highest_threshold_reaching_the_recall() -> None:
    t = choose_thresholds(SCORES, LABELS, target_recall=0.9, max_fpr=0.01)
    assert t.review == FRAUD[0] and t.review_recall == 0.9 and t.review_fpr == 0.0
    assert t.met_recall and t.met_fpr and t.met_targets
    assert t.decline == t.review  # already no legitimate event above it


def test_when_both_cannot_hold_the_fpr_limit_wins_and_the_shortfall_shows() -> None:
    t = choose_thresholds(SCORES, LABELS, target_recall=0.95, max_fpr=0.01)
    # 19 frauds need a threshold of 0.5, which flags 500 legitimate events (FPR 0.5):
    # the lowest threshold within FPR 1 % is 0.990 (10 legitimate events above).
    assert t.review == 0.990 and t.review_fpr == pytest.approx(0.01)
    assert t.review_recall == 0.9 and not t.met_recall and t.met_fpr and not t.met_targets
    # DECLINE: FPR within 0.1 % -> at most one legitimate event: 0.999.
    assert t.decline == 0.999 and t.decline_fpr == pytest.approx(0.001)
    assert t.decline_recall == 0.9
    report = evaluate(SCORES, LABELS, t)
    assert report["recall"] == t.review_recall and report["fpr"] == pytest.approx(0.01)
    assert report["decline_fpr"] == pytest.approx(0.001)
    assert report["flagged_rate"] == pytest.approx(28 / 1020)
    assert report["review_rate"] == pytest.approx(9 / 1020)
    assert report["decline_rate"] == pytest.approx(19 / 1020)
    assert report["precision"] == pytest.approx(18 / 28)


def test_a_loose_fpr_limit_lets_the_recall_target_hold() -> None:
    t = choose_thresholds(SCORES, LABELS, target_recall=0.95, max_fpr=0.6)
    assert t.review == 0.5 and t.review_recall == 1.0 and t.met_targets
    assert t.review_fpr == pytest.approx(0.5)
    assert t.decline_fpr <= 0.06 and t.decline > t.review


@pytest.mark.parametrize("seed", range(5))
def test_thresholds_on_overlapping_distributions(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = np.r_[np.zeros(20_000, dtype=int), np.ones(400, dtype=int)]
    scores = np.r_[rng.beta(1, 12, 20_000), rng.beta(6, 2, 400)].round(4)  # ties too
    t = choose_thresholds(scores, y, target_recall=0.95, max_fpr=0.01)
    got = evaluate(scores, y, t)
    assert got["recall"] == pytest.approx(t.review_recall)
    assert got["fpr"] == pytest.approx(t.review_fpr)
    assert got["decline_fpr"] == pytest.approx(t.decline_fpr) and t.decline_fpr <= 0.001
    assert t.decline >= t.review and t.met_fpr
    above = scores[scores > t.review]
    if t.met_recall:  # the highest such threshold: the next score up misses the target
        assert t.review_recall >= 0.95
        assert (
            above.size == 0
            or evaluate(scores, y, {"review": above.min(), "decline": 1.0})["recall"] < 0.95
        )
    else:  # the FPR limit bound it: one score lower breaks it
        below = scores[scores < t.review]
        assert evaluate(scores, y, {"review": below.max(), "decline": 1.0})["fpr"] > 0.01
    lower = scores[scores < t.decline]
    assert (
        lower.size == 0
        or t.decline == t.review
        or (evaluate(scores, y, {"review": lower.max(), "decline": 1.0})["fpr"] > 0.001)
    )


def test_all_ties_flag_nothing_rather_than_everyone() -> None:
    t = choose_thresholds(np.full(10, 0.3), np.r_[np.zeros(9), 1], max_fpr=0.01)
    assert t.review > 0.3 and t.review_recall == 0.0 and not t.met_recall
    assert evaluate(np.full(10, 0.3), np.r_[np.zeros(9), 1], t)["flagged_rate"] == 0.0


def test_threshold_inputs_are_checked() -> None:
    with pytest.raises(ValueError, match="both classes"):
        choose_thresholds([0.1, 0.2], [0, 0])
    with pytest.raises(ValueError):
        choose_thresholds([0.1, 0.2], [0, 1, 1])
    with pytest.raises(ValueError):
        choose_thresholds([0.1, np.nan], [0, 1])


# -- AUC ---------------------------------------------------------------------------------


def test_auc_matches_counting_pairs() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 10, 300) / 10  # many ties
    y = rng.random(300) < 0.3
    pos, neg = scores[y], scores[~y]
    pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
    assert roc_auc(scores, y) == pytest.approx(np.mean(pairs))
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0 and roc_auc([0.9, 0.1], [0, 1]) == 0.0
