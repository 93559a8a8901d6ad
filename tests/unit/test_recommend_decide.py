"""decide() for recommendations: the contract (exclusions, view throttling, K items,
ts), cold start, new items, variants, attribution, determinism and batch invariance."""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pytest

from agents.recommend.candidates import CatalogIndex
from agents.recommend.decide import (
    FEATURE_NAMES,
    RecBatchResult,
    RecConfig,
    _Scorer,
    decide,
    expire_impressions,
    make_ranker,
    state_keys,
    variant_for,
)
from agents.recommend.state import (
    ACTIONS,
    CategoryTrending,
    ItemNeighbors,
    UserState,
    apply_item_signals,
)
from replay.generator import TrafficGenerator

T0 = 1_700_000_000_000
MODEL = RecConfig(variants=("ranker",))


class World:
    """A small synthetic shop and the state decide() keeps, run as the agent runs it."""

    def __init__(self, seed: int = 3, n_items: int = 240, n_users: int = 150) -> None:
        self.gen = TrafficGenerator(seed=seed, start_ts_ms=T0, rates={"clickstream": 20.0},
                                    n_items=n_items, n_users=n_users)
        self.index = CatalogIndex()
        self.users: dict[str, UserState] = {}
        self.neighbors: dict[str, ItemNeighbors] = {}
        self.trending: dict[str, CategoryTrending] = {}

    def clicks(self, n: int) -> list[dict[str, Any]]:
        out = []
        for event in self.gen:
            if event.topic == "catalog":
                self.index[event.key] = event.value
                continue
            out.append(event.value)
            if len(out) == n:
                return out
        raise AssertionError("generator ran dry")

    def run(self, events: list[dict[str, Any]], batch: int = 100, ranker: Any = None,
            config: RecConfig = MODEL) -> list[RecBatchResult]:
        results = []
        for start in range(0, len(events), batch):
            chunk = events[start:start + batch]
            result = decide(chunk, self.users, self.neighbors, self.trending, self.index,
                            ranker, now_ms=chunk[-1]["ts"], config=config)
            apply_item_signals(result.signals, self.neighbors, self.trending)
            results.append(result)
        return results


@pytest.fixture(scope="module")
def warm() -> World:
    world = World()
    world.run(world.clicks(3000))
    return world


def fresh(warm: World) -> World:
    return copy.deepcopy(warm)


def published(results: list[RecBatchResult], events: list[dict[str, Any]], batch: int = 100
              ) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    for n, result in enumerate(results):
        for pos, record in result.recommendations:
            yield events[n * batch + pos], record


def click(user: str, item: str, ts: int, etype: str = "click", n: int = 0,
          session: str = "s1") -> dict[str, Any]:
    return {"event_id": f"{user}-{ts}-{etype}-{n}", "user_id": user, "session_id": session,
            "item_id": item, "event_type": etype, "ts": ts}


def test_records_follow_the_contract(warm: World) -> None:
    world = fresh(warm)
    events = world.clicks(2000)
    results = world.run(events)
    purchased: dict[str, set[str]] = {}
    positions = {id(e): n for n, e in enumerate(events)}
    pairs = list(published(results, events))
    assert len(pairs) > 1000
    for event, record in pairs:
        items = [i["item_id"] for i in record["items"]]
        assert record["user_id"] == event["user_id"] and record["ts"] == event["ts"]
        assert len(items) == MODEL.k == len(set(items))
        assert event["item_id"] not in items  # the item just acted on
        if event["event_type"] == "purchase":
            purchased.setdefault(event["user_id"], set()).add(event["item_id"])
        assert not set(items) & purchased.get(event["user_id"], set())
        scores = [i["score"] for i in record["items"]]
        assert all(0.0 <= s <= 1.0 for s in scores)
        assert scores[:-1] == sorted(scores[:-1], reverse=True)  # best first (bar exploration)
        assert positions[id(event)] >= 0
    # every action publishes
    acted = {id(e) for e in events if e["event_type"] in ACTIONS}
    assert acted <= {id(e) for e, _ in pairs}
    json.dumps([r for _, r in pairs])  # plain JSON values


