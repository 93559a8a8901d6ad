"""One conformance suite over every Scorer (after River's ``checks/``), then what is
particular to each: River learns, rules give reasons."""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from models import LOADERS, ModelRegistry, roc_auc, train_gbdt
from scorers import (
    FeatureMismatchError,
    ModelIntegrityError,
    OnnxScorer,
    RiverScorer,
    RulesScorer,
    Scorer,
    ScorerError,
)

FEATURES = (
    "count_1m",
    "merchants_1h",
    "amount_usd",
    "median_amount_usd",
    "device_is_new",
    "country_is_new",
    "is_foreign",
    "noise",
)
KEY = b"test-signing-key-0123456789abcdef"


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Transactions whose fraud depends on velocity, amount vs profile and new device."""
    rng = np.random.default_rng(seed)
    count = rng.poisson(1.0, n).astype(np.float32)
    merchants = rng.poisson(1.5, n).astype(np.float32)
    median = rng.lognormal(3.5, 0.6, n).astype(np.float32)
    amount = (median * rng.lognormal(0.0, 0.7, n)).astype(np.float32)
    new_device = (rng.random(n) < 0.1).astype(np.float32)
    new_country = (rng.random(n) < 0.05).astype(np.float32)
    foreign = (rng.random(n) < 0.1).astype(np.float32)
    noise = rng.normal(size=n).astype(np.float32)
    X = np.column_stack([count, merchants, amount, median, new_device, new_country, foreign, noise])
    logit = -4.0 + 0.8 * count + 1.2 * np.log(amount / median) + 2.0 * new_device * foreign
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)
    return X.astype(np.float32), y


X_TRAIN, Y_TRAIN = synthetic(1500, seed=1)
X_TEST, Y_TEST = synthetic(200, seed=2)


@pytest.fixture(scope="module")
def onnx_bytes() -> bytes:
    params = {"n_estimators": 40, "num_leaves": 15}
    return train_gbdt(X_TRAIN, Y_TRAIN, FEATURES, seed=0, params=params).onnx_bytes


def make_onnx(onnx_bytes: bytes) -> Scorer:
    return OnnxScorer(onnx_bytes, "fraud_gbdt", "1", FEATURES)


def make_river(_: bytes) -> RiverScorer:
    scorer = RiverScorer(FEATURES, name="fraud_river", version="1")
    scorer.learn(X_TRAIN[:500], Y_TRAIN[:500])
    return scorer


def make_rules(_: bytes) -> Scorer:
    return RulesScorer(FEATURES, name="fraud_rules", version="1")


FACTORIES: dict[str, Callable[[bytes], Scorer]] = {
    "onnx": make_onnx,
    "river": make_river,
    "rules": make_rules,
}


@pytest.fixture(params=sorted(FACTORIES))
def factory(request: pytest.FixtureRequest, onnx_bytes: bytes) -> Callable[[], Scorer]:
    make = FACTORIES[request.param]
    return lambda: make(onnx_bytes)


@pytest.fixture
def registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", signing_key=KEY)


# -- the conformance suite -------------------------------------------------------------


def test_meets_the_protocol(factory: Callable[[], Scorer]) -> None:
    scorer = factory()
    assert isinstance(scorer, Scorer)
    assert scorer.model_id == f"{scorer.name}@{scorer.version}"
    assert scorer.feature_names == FEATURES
    assert scorer.kind in LOADERS


def test_scores_are_probabilities_of_shape_n(factory: Callable[[], Scorer]) -> None:
    scores = factory().score(X_TEST)
    assert scores.shape == (len(X_TEST),)
    assert scores.dtype == np.float64
    assert np.all((scores >= 0.0) & (scores <= 1.0))
    assert np.unique(scores).size > 1


def test_empty_batch_and_missing_values(factory: Callable[[], Scorer]) -> None:
    scorer = factory()
    assert scorer.score(np.zeros((0, len(FEATURES)), dtype=np.float32)).shape == (0,)
    holes = X_TEST[:20].copy()
    holes[::2, ::3] = np.nan
    scores = scorer.score(holes)
    assert np.all(np.isfinite(scores) & (scores >= 0.0) & (scores <= 1.0))


def test_rejects_a_matrix_of_the_wrong_width(factory: Callable[[], Scorer]) -> None:
    scorer = factory()
    with pytest.raises(FeatureMismatchError):
        scorer.score(X_TEST[:, :-1])
    with pytest.raises(FeatureMismatchError):
        scorer.score(X_TEST[0])


def test_deterministic(factory: Callable[[], Scorer]) -> None:
    np.testing.assert_array_equal(factory().score(X_TEST), factory().score(X_TEST))


def test_batch_of_one_equals_row_of_batch(factory: Callable[[], Scorer]) -> None:
    scorer = factory()
    batch = scorer.score(X_TEST)
    singles = np.array([scorer.score(X_TEST[i : i + 1])[0] for i in range(len(X_TEST))])
    np.testing.assert_array_equal(singles, batch)


def test_accepts_any_numeric_matrix(factory: Callable[[], Scorer]) -> None:
    scorer = factory()
    expected = scorer.score(X_TEST[:5])
    np.testing.assert_array_equal(scorer.score(X_TEST[:5].astype(np.float64)), expected)
    np.testing.assert_array_equal(scorer.score(X_TEST[:5].tolist()), expected)


def test_survives_to_bytes(factory: Callable[[], Scorer]) -> None:
    scorer = factory()
    loaded = LOADERS[scorer.kind](
        scorer.to_bytes(), name=scorer.name, version=scorer.version, feature_names=FEATURES
    )
    assert type(loaded) is type(scorer)
    np.testing.assert_array_equal(loaded.score(X_TEST), scorer.score(X_TEST))


def test_survives_the_registry(factory: Callable[[], Scorer], registry: ModelRegistry) -> None:
    scorer = factory()
    manifest = registry.publish_scorer(scorer, thresholds={"review": 0.5, "decline": 0.9})
    loaded = registry.load_scorer(scorer.name, manifest.version)
    assert loaded.model_id == f"{scorer.name}@1"
    assert loaded.kind == scorer.kind
    np.testing.assert_array_equal(loaded.score(X_TEST), scorer.score(X_TEST))


def test_registry_rejects_a_tampered_artefact(
    factory: Callable[[], Scorer], registry: ModelRegistry
) -> None:
    scorer = factory()
    registry.publish_scorer(scorer)
    artefact = registry.root / scorer.name / "1" / "artifact.bin"
    data = bytearray(artefact.read_bytes())
    data[len(data) // 2] ^= 0x01
    artefact.write_bytes(bytes(data))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        registry.load_scorer(scorer.name)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["thresholds"].update(review=0.99),
        lambda m: m.update(feature_names=list(reversed(m["feature_names"]))),
        lambda m: m.update(kind="rules" if m["kind"] != "rules" else "onnx"),
        lambda m: m.update(sha256="0" * 64),
        lambda m: m.pop("signature"),
    ],
    ids=["thresholds", "features", "kind", "sha256", "unsigned"],
)
def test_registry_rejects_a_tampered_manifest(
    factory: Callable[[], Scorer], registry: ModelRegistry, edit: Callable[[dict], object]
) -> None:
    scorer = factory()
    registry.publish_scorer(scorer, thresholds={"review": 0.5, "decline": 0.9})
    path = registry.root / scorer.name / "1" / "manifest.json"
    manifest = json.loads(path.read_bytes())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2))
    with pytest.raises(ModelIntegrityError):
        registry.load_scorer(scorer.name)


def test_registry_rejects_another_key(
    factory: Callable[[], Scorer], registry: ModelRegistry
) -> None:
    scorer = factory()
    registry.publish_scorer(scorer)
    other = ModelRegistry(registry.root, signing_key=b"another-key-of-32-bytes-00000000")
    with pytest.raises(ModelIntegrityError, match="signature"):
        other.load_scorer(scorer.name)


def test_learn_checks_its_labels_and_only_river_moves(factory: Callable[[], Scorer]) -> None:
    scorer = factory()
    before = scorer.score(X_TEST)
    with pytest.raises(FeatureMismatchError):
        scorer.learn(X_TRAIN, Y_TRAIN[:-1])
    scorer.learn(X_TRAIN[:300], Y_TRAIN[:300])
    moved = not np.array_equal(scorer.score(X_TEST), before)
    assert moved == (scorer.kind == "river")


# -- River -------------------------------------------------------------------------------


def test_river_learns_and_keeps_prequential_metrics() -> None:
    scorer = RiverScorer(FEATURES)
    np.testing.assert_array_equal(scorer.score(X_TEST), np.full(len(X_TEST), 0.5))
    scorer.learn(X_TRAIN[:200], Y_TRAIN[:200])
    first = scorer.metrics()
    scorer.learn(X_TRAIN[200:], Y_TRAIN[200:])
    later = scorer.metrics()
    assert first["n_learned"] == 200 and later["n_learned"] == len(X_TRAIN)
    assert later["log_loss"] < first["log_loss"]
    assert later["roc_auc"] > 0.7
    assert roc_auc(scorer.score(X_TEST), Y_TEST) > 0.75


def test_river_scores_move_toward_the_labels() -> None:
    scorer = RiverScorer(FEATURES)
    X, y = X_TEST[:50], Y_TEST[:50]
    distance = [np.abs(scorer.score(X) - y).mean()]
    for _ in range(3):
        scorer.learn(X, y)
        distance.append(np.abs(scorer.score(X) - y).mean())
    assert distance == sorted(distance, reverse=True) and distance[-1] < distance[0] - 0.1


def test_river_metrics_survive_the_registry(registry: ModelRegistry) -> None:
    scorer = make_river(b"")
    registry.publish_scorer(scorer, metrics=scorer.metrics())
    loaded = registry.load_scorer("fraud_river")
    assert isinstance(loaded, RiverScorer)
    assert loaded.metrics() == scorer.metrics()
    loaded.learn(X_TRAIN[500:600], Y_TRAIN[500:600])
    assert loaded.metrics()["n_learned"] == 600


class _Bomb:
    """A pickle that, if it were ever loaded, would write a file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, ...]:
        return (Path.write_text, (self.path, "pwned"))


