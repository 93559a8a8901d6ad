"""Recommendation state: JSON round trips, decay, bounds, windows, and the signals that
keep item and category state current."""

from __future__ import annotations

import doctest
import importlib
import json
from typing import Any

import pytest

from agents.recommend.candidates import CatalogIndex, SignalAccumulator, item_signals
from agents.recommend.state import (
    DAY_MS,
    HOUR_MS,
    CategoryTrending,
    ItemNeighbors,
    ItemSignal,
    UserState,
    apply_item_signals,
)

T0 = 1_765_000_000_000


def json_trip(d: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps(d))
    return out


def busy_user() -> UserState:
    u = UserState()
    for n in range(30):
        etype = ("view", "click", "add_to_cart", "purchase")[n % 4]
        u.observe(f"e{n}", f"i{n}", etype, T0 + n * 1000, f"s{n // 10}",
                  ("home", "books")[n % 2], 2.0 + n / 10)
    u.last_published_ts = T0 + 29_000
    u.add_impressions([[f"i{n}", n, "covisit", T0, "ranker", [0.5] * 16, 0.25, "m@1", "e1"]
                       for n in range(12)])
    return u


def test_user_state_round_trips_through_json() -> None:
    u = busy_user()
    d = u.to_dict()
    assert json_trip(d) == d
    back = UserState.from_dict(json_trip(d))
    assert back.to_dict() == d
    assert back.has_purchased("i3") and not back.has_purchased("i2")
    assert back.affinity_shares() == pytest.approx(u.affinity_shares())


def test_item_and_category_state_round_trip_through_json() -> None:
    nb = ItemNeighbors()
    for n in range(80):
        nb.add_covisit(f"i{n}", 1.0 + n % 5, T0 + n * 60_000)
    nb.add_popularity(3.0, T0)
    nb.add_bandit(10.0, 2.0)
    assert ItemNeighbors.from_dict(json_trip(nb.to_dict())).to_dict() == nb.to_dict()
    assert ItemNeighbors.from_dict(json_trip(nb.to_dict())).top(5) == nb.top(5)
    t = CategoryTrending()
    for n in range(300):
        t.add(f"i{n % 40}", 1.0, T0 + n * 10_000)
    back = CategoryTrending.from_dict(json_trip(t.to_dict()))
    assert back.to_dict() == t.to_dict()
    assert back.top(10, T0 + 3_000_000) == t.top(10, T0 + 3_000_000)
    s = ItemSignal("i:a", "covisit", T0, {"b": 1.5})
    assert ItemSignal.from_dict(json_trip(s.to_dict())) == s


def test_unknown_versions_are_refused() -> None:
    for cls in (UserState, ItemNeighbors, CategoryTrending):
        d = cls().to_dict()
        d["v"] = 99
        with pytest.raises(ValueError, match="version"):
            cls.from_dict(d)


def test_covisitation_decays_with_time() -> None:
    nb = ItemNeighbors()
    nb.add_covisit("old", 1.0, T0)
    nb.add_covisit("new", 1.0, T0 + ItemNeighbors.COVISIT_HALF_LIFE_MS)
    # the same count a half-life later weighs twice as much
    assert dict(nb.top(2)) == pytest.approx({"new": 2 / 3, "old": 1 / 3})
    nb.add_covisit("old", 1.0, T0 + 60 * ItemNeighbors.COVISIT_HALF_LIFE_MS)  # rebases
    assert nb.top(1)[0][0] == "old"
    assert sum(share for _, share in nb.top(3)) <= 1.0 + 1e-9


def test_covisitation_is_bounded_and_keeps_the_strongest() -> None:
    nb = ItemNeighbors()
    for n in range(500):
        nb.add_covisit(f"weak{n}", 1.0, T0 + n)
        assert len(nb.weights) <= ItemNeighbors.CAP * 3 // 2
    for _ in range(10):
        nb.add_covisit("strong", 5.0, T0 + 600)
    assert nb.top(1)[0][0] == "strong"


def test_popularity_halves_every_half_life() -> None:
    nb = ItemNeighbors()
    nb.add_popularity(8.0, T0)
    assert nb.popularity(T0 + ItemNeighbors.POPULARITY_HALF_LIFE_MS) == pytest.approx(4.0)
    assert nb.popularity(T0 - 1) == 8.0  # never grows backwards


def test_trending_windows_expire_in_event_time() -> None:
    t = CategoryTrending()
    t.add("a", 5.0, T0)
    t.add("b", 1.0, T0 + 10 * 60_000)
    assert [i for i, _ in t.top(5, T0 + 20 * 60_000)] == ["a", "b"]
    # a read far later sees nothing, even though no event came to drop the buckets
    later = T0 + CategoryTrending.WINDOW_MS + CategoryTrending.BUCKET_MS
    assert [i for i, _ in t.top(5, later)] == ["b"]
    assert t.top(5, T0 + 2 * HOUR_MS) == []
    # an event well after the window drops old buckets from the state itself
    t.add("c", 1.0, T0 + 3 * HOUR_MS)
    assert len(t.buckets) == 1
    t.add("late", 1.0, T0)  # older than any window a later read can ask for: ignored
    assert t.score("late", T0 + 3 * HOUR_MS) == 0.0