def test_purchases_earlier_than_the_batch_are_excluded_too(warm: World) -> None:
    world = fresh(warm)
    t = world.trending["c:*"].newest
    top = [i for i, _ in world.trending["c:*"].top(3, t)]
    events = [click("buyer", item, t + n * 10, "purchase", n) for n, item in enumerate(top)]
    world.run(events)
    result = world.run([click("buyer", top[0], t + 5_000, "view")])[0]
    assert result.recommendations
    for _, record in result.recommendations:
        assert not {i["item_id"] for i in record["items"]} & set(top)


def test_views_publish_at_most_once_per_refresh_interval() -> None:
    world = World()
    world.clicks(1)  # the catalog
    item = next(iter(world.index))
    ts = [0, 500, 999, 1000, 1100, 1500, 2099, 2100]
    kinds = ["view", "view", "view", "view", "click", "view", "view", "view"]
    events = [click("u", item, T0 + t, k, n) for n, (t, k) in enumerate(zip(ts, kinds,
                                                                           strict=True))]
    (result,) = world.run(events)
    assert [p for p, _ in result.recommendations] == [0, 3, 4, 7]
    assert result.throttled == [1, 2, 5, 6]
    assert world.users["u"].n_events == len(events)  # throttled views still update state


def test_cold_start_users_get_k_trending_items_in_context(warm: World) -> None:
    world = fresh(warm)
    t = world.trending["c:*"].newest
    category = "books"
    item = world.trending[f"c:{category}"].top(1, t)[0][0]
    result = world.run([click("newcomer", item, t + 1)])[0]
    ((pos, record),) = result.recommendations
    assert result.cold == [0] and record["model"] == "trending@1"
    items = [i["item_id"] for i in record["items"]]
    assert len(items) == MODEL.k and item not in items
    in_context = [world.index.info[i].category == category for i in items]
    assert sum(in_context[:MODEL.k - MODEL.explore_slots]) >= 6  # its category first
    # with no trending at all (a fresh system), the catalog still fills K
    empty = World()
    empty.clicks(1)
    result = empty.run([click("first", next(iter(empty.index)), T0)])[0]
    assert len(result.recommendations[0][1]["items"]) == MODEL.k


def test_a_new_catalog_item_gets_shown(warm: World) -> None:
    world = fresh(warm)
    t = world.trending["c:*"].newest
    hot = world.trending["c:home_kitchen"].top(5, t)
    base = world.index[hot[0][0]]
    world.index["item-brand-new"] = dict(base, item_id="item-brand-new",
                                         title=base["title"] + " Mk2", ts=t)
    users = [u for u in world.users if world.users[u].n_events > 3][:25]
    events = [click(u, hot[n % len(hot)][0], t + 1000 * n, "click", n)
              for n, u in enumerate(users * 2)]
    results = world.run(events, batch=1)
    shown = [n for n, r in enumerate(results)
             if any(i["item_id"] == "item-brand-new" for _, rec in r.recommendations
                    for i in rec["items"])]
    assert shown and shown[0] < 20, shown
    assert world.neighbors["i:item-brand-new"].shown >= 1  # the bandit counted it


def test_variants_are_stable_balanced_and_recorded(warm: World) -> None:
    variants = ("ranker", "popularity")
    users = [f"u-{n}" for n in range(10_000)]
    first = [variant_for(u, variants) for u in users]
    assert first == [variant_for(u, variants) for u in users]
    share = Counter(first)["ranker"] / len(users)
    assert 0.47 < share < 0.53
    world = fresh(warm)
    t = world.trending["c:*"].newest
    item = next(iter(world.trending["c:*"].top(1, t)))[0]
    regulars = [u for u in world.users if world.users[u].n_events > 2][:40]
    events = [click(u, item, t + n) for n, u in enumerate(regulars)]
    results = world.run(events, config=RecConfig())
    for event, record in published(results, events):
        expected = ("popularity@1" if variant_for(event["user_id"], variants) == "popularity"
                    else "recommend_heuristic@1")
        assert record["model"] == expected


