"""Recommendation state per user, per item and per category: bounded, JSON-only.

Each class has ``to_dict``/``from_dict`` (str, int, float, None, list and dict only; lists
keep order, so any JSON codec round-trips them exactly):

- :class:`UserState` (key user id): recent and session items, decayed category
  affinities, purchases, the last publication (view throttling), recent event ids
  (idempotence), and the open impressions that wait for a click (attribution);
- :class:`ItemNeighbors` (key ``"i:<item_id>"``): decayed co-visitation neighbours
  (the strongest ``CAP``), decayed popularity, the bandit's counters;
- :class:`CategoryTrending` (key ``"c:<category>"``, ``"c:*"`` for the whole shop):
  item scores over an event-time window.

Item and category state changes only through :func:`apply_item_signals`, from the
``signals`` that :func:`agents.recommend.decide.decide` returns; deciding only reads it.
Decay: a weight added at ``ts`` is stored scaled by ``2 ** ((ts - ref) / half_life)``,
so every entry decays alike and ranks and shares need no clock.

>>> nb = ItemNeighbors()
>>> nb.add_covisit("b", 1.0, 0); nb.add_covisit("c", 3.0, 0)
>>> nb.top(2)
[('c', 0.75), ('b', 0.25)]
>>> ItemNeighbors.from_dict(nb.to_dict()).to_dict() == nb.to_dict()
True
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ACTIONS", "DAY_MS", "EVENT_WEIGHTS", "GLOBAL_TRENDING", "HOUR_MS", "MINUTE_MS",
    "CategoryTrending", "ItemNeighbors", "ItemSignal", "UserState", "advance_session",
    "apply_item_signals",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: How much each event type says about interest (popularity, trending, affinity).
EVENT_WEIGHTS: Mapping[str, float] = {"view": 1.0, "click": 2.0, "add_to_cart": 3.0,
                                      "purchase": 4.0}
#: Event types that act on an item: they publish, and they attribute impressions.
ACTIONS = frozenset({"click", "add_to_cart", "purchase"})
GLOBAL_TRENDING = "c:*"
_VERSION = 1
_REBASE_AT = 40.0  # halvings before scaled weights are brought back near 1
# An impression: [item_id, slot, source, shown_ts, variant, features, score, model, event_id]
IMP_ITEM, IMP_TS, IMP_FEATURES, IMP_SCORE = 0, 3, 5, 6


def _shown_ts(imp: list[Any]) -> int:
    return int(imp[IMP_TS])


def _check(d: Mapping[str, Any], name: str) -> None:
    if d.get("v") != _VERSION:
        raise ValueError(f"unknown {name} version {d.get('v')!r}")


def _keep_top(d: dict[str, float], n: int) -> None:
    """Keep the ``n`` largest values of ``d`` (ties: smaller key first), in place."""
    keep = set(heapq.nsmallest(n, d, key=lambda k: (-d[k], k)))
    for k in [k for k in d if k not in keep]:
        del d[k]


class ItemNeighbors:
    """One item: co-visited items with time-decayed weights, popularity, bandit counts.

    Co-visitation keeps the strongest ``CAP`` neighbours (up to 1.5 × ``CAP`` between
    trims); ``total`` keeps the mass of every co-visit ever added (decayed alike), so a
    neighbour's *share* is a conditional strength that does not depend on the clock.
    ``shown``/``clicked`` count impressions and attributed clicks (halved together
    past ``BANDIT_HALVE_AT``, so an item's click rate can change).
    """

    CAP = 50
    COVISIT_HALF_LIFE_MS = DAY_MS
    POPULARITY_HALF_LIFE_MS = HOUR_MS
    BANDIT_HALVE_AT = 2_000.0

    __slots__ = ("weights", "ref", "total", "pop", "pop_ts", "shown", "clicked", "_top")

    def __init__(self) -> None:
        self.weights: dict[str, float] = {}  # neighbour -> scaled weight
        self.ref = 0  # the time scaled weights are relative to
        self.total = 0.0
        self.pop, self.pop_ts = 0.0, 0  # decayed popularity as of pop_ts
        self.shown = self.clicked = 0.0
        self._top: list[tuple[str, float]] | None = None

    def add_covisit(self, item_id: str, weight: float, ts: int) -> None:
        if not self.weights and self.total == 0.0:
            self.ref = ts
        exponent = (ts - self.ref) / self.COVISIT_HALF_LIFE_MS
        if exponent > _REBASE_AT:
            self.weights = {k: v * 2.0 ** -exponent for k, v in self.weights.items()}
            self.total *= 2.0 ** -exponent
            self.ref, exponent = ts, 0.0
        scaled = weight * 2.0 ** exponent
        w = self.weights
        w[item_id] = w.get(item_id, 0.0) + scaled
        self.total += scaled
        if len(w) > self.CAP + self.CAP // 2:
            _keep_top(w, self.CAP)
        self._top = None

    def top(self, n: int) -> list[tuple[str, float]]:
        """The ``n`` strongest neighbours with their share of all co-visits, best first."""
        if self._top is None:
            t = self.total or 1.0
            self._top = [(k, -v / t) for v, k in sorted((-v, k) for k, v in self.weights.items())]
        return self._top[:n]

    def add_popularity(self, weight: float, ts: int) -> None:
        if ts > self.pop_ts:
            self.pop *= 2.0 ** (-(ts - self.pop_ts) / self.POPULARITY_HALF_LIFE_MS)
            self.pop_ts = ts
        self.pop += weight

    def popularity(self, now: int) -> float:
        """Decayed, weighted count of events on this item (:data:`EVENT_WEIGHTS`)."""
        if now <= self.pop_ts:
            return self.pop
        return self.pop * 2.0 ** (-(now - self.pop_ts) / self.POPULARITY_HALF_LIFE_MS)

    def add_bandit(self, shown: float, clicked: float) -> None:
        self.shown += shown
        self.clicked = min(self.clicked + clicked, self.shown)
        if self.shown > self.BANDIT_HALVE_AT:
            self.shown /= 2.0
            self.clicked /= 2.0

    def to_dict(self) -> dict[str, Any]:
        return {"v": _VERSION, "n": list(self.weights), "w": list(self.weights.values()),
                "ref": self.ref, "total": self.total, "pop": self.pop, "pop_ts": self.pop_ts,
                "shown": self.shown, "clicked": self.clicked}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ItemNeighbors:
        _check(d, "ItemNeighbors")
        nb = cls()
        nb.weights = {str(k): float(v) for k, v in zip(d["n"], d["w"], strict=True)}
        nb.ref, nb.total = int(d["ref"]), float(d["total"])
        nb.pop, nb.pop_ts = float(d["pop"]), int(d["pop_ts"])
        nb.shown, nb.clicked = float(d["shown"]), float(d["clicked"])
        return nb


class CategoryTrending:
    """Trending items of one category: weighted event counts in ``BUCKET_MS`` buckets;
    an item's score at ``now`` sums the buckets that start in ``(now - WINDOW_MS, now]``.

    Buckets that no later event can see are dropped when events arrive, and reads take
    ``now``, so a quiet category's scores still expire. Each bucket keeps its ``CAP``
    strongest items (up to 1.5 × ``CAP`` between trims).

    >>> t = CategoryTrending()
    >>> t.add("a", 2.0, 0); t.add("b", 1.0, 60_000)
    >>> t.top(5, 60_000), t.top(5, CategoryTrending.WINDOW_MS + 1)
    ([('a', 2.0), ('b', 1.0)], [])
    """

    CAP = 100
    WINDOW_MS = HOUR_MS
    BUCKET_MS = 5 * MINUTE_MS

    __slots__ = ("buckets", "newest", "_key", "_scores", "_top", "_total")

    def __init__(self) -> None:
        self.buckets: list[tuple[int, dict[str, float]]] = []  # (start, item -> weight)
        self.newest = -1
        self._key: int | None = None  # the bucket of the reads the caches below are for
        self._scores: dict[str, float] = {}
        self._top: list[tuple[str, float]] = []
        self._total = 0.0

    def add(self, item_id: str, weight: float, ts: int) -> None:
        start = ts - ts % self.BUCKET_MS
        if self.newest >= 0 and start <= self.newest - self.WINDOW_MS:
            return  # too old for any window that a later read can ask for
        bs = self.buckets
        i = len(bs)
        while i and bs[i - 1][0] > start:
            i -= 1
        if i and bs[i - 1][0] == start:
            d = bs[i - 1][1]
        else:
            d = {}
            bs.insert(i, (start, d))
        d[item_id] = d.get(item_id, 0.0) + weight
        if len(d) > self.CAP + self.CAP // 2:
            _keep_top(d, self.CAP)
        if ts > self.newest:
            self.newest = ts
            cutoff = ts - self.WINDOW_MS
            while bs and bs[0][0] <= cutoff:
                bs.pop(0)
        self._key = None

    def _refresh(self, now: int) -> None:
        key = now // self.BUCKET_MS
        if key == self._key:
            return
        low = now - self.WINDOW_MS
        scores: dict[str, float] = {}
        for start, d in self.buckets:
            if low < start <= now:
                for k, v in d.items():
                    scores[k] = scores.get(k, 0.0) + v
        self._scores = scores
        self._total = sum(scores.values())
        self._top = [(k, -v) for v, k in sorted((-v, k) for k, v in scores.items())]
        self._key = key

    def top(self, n: int, now: int) -> list[tuple[str, float]]:
        """The ``n`` best items in the window ending at ``now``, with scores, best first."""
        self._refresh(now)
        return self._top[:n]

    def score(self, item_id: str, now: int) -> float:
        self._refresh(now)
        return self._scores.get(item_id, 0.0)

    def total(self, now: int) -> float:
        self._refresh(now)
        return self._total

    def snapshot(self, now: int) -> tuple[dict[str, float], float]:
        """(item -> score, total) in the window ending at ``now``; do not modify."""
        self._refresh(now)
        return self._scores, self._total

    def to_dict(self) -> dict[str, Any]:
        return {"v": _VERSION, "newest": self.newest,
                "b": [[s, list(d), list(d.values())] for s, d in self.buckets]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CategoryTrending:
        _check(d, "CategoryTrending")
        t = cls()
        t.newest = int(d["newest"])
        t.buckets = [(int(s), {str(k): float(v) for k, v in zip(ks, vs, strict=True)})
                     for s, ks, vs in d["b"]]
        return t


def advance_session(session_id: str, items: list[str], event_session: str,
                    item_id: str, cap: int) -> list[str]:
    """The session's distinct items after an event on ``item_id`` (newest last)."""
    if event_session != session_id:
        return [item_id]
    if items and items[-1] == item_id:
        return items
    out = [i for i in items if i != item_id]
    out.append(item_id)
    return out[-cap:]


class UserState:
    """One user, as the recommendations need them (every list bounded, newest last).

    ``recent``: ``[item_id, ts, event_type]``; ``session_items``: distinct items of the
    current session; ``affinity``: category -> scaled decayed weight (shares are what
    count); ``impressions``: shown items awaiting a click, one per item (a re-shown item
    replaces its older impression), fields as the ``IMP_*`` indices say.
    """

    RECENT_CAP = 20
    SESSION_CAP = 8
    PURCHASED_CAP = 100
    IMPRESSIONS_CAP = 40
    EVENT_IDS_CAP = 32
    AFFINITY_HALF_LIFE_MS = 3 * DAY_MS

    __slots__ = ("recent", "session_id", "session_items", "affinity", "affinity_ref",
                 "purchased", "_purchased", "last_published_ts", "impressions", "event_ids",
                 "n_events", "newest", "log_price", "last_item")

    def __init__(self) -> None:
        self.recent: list[list[Any]] = []
        self.session_id = ""
        self.session_items: list[str] = []
        self.affinity: dict[str, float] = {}
        self.affinity_ref = 0
        self.purchased: list[str] = []
        self._purchased: set[str] = set()
        self.impressions: list[list[Any]] = []
        self.event_ids: list[str] = []
        self.n_events, self.newest, self.last_published_ts = 0, -1, -1
        self.log_price: float | None = None  # moving average of log(price) of touched items
        self.last_item = ""

    def has_purchased(self, item_id: str) -> bool:
        return item_id in self._purchased

    def observe(self, event_id: str, item_id: str, event_type: str, ts: int, session_id: str,
                category: str | None, log_price: float | None) -> None:
        """Add one event (after its signals and attribution were taken)."""
        self.recent.append([item_id, ts, event_type])
        if len(self.recent) > self.RECENT_CAP:
            del self.recent[0]
        self.session_items = advance_session(self.session_id, self.session_items, session_id,
                                             item_id, self.SESSION_CAP)
        self.session_id = session_id
        self.last_item = item_id
        self.event_ids.append(event_id)
        if len(self.event_ids) > self.EVENT_IDS_CAP:
            del self.event_ids[0]
        if category is not None:
            if not self.affinity:
                self.affinity_ref = ts
            exponent = (ts - self.affinity_ref) / self.AFFINITY_HALF_LIFE_MS
            if exponent > _REBASE_AT:
                f = 2.0 ** -exponent
                self.affinity = {k: v * f for k, v in self.affinity.items()}
                self.affinity_ref, exponent = ts, 0.0
            self.affinity[category] = (self.affinity.get(category, 0.0)
                                       + EVENT_WEIGHTS.get(event_type, 1.0) * 2.0 ** exponent)
        if log_price is not None:
            lp = self.log_price
            self.log_price = log_price if lp is None else lp + 0.2 * (log_price - lp)
        if event_type == "purchase" and item_id not in self._purchased:
            self.purchased.append(item_id)
            self._purchased.add(item_id)
            if len(self.purchased) > self.PURCHASED_CAP:
                self._purchased.discard(self.purchased.pop(0))
        self.n_events += 1
        self.newest = max(self.newest, ts)

    def affinity_shares(self) -> dict[str, float]:
        """Category -> share of the user's decayed interest (sums to 1; empty if none)."""
        total = sum(self.affinity.values())
        return {k: v / total for k, v in self.affinity.items()} if total > 0 else {}

    def take_impression(self, item_id: str) -> list[Any] | None:
        """Remove and return the open impression of ``item_id``, if any."""
        for i, imp in enumerate(self.impressions):
            if imp[IMP_ITEM] == item_id:
                return self.impressions.pop(i)
        return None

    def expire_impressions(self, cutoff: int) -> list[list[Any]]:
        """Remove and return the impressions shown before ``cutoff`` (kept in time order)."""
        imps = self.impressions
        n = 0
        while n < len(imps) and imps[n][IMP_TS] < cutoff:
            n += 1
        expired = imps[:n]
        del imps[:n]
        return expired

    def add_impressions(self, new: Sequence[list[Any]]) -> list[list[Any]]:
        """Open ``new`` impressions; returns those evicted (oldest first) past the cap."""
        items = {imp[IMP_ITEM] for imp in new}
        kept = [imp for imp in self.impressions if imp[IMP_ITEM] not in items]
        late = bool(kept and new and new[0][IMP_TS] < kept[-1][IMP_TS])
        kept.extend(new)
        if late:
            kept.sort(key=_shown_ts)
        over = len(kept) - self.IMPRESSIONS_CAP
        self.impressions = kept[over:] if over > 0 else kept
        return kept[:over] if over > 0 else []

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": _VERSION, "recent": [list(r) for r in self.recent], "session": self.session_id,
            "session_items": list(self.session_items), "aff": list(self.affinity),
            "aff_w": list(self.affinity.values()), "aff_ref": self.affinity_ref,
            "purchased": list(self.purchased), "last_pub": self.last_published_ts,
            "imps": [[*imp[:IMP_FEATURES], list(imp[IMP_FEATURES]), *imp[IMP_SCORE:]]
                     for imp in self.impressions],
            "event_ids": list(self.event_ids), "n": self.n_events, "newest": self.newest,
            "log_price": self.log_price, "last_item": self.last_item,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UserState:
        _check(d, "UserState")
        u = cls()
        u.recent = [[str(i), int(t), str(e)] for i, t, e in d["recent"]]
        u.session_id = str(d["session"])
        u.session_items = [str(i) for i in d["session_items"]]
        u.affinity = {str(k): float(v) for k, v in zip(d["aff"], d["aff_w"], strict=True)}
        u.affinity_ref = int(d["aff_ref"])
        u.purchased = [str(i) for i in d["purchased"]]
        u._purchased = set(u.purchased)
        u.last_published_ts = int(d["last_pub"])
        u.impressions = sorted(([str(i), int(s), str(src), int(t), str(var),
                                 [float(x) for x in f], float(sc), str(m), str(e)]
                                for i, s, src, t, var, f, sc, m, e in d["imps"]), key=_shown_ts)
        u.event_ids = [str(e) for e in d["event_ids"]]
        u.n_events, u.newest = int(d["n"]), int(d["newest"])
        lp = d["log_price"]
        u.log_price = None if lp is None else float(lp)
        u.last_item = str(d["last_item"])
        return u


@dataclass(slots=True)
class ItemSignal:
    """What a batch contributes to one item-keyed or category-keyed state.

    ``key``: ``"i:<item_id>"`` (:class:`ItemNeighbors`) or ``"c:<category>"``
    (:class:`CategoryTrending`). ``kind`` and ``weights``: ``"covisit"`` (neighbour ->
    weight), ``"popularity"`` (the item -> weight), ``"bandit"`` (``"shown"``/``"clicked"``
    -> count), ``"trending"`` (item -> weight). ``ts``: the event time the weights are
    valued at (decaying ones decay from there).
    """

    key: str
    kind: str
    ts: int
    weights: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "ts": self.ts, "weights": dict(self.weights)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ItemSignal:
        return cls(str(d["key"]), str(d["kind"]), int(d["ts"]),
                   {str(k): float(v) for k, v in d["weights"].items()})


def apply_item_signals(signals: Sequence[ItemSignal],
                       neighbors: MutableMapping[str, ItemNeighbors],
                       trending: MutableMapping[str, CategoryTrending]) -> None:
    """Apply ``signals`` in order; each touched key is read once and written back once
    (so a table that persists on assignment sees every change)."""
    items: dict[str, ItemNeighbors] = {}
    cats: dict[str, CategoryTrending] = {}
    for s in signals:
        if s.kind == "trending":
            t = cats.get(s.key)
            if t is None:
                t = cats[s.key] = trending.get(s.key) or CategoryTrending()
            for item_id, w in s.weights.items():
                t.add(item_id, w, s.ts)
            continue
        nb = items.get(s.key)
        if nb is None:
            nb = items[s.key] = neighbors.get(s.key) or ItemNeighbors()
        if s.kind == "covisit":
            for other, w in s.weights.items():
                nb.add_covisit(other, w, s.ts)
        elif s.kind == "popularity":
            nb.add_popularity(sum(s.weights.values()), s.ts)
        elif s.kind == "bandit":
            nb.add_bandit(s.weights.get("shown", 0.0), s.weights.get("clicked", 0.0))
        else:
            raise ValueError(f"unknown signal kind {s.kind!r}")
    for key, nb in items.items():
        neighbors[key] = nb
    for key, t in cats.items():
        trending[key] = t


def merge_signals(signals: Sequence[ItemSignal]) -> list[ItemSignal]:
    """One signal per (key, kind): weights summed, the latest event time kept. A batch's
    clicks touch the same popular items many times; merged, they cost one record each on
    the re-keyed topic instead of one per click (decay within a batch is negligible).

    >>> a = ItemSignal("i:1", "popularity", 10, {"i:1": 1.0})
    >>> b = ItemSignal("i:1", "popularity", 20, {"i:1": 2.0})
    >>> [(m.key, m.ts, m.weights) for m in merge_signals([a, b])]
    [('i:1', 20, {'i:1': 3.0})]
    """
    merged: dict[tuple[str, str], ItemSignal] = {}
    for sig in signals:
        slot = merged.get((sig.key, sig.kind))
        if slot is None:
            merged[(sig.key, sig.kind)] = ItemSignal(sig.key, sig.kind, sig.ts, dict(sig.weights))
            continue
        slot.ts = max(slot.ts, sig.ts)
        for name, weight in sig.weights.items():
            slot.weights[name] = slot.weights.get(name, 0.0) + weight
    return list(merged.values())
