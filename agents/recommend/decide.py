"""Recommendations, pure and batch-shaped: clickstream events + state -> top-K records.

:func:`decide` is the one implementation the Faust agent and the backtest both call.
Events are taken in order; for each one:

1. its item and category signals are recorded (from the user's state *before* it);
2. attribution: the user's impressions older than ``attribution_ms`` become negative
   ``training-examples``; a click, add-to-cart or purchase of a shown item becomes a
   positive one (the features and score it was shown with, labelled at the click);
3. the user's state takes the event (history, session, affinities, purchases);
4. every click, add-to-cart and purchase publishes a fresh top-K; a view publishes
   only if nothing was published for the user in the last ``view_refresh_ms`` of
   event time (else its position is in ``throttled``). The record's ``ts`` is the
   event's; the item just acted on and purchased items are never in it.

What is published depends on the user's variant, a stable hash of the user id over
``config.variants`` (:func:`variant_for`): ``"ranker"`` ranks the candidates of
:func:`agents.recommend.candidates.generate` with ``ranker`` (a Scorer over
:data:`FEATURE_NAMES`; None: the fixed :data:`HEURISTIC_WEIGHTS`) and gives the last
``explore_slots`` slots to a Thompson-sampling bandit (Beta(clicks + 1, impressions -
clicks + 1) per item, over the under-ranked and under-shown items of the user's
categories, so new items get shown); ``"popularity"`` (the A/B control) serves
shop-wide trending. A user with no history gets trending in the category of the item
just touched (model ``trending@1``), then shop-wide trending, with the bandit's slot.

Read-only here: ``neighbors``, ``trending`` and ``catalog``. Written: ``users`` (each
touched user is assigned back once, at the end). Item and category updates come back
as ``signals`` for :func:`agents.recommend.state.apply_item_signals` (after the batch).
Outputs depend on event times, the inputs and ``rng_seed`` only (each event draws from
its own generator, seeded by ``rng_seed`` and its event id): a replay gives what live
traffic gave, and a batch of N gives what N batches of one give. A redelivered event
(its id among the user's recent ones) changes nothing and is listed in ``repeats``.

>>> from agents.recommend.candidates import CatalogIndex
>>> catalog = CatalogIndex({"item_id": f"i{n}", "title": f"Mug {n}", "category": "home",
...                         "price": 10.0 + n, "ts": 0} for n in range(20))
>>> ev = {"event_id": "e1", "user_id": "u1", "session_id": "s1", "item_id": "i3",
...       "event_type": "click", "ts": 1_000}
>>> users = {}
>>> result = decide([ev], users, {}, {}, catalog, None, now_ms=2_000,
...                 config=RecConfig(variants=("ranker",)))
>>> [(pos, len(rec["items"]), rec["model"]) for pos, rec in result.recommendations]
[(0, 10, 'trending@1')]
>>> "i3" in {i["item_id"] for i in result.recommendations[0][1]["items"]}
False
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Iterable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.recommend.candidates import (
    FEATURE_NAMES,
    CandidateLimits,
    CatalogIndex,
    Context,
    SignalAccumulator,
    as_index,
    build_context,
    event_signals,
    features,
    fill,
    generate,
    item_signals,
)
from agents.recommend.state import (
    ACTIONS,
    GLOBAL_TRENDING,
    IMP_TS,
    CategoryTrending,
    ItemNeighbors,
    ItemSignal,
    UserState,
    apply_item_signals,
)
from scorers.river_scorer import RiverScorer, default_river_model

__all__ = ["FEATURE_NAMES", "HEURISTIC_BIAS", "HEURISTIC_WEIGHTS", "ItemSignal",
           "RecBatchResult", "RecConfig", "apply_item_signals", "decide", "expire_impressions",
           "item_signals", "make_ranker", "state_keys", "training_example", "variant_for"]

VARIANTS = ("ranker", "popularity")
HEURISTIC_MODEL = "recommend_heuristic@1"
COLD_MODEL = "trending@1"
POPULARITY_MODEL = "popularity@1"
EXAMPLE_MODEL = "recommend"
RANKER_NAME = "recommend_ranker"
#: Without a ranker, score = sigmoid(bias + sum of weight * feature) over these.
HEURISTIC_WEIGHTS: Mapping[str, float] = {
    "covisit": 3.0, "covisit_session": 1.0, "log_category_share": 0.8, "same_category": 1.5,
    "affinity": 1.5, "session_share": 1.0, "recency": 0.3, "title_overlap": 0.3,
    "price_gap": -0.2,
}
HEURISTIC_BIAS = -2.0
_HEURISTIC = np.array([HEURISTIC_WEIGHTS.get(n, 0.0) for n in FEATURE_NAMES])


@dataclass(frozen=True)
class RecConfig:
    """Decision settings (``k``: ``TECHSHOP_RECS_K``; ``view_refresh_ms``:
    ``TECHSHOP_RECS_VIEW_REFRESH_MS``). ``explore_pool``: how many ranked positions
    after the exploited ones the bandit may choose from, besides the ``content`` and
    ``explore`` candidates; it prefers those in the user's categories."""

    k: int = 10
    explore_slots: int = 1
    view_refresh_ms: int = 1000
    attribution_ms: int = 30 * 60_000
    variants: tuple[str, ...] = VARIANTS
    explore_pool: int = 8
    candidates: CandidateLimits = field(default_factory=CandidateLimits)

    def __post_init__(self) -> None:
        unknown = set(self.variants) - set(VARIANTS)
        if not self.variants or unknown:
            raise ValueError(f"variants must be among {VARIANTS}, got {self.variants}")
        if not 0 <= self.explore_slots < self.k:
            raise ValueError(f"explore_slots must be in [0, k), got {self.explore_slots}")