def test_a_click_on_a_shown_item_is_a_positive_and_expiry_a_negative(warm: World) -> None:
    world = fresh(warm)
    t = world.trending["c:*"].newest + 1000
    uid = next(u for u in world.users if world.users[u].n_events > 3)
    item = world.users[uid].recent[-1][0]
    first = world.run([click(uid, item, t, "click", 1)])[0]
    shown = first.recommendations[0][1]["items"]
    target = shown[2]["item_id"]
    later = world.run([click(uid, target, t + 60_000, "click", 2)])[0]
    positives = [e for e in later.examples if e["label"] == 1.0]
    assert len(positives) == 1
    ex = positives[0]
    assert ex["example_id"] == f"{uid}-{t}-click-1:{target}"
    assert ex["entity_id"] == uid and ex["model"] == "recommend"
    assert ex["decided_by"] == "recommend_heuristic@1"
    assert ex["event_ts"] == t and ex["ts"] == t + 60_000
    assert ex["score"] == pytest.approx(shown[2]["score"])
    assert list(ex["features"]) == list(FEATURE_NAMES)
    # the rest of what was shown expires unclicked: negatives, labelled when the window ends
    gone = t + 60_000 + MODEL.attribution_ms + 1
    expired = world.run([click(uid, item, gone, "view", 3)])[0].examples
    negatives = {e["example_id"].split(":")[1]: e for e in expired if e["label"] == 0.0}
    assert {i["item_id"] for i in shown} - {target} <= set(negatives)
    assert all(e["ts"] == e["event_ts"] + MODEL.attribution_ms for e in negatives.values())
    # a sweep does the same for users who went quiet
    world.run([click(uid, item, gone + 10, "click", 4)])
    sweep = expire_impressions(world.users, [uid], gone + 10 + MODEL.attribution_ms + 1)
    assert len(sweep) >= MODEL.k and not world.users[uid].impressions


def test_a_redelivered_event_changes_nothing(warm: World) -> None:
    world = fresh(warm)
    events = world.clicks(50)
    world.run(events)
    before = {u: s.to_dict() for u, s in world.users.items()}
    again = world.run(events[-10:])[0]
    assert again.repeats == list(range(10)) and not again.recommendations
    assert {u: s.to_dict() for u, s in world.users.items()} == before


def test_batch_of_one_repeated_equals_one_batch(warm: World) -> None:
    events = fresh(warm).clicks(300)  # the same events for both runs
    one, many = fresh(warm), fresh(warm)
    ranker = trained_ranker()
    r1 = decide(events, one.users, one.neighbors, one.trending, one.index, ranker,
                now_ms=0, config=MODEL, rng_seed=5)
    rn = [decide([e], many.users, many.neighbors, many.trending, many.index, ranker,
                 now_ms=0, config=MODEL, rng_seed=5) for e in events]
    assert r1.recommendations == [(n, rec) for n, r in enumerate(rn)
                                  for _, rec in r.recommendations]
    assert r1.examples == [e for r in rn for e in r.examples]
    assert r1.throttled == [n for n, r in enumerate(rn) if r.throttled]
    assert {u: s.to_dict() for u, s in one.users.items()} == \
        {u: s.to_dict() for u, s in many.users.items()}
    apply_item_signals(r1.signals, one.neighbors, one.trending)
    apply_item_signals([s for r in rn for s in r.signals], many.neighbors, many.trending)
    t = events[-1]["ts"] + 1
    assert set(one.neighbors) == set(many.neighbors)
    for key, nb in one.neighbors.items():
        other = many.neighbors[key]
        assert nb.popularity(t) == pytest.approx(other.popularity(t))
        assert dict(nb.top(50)) == pytest.approx(dict(other.top(50)))
        assert (nb.shown, nb.clicked) == (other.shown, other.clicked)
    for key, tr in one.trending.items():
        assert dict(tr.top(200, t)) == pytest.approx(dict(many.trending[key].top(200, t)))