def test_trending_buckets_are_bounded() -> None:
    t = CategoryTrending()
    for n in range(1000):
        t.add(f"i{n}", 1.0 + (n % 3 == 0), T0 + n)
        assert all(len(d) <= CategoryTrending.CAP * 3 // 2 for _, d in t.buckets)
    assert len(t.to_dict()["b"][0][1]) <= CategoryTrending.CAP * 3 // 2


def test_user_lists_are_bounded() -> None:
    u = UserState()
    for n in range(500):
        u.observe(f"e{n}", f"i{n}", "purchase", T0 + n, "s", "home", 1.0)
        u.add_impressions([[f"x{n}", 0, "covisit", T0 + n, "ranker", [0.0], 0.1, "m", "e"]])
    assert len(u.recent) == UserState.RECENT_CAP
    assert len(u.purchased) == UserState.PURCHASED_CAP and u.has_purchased("i499")
    assert not u.has_purchased("i0")
    assert len(u.impressions) == UserState.IMPRESSIONS_CAP
    assert len(u.event_ids) == UserState.EVENT_IDS_CAP
    assert len(u.session_items) == UserState.SESSION_CAP


def test_reshown_item_replaces_its_impression_and_eviction_returns_the_oldest() -> None:
    u = UserState()
    imp = [["a", 0, "covisit", T0, "ranker", [0.0], 0.1, "m", "e1"]]
    assert u.add_impressions(imp) == []
    assert u.add_impressions([["a", 3, "trending", T0 + 5, "ranker", [1.0], 0.2, "m", "e2"]]) == []
    assert len(u.impressions) == 1 and u.impressions[0][8] == "e2"
    u.add_impressions([[f"b{n}", 0, "c", T0 + 10 + n, "r", [0.0], 0.1, "m", "e3"]
                       for n in range(UserState.IMPRESSIONS_CAP)])
    assert [i[0] for i in u.expire_impressions(T0 + 11)] == ["b0"]


def test_item_signals_count_covisits_once_per_visit_within_a_session() -> None:
    catalog = CatalogIndex([{"item_id": i, "title": i, "category": "home", "price": 1.0,
                             "ts": 0} for i in "abc"])
    ev = [("a", "view", "s1"), ("a", "click", "s1"), ("b", "view", "s1"), ("b", "click", "s1"),
          ("c", "view", "s2")]
    events = [{"event_id": f"e{n}", "user_id": "u", "session_id": s, "item_id": i,
               "event_type": t, "ts": T0 + n} for n, (i, t, s) in enumerate(ev)]
    signals = {(s.key, s.kind): s for s in item_signals(events, {}, catalog)}
    assert signals[("i:b", "covisit")].weights == {"a": 1.0}
    assert signals[("i:a", "covisit")].weights == {"b": 1.0}
    assert ("i:c", "covisit") not in signals  # a new session does not co-visit
    assert signals[("i:a", "popularity")].weights["a"] == pytest.approx(
        1.0 + 2.0 * 2 ** (1 / ItemNeighbors.POPULARITY_HALF_LIFE_MS))
    assert set(signals[("c:*", "trending")].weights) == {"a", "b", "c"}


def test_one_signal_for_many_events_applies_as_many_signals_would() -> None:
    one = SignalAccumulator()
    many = []
    for n in range(20):
        ts = T0 + n * 3_600_000
        one.add("i:a", "popularity", "a", 1.0, ts)
        one.add("i:a", "covisit", f"b{n % 3}", 1.0, ts)
        single = SignalAccumulator()
        single.add("i:a", "popularity", "a", 1.0, ts)
        single.add("i:a", "covisit", f"b{n % 3}", 1.0, ts)
        many.extend(single.signals())
    n1: dict[str, ItemNeighbors] = {}
    n2: dict[str, ItemNeighbors] = {}
    apply_item_signals(one.signals(), n1, {})
    apply_item_signals(many, n2, {})
    later = T0 + DAY_MS
    assert n1["i:a"].popularity(later) == pytest.approx(n2["i:a"].popularity(later))
    assert dict(n1["i:a"].top(3)) == pytest.approx(dict(n2["i:a"].top(3)))


def test_apply_item_signals_writes_each_touched_key_back() -> None:
    class Recording(dict[str, Any]):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[str] = []

        def __setitem__(self, key: str, value: Any) -> None:
            self.writes.append(key)
            super().__setitem__(key, value)

    neighbors, trending = Recording(), Recording()
    signals = [ItemSignal("i:a", "covisit", T0, {"b": 1.0}),
               ItemSignal("i:a", "popularity", T0, {"a": 2.0}),
               ItemSignal("i:a", "bandit", T0, {"shown": 3.0, "clicked": 1.0}),
               ItemSignal("c:home", "trending", T0, {"a": 2.0})]
    apply_item_signals(signals, neighbors, trending)
    assert neighbors.writes == ["i:a"] and trending.writes == ["c:home"]
    nb = neighbors["i:a"]
    assert (nb.shown, nb.clicked, nb.pop) == (3.0, 1.0, 2.0)
    with pytest.raises(ValueError, match="kind"):
        apply_item_signals([ItemSignal("i:a", "nope", T0, {})], neighbors, trending)


@pytest.mark.parametrize("name", ["agents.recommend.state", "agents.recommend.candidates",
                                  "agents.recommend.decide"])
def test_docstring_examples_run(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