def test_registry_never_unpickles_an_unverified_river_artefact(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    registry.publish_scorer(make_river(b""))
    marker = tmp_path / "unpickled"
    (registry.root / "fraud_river" / "1" / "artifact.bin").write_bytes(pickle.dumps(_Bomb(marker)))
    with pytest.raises(ModelIntegrityError):
        registry.load_scorer("fraud_river")
    assert not marker.exists()


def test_river_rejects_foreign_bytes() -> None:
    with pytest.raises(ScorerError):
        RiverScorer.from_bytes(pickle.dumps([1]), name="r", version="1", feature_names=FEATURES)
    state = pickle.loads(make_river(b"").to_bytes())
    with pytest.raises(FeatureMismatchError):
        RiverScorer.from_bytes(
            pickle.dumps(state), name="r", version="1", feature_names=FEATURES[:-1]
        )


# -- ONNX --------------------------------------------------------------------------------


def test_onnx_checks_the_feature_names_it_was_exported_with(onnx_bytes: bytes) -> None:
    with pytest.raises(FeatureMismatchError):
        OnnxScorer(onnx_bytes, "m", "1", tuple(reversed(FEATURES)))
    with pytest.raises(FeatureMismatchError):
        OnnxScorer(onnx_bytes, "m", "1", FEATURES[:-1])
    with pytest.raises(ScorerError):
        OnnxScorer(b"not onnx", "m", "1", FEATURES)


def test_onnx_uses_one_thread_on_the_cpu_here(onnx_bytes: bytes) -> None:
    scorer = OnnxScorer(onnx_bytes, "m", "1", FEATURES, providers=["CPUExecutionProvider"])
    assert scorer.providers == ["CPUExecutionProvider"]


# -- rules -------------------------------------------------------------------------------


def row(**values: float) -> np.ndarray:
    base = dict.fromkeys(FEATURES, 0.0) | {"amount_usd": 20.0, "median_amount_usd": 25.0}
    base |= values
    return np.array([[base[f] for f in FEATURES]], dtype=np.float32)


@pytest.mark.parametrize(
    ("values", "reasons"),
    [
        ({}, []),
        ({"count_1m": 5}, ["rule:velocity_1m"]),
        ({"count_1m": 4}, []),
        ({"merchants_1h": 4}, ["rule:merchants_1h"]),
        ({"amount_usd": 125.0}, ["rule:amount_vs_profile"]),
        ({"amount_usd": 124.0}, []),
        ({"amount_usd": 1000.0, "median_amount_usd": np.nan}, ["rule:high_amount"]),
        ({"amount_usd": 1000.0, "median_amount_usd": 0.0}, ["rule:high_amount"]),
        ({"device_is_new": 1, "country_is_new": 1}, ["rule:new_device_country"]),
        ({"device_is_new": 1, "is_foreign": 1}, ["rule:new_device_country"]),
        ({"device_is_new": 1}, []),
        ({"country_is_new": 1, "is_foreign": 1}, []),
        ({"count_1m": np.nan, "amount_usd": np.nan}, []),
    ],
)
def test_rules_fire_on_their_conditions(values: dict[str, float], reasons: list[str]) -> None:
    scores, got = RulesScorer(FEATURES).score_with_reasons(row(**values))
    assert got == [reasons]
    weights = {
        "velocity_1m": 0.45,
        "merchants_1h": 0.35,
        "amount_vs_profile": 0.35,
        "high_amount": 0.25,
        "new_device_country": 0.4,
    }
    expected = 1 - 0.98 * np.prod([1 - weights[r.removeprefix("rule:")] for r in reasons])
    assert scores[0] == pytest.approx(expected)


def test_rules_combine_and_stay_below_one() -> None:
    everything = row(count_1m=9, merchants_1h=9, amount_usd=5000, device_is_new=1, country_is_new=1)
    scores, reasons = RulesScorer(FEATURES).score_with_reasons(everything)
    assert len(reasons[0]) == 5
    assert scores[0] == pytest.approx(1 - 0.98 * 0.55 * 0.65 * 0.65 * 0.75 * 0.6)
    assert 0.85 < scores[0] < 1.0


def test_rules_are_configurable() -> None:
    names = ("velocity", "spend", "usual")
    rules = RulesScorer(
        names,
        columns={
            "count_1m": "velocity",
            "amount": "spend",
            "median_amount": "usual",
            "merchants_1h": None,
            "new_device": None,
            "new_country": None,
            "foreign_country": None,
        },
        thresholds={"count_1m": 3},
        weights={"velocity_1m": 0.9},
    )
    assert rules.active_rules == ("velocity_1m", "amount_vs_profile", "high_amount")
    scores, reasons = rules.score_with_reasons(np.array([[3, 10, 10]], dtype=np.float32))
    assert reasons == [["rule:velocity_1m"]]
    assert scores[0] == pytest.approx(1 - 0.98 * 0.1)
    with pytest.raises(FeatureMismatchError, match="merchants_1h"):
        RulesScorer(names, columns={"count_1m": "velocity"})
    with pytest.raises(ScorerError, match="unknown thresholds"):
        RulesScorer(FEATURES, thresholds={"count_5m": 3})
    with pytest.raises(ScorerError):
        RulesScorer(FEATURES, weights={"velocity_1m": 1.5})


def test_rules_with_no_active_rule_score_the_base_rate() -> None:
    off = dict.fromkeys(
        (
            "count_1m",
            "merchants_1h",
            "amount",
            "median_amount",
            "new_device",
            "new_country",
            "foreign_country",
        )
    )
    rules = RulesScorer(("x",), columns=off, base=0.05)
    assert rules.active_rules == ()
    np.testing.assert_allclose(rules.score(np.zeros((3, 1))), np.full(3, 0.05))


def test_rules_record_their_configuration_in_the_manifest(registry: ModelRegistry) -> None:
    rules = RulesScorer(FEATURES, thresholds={"count_1m": 7})
    manifest = registry.publish_scorer(rules)
    assert manifest.params["thresholds"]["count_1m"] == 7.0
    loaded = registry.load_scorer("rules")
    assert isinstance(loaded, RulesScorer) and loaded.thresholds["count_1m"] == 7.0