def test_same_inputs_and_seed_same_output(warm: World) -> None:
    events = fresh(warm).clicks(200)
    a, b = fresh(warm), fresh(warm)
    ra = a.run(events, batch=200)[0]
    rb = b.run(events, batch=200)[0]
    assert ra.recommendations == rb.recommendations and ra.examples == rb.examples
    assert [s.to_dict() for s in ra.signals] == [s.to_dict() for s in rb.signals]


def trained_ranker() -> Any:
    ranker = make_ranker(seed=1)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, len(FEATURE_NAMES)))
    y = X[:, 0] + X[:, 3] - X[:, 11] > 0
    ranker.learn(X, y)
    return ranker


def test_vectorised_scoring_equals_the_river_scorer() -> None:
    ranker = trained_ranker()
    X = np.random.default_rng(1).normal(size=(200, len(FEATURE_NAMES))).astype(np.float32)
    X[0, :] = 1e6  # saturates like River's sigmoid
    fast = _Scorer(ranker)
    assert fast.linear is not None and fast.model_id == "recommend_ranker@0"
    np.testing.assert_allclose(fast.score(X), ranker.score(X), rtol=0, atol=1e-9)


def test_a_ranker_decides_when_given_and_the_heuristic_when_it_fails(warm: World) -> None:
    world = fresh(warm)
    events = world.clicks(200)
    results = world.run(events, ranker=trained_ranker())
    models = Counter(rec["model"] for r in results for _, rec in r.recommendations)
    assert set(models) <= {"recommend_ranker@0", "trending@1"}
    assert models["recommend_ranker@0"] > 100
    assert all(r.fallback_reason is None for r in results)

    class Broken:
        name, version, kind, feature_names = "broken", "2", "test", FEATURE_NAMES
        model_id = "broken@2"

        def score(self, X: Any) -> Any:
            raise RuntimeError("bad artefact")

    (result,) = world.run(world.clicks(50), ranker=Broken())
    assert result.fallback_reason is not None and "bad artefact" in result.fallback_reason
    models = Counter(rec["model"] for _, rec in result.recommendations)
    assert set(models) <= {"recommend_heuristic@1", "trending@1"}
    assert all(len(rec["items"]) == MODEL.k for _, rec in result.recommendations)


def test_an_item_missing_from_the_catalog_still_gets_k_items(warm: World) -> None:
    world = fresh(warm)
    t = world.trending["c:*"].newest
    uid = next(u for u in world.users if world.users[u].n_events > 3)
    (result,) = world.run([click(uid, "item-unknown", t + 1), click("nobody", "item-x", t + 2)])
    assert [len(rec["items"]) for _, rec in result.recommendations] == [MODEL.k, MODEL.k]


class Recording(dict[str, Any]):
    """A mapping that records the keys read (and found)."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.found: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        value = super().get(key, default)
        if value is not None:
            self.found.add(key)
        return value


def test_state_keys_name_everything_decide_reads(warm: World) -> None:
    world = fresh(warm)
    events = world.clicks(200)
    before = copy.deepcopy(world.users)
    first = state_keys(events, before, world.index)
    fetched_n = {k: v for k, v in world.neighbors.items() if k in first}
    fetched_t = {k: v for k, v in world.trending.items() if k in first}
    second = state_keys(events, before, world.index, fetched_n, fetched_t)
    assert not set(first) & set(second)
    neighbors, trending = Recording(world.neighbors), Recording(world.trending)
    decide(events, world.users, neighbors, trending, world.index, None, now_ms=0,
           config=RecConfig())
    wanted = set(first) | set(second)
    assert neighbors.found | trending.found <= wanted
    assert len(wanted) < len(world.neighbors) + len(world.trending)


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="variants"):
        RecConfig(variants=("ranker", "random"))
    with pytest.raises(ValueError, match="explore_slots"):
        RecConfig(k=2, explore_slots=2)