@dataclass
class RecBatchResult:
    """``recommendations``: (position in the batch, ``recommendations`` record);
    ``examples``: ``training-examples`` records; ``signals``: for
    :func:`~agents.recommend.state.apply_item_signals`; ``cold``: positions served as
    cold-start users; ``candidates``/``shown``: counts per candidate source;
    ``explored``: position -> items from exploration (the bandit's slots and ``explore``
    candidates) in its top-K, for the ``ranker`` variant's responses."""

    recommendations: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)
    throttled: list[int] = field(default_factory=list)
    signals: list[ItemSignal] = field(default_factory=list)
    repeats: list[int] = field(default_factory=list)
    cold: list[int] = field(default_factory=list)
    explored: dict[int, int] = field(default_factory=dict)
    candidates: Counter[str] = field(default_factory=Counter)
    shown: Counter[str] = field(default_factory=Counter)
    decided_at: int = 0
    #: Set when the ranker failed and the heuristic ranked the rest of the batch.
    fallback_reason: str | None = None


def variant_for(user_id: str, variants: Sequence[str]) -> str:
    """The A/B variant of ``user_id``: stable across processes and runs.

    >>> variant_for("u-1", ("ranker", "popularity")) == variant_for("u-1", ("ranker",
    ...                                                                    "popularity"))
    True
    """
    h = int.from_bytes(hashlib.blake2b(user_id.encode(), digest_size=8).digest(), "big")
    return variants[h % len(variants)]


def make_ranker(seed: int = 0) -> RiverScorer:
    """A fresh ranker: River's standard scaler + logistic regression over
    :data:`FEATURE_NAMES`. Deterministic whatever ``seed`` (kept for the common
    signature): SGD from zero weights, in order, draws nothing."""
    del seed
    return RiverScorer(FEATURE_NAMES, default_river_model(), name=RANKER_NAME, version="0")


def training_example(imp: Sequence[Any], user_id: str, label: float, label_ts: int
                     ) -> dict[str, Any]:
    """The ``training-examples`` record of an impression and its outcome."""
    item_id, _, _, shown_ts, _, feats, score, model, event_id = imp
    return {"example_id": f"{event_id}:{item_id}", "model": EXAMPLE_MODEL,
            "entity_id": user_id, "features": dict(zip(FEATURE_NAMES, feats, strict=True)),
            "label": label, "score": float(score), "decided_by": model,
            "event_ts": int(shown_ts), "ts": int(label_ts)}


