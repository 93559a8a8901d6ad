"""The synthetic traffic generator: determinism, contracts, fraud, images, pacing."""

from __future__ import annotations

import doctest
import importlib
from collections import Counter
from pathlib import Path
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate
from PIL import Image

import schemas
from replay.generator import (
    BROKEN_CATEGORIES,
    FRAUD_PATTERNS,
    POLICY_CATEGORIES,
    FraudConfig,
    GeneratedEvent,
    ImageUploadSimulator,
    TrafficGenerator,
    paced,
)

SCHEMA_OF = {"catalog": "catalog_item", "clickstream": "click_event",
             "transactions": "transaction", "image-uploads": "image_upload",
             "fraud-labels": "fraud_label"}
KEY_OF = {"catalog": "item_id", "clickstream": "user_id", "transactions": "card_id",
          "image-uploads": "upload_id", "fraud-labels": "card_id"}
#: Labels within seconds, so a one-minute run sees every chargeback.
FAST_LABELS = FraudConfig(label_delay_min_ms=500, label_delay_median_ms=3_000,
                          label_delay_max_ms=10_000, legit_label_rate=0.01)
Mixed = tuple[TrafficGenerator, list[GeneratedEvent]]
SMALL: dict[str, Any] = {"n_items": 240, "n_users": 300, "n_cards": 800, "n_merchants": 600}


def _parsed() -> dict[str, Any]:
    return {topic: fastavro.parse_schema(schemas.load_schema(name))
            for topic, name in SCHEMA_OF.items()}


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Mixed:
    """One minute of every topic at a brisk rate, with fast labels."""
    gen = TrafficGenerator(
        seed=11, images_dir=tmp_path_factory.mktemp("mixed"), fraud=FAST_LABELS,
        rates={"catalog": 1.0, "clickstream": 200.0, "transactions": 400.0,
               "image-uploads": 2.0},
    )
    events = gen.history(60_000)
    # Drain the labels of the last transactions (delays are at most 10 s).
    ids = {e.value["txn_id"] for e in events if e.topic == "transactions"}
    events += [e for e in gen.history(11_000)
               if e.topic == "fraud-labels" and e.value["txn_id"] in ids]
    return gen, events


def _stream(seed: int, images_dir: Path, n: int = 4_000) -> list[GeneratedEvent]:
    gen = TrafficGenerator(seed=seed, images_dir=images_dir, fraud=FAST_LABELS,
                           rates={"clickstream": 300.0, "transactions": 600.0,
                                  "image-uploads": 15.0, "catalog": 2.0}, **SMALL)
    return gen.take(n)


def test_same_seed_same_events_and_files(tmp_path: Path) -> None:
    a = _stream(5, tmp_path / "a")
    b = _stream(5, tmp_path / "b")
    uri_a, uri_b = (tmp_path / "a").as_uri(), (tmp_path / "b").as_uri()
    for ea, eb in zip(a, b, strict=True):
        if ea.topic == "image-uploads":
            assert ea.value["uri"].replace(uri_a, uri_b) == eb.value["uri"]
            assert Path(ea.value["uri"][7:]).read_bytes() == Path(eb.value["uri"][7:]).read_bytes()
            ea = GeneratedEvent(ea.topic, ea.key, {**ea.value, "uri": eb.value["uri"]}, ea.ts)
        assert ea == eb
    assert {e.topic for e in a} == set(SCHEMA_OF)


def test_different_seeds_differ(tmp_path: Path) -> None:
    a = _stream(5, tmp_path / "a", 1_000)
    b = _stream(6, tmp_path / "b", 1_000)
    ids_a = {e.value.get("txn_id") for e in a} - {None}
    ids_b = {e.value.get("txn_id") for e in b} - {None}
    assert ids_a and not ids_a & ids_b  # run tags keep ids apart
    assert [e.value for e in a[300:400]] != [e.value for e in b[300:400]]


