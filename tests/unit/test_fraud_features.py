"""Fraud features: windows in event time, late events, bounded state, restarts, signal."""

from __future__ import annotations

import doctest
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agents.fraud.features as features_module
import agents.fraud.state as state_module
from agents.fraud.features import (
    FEATURE_NAMES,
    GRACE_MS,
    WINDOW_FEATURES,
    CardState,
    EntityWindow,
    FeatureBatch,
    compute_features,
    expire,
    expire_entities,
    ip_network,
    observe,
    update_entities,
)
from agents.fraud.state import DAY_MS, HOUR_MS, MINUTE_MS, WindowSeries
from replay.generator import FRAUD_PATTERNS, TrafficGenerator

T0 = 1_700_000_000_000
COL = {name: i for i, name in enumerate(FEATURE_NAMES)}


def txn(ts: int, *, card: str = "c1", amount: float = 20.0, merchant: str = "m1",
        category: str = "grocery", country: str = "FR", currency: str = "EUR",
        device: str = "d1", ip: str = "81.2.3.4", txn_id: str | None = None) -> dict[str, Any]:
    return {"txn_id": txn_id or f"t-{card}-{ts}", "card_id": card, "user_id": "u1",
            "merchant_id": merchant, "merchant_category": category, "amount": amount,
            "currency": currency, "country": country, "device_id": device, "ip": ip, "ts": ts}


def run(txns: Sequence[Mapping[str, Any]], cards: dict[str, CardState] | None = None,
        merchants: Mapping[str, EntityWindow] | None = None,
        devices: Mapping[str, EntityWindow] | None = None, **kw: Any) -> FeatureBatch:
    return compute_features(txns, {} if cards is None else cards, merchants or {},
                            devices or {}, **kw)


def generated(n: int, seed: int = 1, **kw: Any) -> tuple[TrafficGenerator, list[dict[str, Any]]]:
    gen = TrafficGenerator(seed=seed, rates={"transactions": 2000.0}, **kw)
    return gen, [e.value for e in gen.take(n, {"transactions"})]


def states_json(cards: Mapping[str, CardState]) -> str:
    return json.dumps({k: c.to_dict() for k, c in sorted(cards.items())}, sort_keys=True)


# -- shape and names ----------------------------------------------------------------------


def test_names_are_unique_and_rows_follow_them() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert set(WINDOW_FEATURES) <= set(FEATURE_NAMES)
    batch = run([txn(T0), txn(T0 + 1_000, category="no-such-category")])
    assert batch.matrix.dtype == np.float32
    assert batch.matrix.shape == (2, len(FEATURE_NAMES))
    assert batch.index == [0, 1] and batch.late == []
    for row, window in zip(batch.matrix, batch.windows, strict=True):
        assert list(window) == list(WINDOW_FEATURES)
        for name, value in window.items():
            assert row[COL[name]] == pytest.approx(value, rel=1e-6, abs=1e-6)
    cats = [i for i, n in enumerate(FEATURE_NAMES) if n.startswith("cat_")]
    assert batch.matrix[0, cats].sum() == 1.0 and batch.matrix[0, COL["cat_grocery"]] == 1.0
    assert batch.matrix[1, cats].sum() == 0.0
    json.dumps(batch.windows)  # provenance is JSON-able


def test_empty_batch() -> None:
    batch = run([])
    assert batch.matrix.shape == (0, len(FEATURE_NAMES)) and batch.matrix.dtype == np.float32


def test_module_doctests() -> None:
    for module in (features_module, state_module):
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
        assert result.attempted > 0 and result.failed == 0


# -- a transaction never sees itself; the next one does -------------------------------------


def test_features_do_not_include_the_transaction_itself() -> None:
    cards: dict[str, CardState] = {}
    first = run([txn(T0, amount=50.0)], cards)
    w = first.windows[0]
    assert w["card_txn_count"] == 0 and w["count_1m"] == 0 and w["sum_24h"] == 0
    assert w["merchants_1h"] == 0 and w["known_devices"] == 0
    row = first.matrix[0]
    assert row[COL["device_is_new"]] == 1 and row[COL["merchant_is_new"]] == 1
    # Within the same batch, the second transaction sees the first, not itself.
    batch = run([txn(T0 + 1_000, amount=10.0), txn(T0 + 2_000, amount=7.0)], cards)
    assert [w["count_1m"] for w in batch.windows] == [1, 2]
    assert batch.windows[1]["sum_1m"] == pytest.approx((50.0 + 10.0) / 0.92)
    assert batch.matrix[1, COL["device_is_new"]] == 0
    assert batch.windows[1]["log_secs_since_prev"] == pytest.approx(math.log1p(1.0))