def expire_impressions(users: MutableMapping[str, UserState], user_ids: Iterable[str],
                       watermark_ts: int, config: RecConfig | None = None
                       ) -> list[dict[str, Any]]:
    """Negative examples for impressions of ``user_ids`` that outlived the attribution
    window by ``watermark_ts`` (for users who went quiet: ``decide`` expires the others).
    Changed users are assigned back."""
    cfg = config or RecConfig()
    out: list[dict[str, Any]] = []
    for uid in user_ids:
        user = users.get(uid)
        if user is None:
            continue
        expired = user.expire_impressions(watermark_ts - cfg.attribution_ms)
        if expired:
            out.extend(training_example(i, uid, 0.0, i[IMP_TS] + cfg.attribution_ms)
                       for i in expired)
            users[uid] = user
    return out


class _Scorer:
    """The ranker, vectorised when it is River's scaler + logistic regression (the same
    probabilities as ``ranker.score``, without a dict per row); else ``ranker.score``."""

    def __init__(self, ranker: Any | None) -> None:
        self.ranker = ranker
        self.model_id = ranker.model_id if ranker is not None else HEURISTIC_MODEL
        self.linear = _linear_parts(ranker) if ranker is not None else None
        self.failure: str | None = None

    def score(self, X: np.ndarray) -> np.ndarray:
        if self.ranker is None:
            return _sigmoid(X.astype(np.float64) @ _HEURISTIC + HEURISTIC_BIAS)
        if self.linear is None:
            try:
                return np.asarray(self.ranker.score(X), dtype=np.float64).reshape(len(X))
            except Exception as exc:  # a broken model: the heuristic ranks, for this batch
                self.failure = f"{self.model_id} failed: {type(exc).__name__}: {exc}"
                self.ranker, self.model_id = None, HEURISTIC_MODEL
                return self.score(X)
        mean, inv_std, w, b = self.linear
        z = ((X.astype(np.float64) - mean) * inv_std) @ w + b
        # River's sigmoid saturates beyond +-30
        return np.where(z < -30.0, 0.0, np.where(z > 30.0, 1.0, _sigmoid(z)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)))


def _linear_parts(ranker: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, float] | None:
    from river import compose, linear_model, preprocessing

    model = getattr(ranker, "model", None)
    if not isinstance(ranker, RiverScorer) or not isinstance(model, compose.Pipeline):
        return None
    steps = list(model.steps.values())
    if (len(steps) != 2 or not isinstance(steps[0], preprocessing.StandardScaler)
            or steps[0].window_size is not None or not steps[0].with_std
            or type(steps[1]) is not linear_model.LogisticRegression):
        return None
    scaler, lr = steps
    names = ranker.feature_names
    mean = np.array([scaler.means.get(n, 0.0) for n in names], dtype=np.float64)
    var = np.array([scaler.vars.get(n, 0.0) for n in names], dtype=np.float64)
    inv_std = np.divide(1.0, np.sqrt(var), out=np.zeros_like(var), where=var > 0)
    weights = lr.weights
    w = np.array([weights.get(n, 0.0) for n in names], dtype=np.float64)
    return mean, inv_std, w, float(lr.intercept)


def state_keys(events: Sequence[Mapping[str, Any]], users: Mapping[str, UserState],
               catalog: Mapping[str, Mapping[str, Any]],
               neighbors: Mapping[str, ItemNeighbors] | None = None,
               trending: Mapping[str, CategoryTrending] | None = None,
               config: RecConfig | None = None) -> list[str]:
    """The item and category state keys :func:`decide` reads for ``events``, for a
    worker that fetches them from a store. Call it twice: without ``neighbors`` and
    ``trending`` it names the first ring (the items touched, the users' recent and
    session items, their categories and favourite categories, ``"c:*"``); with what
    that fetched, the keys it leads to that are not fetched yet (co-visited items,
    trending items, content neighbours). ``users``: as before the batch. ``decide``
    reads a missing key as empty (an item nobody touched yet).
    """
    cfg = config or RecConfig()
    lim = cfg.candidates
    index = as_index(catalog)
    keys: set[str] = {GLOBAL_TRENDING}
    for ev in events:
        keys.add("i:" + ev["item_id"])
        info = index.info.get(ev["item_id"])
        if info is not None:
            keys.add("c:" + info.category)
    for uid in {ev["user_id"] for ev in events}:
        user = users.get(uid)
        if user is None:
            continue
        keys.update("i:" + r[0] for r in user.recent)
        keys.update("i:" + i for i in user.session_items)
        favourites = sorted(user.affinity, key=lambda c: (-user.affinity[c], c))
        keys.update("c:" + c for c in favourites[:lim.affinity_categories + 1])
    if neighbors is None and trending is None:
        return sorted(keys)
    known = set(neighbors or ()) | set(trending or ())
    more: set[str] = set()
    for key in keys:
        nb = (neighbors or {}).get(key)
        if nb is not None:
            more.update("i:" + i for i, _ in nb.top(max(lim.covisit, lim.covisit_session)))
        t = (trending or {}).get(key)
        if t is not None:
            n = max(lim.trending + lim.explore_tail, 2 * max(cfg.k, lim.minimum))
            more.update("i:" + i for i, _ in t.top(n, t.newest))
    for ev in events:
        more.update("i:" + i for i in index.similar(ev["item_id"], CatalogIndex.SIMILAR))
    return sorted(more - keys - known)


