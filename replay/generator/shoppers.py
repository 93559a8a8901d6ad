"""Shoppers browsing the catalog: sessions of views that sometimes turn into purchases.

Each user has category tastes drawn from a Dirichlet distribution (a few categories
dominate). A session sticks mostly to one category; every item visit is a ``view``
that may become ``click`` → ``add_to_cart`` → ``purchase``. Sessions of many users
interleave in event time, and new (cold-start) users arrive at
``new_users_per_minute``. Events are ``clickstream`` values (schema ``click_event``),
keyed by ``user_id``.

>>> from replay.generator.catalog import Catalog
>>> sim = ShopperSimulator(Catalog(seed=3, n_items=120), seed=3, rate_per_s=50.0)
>>> events = [sim.pop() for _ in range(200)]
>>> all(e.topic == "clickstream" and e.key == e.value["user_id"] for e in events)
True
>>> [e.ts for e in events] == sorted(e.ts for e in events)
True
>>> sorted({e.value["event_type"] for e in events}) # doctest: +ELLIPSIS
['add_to_cart', 'click', ...'view']
"""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from replay.generator._common import (
    DEFAULT_START_TS_MS,
    GeneratedEvent,
    numpy_rng,
    py_rng,
    run_tag,
)
from replay.generator.catalog import CATEGORIES, Catalog

__all__ = ["ShopperSimulator", "user_id_for"]


def user_id_for(tag: str, index: int) -> str:
    """The id of user number ``index`` in a run tagged ``tag`` (shared with payments)."""
    return f"u-{tag}-{index:06d}"


@dataclass(slots=True)
class _Session:
    session_id: str
    user_id: str
    taste_cdf: list[float]
    category: str
    visits: int = 0
    pending: deque[tuple[str, str]] = field(default_factory=deque)