def test_window_counts_and_sums_are_exact() -> None:
    t = T0 + 2 * DAY_MS
    # (offset before t, USD amount): window (t - W, t], so exactly W before is out.
    history = [(25 * HOUR_MS, 1.0), (23 * HOUR_MS, 2.0), (2 * HOUR_MS, 4.0),
               (HOUR_MS, 8.0), (59 * MINUTE_MS, 16.0), (10 * MINUTE_MS, 32.0),
               (9 * MINUTE_MS, 64.0), (MINUTE_MS, 128.0), (59_999, 256.0), (1, 512.0)]
    merchants = ["a", "b", "a", "c", "d", "e", "a", "f", "g", "h"]
    countries = ["FR", "FR", "DE", "FR", "FR", "FR", "FR", "ES", "FR", "FR"]
    txns = [txn(t - off, amount=usd, currency="USD", merchant=m, country=c)
            for (off, usd), m, c in zip(history, merchants, countries, strict=True)]
    batch = run([*txns, txn(t, currency="USD")])
    w = batch.windows[-1]
    assert (w["count_1m"], w["count_10m"], w["count_1h"], w["count_24h"]) == (2, 4, 6, 9)
    assert w["sum_1m"] == pytest.approx(768.0)
    assert w["sum_10m"] == pytest.approx(960.0)
    assert w["sum_1h"] == pytest.approx(1008.0)
    assert w["sum_24h"] == pytest.approx(1022.0)
    assert w["card_txn_count"] == 10
    assert w["merchants_1h"] == 6  # d e a f g h ("c" was exactly an hour before)
    assert w["merchants_24h"] == 8  # all but none: a b c d e f g h
    assert w["countries_1h"] == 2 and w["countries_24h"] == 3
    assert w["log_secs_since_prev"] == pytest.approx(math.log1p(0.001))


EVENTS = st.lists(st.tuples(st.integers(0, 3 * HOUR_MS), st.floats(0.0, 1_000.0)),
                  min_size=1, max_size=80)