def _event_rng(seed: int, event_id: str) -> random.Random:
    digest = hashlib.blake2b(f"{seed}:{event_id}".encode(), digest_size=8).digest()
    return random.Random(int.from_bytes(digest, "big"))


def decide(events: Sequence[Mapping[str, Any]], users: MutableMapping[str, UserState],
           neighbors: Mapping[str, ItemNeighbors], trending: Mapping[str, CategoryTrending],
           catalog: Mapping[str, Mapping[str, Any]], ranker: Any | None, *, now_ms: int,
           config: RecConfig | None = None, rng_seed: int = 0) -> RecBatchResult:
    """Decide a batch of ``clickstream`` values (see the module's docstring).

    ``now_ms`` (wall clock) is only reported back as ``decided_at``: every output
    depends on event time."""
    cfg = config or RecConfig()
    index = as_index(catalog)
    scorer = _Scorer(ranker)
    acc = SignalAccumulator()
    result = RecBatchResult(decided_at=now_ms)
    touched: dict[str, UserState] = {}
    for pos, ev in enumerate(events):
        uid = ev["user_id"]
        user = touched.get(uid)
        if user is None:
            user = touched[uid] = users.get(uid) or UserState()
        event_id = ev["event_id"]
        if event_id in user.event_ids:
            result.repeats.append(pos)
            continue
        item_id, etype, ts, sid = ev["item_id"], ev["event_type"], int(ev["ts"]), \
            ev["session_id"]
        info = index.info.get(item_id)
        event_signals(acc, item_id, etype, ts, info.category if info else None,
                      user.session_items if sid == user.session_id else ())
        for imp in user.expire_impressions(ts - cfg.attribution_ms):
            result.examples.append(training_example(imp, uid, 0.0,
                                                    imp[IMP_TS] + cfg.attribution_ms))
        if etype in ACTIONS:
            hit = user.take_impression(item_id)
            if hit is not None:
                result.examples.append(training_example(hit, uid, 1.0, ts))
                acc.add("i:" + item_id, "bandit", "clicked", 1.0, ts)
        cold = user.n_events == 0
        user.observe(event_id, item_id, etype, ts, sid, info.category if info else None,
                     info.log_price if info else None)
        if (etype not in ACTIONS and user.last_published_ts >= 0
                and ts - user.last_published_ts < cfg.view_refresh_ms):
            result.throttled.append(pos)
            continue
        user.last_published_ts = max(user.last_published_ts, ts)
        variant = variant_for(uid, cfg.variants)
        ctx = build_context(user, item_id, ts, index, neighbors, cfg.candidates)
        rng = _event_rng(rng_seed, event_id)
        if variant == "popularity":
            model, picked = POPULARITY_MODEL, _popular(ctx, neighbors, trending, index, cfg)
        else:
            cands = generate(ctx, neighbors, trending, index, cfg.candidates, rng)
            result.candidates.update(cands.values())
            if cold:
                result.cold.append(pos)
                model, picked = COLD_MODEL, _select(
                    ctx, cands, _cold_scores(ctx, list(cands), trending), neighbors, trending,
                    index, cfg, rng)
            else:
                picked = _select(ctx, cands, scorer, neighbors, trending, index, cfg, rng)
                model = scorer.model_id
        items = [{"item_id": i, "score": s} for i, s, _, _ in picked]
        result.recommendations.append(
            (pos, {"user_id": uid, "items": items, "model": model, "ts": ts}))
        imps = [[i, slot, src, ts, variant, feats, s, model, event_id]
                for slot, (i, s, src, feats) in enumerate(picked)]
        for old in user.add_impressions(imps):
            result.examples.append(training_example(old, uid, 0.0, ts))
        for i, _, src, _ in picked:
            acc.add("i:" + i, "bandit", "shown", 1.0, ts)
            result.shown[src] += 1
        if variant != "popularity":
            result.explored[pos] = sum(src == "explore" for _, _, src, _ in picked)
    for uid, user in touched.items():
        users[uid] = user
    result.signals = acc.signals()
    result.fallback_reason = scorer.failure
    return result


