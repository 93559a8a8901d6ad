"""Candidates for a user's next top-K and the ranker's features, pure.

Candidate sources (an item found by several keeps the first of this order):

- ``covisit``: co-visitation neighbours of the item just touched, then of the
  session's previous items;
- ``history``: the user's recent items (purchased ones never come back);
- ``trending``: trending in the category of the item just touched;
- ``affinity``: trending in the user's strongest other categories;
- ``content``: catalog items like the one just touched (same category, close price,
  shared title words) that nobody has clicked yet: how new items enter;
- ``explore``: a few random items among the content neighbours and the trending tail
  of the current category, the pool of the bandit's slot;
- ``fill``: shop-wide trending, then the catalog, when the others find too few.

:data:`FEATURE_NAMES` are the ranker's columns, computed by :func:`features` from the
user's context, item state and trending, all read-only here. :func:`item_signals`
says what events contribute to that item and category state.

>>> index = CatalogIndex([
...     {"item_id": "a", "title": "Red Mug", "category": "home", "price": 9.0, "ts": 0},
...     {"item_id": "b", "title": "Blue Mug", "category": "home", "price": 10.0, "ts": 0},
...     {"item_id": "c", "title": "Oak Table", "category": "home", "price": 300.0, "ts": 0}])
>>> index.similar("a", 2), index.by_category["home"]
(['b', 'c'], ['a', 'b', 'c'])
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from agents.recommend.state import (
    EVENT_WEIGHTS,
    GLOBAL_TRENDING,
    MINUTE_MS,
    CategoryTrending,
    ItemNeighbors,
    ItemSignal,
    UserState,
    advance_session,
)

__all__ = ["FEATURE_NAMES", "CandidateLimits", "CatalogIndex", "Context", "ItemInfo",
           "SignalAccumulator", "as_index", "build_context", "event_signals", "features",
           "fill", "generate", "item_signals"]

#: The ranker's feature columns, in order.
FEATURE_NAMES: tuple[str, ...] = (
    "covisit",             # share of the current item's co-visits that went to the candidate
    "covisit_session",     # the same from the session's earlier items, nearer ones weigh more
    "popularity",          # log1p of the item's decayed popularity
    "category_share",      # the item's share of its category's trending window
    "log_category_share",  # log of it (popularity within a category is a power law)
    "same_category",       # 1 if in the category of the item just touched
    "affinity",            # the user's decayed share of interest in the item's category
    "log_affinity",
    "session_share",       # share of this session's items in the item's category
    "recency",             # exp(-age / 10 min) of the user's last event on the item, else 0
    "seen",                # log1p of the user's recent events on the item
    "price_gap",           # |log price ratio| to the item just touched
    "price_band",          # |log price - the user's usual log price|
    "title_overlap",       # Jaccard of title words with the item just touched
    "is_new",              # 1 if nobody has clicked it (no popularity yet)
    "bandit_ctr",          # (attributed clicks + 1) / (impressions + 2)
)
_RECENCY_MS = 10 * MINUTE_MS


class ItemInfo(NamedTuple):
    category: str
    log_price: float
    tokens: frozenset[str]


def _info(record: Mapping[str, Any]) -> ItemInfo:
    price = float(record.get("price") or 0.0)
    return ItemInfo(str(record.get("category", "")), math.log(max(price, 0.01)),
                    frozenset(str(record.get("title", "")).lower().split()))


class CatalogIndex(MutableMapping[str, Mapping[str, Any]]):
    """The catalog (item id -> ``catalog`` record) with what candidates need: items by
    category (in order of arrival), parsed prices and title words, and content
    neighbours (cached per item; a new, moved or deleted item clears its category's).

    Keep one per worker, fed by the ``catalog`` topic (a tombstone is ``del``), and pass
    it to ``decide``; a plain mapping works too but is indexed again on every call.
    """

    SIMILAR = 20

    def __init__(self, records: Iterable[Mapping[str, Any]] = ()) -> None:
        self._records: dict[str, Mapping[str, Any]] = {}
        self.info: dict[str, ItemInfo] = {}
        self.by_category: dict[str, list[str]] = {}
        self._similar: dict[str, list[str]] = {}
        for record in records:
            self[str(record["item_id"])] = record

    def __getitem__(self, item_id: str) -> Mapping[str, Any]:
        return self._records[item_id]

    def __setitem__(self, item_id: str, record: Mapping[str, Any]) -> None:
        info = _info(record)
        old = self.info.get(item_id)
        self._records[item_id] = record
        self.info[item_id] = info
        if old is not None and old.category == info.category:
            return  # a re-priced item keeps its place (and the cached neighbours)
        if old is not None:
            self._drop(item_id, old.category)
        self.by_category.setdefault(info.category, []).append(item_id)
        self._forget(info.category)

    def __delitem__(self, item_id: str) -> None:
        del self._records[item_id]
        old = self.info.pop(item_id)
        self._drop(item_id, old.category)

    def _drop(self, item_id: str, category: str) -> None:
        members = self.by_category[category]
        members.remove(item_id)
        if not members:
            del self.by_category[category]
        self._forget(category)

    def _forget(self, category: str) -> None:
        if not self._similar:
            return
        for other in self.by_category.get(category, ()):
            self._similar.pop(other, None)

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)

    def similar(self, item_id: str, n: int) -> list[str]:
        """Up to ``n`` items of the same category, most alike first (title words, price)."""
        cached = self._similar.get(item_id)
        if cached is None:
            me = self.info.get(item_id)
            if me is None:
                return []
            scored = []
            for other in self.by_category.get(me.category, ()):
                if other == item_id:
                    continue
                o = self.info[other]
                union = len(me.tokens | o.tokens) or 1
                sim = (0.6 * len(me.tokens & o.tokens) / union
                       + 0.4 * math.exp(-abs(me.log_price - o.log_price)))
                scored.append((-sim, other))
            scored.sort()
            cached = self._similar[item_id] = [other for _, other in scored[:self.SIMILAR]]
        return cached[:n]


def as_index(catalog: Mapping[str, Mapping[str, Any]]) -> CatalogIndex:
    return catalog if isinstance(catalog, CatalogIndex) else CatalogIndex(catalog.values())


@dataclass(frozen=True, slots=True)
class CandidateLimits:
    """How many candidates each source may bring."""

    covisit: int = 12           # neighbours of the item just touched
    session_items: int = 2      # earlier session items whose neighbours count
    covisit_session: int = 6    # neighbours of each of those
    history: int = 6
    trending: int = 12
    affinity_categories: int = 2
    affinity: int = 5
    content: int = 3
    explore: int = 4            # random picks for the bandit's pool...
    explore_tail: int = 20      # ...among content neighbours and this much trending tail
    minimum: int = 20           # below this, ``fill`` tops up


@dataclass(slots=True)
class Context:
    """What the features of one publication need, computed once per event."""

    user: UserState
    item_id: str
    info: ItemInfo | None
    ts: int
    affinity: dict[str, float]
    session_cats: dict[str, float]
    recent: dict[str, tuple[int, int]]  # item -> (last ts, events)
    covisit: dict[str, float]
    covisit_session: dict[str, float]


def build_context(user: UserState, item_id: str, ts: int, index: CatalogIndex,
                  neighbors: Mapping[str, ItemNeighbors], limits: CandidateLimits) -> Context:
    """The context of ``user`` right after their event on ``item_id`` at ``ts``."""
    info = index.info.get(item_id)
    recent: dict[str, tuple[int, int]] = {}
    for r_item, r_ts, _ in user.recent:
        last = recent.get(r_item)
        recent[r_item] = (r_ts, 1) if last is None else (max(last[0], r_ts), last[1] + 1)
    session_cats: dict[str, float] = {}
    items = user.session_items
    for s_item in items:
        s_info = index.info.get(s_item)
        if s_info is not None:
            session_cats[s_info.category] = session_cats.get(s_info.category, 0.0) + 1.0
    for cat in session_cats:
        session_cats[cat] /= len(items)
    nb = neighbors.get("i:" + item_id)
    covisit = dict(nb.top(limits.covisit)) if nb is not None else {}
    covisit_session: dict[str, float] = {}
    earlier = [i for i in reversed(items) if i != item_id][:limits.session_items]
    for d, other in enumerate(earlier):
        onb = neighbors.get("i:" + other)
        if onb is None:
            continue
        for k, share in onb.top(limits.covisit_session):
            covisit_session[k] = covisit_session.get(k, 0.0) + share / (1 + d)
    return Context(user, item_id, info, ts, user.affinity_shares(), session_cats, recent,
                   covisit, covisit_session)


def _add(out: dict[str, str], items: Iterable[str], source: str, user: UserState,
         current: str, limit: int | None = None) -> None:
    for item_id in items:
        if limit is not None and len(out) >= limit:
            return
        if item_id not in out and item_id != current and not user.has_purchased(item_id):
            out[item_id] = source


def generate(ctx: Context, neighbors: Mapping[str, ItemNeighbors],
             trending: Mapping[str, CategoryTrending], index: CatalogIndex,
             limits: CandidateLimits, rng: random.Random) -> dict[str, str]:
    """Candidate item -> source, in a deterministic order; never the item just touched,
    a purchased item, or an item missing from the catalog."""
    user, cur, ts = ctx.user, ctx.item_id, ctx.ts
    out: dict[str, str] = {}
    _add(out, ctx.covisit, "covisit", user, cur)
    _add(out, ctx.covisit_session, "covisit", user, cur)
    _add(out, list(reversed(ctx.recent))[:limits.history], "history", user, cur)
    category = ctx.info.category if ctx.info is not None else None
    if category is not None:
        t = trending.get("c:" + category)
        if t is not None:
            _add(out, (i for i, _ in t.top(limits.trending, ts)), "trending", user, cur)
    favourites = sorted((c for c in ctx.affinity if c != category),
                        key=lambda c: (-ctx.affinity[c], c))[:limits.affinity_categories]
    for fav in favourites:
        t = trending.get("c:" + fav)
        if t is not None:
            _add(out, (i for i, _ in t.top(limits.affinity, ts)), "affinity", user, cur)
    if category is not None:
        similar = index.similar(cur, CatalogIndex.SIMILAR)
        fresh = [i for i in similar if _is_new(neighbors.get("i:" + i))]
        _add(out, fresh[:limits.content], "content", user, cur)
        t = trending.get("c:" + category)
        tail = [] if t is None else t.top(limits.trending + limits.explore_tail, ts)
        pool = similar + [i for i, _ in tail[limits.trending:]]
        _add(out, rng.sample(pool, min(limits.explore, len(pool))), "explore", user, cur)
    if len(out) < limits.minimum:
        fill(out, limits.minimum, user, cur, category, trending, index, ts)
    for item_id in [i for i in out if i not in index.info]:
        del out[item_id]
    return out


def fill(out: dict[str, str], n: int, user: UserState, current: str, category: str | None,
         trending: Mapping[str, CategoryTrending], index: CatalogIndex, ts: int) -> None:
    """Top ``out`` up to ``n`` items: shop-wide trending, the category's items, then any."""
    g = trending.get(GLOBAL_TRENDING)
    if g is not None:
        _add(out, (i for i, _ in g.top(2 * n, ts) if i in index.info), "fill", user, current, n)
    if category is not None:
        _add(out, index.by_category.get(category, [])[:2 * n], "fill", user, current, n)
    _add(out, index, "fill", user, current, n)


def _is_new(nb: ItemNeighbors | None) -> bool:
    return nb is None or nb.pop <= 0.0


def features(ctx: Context, items: Sequence[str], neighbors: Mapping[str, ItemNeighbors],
             trending: Mapping[str, CategoryTrending], index: CatalogIndex) -> np.ndarray:
    """A float32 matrix: one row of :data:`FEATURE_NAMES` per item (items must be in the
    catalog). This runs for every candidate of every publication: per-category values
    are computed once per call, and item state is read inline."""
    ts = ctx.ts
    me = ctx.info
    my_cat, my_lp, my_tokens = me if me is not None else (None, 0.0, frozenset())
    user_lp = ctx.user.log_price
    aff, sess, recent = ctx.affinity, ctx.session_cats, ctx.recent
    cov, cov_s = ctx.covisit.get, ctx.covisit_session.get
    info, nget = index.info, neighbors.get
    inv_half = 1.0 / ItemNeighbors.POPULARITY_HALF_LIFE_MS
    log, log1p, exp = math.log, math.log1p, math.exp
    per_cat: dict[str, tuple[Any, float, float, float, float, float]] = {}
    flat: list[float] = []
    extend = flat.extend
    for item_id in items:
        cat, lp, tokens = info[item_id]
        c = per_cat.get(cat)
        if c is None:
            t = trending.get("c:" + cat)
            scores, total = t.snapshot(ts) if t is not None else ({}, 0.0)
            a = aff.get(cat, 0.0)
            c = per_cat[cat] = (scores.get, 1.0 / total if total > 0 else 0.0,
                                1.0 if cat == my_cat else 0.0, a, log(a + 1e-2),
                                sess.get(cat, 0.0))
        score_of, inv_total, same, a, log_a, session_share = c
        share = score_of(item_id, 0.0) * inv_total
        nb = nget("i:" + item_id)
        if nb is None:
            pop, new, ctr = 0.0, 1.0, 0.5
        else:
            p, d = nb.pop, nb.pop_ts - ts
            pop = log1p(p * 2.0 ** (d * inv_half) if d < 0 else p)
            new = 0.0 if p > 0.0 else 1.0
            ctr = (nb.clicked + 1.0) / (nb.shown + 2.0)
        seen = recent.get(item_id)
        if seen is None:
            recency = n_seen = 0.0
        else:
            recency = exp(-max(ts - seen[0], 0) / _RECENCY_MS)
            n_seen = log1p(seen[1])
        # titles of other categories share only adjectives and colours
        overlap = (len(my_tokens & tokens) / (len(my_tokens | tokens) or 1)) if same else 0.0
        extend((cov(item_id, 0.0), cov_s(item_id, 0.0), pop, share, log(share + 1e-3), same,
                a, log_a, session_share, recency, n_seen, abs(lp - my_lp) if me else 0.0,
                abs(lp - user_lp) if user_lp is not None else 0.0, overlap, new, ctr))
    return np.array(flat, dtype=np.float32).reshape(len(items), len(FEATURE_NAMES))


# -- what events contribute to the sources (item- and category-keyed state) ----------

class SignalAccumulator:
    """Signals of a batch, summed per (key, kind) (and per bucket for trending), in order
    of first contribution. A signal's weights are valued at its ``ts`` (its first
    event's): later contributions are decayed to it with the state's half-life, so one
    signal for N events applies as N signals would."""

    _HALF_LIFE = {"covisit": ItemNeighbors.COVISIT_HALF_LIFE_MS,
                  "popularity": ItemNeighbors.POPULARITY_HALF_LIFE_MS}

    def __init__(self) -> None:
        self._by: dict[tuple[str, str, int], ItemSignal] = {}

    def add(self, key: str, kind: str, sub: str, weight: float, ts: int) -> None:
        slot = (key, kind, ts // CategoryTrending.BUCKET_MS if kind == "trending" else 0)
        s = self._by.get(slot)
        if s is None:
            s = self._by[slot] = ItemSignal(key, kind, ts)
        elif ts != s.ts and kind in self._HALF_LIFE:
            weight *= 2.0 ** ((ts - s.ts) / self._HALF_LIFE[kind])
        s.weights[sub] = s.weights.get(sub, 0.0) + weight

    def signals(self) -> list[ItemSignal]:
        return list(self._by.values())


#: Co-visits count with the last this-many distinct items of the session, the nearest most.
COVISIT_SPAN = 5


def event_signals(acc: SignalAccumulator, item_id: str, event_type: str, ts: int,
                  category: str | None, session_items: Sequence[str]) -> None:
    """Add one event's contribution. ``session_items``: the session's distinct items
    *before* the event. Co-visits are counted once per visit (not again for the click,
    cart and purchase that follow a view of the same item)."""
    w = EVENT_WEIGHTS.get(event_type, 1.0)
    key = "i:" + item_id
    acc.add(key, "popularity", item_id, w, ts)
    if category is not None:
        acc.add("c:" + category, "trending", item_id, w, ts)
        acc.add(GLOBAL_TRENDING, "trending", item_id, w, ts)
    if session_items and session_items[-1] != item_id:
        d = 0
        for other in reversed(session_items):
            if other == item_id:
                continue
            cw = 1.0 / (1 + d)
            acc.add(key, "covisit", other, cw, ts)
            acc.add("i:" + other, "covisit", item_id, cw, ts)
            d += 1
            if d >= COVISIT_SPAN:
                break


def item_signals(events: Sequence[Mapping[str, Any]], users: Mapping[str, UserState],
                 catalog: Mapping[str, Mapping[str, Any]]) -> list[ItemSignal]:
    """What ``events`` (clickstream values, in order) contribute to item and category
    state, given ``users`` as they were *before* the batch (not modified here).

    :func:`agents.recommend.decide.decide` computes the same signals itself (plus the
    bandit's) and returns them: an agent that calls ``decide`` needs not call this.
    """
    acc = SignalAccumulator()
    sessions: dict[str, tuple[str, list[str]]] = {}
    for ev in events:
        uid, item_id = ev["user_id"], ev["item_id"]
        known = sessions.get(uid)
        if known is None:
            u = users.get(uid)
            known = (u.session_id, u.session_items) if u is not None else ("", [])
        sid, items = known
        ev_sid = ev["session_id"]
        rec = catalog.get(item_id)
        category = None if rec is None else rec.get("category")
        event_signals(acc, item_id, ev["event_type"], int(ev["ts"]), category,
                      items if ev_sid == sid else ())
        sessions[uid] = (ev_sid, advance_session(sid, items, ev_sid, item_id,
                                                 UserState.SESSION_CAP))
    return acc.signals()