WIDTHS = st.sampled_from([MINUTE_MS, 10 * MINUTE_MS, HOUR_MS, DAY_MS])


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.integers(0, 4 * HOUR_MS), WIDTHS)
def test_window_series_is_exact_below_its_cap(events: list[tuple[int, float]], t: int,
                                              width: int) -> None:
    series = WindowSeries(cap=1_000, width=HOUR_MS)
    for ts, amount in events:  # in any order
        series.add(ts, amount)
    n, total = series.window(t, width)
    inside = [a for ts, a in events if t - width < ts <= t]
    assert n == len(inside)
    assert total == pytest.approx(sum(inside), abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(EVENTS, st.integers(0, 4 * HOUR_MS), WIDTHS)
def test_window_series_above_its_cap_stays_sane(events: list[tuple[int, float]], t: int,
                                                width: int) -> None:
    events = sorted(events)
    series = WindowSeries(cap=8, width=10 * MINUTE_MS)
    for ts, amount in events:
        series.add(ts, amount)
    assert len(series.ts) <= 8
    n, total = series.window(t, width)
    assert 0 <= n <= len(events) and total >= -1e-6
    # A window that covers everything is exact, folded or not.
    n, total = series.window(events[-1][0], events[-1][0] - events[0][0] + 1)
    assert n == len(events) and total == pytest.approx(sum(a for _, a in events), abs=1e-6)


# -- batches, late events, restarts --------------------------------------------------------


def _entity_snapshot(txns: Sequence[Mapping[str, Any]]
                     ) -> tuple[dict[str, EntityWindow], dict[str, EntityWindow]]:
    merchants: dict[str, EntityWindow] = {}
    devices: dict[str, EntityWindow] = {}
    update_entities(txns, merchants, devices)
    return merchants, devices


def test_batch_of_one_repeatedly_equals_one_batch_of_n() -> None:
    _, txns = generated(3_000)
    # Some late arrivals (beyond grace) and some out-of-order ones within grace.
    txns = list(txns)
    txns.insert(2_500, dict(txns[100], txn_id="late-1", ts=txns[2_400]["ts"] - 2 * GRACE_MS))
    txns.insert(2_600, dict(txns[2_590], txn_id="ooo-1", ts=txns[2_590]["ts"] - GRACE_MS // 2))
    merchants, devices = _entity_snapshot(txns[:1_000])
    whole = compute_features(txns, {}, merchants, devices)
    cards: dict[str, CardState] = {}
    rows: list[np.ndarray] = []
    late: list[int] = []
    for i, t in enumerate(txns):
        b = compute_features([t], cards, merchants, devices)
        rows.extend(b.matrix)
        late.extend(i for _ in b.late)
    assert np.array_equal(np.array(rows), whole.matrix)
    assert late == whole.late
    assert len(whole.index) + len(whole.late) == len(txns)
    chunked: dict[str, CardState] = {}
    parts = [compute_features(txns[i:i + 7], chunked, merchants, devices)
             for i in range(0, len(txns), 7)]
    assert np.array_equal(np.vstack([p.matrix for p in parts]), whole.matrix)
    assert [w for p in parts for w in p.windows] == whole.windows


def test_late_events_are_reported_and_leave_state_unchanged() -> None:
    cards: dict[str, CardState] = {}
    run([txn(T0), txn(T0 + 5 * MINUTE_MS)], cards)
    before = states_json(cards)
    newest = T0 + 5 * MINUTE_MS
    too_late = txn(newest - GRACE_MS - 1, merchant="m-late", device="d-late")
    batch = run([too_late, txn(newest - GRACE_MS - 1, card="fresh-card")], cards)
    assert batch.late == [0] and batch.index == [1]  # an unseen card is never late
    cards.pop("fresh-card")
    assert states_json(cards) == before
    # Within grace: accepted, and the next transaction counts it in its windows.
    batch = run([txn(newest - GRACE_MS, amount=1.0), txn(newest + 1_000)], cards)
    assert batch.late == [] and batch.index == [0, 1]
    assert batch.windows[1]["count_10m"] == 3  # T0 + 5 min, the late-but-in-grace, itself no
    assert batch.windows[1]["count_1m"] == 1
    # A custom grace: the same delay is late with 10 s of grace.
    assert run([txn(newest - 30_000)], cards, grace_ms=10_000).late == [0]


def test_out_of_order_within_grace_gives_the_same_windows() -> None:
    times = [T0 + k * 7_000 for k in range(12)]
    in_order = [txn(ts, amount=float(i + 1), merchant=f"m{i}") for i, ts in enumerate(times)]
    shuffled = in_order[:5] + [in_order[6], in_order[5]] + in_order[7:]
    probe = txn(times[-1] + 1_000)
    a = run([*in_order, probe]).windows[-1]
    b = run([*shuffled, probe]).windows[-1]
    assert a == pytest.approx(b)


def test_restart_from_json_state_gives_identical_features() -> None:
    _, txns = generated(4_000, seed=2)
    half = 2_000

    def stream(restart: bool) -> np.ndarray:
        cards: dict[str, CardState] = {}
        merchants: dict[str, EntityWindow] = {}
        devices: dict[str, EntityWindow] = {}
        out = []
        for i in range(0, len(txns), 500):
            if restart and i == half:  # the worker dies; tables are recovered from JSON
                cards = {k: CardState.from_dict(json.loads(json.dumps(c.to_dict())))
                         for k, c in cards.items()}
                merchants = {k: EntityWindow.from_dict(json.loads(json.dumps(w.to_dict())))
                             for k, w in merchants.items()}
                devices = {k: EntityWindow.from_dict(json.loads(json.dumps(w.to_dict())))
                           for k, w in devices.items()}
            batch = txns[i:i + 500]
            out.append(compute_features(batch, cards, merchants, devices).matrix)
            update_entities(batch, merchants, devices)
        return np.vstack(out)

    assert np.array_equal(stream(False), stream(True))


def test_profiles_built_from_history_match_the_featurised_stream() -> None:
    _, txns = generated(3_000, seed=5)
    txns = [*txns[:1_500], dict(txns[10], txn_id="late", ts=txns[1_400]["ts"] - 3 * GRACE_MS),
            *txns[1_500:]]
    featurised: dict[str, CardState] = {}
    whole = compute_features(txns, featurised, {}, {})
    warmed: dict[str, CardState] = {}
    assert observe(txns[:2_000], warmed) == [1_500] == whole.late
    rest = compute_features(txns[2_000:], warmed, {}, {})
    assert np.array_equal(rest.matrix, whole.matrix[-len(rest.index):])
    assert states_json(warmed) == states_json(featurised)


def test_ip_network() -> None:
    assert ip_network("81.2.3.4") == "81.2.3"
    assert ip_network("2001:db8:85a3::8a2e:370:7334") == "2001:db8:85a3"
    assert ip_network("localhost") == "localhost"


def _json_native(x: Any) -> bool:
    if isinstance(x, dict):
        return all(isinstance(k, str) and _json_native(v) for k, v in x.items())
    if isinstance(x, list):
        return all(_json_native(v) for v in x)
    return isinstance(x, str | int | float) and not isinstance(x, bool)


def test_state_is_plain_json() -> None:
    _, txns = generated(2_000, seed=3)
    cards: dict[str, CardState] = {}
    merchants: dict[str, EntityWindow] = {}
    devices: dict[str, EntityWindow] = {}
    compute_features(txns, cards, merchants, devices)
    update_entities(txns, merchants, devices)
    for card in cards.values():
        d = card.to_dict()
        assert _json_native(d)
        assert CardState.from_dict(json.loads(json.dumps(d))).to_dict() == d
    for window in [*merchants.values(), *devices.values()]:
        d = window.to_dict()
        assert _json_native(d)
        assert EntityWindow.from_dict(json.loads(json.dumps(d))).to_dict() == d
    with pytest.raises(ValueError):
        CardState.from_dict({"v": 99})


def test_deterministic() -> None:
    _, txns = generated(3_000, seed=4)
    _, again = generated(3_000, seed=4)
    assert txns == again
    a = compute_features(txns, {}, *_entity_snapshot(txns[:500]))
    b = compute_features(again, {}, *_entity_snapshot(again[:500]))
    assert np.array_equal(a.matrix, b.matrix) and a.windows == b.windows


# -- bounded state ---------------------------------------------------------------------------


def test_state_stays_bounded_on_a_busy_card() -> None:
    cards: dict[str, CardState] = {}
    merchants: dict[str, EntityWindow] = {}
    devices: dict[str, EntityWindow] = {}
    step = 20_000  # three days at one transaction every 20 s, always new devices/merchants
    txns = [txn(T0 + k * step, merchant=f"m{k % 500}", device=f"d{k}", ip=f"10.{k % 250}.{k}.1",
                country=("FR", "DE", "ES", "IT", "NL", "PL")[k % 6] if k % 50 == 0 else "FR",
                amount=10.0 + k % 7, currency="USD")
            for k in range(3 * DAY_MS // step)]
    last: FeatureBatch | None = None
    for i in range(0, len(txns), 1_000):
        last = compute_features(txns[i:i + 1_000], cards, merchants, devices)
        update_entities(txns[i:i + 1_000], merchants, devices)
    assert last is not None
    card = cards["c1"]
    assert len(card.series.ts) <= CardState.RAW_CAP
    assert len(card.series.buckets) <= 26
    assert len(card.devices) <= CardState.DEVICES_CAP
    assert len(card.nets) <= CardState.NETS_CAP
    assert len(card.merchants) <= CardState.MERCHANTS_CAP
    assert sorted(card.merchants.values()) == card.merchant_seen.tolist()
    assert len(card.countries) <= CardState.COUNTRIES_CAP
    assert len(card.amounts) == CardState.AMOUNTS_CAP
    assert len(card.new_merchant_ts) <= CardState.MERCHANTS_CAP
    assert len(json.dumps(card.to_dict())) < 40_000
    # Beyond the exact events the windows are estimated from buckets: still close.
    w = last.windows[-1]
    assert w["count_1m"] == 2 and w["count_10m"] == 29
    assert w["count_1h"] == pytest.approx(180, rel=0.02)
    assert w["count_24h"] == pytest.approx(DAY_MS / step, rel=0.02)
    assert w["sum_24h"] == pytest.approx(13.0 * DAY_MS / step, rel=0.02)
    assert w["card_txn_count"] == len(txns) - 1
    mw = merchants["m1"]
    assert len(mw.series.ts) <= EntityWindow.RAW_CAP and len(mw.series.buckets) <= 62
    assert sorted(mw.cards.values()) == mw.card_seen.tolist()
    assert len(devices) == len(txns)  # every device once: expiry is what bounds them
    watermark = txns[-1]["ts"]
    dropped = expire_entities(devices, watermark)
    assert dropped == len(txns) - (HOUR_MS + GRACE_MS) // step - 1
    assert all(w.newest >= watermark - HOUR_MS - GRACE_MS for w in devices.values())


def test_expire_drops_idle_cards_and_trims_the_rest() -> None:
    cards: dict[str, CardState] = {}
    run([txn(T0, card="idle"), txn(T0 + 20 * HOUR_MS, card="busy"),
         txn(T0 + 26 * HOUR_MS, card="busy")], cards)
    assert expire(cards, T0 + DAY_MS + GRACE_MS) == 0  # idle exactly 24 h + grace: kept
    assert expire(cards, T0 + DAY_MS + GRACE_MS + 1) == 1
    assert set(cards) == {"busy"}
    busy = cards["busy"]
    assert len(busy.series.ts) == 2
    assert expire(cards, T0 + 44 * HOUR_MS + GRACE_MS + 1) == 0
    assert len(busy.series.ts) == 1  # the old event no window can see any more is gone
    assert busy.n == 2 and "d1" in busy.devices  # the profile stays
    assert expire(cards, T0 + 5 * DAY_MS, idle_ms=30 * DAY_MS) == 0
    assert expire(cards, T0 + 5 * DAY_MS) == 1 and not cards


def test_entity_windows() -> None:
    w = EntityWindow()
    for k, card in enumerate(["a", "b", "a", "c"]):
        w.observe(T0 + k * 30_000, card)
    snap = w.snapshot(T0 + 100_000)
    assert snap == {"count_1m": 2.0, "count_10m": 4.0, "count_1h": 4.0, "cards_10m": 3.0,
                    "cards_1h": 3.0}
    assert w.snapshot(T0 + 2 * HOUR_MS)["count_1h"] == 0.0
    # Through compute_features: merchant velocity as of the snapshot, 0 for unknown ones.
    merchants: dict[str, EntityWindow] = {"m1": w}
    batch = run([txn(T0 + 100_000), txn(T0 + 100_000, merchant="other")], merchants=merchants)
    assert batch.windows[0]["merchant_count_1m"] == 2
    assert batch.windows[0]["merchant_cards_10m"] == 3
    assert batch.windows[1]["merchant_count_1h"] == 0
    devices: dict[str, EntityWindow] = {}
    update_entities([txn(T0, card=f"c{k}", device="shared") for k in range(5)], {}, devices)
    batch = run([txn(T0 + 1_000, device="shared")], devices=devices)
    assert batch.windows[0]["device_count_1h"] == 5
    assert batch.windows[0]["device_cards_1h"] == 5
    assert expire_entities(merchants, T0 + 2 * HOUR_MS) == 1 and not merchants


# -- the patterns the features must show -----------------------------------------------------


def _history(card: str = "c1", n: int = 40) -> list[dict[str, Any]]:
    """A settled card: groceries at home from its own phone, every 30 min."""
    return [txn(T0 + k * 30 * MINUTE_MS, card=card, merchant=f"m{k % 4}", device="phone",
                ip=f"81.2.3.{k + 1}", amount=30.0 + k % 5) for k in range(n)]


def test_card_testing_burst_raises_the_one_minute_count_and_distinct_merchants() -> None:
    history = _history()
    start = history[-1]["ts"] + 20 * MINUTE_MS
    burst = [txn(start + k * 4_000, merchant=f"shop{k}", amount=1.0, category="digital_goods",
                 device="bot", ip="185.220.1.2") for k in range(12)]
    batch = run([*history, *burst])
    before = batch.windows[len(history)]
    last = batch.windows[-1]
    row = batch.matrix[-1]
    assert before["count_1m"] == 0 and last["count_1m"] == 11
    assert last["merchants_1h"] - before["merchants_1h"] == 11
    assert last["new_merchants_10m"] == 11
    assert last["amount_to_median"] < 0.1 and last["amount_z"] < -3
    assert row[COL["merchant_is_new"]] == 1
    assert last["device_txn_share"] < 0.25 and last["ip_txn_share"] < 0.25
    first = batch.matrix[len(history)]
    assert first[COL["device_is_new"]] == 1 and first[COL["ip_is_new"]] == 1


def test_new_device_in_a_foreign_country_sets_the_novelty_flags() -> None:
    history = _history()
    ts = history[-1]["ts"] + HOUR_MS
    takeover = txn(ts, merchant="far-away", country="NG", currency="NGN", device="new-phone",
                   ip="41.1.2.3", amount=1_500_000.0, category="electronics")
    usual = txn(ts + 1, merchant="m1", device="phone", ip="81.2.3.200")
    batch = run([*history, takeover, usual])
    ato, ok = batch.matrix[-2], batch.matrix[-1]
    for name in ("device_is_new", "ip_is_new", "is_foreign", "country_is_new",
                 "merchant_is_new"):
        assert ato[COL[name]] == 1, name
        assert ok[COL[name]] == 0, name
    assert ato[COL["is_home_country"]] == 0 and ok[COL["is_home_country"]] == 1
    assert ato[COL["amount_usd"]] == pytest.approx(1_000.0)
    assert ato[COL["amount_to_median"]] > 20 and ok[COL["amount_to_median"]] < 1.5
    assert ato[COL["device_txn_share"]] == 0 and ok[COL["device_txn_share"]] > 0.9


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve from average ranks (ties shared)."""
    order = np.argsort(score, kind="mergesort")
    _, inverse, counts = np.unique(score[order], return_inverse=True, return_counts=True)
    average = np.bincount(inverse, np.arange(1, len(score) + 1)) / counts
    ranks = np.empty(len(score))
    ranks[order] = average[inverse]
    n_pos = int(positive.sum())
    n_neg = len(score) - n_pos
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def test_features_separate_the_generated_fraud() -> None:
    gen = TrafficGenerator(seed=11, rates={"transactions": 100.0}, n_cards=2_000)
    txns = [e.value for e in gen.take(60_000, {"transactions"})]
    cards: dict[str, CardState] = {}
    merchants: dict[str, EntityWindow] = {}
    devices: dict[str, EntityWindow] = {}
    parts = []
    for i in range(0, len(txns), 1_000):
        batch = txns[i:i + 1_000]
        parts.append(compute_features(batch, cards, merchants, devices).matrix)
        update_entities(batch, merchants, devices)
    warm = 10_000  # profiles first: then 50,000 scored transactions
    x = np.vstack(parts)[warm:].astype(np.float64)
    pattern = np.array([gen.fraud_pattern(t["txn_id"]) or "" for t in txns[warm:]])
    fraud = pattern != ""
    assert 300 < fraud.sum() < 2_000 and set(pattern) - {""} == set(FRAUD_PATTERNS)

    def auc(name: str, who: np.ndarray) -> float:
        keep = who | ~fraud
        a = _auc(x[keep, COL[name]], who[keep])
        return max(a, 1.0 - a)

    best = max(auc(name, fraud) for name in FEATURE_NAMES)
    assert best > 0.8
    # The signature of each pattern against legitimate traffic.
    signals = {
        "card_testing": ["amount_usd", "ip_txn_share", "device_age_log"],
        "account_takeover": ["is_foreign", "amount_to_median", "device_txn_share"],
        "merchant_compromise": ["amount_to_median", "device_txn_share", "ip_txn_share"],
        "high_value_burst": ["amount_usd", "amount_to_median"],
    }
    for pat, names in signals.items():
        for name in names:
            assert auc(name, pattern == pat) > 0.9, (pat, name)
    # Together (a numpy logistic regression, fit on one half, judged on the other).
    z = np.c_[x, np.log1p(np.abs(x))]
    half = len(z) // 2
    mu, sd = z[:half].mean(0), z[:half].std(0) + 1e-9
    z = (z - mu) / sd
    w, b = np.zeros(z.shape[1]), 0.0
    y = fraud[:half].astype(np.float64)
    for _ in range(400):
        p = 1.0 / (1.0 + np.exp(-(z[:half] @ w + b)))
        w -= 0.5 * (z[:half].T @ (p - y) / half + 1e-4 * w)
        b -= 0.5 * float((p - y).mean())
    score = z[half:] @ w + b
    threshold = np.quantile(score[~fraud[half:]], 0.99)  # 1 % false positives
    assert (score[fraud[half:]] > threshold).mean() > 0.9
