"""Contract checks of input events: each rule and its dead-letter reason code."""

from __future__ import annotations

import math
from typing import Any

import pytest

from streams.errors import ValidationError
from streams.validation import EARLIEST_TS_MS, Limits, validate

NOW = 1_700_000_000_000
LIMITS = Limits()

TXN: dict[str, Any] = {
    "txn_id": "t1",
    "card_id": "c1",
    "user_id": "u1",
    "merchant_id": "m1",
    "merchant_category": "grocery",
    "amount": 12.5,
    "currency": "EUR",
    "country": "FR",
    "device_id": "d1",
    "ip": "10.0.0.1",
    "ts": NOW - 1000,
}
CLICK: dict[str, Any] = {
    "event_id": "e1",
    "user_id": "u1",
    "session_id": "s1",
    "item_id": "i1",
    "event_type": "view",
    "ts": NOW,
}
UPLOAD: dict[str, Any] = {
    "upload_id": "up1",
    "product_id": "p1",
    "seller_id": "s1",
    "uri": "file:///data/uploads/up1.png",
    "ts": NOW,
}
ITEM: dict[str, Any] = {
    "item_id": "i1",
    "title": "Kettle",
    "category": "kitchen",
    "price": 29.99,
    "ts": NOW,
}
LABEL: dict[str, Any] = {"txn_id": "t1", "is_fraud": False, "ts": NOW, "card_id": ""}
REVIEW: dict[str, Any] = {"upload_id": "up1", "decision": "APPROVE", "reviewer": "alice", "ts": NOW}
VALID = {
    "transactions": TXN,
    "clickstream": CLICK,
    "image-uploads": UPLOAD,
    "catalog": ITEM,
    "fraud-labels": LABEL,
    "moderation-reviews": REVIEW,
}


def check(topic: str, event: dict[str, Any], size: int = 100, limits: Limits = LIMITS) -> None:
    validate(topic, event, size, now_ms=NOW, limits=limits)


def reason(topic: str, event: dict[str, Any], size: int = 100, limits: Limits = LIMITS) -> str:
    with pytest.raises(ValidationError) as caught:
        check(topic, event, size, limits)
    assert caught.value.detail
    return caught.value.reason


@pytest.mark.parametrize("topic", sorted(VALID))
def test_valid_events_pass(topic: str) -> None:
    assert check(topic, VALID[topic]) is None


def test_limits_defaults_match_the_contract() -> None:
    assert (LIMITS.max_record_bytes, LIMITS.max_string_chars, LIMITS.max_future_ms) == (
        256 * 1024,
        1024,
        3_600_000,
    )
    assert EARLIEST_TS_MS == 946_684_800_000  # 2000-01-01T00:00:00Z


def test_too_large_in_bytes() -> None:
    check("transactions", TXN, size=LIMITS.max_record_bytes)
    assert reason("transactions", TXN, size=LIMITS.max_record_bytes + 1) == "validate.too_large"
    small = Limits(max_record_bytes=2048)
    assert reason("clickstream", CLICK, size=2049, limits=small) == "validate.too_large"


@pytest.mark.parametrize(
    "topic,field",
    [
        ("transactions", "merchant_category"),
        ("transactions", "ip"),
        ("clickstream", "item_id"),
        ("catalog", "title"),
        ("moderation-reviews", "reviewer"),
    ],
)
def test_string_over_1024_chars(topic: str, field: str) -> None:
    check(topic, {**VALID[topic], field: "x" * 1024})
    assert reason(topic, {**VALID[topic], field: "x" * 1025}) == "validate.too_large"


def test_characters_not_bytes_are_counted() -> None:
    check("catalog", {**ITEM, "title": "é" * 1024})  # 2,048 bytes of UTF-8, 1,024 chars


def test_uri_allowed_up_to_4096() -> None:
    uri = "file:///" + "u" * (4096 - len("file:///"))
    check("image-uploads", {**UPLOAD, "uri": uri})
    assert reason("image-uploads", {**UPLOAD, "uri": uri + "u"}) == "validate.too_large"