def test_consumption_pattern_does_not_change_the_stream() -> None:
    rates = {"clickstream": 100.0, "transactions": 300.0}
    whole = TrafficGenerator(seed=3, rates=rates, **SMALL).history(20_000)
    chunked_gen = TrafficGenerator(seed=3, rates=rates, **SMALL)
    chunked: list[GeneratedEvent] = []
    for end in range(1_000, 20_001, 1_000):
        chunked += chunked_gen.events_until(chunked_gen.start_ts_ms + end)
    assert chunked == whole


def test_every_event_is_valid_and_keyed_by_contract(
        mixed: Mixed) -> None:
    _, events = mixed
    parsed = _parsed()
    fields = {topic: {f["name"] for f in schemas.load_schema(name)["fields"]}
              for topic, name in SCHEMA_OF.items()}
    for event in events:
        assert validate(event.value, parsed[event.topic], raise_errors=True)
        assert set(event.value) == fields[event.topic]  # no ground truth leaks in
        assert event.key == event.value[KEY_OF[event.topic]]
        assert event.ts == event.value["ts"]
    topics = Counter(e.topic for e in events)
    assert set(topics) == set(SCHEMA_OF)


def test_catalog_first_then_time_order(
        mixed: Mixed) -> None:
    gen, events = mixed
    n_items = len(gen.catalog)
    assert all(e.topic == "catalog" for e in events[:n_items])
    assert len({e.key for e in events[:n_items]}) == n_items
    stamps = [e.ts for e in events]
    assert stamps == sorted(stamps)
    assert stamps[0] == gen.start_ts_ms


def test_transactions_look_like_payments(
        mixed: Mixed) -> None:
    _, events = mixed
    txns = [e.value for e in events if e.topic == "transactions"]
    assert 20_000 < len(txns) < 28_000  # 400 txn/s for 60 s
    for v in txns:
        assert len(v["currency"]) == 3 and len(v["country"]) == 2
        assert v["amount"] >= 0 and v["ip"].count(".") == 3
    assert len({v["txn_id"] for v in txns}) == len(txns)
    by_country = Counter(v["country"] for v in txns)
    assert by_country.most_common(1)[0][0] == "US"
    assert {v["currency"] for v in txns if v["country"] == "DE"} == {"EUR"}


def test_fraud_rate_and_patterns(mixed: Mixed) -> None:
    gen, events = mixed
    txns = [e.value for e in events if e.topic == "transactions"]
    patterns = Counter(gen.fraud_pattern(v["txn_id"]) for v in txns)
    fraud = sum(n for p, n in patterns.items() if p is not None)
    assert 0.009 < fraud / len(txns) < 0.022, patterns
    assert set(patterns) - {None} == set(FRAUD_PATTERNS)
    assert all(gen.is_fraud(v["txn_id"]) == (gen.fraud_pattern(v["txn_id"]) is not None)
               for v in txns[:2_000])


def test_fraud_signatures(mixed: Mixed) -> None:
    gen, events = mixed
    assert gen.payments is not None
    cards = {c.card_id: c for c in gen.payments.world.cards}
    by_pattern: dict[str | None, list[dict[str, Any]]] = {}
    for e in events:
        if e.topic == "transactions":
            by_pattern.setdefault(gen.fraud_pattern(e.value["txn_id"]), []).append(e.value)
    testing = by_pattern["card_testing"]
    tiny = [v for v in testing if v["amount"] <= 5 * 150]  # JPY cents-free amounts
    assert len(tiny) / len(testing) > 0.8
    per_card = Counter(v["card_id"] for v in testing)
    assert max(per_card.values()) >= 5
    takeovers = by_pattern["account_takeover"]
    assert all(v["country"] != cards[v["card_id"]].home for v in takeovers)
    assert all(v["device_id"] not in cards[v["card_id"]].devices for v in takeovers)
    legit = by_pattern[None]
    home = sum(v["country"] == cards[v["card_id"]].home for v in legit) / len(legit)
    assert home > 0.95