Picked = list[tuple[str, float, str, list[float]]]  # item, score, source, features


def _select(ctx: Context, cands: dict[str, str], scorer: _Scorer | np.ndarray,
            neighbors: Mapping[str, ItemNeighbors], trending: Mapping[str, CategoryTrending],
            index: CatalogIndex, cfg: RecConfig, rng: random.Random) -> Picked:
    """The best ``k - explore_slots`` candidates by score, then the bandit's picks."""
    items = list(cands)
    X = features(ctx, items, neighbors, trending, index)
    scores = scorer if isinstance(scorer, np.ndarray) else scorer.score(X)
    heuristic = X.astype(np.float64) @ _HEURISTIC
    order = np.lexsort((-heuristic, -scores)).tolist()
    k = min(cfg.k, len(items))
    n_exploit = k - cfg.explore_slots if len(items) > k else k
    chosen = order[:n_exploit]
    rest = order[n_exploit:]
    if len(chosen) < k:
        pool = set(rest[:cfg.explore_pool])
        pool.update(j for j in rest if cands[items[j]] in ("content", "explore"))
        mine = set(ctx.affinity) | ({ctx.info.category} if ctx.info else set())
        local = [j for j in rest if j in pool and index.info[items[j]].category in mine]
        candidates = local or [j for j in rest if j in pool]
        while len(chosen) < k and candidates:
            draws = []
            for j in candidates:
                nb = neighbors.get("i:" + items[j])
                if nb is None or nb.shown <= 0.0:  # Beta(1, 1)
                    draws.append((rng.random(), -j))
                else:
                    draws.append((rng.betavariate(nb.clicked + 1.0,
                                                  nb.shown - nb.clicked + 1.0), -j))
            best = -max(draws)[1]
            chosen.append(best)
            candidates.remove(best)
    out: Picked = []
    for slot, j in enumerate(chosen):
        src = cands[items[j]] if slot < n_exploit else "explore"
        out.append((items[j], float(scores[j]), src, X[j].tolist()))
    return out


def _cold_scores(ctx: Context, items: list[str], trending: Mapping[str, CategoryTrending]
                 ) -> np.ndarray:
    """Trending in context: the touched item's category first, then the whole shop."""
    cat = ctx.info.category if ctx.info is not None else None
    t = trending.get("c:" + cat) if cat is not None else None
    g = trending.get(GLOBAL_TRENDING)
    ts = ctx.ts
    t_total = t.total(ts) if t is not None else 0.0
    g_total = g.total(ts) if g is not None else 0.0
    out = np.zeros(len(items))
    for j, item_id in enumerate(items):
        if t is not None and t_total > 0:
            share = t.score(item_id, ts) / t_total
            if share > 0:
                out[j] = 0.5 + 0.5 * share
                continue
        if g is not None and g_total > 0:
            out[j] = 0.5 * g.score(item_id, ts) / g_total
    return out


def _popular(ctx: Context, neighbors: Mapping[str, ItemNeighbors],
             trending: Mapping[str, CategoryTrending], index: CatalogIndex,
             cfg: RecConfig) -> Picked:
    """The A/B control: shop-wide trending, nothing personal, no exploration."""
    cands: dict[str, str] = {}
    cat = ctx.info.category if ctx.info is not None else None
    fill(cands, cfg.k, ctx.user, ctx.item_id, cat, trending, index, ctx.ts)
    items = list(cands)[:cfg.k]
    g = trending.get(GLOBAL_TRENDING)
    total = g.total(ctx.ts) if g is not None else 0.0
    X = features(ctx, items, neighbors, trending, index)
    return [(i, (g.score(i, ctx.ts) / total) if g is not None and total > 0 else 0.0,
             "popularity", X[j].tolist()) for j, i in enumerate(items)]