class ShopperSimulator:
    """An endless, event-time-ordered ``clickstream`` at ``rate_per_s`` events per second.

    Probabilities of the funnel: ``p_click`` (view → click), ``p_cart`` (click →
    add_to_cart), ``p_purchase`` (add_to_cart → purchase); after each item visit a
    session ends with probability ``p_end``. ``concurrent_sessions`` sessions are open
    at any time. Ground truth: :meth:`tastes` (a user's category preferences) and
    :meth:`is_new_user`.
    """

    def __init__(
        self,
        catalog: Catalog,
        seed: int = 0,
        start_ts_ms: int = DEFAULT_START_TS_MS,
        rate_per_s: float = 100.0,
        n_users: int = 2000,
        new_users_per_minute: float = 6.0,
        concurrent_sessions: int = 64,
        taste_concentration: float = 0.3,
        p_click: float = 0.35,
        p_cart: float = 0.3,
        p_purchase: float = 0.5,
        p_end: float = 0.15,
    ) -> None:
        if rate_per_s <= 0:
            raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
        self.catalog = catalog
        self._tag = run_tag(seed)
        self._rng = py_rng(seed, "shoppers")
        self._np = numpy_rng(seed, "shoppers")
        self._mean_gap_ms = 1000.0 / rate_per_s
        self._start = start_ts_ms
        self._t = 0.0
        self._alpha = taste_concentration * len(CATEGORIES) * np.asarray(
            catalog.category_weights
        )
        self._p_click, self._p_cart, self._p_purchase = p_click, p_cart, p_purchase
        self._p_end = p_end
        self._tastes: dict[str, np.ndarray] = {}
        self._cdfs: dict[str, list[float]] = {}
        self._regulars: list[str] = []
        self._newcomers: list[str] = []
        self._newcomer_set: set[str] = set()
        for _ in range(n_users):
            self._regulars.append(self._new_user())
        activity = self._np.lognormal(0.0, 1.0, n_users)
        self._activity_cdf = list(itertools.accumulate(activity.tolist()))
        self._new_user_rate_per_ms = new_users_per_minute / 60_000.0
        self._next_new_user_at = (
            self._rng.expovariate(self._new_user_rate_per_ms)
            if self._new_user_rate_per_ms > 0 else float("inf")
        )
        self._sessions: list[_Session | None] = [None] * concurrent_sessions
        self._session_count = 0
        self._event_count = 0
        self._next_ts = self._start + int(self._t)

    # -- ground truth -------------------------------------------------------------------

    def tastes(self, user_id: str) -> dict[str, float]:
        """The category preferences (summing to 1) that drive ``user_id``'s browsing."""
        return dict(zip(CATEGORIES, self._tastes[user_id].tolist(), strict=True))

    def is_new_user(self, user_id: str) -> bool:
        """Whether ``user_id`` arrived during the run (a cold-start user)."""
        return user_id in self._newcomer_set

    @property
    def new_users(self) -> list[str]:
        """The cold-start users that arrived so far, in order of arrival."""
        return list(self._newcomers)

    @property
    def n_users(self) -> int:
        return len(self._tastes)

    # -- the stream ---------------------------------------------------------------------

    @property
    def next_ts(self) -> int:
        return self._next_ts

    def pop(self) -> GeneratedEvent:
        """The next ``clickstream`` event."""
        rng = self._rng
        ts = self._next_ts
        slot = rng.randrange(len(self._sessions))
        session = self._sessions[slot]
        if session is None or not session.pending:
            if session is not None and rng.random() < self._p_end:
                session = None
            if session is None:
                session = self._start_session()
                self._sessions[slot] = session
            self._plan_visit(session)
        item_id, event_type = session.pending.popleft()
        self._event_count += 1
        value = {
            "event_id": f"c-{self._tag}-{self._event_count:09d}",
            "user_id": session.user_id,
            "session_id": session.session_id,
            "item_id": item_id,
            "event_type": event_type,
            "ts": ts,
        }
        self._t += rng.expovariate(1.0) * self._mean_gap_ms
        self._next_ts = self._start + int(self._t)
        return GeneratedEvent("clickstream", session.user_id, value, ts)

    # -- internals ----------------------------------------------------------------------

    def _new_user(self) -> str:
        user_id = user_id_for(self._tag, len(self._tastes))
        tastes = self._np.dirichlet(self._alpha)
        self._tastes[user_id] = tastes
        self._cdfs[user_id] = list(itertools.accumulate(tastes.tolist()))
        return user_id

    def _pick_user(self) -> str:
        rng = self._rng
        if self._t >= self._next_new_user_at:
            self._next_new_user_at += rng.expovariate(self._new_user_rate_per_ms)
            user_id = self._new_user()
            self._newcomers.append(user_id)
            self._newcomer_set.add(user_id)
            return user_id
        if self._newcomers and rng.random() < 0.1:
            return self._newcomers[rng.randrange(len(self._newcomers))]
        cdf = self._activity_cdf
        i = bisect.bisect_left(cdf, rng.random() * cdf[-1])
        return self._regulars[min(i, len(self._regulars) - 1)]

    def _start_session(self) -> _Session:
        user_id = self._pick_user()
        self._session_count += 1
        cdf = self._cdfs[user_id]
        return _Session(
            session_id=f"s-{self._tag}-{self._session_count:08d}",
            user_id=user_id,
            taste_cdf=cdf,
            category=self._taste_category(cdf),
        )

    def _taste_category(self, cdf: list[float]) -> str:
        i = bisect.bisect_left(cdf, self._rng.random() * cdf[-1])
        return CATEGORIES[min(i, len(CATEGORIES) - 1)]

    def _plan_visit(self, session: _Session) -> None:
        rng = self._rng
        category = (session.category if rng.random() < 0.7
                    else self._taste_category(session.taste_cdf))
        item_id = self.catalog.sample_item(rng, category).item_id
        session.visits += 1
        pending = session.pending
        pending.append((item_id, "view"))
        if rng.random() < self._p_click:
            pending.append((item_id, "click"))
            if rng.random() < self._p_cart:
                pending.append((item_id, "add_to_cart"))
                if rng.random() < self._p_purchase:
                    pending.append((item_id, "purchase"))