@pytest.mark.parametrize(
    "topic,field",
    [
        ("transactions", "txn_id"),
        ("transactions", "card_id"),
        ("transactions", "user_id"),
        ("transactions", "merchant_id"),
        ("clickstream", "event_id"),
        ("clickstream", "user_id"),
        ("clickstream", "session_id"),
        ("clickstream", "item_id"),
        ("image-uploads", "upload_id"),
        ("image-uploads", "product_id"),
        ("image-uploads", "seller_id"),
        ("catalog", "item_id"),
        ("fraud-labels", "txn_id"),
        ("moderation-reviews", "upload_id"),
    ],
)
@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_id(topic: str, field: str, empty: str) -> None:
    assert reason(topic, {**VALID[topic], field: empty}) == "validate.empty_id"


@pytest.mark.parametrize("amount", [-0.01, -1e9, math.nan, math.inf, -math.inf])
def test_bad_amount(amount: float) -> None:
    assert reason("transactions", {**TXN, "amount": amount}) == "validate.amount"


@pytest.mark.parametrize("amount", [0.0, 0.01, 1e12])
def test_amount_zero_and_positive_allowed(amount: float) -> None:
    check("transactions", {**TXN, "amount": amount})


@pytest.mark.parametrize("price", [-5.0, math.nan, math.inf])
def test_bad_price(price: float) -> None:
    assert reason("catalog", {**ITEM, "price": price}) == "validate.price"


def test_free_catalog_item_allowed() -> None:
    check("catalog", {**ITEM, "price": 0.0})


@pytest.mark.parametrize("currency", ["EU", "EURO", "E1R", "", "€€€", "1.5"])
def test_bad_currency(currency: str) -> None:
    assert reason("transactions", {**TXN, "currency": currency}) == "validate.currency"


@pytest.mark.parametrize("country", ["F", "FRA", "F1", ""])
def test_bad_country(country: str) -> None:
    assert reason("transactions", {**TXN, "country": country}) == "validate.country"


@pytest.mark.parametrize("topic", sorted(VALID))
def test_ts_before_2000(topic: str) -> None:
    check(topic, {**VALID[topic], "ts": EARLIEST_TS_MS})
    assert reason(topic, {**VALID[topic], "ts": EARLIEST_TS_MS - 1}) == "validate.ts_range"
    assert reason(topic, {**VALID[topic], "ts": 0}) == "validate.ts_range"
    assert reason(topic, {**VALID[topic], "ts": -1}) == "validate.ts_range"


@pytest.mark.parametrize("topic", sorted(VALID))
def test_ts_too_far_ahead(topic: str) -> None:
    check(topic, {**VALID[topic], "ts": NOW + LIMITS.max_future_ms})
    ahead = {**VALID[topic], "ts": NOW + LIMITS.max_future_ms + 1}
    assert reason(topic, ahead) == "validate.ts_range"
    strict = Limits(max_future_ms=0)
    assert reason(topic, {**VALID[topic], "ts": NOW + 1}, limits=strict) == "validate.ts_range"


@pytest.mark.parametrize("ts", [EARLIEST_TS_MS + 1, 1_262_304_000_000, NOW - 365 * 86_400_000])
def test_past_times_are_valid(ts: int) -> None:
    check("transactions", {**TXN, "ts": ts})
    check("clickstream", {**CLICK, "ts": ts})


def test_first_broken_rule_wins() -> None:
    # size is checked before content, ids before money, money before time
    broken = {**TXN, "txn_id": "", "amount": -1.0, "ts": 0}
    assert reason("transactions", broken, size=10**9) == "validate.too_large"
    assert reason("transactions", broken) == "validate.empty_id"
    assert reason("transactions", {**broken, "txn_id": "t"}) == "validate.amount"
    in_time_only = {**broken, "txn_id": "t", "amount": 1.0}
    assert reason("transactions", in_time_only) == "validate.ts_range"


def test_internal_topics_are_bounded_by_size_not_by_string_caps() -> None:
    from streams.validation import Limits, validate

    signal = {"key": "i:1", "kind": "covisit", "data": "x" * 5000, "ts": 1_700_000_000_000}
    validate("recommend-signals", signal, 6000, now_ms=1_700_000_000_000, limits=Limits())