def test_every_fraud_gets_a_delayed_label(
        mixed: Mixed) -> None:
    gen, events = mixed
    txn_ts = {e.value["txn_id"]: (e.ts, e.key) for e in events if e.topic == "transactions"}
    labels = [e.value for e in events if e.topic == "fraud-labels"]
    fraud_ids = {t for t in txn_ts if gen.is_fraud(t)}
    labelled = {v["txn_id"] for v in labels if v["is_fraud"]}
    assert labelled == fraud_ids
    confirmed = [v for v in labels if not v["is_fraud"]]
    assert confirmed and not any(gen.is_fraud(v["txn_id"]) for v in confirmed)
    for v in labels:
        ts, card = txn_ts[v["txn_id"]]
        assert v["ts"] > ts and v["card_id"] == card


def test_default_label_delays_are_hours_to_days() -> None:
    import random

    cfg, rng = FraudConfig(), random.Random(0)
    delays = [cfg.label_delay(rng) for _ in range(2_000)]
    assert min(delays) >= 3_600_000 and max(delays) <= 6 * 86_400_000
    assert sorted(delays)[1_000] > 12 * 3_600_000


def test_clickstream_funnel_and_cold_start(
        mixed: Mixed) -> None:
    gen, events = mixed
    clicks = [e.value for e in events if e.topic == "clickstream"]
    kinds = Counter(v["event_type"] for v in clicks)
    assert kinds["view"] > kinds["click"] > kinds["add_to_cart"] > kinds["purchase"] > 0
    assert gen.shoppers is not None and gen.shoppers.new_users
    newcomers = set(gen.shoppers.new_users)
    assert newcomers & {v["user_id"] for v in clicks}
    known = {item.item_id for item in gen.catalog.items}
    assert all(v["item_id"] in known for v in clicks)
    # Popularity is skewed: the top 10 % of items get well over 10 % of the views.
    views = Counter(v["item_id"] for v in clicks if v["event_type"] == "view")
    top = sum(n for _, n in views.most_common(len(known) // 10))
    assert top / sum(views.values()) > 0.3
    tastes = gen.tastes(clicks[0]["user_id"])
    assert abs(sum(tastes.values()) - 1.0) < 1e-9


def test_images_on_disk_and_ground_truth(tmp_path: Path) -> None:
    sim = ImageUploadSimulator(tmp_path, seed=4, rate_per_s=10.0, policy_rate=0.2,
                               broken_rate=0.05)
    events = [sim.pop() for _ in range(150)]
    cats = Counter(sim.label(e.key).category for e in events)
    policy = sum(cats[c] for c in POLICY_CATEGORIES) / len(events)
    assert 0.08 < policy < 0.35, cats
    assert cats["benign"] > len(events) / 2
    assert any(cats[c] for c in BROKEN_CATEGORIES)
    for e in events:
        label = sim.label(e.key)
        path = Path(label.path)
        assert e.value["uri"] == path.as_uri() and path.is_file()
        if label.broken:
            with pytest.raises(OSError), Image.open(path) as img:
                img.load()
            assert sim.review_verdict(e.key) == "REJECT"
            continue
        with Image.open(path) as img:
            img.load()
            assert img.format in ("PNG", "JPEG") and 128 <= min(img.size) <= max(img.size) <= 320
        expected = "REJECT" if label.violates_policy else "APPROVE"
        assert sim.review_verdict(e.key) == expected
        if label.category.startswith("text_"):
            assert label.text
    review = sim.review_event(events[0].key, events[0].ts + 1)
    assert validate(review, fastavro.parse_schema(schemas.load_schema("moderation_review")))


def test_skin_and_red_images_are_dominated_by_their_colours(tmp_path: Path) -> None:
    sim = ImageUploadSimulator(tmp_path, seed=9, policy_rate=1.0, broken_rate=0.0)
    seen: set[str] = set()
    for _ in range(40):
        label = sim.label(sim.pop().key)
        if label.category not in ("nudity", "violence"):
            continue
        seen.add(label.category)
        with Image.open(label.path) as img:
            pixels = list(img.convert("RGB").resize((32, 32)).getdata())
        if label.category == "nudity":
            skin = [p for p in pixels if p[0] > p[1] > p[2] and p[0] > 95]
            assert len(skin) / len(pixels) > 0.5
        else:
            red = [p for p in pixels if p[0] > 100 and p[1] < 60 and p[2] < 60]
            assert len(red) / len(pixels) > 0.1
    assert seen == {"nudity", "violence"}


def test_rates_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="fraud-labels"):
        TrafficGenerator(rates={"fraud-labels": 1.0})
    with pytest.raises(ValueError, match="images_dir"):
        TrafficGenerator(rates={"image-uploads": 1.0})
    gen = TrafficGenerator(rates={"transactions": 100.0}, emit_catalog=False, **SMALL)
    assert gen.topics == ("transactions", "fraud-labels")
    assert gen.take(3, topics={"transactions"})[0].topic == "transactions"
    with pytest.raises(ValueError):
        gen.take(1, topics={"clickstream"})


def test_rates_set_event_time_spacing() -> None:
    gen = TrafficGenerator(rates={"transactions": 200.0}, emit_catalog=False, **SMALL)
    txns = gen.take(5_000, topics={"transactions"})
    mean_gap = (txns[-1].ts - txns[0].ts) / (len(txns) - 1)
    assert 4.5 < mean_gap < 5.5


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _timed(*stamps: int) -> list[GeneratedEvent]:
    return [GeneratedEvent("t", "k", {}, ts) for ts in stamps]


@pytest.mark.parametrize("speed", [1.0, 4.0, 0.5])
def test_pacing_follows_event_time(speed: float) -> None:
    clock = FakeClock()
    released = [(e.ts, clock.now) for e in paced(_timed(1_000, 1_000, 2_500, 4_000),
                                                  speed=speed, clock=clock, sleep=clock.sleep)]
    for ts, at in released:
        assert at == pytest.approx(100.0 + (ts - 1_000) / 1000 / speed)
    assert max(clock.sleeps) <= 0.25


def test_pacing_speed_zero_never_sleeps_and_late_events_go_at_once() -> None:
    clock = FakeClock()
    assert len(list(paced(_timed(0, 10_000, 20_000), speed=0, clock=clock,
                          sleep=clock.sleep))) == 3
    assert clock.sleeps == []
    pacer = paced(_timed(0, 1_000, 2_000), clock=clock, sleep=clock.sleep)
    next(pacer)
    clock.now += 5.0  # the consumer was slow: both overdue events are released at once
    assert [e.ts for e in pacer] == [1_000, 2_000] and clock.sleeps == []


def test_pacing_can_be_stopped() -> None:
    clock = FakeClock()
    pacer = paced(_timed(0, 1_000, 2_000, 3_000), clock=clock, sleep=clock.sleep)
    got = []
    for event in pacer:
        got.append(event.ts)
        if event.ts == 1_000:
            pacer.stop()
    assert got == [0, 1_000] and pacer.stopped
    with pytest.raises(ValueError):
        paced([], speed=-1.0)


def test_pacing_a_generator_stops_an_endless_stream() -> None:
    clock = FakeClock()
    gen = TrafficGenerator(rates={"transactions": 50.0}, emit_catalog=False, **SMALL)
    pacer = paced(gen, speed=10.0, clock=clock, sleep=clock.sleep)
    for n, _ in enumerate(pacer):
        if n == 200:
            pacer.stop()
    assert gen.counts["transactions"] >= 200
    assert clock.now - 100.0 == pytest.approx((gen.now - gen.start_ts_ms) / 1000 / 10, abs=0.5)


@pytest.mark.parametrize("module", ["_common", "catalog", "shoppers", "world", "fraud",
                                    "payments", "images", "pacing", "traffic", "__init__"])
def test_docstring_examples_run(module: str) -> None:
    name = "replay.generator" + ("" if module == "__init__" else f".{module}")
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
