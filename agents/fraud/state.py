"""Per-card and per-entity state behind the fraud features: event-time windows, profiles.

Everything here is bounded and JSON-serialisable (``to_dict`` holds only str, int,
float, list and dict; key order is kept in lists, so any JSON codec round-trips it
exactly). Windows are in event time and count the events with ``t - W < ts <= t``.

Bounds. A window series keeps its newest ``RAW_CAP`` events exactly; older ones are
folded into time buckets (an hour wide for cards, a minute for merchants and devices)
and interpolated linearly inside a bucket, so counts stay exact for any card with at
most ``RAW_CAP`` events in a day and become close estimates above that. Buckets and
events older than the longest window plus the grace period are dropped on every
update; the profile's sets are capped (the least recently seen entry goes first).
:func:`agents.fraud.features.expire` drops whole idle states.

Layout. Hot paths touch few objects: times and running totals live in flat ``array``
buffers, and each profile entry is one small list updated in place, because on a busy
stream most of the cost of a feature is fetching its state from memory.

>>> card = CardState()
>>> for ts in (1_000, 31_000, 61_000):
...     card.update(ts, 10.0, 2.3, "m1", "FR", "d1", "1.2.3")
>>> card.series.window(61_000, 60_000), card.series.window(61_000, 3_600_000)
((2, 20.0), (3, 30.0))
>>> CardState.from_dict(card.to_dict()).to_dict() == card.to_dict()
True
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right, insort
from operator import itemgetter
from typing import Any

__all__ = [
    "DAY_MS",
    "HOUR_MS",
    "MINUTE_MS",
    "CardState",
    "EntityWindow",
    "WindowSeries",
]

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
#: Same value as ``agents.fraud.features.GRACE_MS`` (defined here to avoid a cycle).
_GRACE_MS = 60_000

_STATE_VERSION = 2  # 1: an earlier layout (separate window dicts), not readable
_first = itemgetter(0)


def _sight(d: dict[str, list[int]], key: str, ts: int, cap: int) -> list[int]:
    """Count a sighting of ``key`` at ``ts`` in ``d`` (``[first seen, last seen, count]``).

    Over ``cap`` entries, the one seen least recently goes (a scan, but a rare one).
    """
    v = d.get(key)
    if v is None:
        v = d[key] = [ts, ts, 1]
        if len(d) > cap:
            del d[min((k for k in d if k != key), key=lambda k: d[k][1])]
        return v
    v[2] += 1
    if ts > v[1]:
        v[1] = ts
    elif ts < v[0]:
        v[0] = ts
    return v


def _pairs(d: dict[str, Any]) -> list[list[Any]]:
    return [list(d), [list(v) if isinstance(v, list) else v for v in d.values()]]


def _unpairs(p: list[list[Any]]) -> dict[str, Any]:
    return dict(zip(p[0], p[1], strict=True))


class WindowSeries:
    """Counts and sums of events in any event-time window, in bounded memory.

    The newest ``cap`` events are kept exactly (times, and the running total of amounts,
    in flat arrays: a lookup is a bisection over contiguous memory);
    older ones are folded into buckets ``width`` ms wide. ``cum_*`` values are running
    totals since the series began, so a window is a difference of two lookups.

    >>> s = WindowSeries(cap=3, width=10_000)
    >>> for ts in (1_000, 2_000, 3_000, 4_000, 5_000):
    ...     s.add(ts, 1.0)
    >>> len(s.ts), len(s.buckets), s.window(5_000, 10_000)
    (3, 1, (5, 5.0))
    """

    __slots__ = ("ts", "cum", "base_n", "base_s", "buckets", "cap", "width")

    def __init__(self, cap: int, width: int) -> None:
        self.ts = array("q")  # event times, ascending
        self.cum = array("d")  # running total of amounts up to and including ts[i]
        self.base_n = 0  # events before ts[0] (folded or dropped)
        self.base_s = 0.0  # their total amount
        # [first ts, last ts, n before, total before, n after, total after]
        self.buckets: list[list[Any]] = []
        self.cap = cap
        self.width = width

    def add(self, ts: int, amount: float) -> None:
        tl, cl = self.ts, self.cum
        if not tl or ts >= tl[-1]:
            tl.append(ts)
            cl.append((cl[-1] if cl else self.base_s) + amount)
        elif ts < tl[0] and self.buckets:
            # Older than every exact event: counted in the newest bucket, which keeps its span.
            b = self.buckets[-1]
            b[4] += 1
            b[5] += amount
            self.base_n += 1
            self.base_s += amount
            for j in range(len(cl)):
                cl[j] += amount
        else:
            i = bisect_right(tl, ts)
            tl.insert(i, ts)
            cl.insert(i, (cl[i - 1] if i else self.base_s) + amount)
            for j in range(i + 1, len(cl)):
                cl[j] += amount
        if len(tl) > self.cap:
            self._fold()

    def _fold(self) -> None:
        t0 = self.ts.pop(0)
        c0 = self.cum.pop(0)
        n_before, s_before = self.base_n, self.base_s
        self.base_n = n_after = n_before + 1
        self.base_s = c0
        bs = self.buckets
        if bs and bs[-1][0] // self.width == t0 // self.width:
            b = bs[-1]
            b[1], b[4], b[5] = t0, n_after, c0
        else:
            bs.append([t0, t0, n_before, s_before, n_after, c0])

    def trim(self, cutoff: int) -> bool:
        """Forget events before ``cutoff`` (their totals stay in the running base)."""
        changed = False
        bs = self.buckets
        k = 0
        while k < len(bs) and bs[k][1] < cutoff:
            k += 1
        if k:
            del bs[:k]
            changed = True
        tl = self.ts
        if tl and tl[0] < cutoff:
            i = bisect_left(tl, cutoff)
            self.base_n += i
            self.base_s = self.cum[i - 1]
            del tl[:i]
            del self.cum[:i]
            changed = True
        return changed

    def at(self, x: int) -> tuple[float, float]:
        """Running (count, total) of the events with ``ts <= x``."""
        tl = self.ts
        if tl:
            if x >= tl[-1]:
                return self.base_n + len(tl), self.cum[-1]
            if x >= tl[0]:
                i = bisect_right(tl, x)
                return self.base_n + i, self.cum[i - 1]
        bs = self.buckets
        if not bs:
            return self.base_n, self.base_s
        j = bisect_right(bs, x, key=_first) - 1
        if j < 0:
            return bs[0][2], bs[0][3]
        b = bs[j]
        if x >= b[1]:
            return b[4], b[5]
        # Inside a bucket: its events are taken as spread evenly over its span.
        f = (x - b[0] + 1) / (b[1] - b[0] + 1)
        return b[2] + (b[4] - b[2]) * f, b[3] + (b[5] - b[3]) * f

    def spans(self, t: int, w1: int, w2: int, w3: int, w4: int) -> tuple[float, ...]:
        """Counts, then totals, over the windows ``(t - w, t]`` for ``w1 < w2 < w3 < w4``.

        Unrolled: this runs for every transaction.
        """
        tl = self.ts
        if tl and t >= tl[-1]:
            i4 = bisect_right(tl, t - w4)
            if i4 or not self.buckets:
                cl, n, base = self.cum, len(tl), self.base_s
                s_t = cl[-1]
                i1 = bisect_right(tl, t - w1, i4)
                i2 = bisect_right(tl, t - w2, i4, i1)
                i3 = bisect_right(tl, t - w3, i4, i2)
                return (n - i1, n - i2, n - i3, n - i4,
                        s_t - (cl[i1 - 1] if i1 else base), s_t - (cl[i2 - 1] if i2 else base),
                        s_t - (cl[i3 - 1] if i3 else base), s_t - (cl[i4 - 1] if i4 else base))
        at = self.at
        n_t, s_t = at(t)
        n1, s1 = at(t - w1)
        n2, s2 = at(t - w2)
        n3, s3 = at(t - w3)
        n4, s4 = at(t - w4)
        return n_t - n1, n_t - n2, n_t - n3, n_t - n4, s_t - s1, s_t - s2, s_t - s3, s_t - s4

    def count(self, t: int, w: int) -> float:
        """How many events in ``(t - w, t]``."""
        tl = self.ts
        if tl and t >= tl[-1]:
            i = bisect_right(tl, t - w)
            if i or not self.buckets:
                return len(tl) - i
        return self.at(t)[0] - self.at(t - w)[0]

    def window(self, t: int, width_ms: int) -> tuple[float, float]:
        """(count, total) of the events with ``t - width_ms < ts <= t``."""
        n1, s1 = self.at(t)
        n0, s0 = self.at(t - width_ms)
        return n1 - n0, s1 - s0

    def __len__(self) -> int:
        return len(self.ts) + len(self.buckets)

    def to_dict(self) -> dict[str, Any]:
        return {"ts": self.ts.tolist(), "cum": self.cum.tolist(), "bn": self.base_n,
                "bs": self.base_s, "b": [list(b) for b in self.buckets]}

    @classmethod
    def from_dict(cls, d: dict[str, Any], cap: int, width: int) -> WindowSeries:
        s = cls(cap, width)
        s.ts = array("q", d["ts"])
        s.cum = array("d", d["cum"])
        s.base_n = int(d["bn"])
        s.base_s = float(d["bs"])
        s.buckets = [[int(b[0]), int(b[1]), b[2], float(b[3]), b[4], float(b[5])]
                     for b in d["b"]]
        return s


class CardState:
    """One card: its windowed activity and its profile (the habits its features compare to).

    Windowed: a :class:`WindowSeries` of USD amounts (1 min .. 24 h) and the times at
    which merchants new to the card appeared. Profile: the last ``AMOUNTS_CAP`` log-USD
    amounts (rolling median and spread); countries ``[transactions, last seen]`` (home =
    the most frequent; counts halve now and then so that a move shows); devices and /24
    networks ``[first seen, last seen, transactions]``; merchants with their last
    sighting (and those sightings sorted, for distinct counts over any window); first
    and newest event times (``-1`` before any); lifetime count.
    """

    RAW_CAP = 256
    AMOUNTS_CAP = 63
    DEVICES_CAP = 16
    NETS_CAP = 16
    MERCHANTS_CAP = 64
    COUNTRIES_CAP = 16
    COUNTRY_HALVE_AT = 1024

    __slots__ = ("series", "first", "newest", "n", "amounts", "sorted_amounts", "countries",
                 "home", "devices", "nets", "merchants", "merchant_seen", "new_merchant_ts")

    def __init__(self) -> None:
        self.series = WindowSeries(self.RAW_CAP, HOUR_MS)
        self.first = -1
        self.newest = -1
        self.n = 0
        self.amounts = array("d")  # log1p(USD), oldest first
        self.sorted_amounts = array("d")
        self.countries: dict[str, list[int]] = {}
        self.home = ""
        self.devices: dict[str, list[int]] = {}
        self.nets: dict[str, list[int]] = {}
        self.merchants: dict[str, int] = {}
        self.merchant_seen = array("q")  # sorted values of ``merchants``
        self.new_merchant_ts = array("q")

    def update(self, ts: int, usd: float, log_usd: float, merchant: str, country: str,
               device: str, net: str, grace_ms: int = _GRACE_MS) -> None:
        """Add one accepted transaction (``log_usd`` is ``log1p(usd)``)."""
        self.series.add(ts, usd)
        self.n += 1
        if ts > self.newest:
            self.newest = ts
        if self.first < 0 or ts < self.first:
            self.first = ts
        newest = self.newest
        amounts, srt = self.amounts, self.sorted_amounts
        amounts.append(log_usd)
        insort(srt, log_usd)
        if len(amounts) > self.AMOUNTS_CAP:
            del srt[bisect_left(srt, amounts.pop(0))]
        cc = self.countries
        c = cc.get(country)
        if c is None:
            c = cc[country] = [1, ts]
            if len(cc) > self.COUNTRIES_CAP:
                del cc[min((k for k in cc if k not in (country, self.home)),
                           key=lambda k: (cc[k][0], cc[k][1]))]
        else:
            c[0] += 1
            if ts > c[1]:
                c[1] = ts
        if country != self.home:
            h = cc.get(self.home)
            if h is None or c[0] > h[0]:
                self.home = country
        if c[0] >= self.COUNTRY_HALVE_AT:
            for v in cc.values():
                v[0] //= 2
        _sight(self.devices, device, ts, self.DEVICES_CAP)
        _sight(self.nets, net, ts, self.NETS_CAP)
        known, seen = self.merchants, self.merchant_seen
        old = known.get(merchant)
        if old is None:
            nm = self.new_merchant_ts
            insort(nm, ts)
            cutoff = newest - 10 * MINUTE_MS - grace_ms
            if nm[0] <= cutoff or len(nm) > self.MERCHANTS_CAP:
                del nm[:bisect_right(nm, cutoff) or 1]
            known[merchant] = ts
            insort(seen, ts)
            if len(known) > self.MERCHANTS_CAP:
                stale = min((k for k in known if k != merchant), key=known.__getitem__)
                del seen[bisect_left(seen, known.pop(stale))]
        elif ts > old:
            known[merchant] = ts
            del seen[bisect_left(seen, old)]
            insort(seen, ts)
        cutoff = newest - DAY_MS - grace_ms
        s = self.series
        if (s.ts and s.ts[0] < cutoff) or (s.buckets and s.buckets[0][1] < cutoff):
            s.trim(cutoff)

    def trim(self, watermark_ts: int, grace_ms: int = _GRACE_MS) -> bool:
        """Forget window entries that no event at or after ``watermark_ts`` - grace can see."""
        nm = self.new_merchant_ts
        i = bisect_right(nm, watermark_ts - 10 * MINUTE_MS - grace_ms)
        del nm[:i]
        return self.series.trim(watermark_ts - DAY_MS - grace_ms) or i > 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "v": _STATE_VERSION, "series": self.series.to_dict(), "first": self.first,
            "newest": self.newest, "n": self.n, "amounts": self.amounts.tolist(),
            "countries": _pairs(self.countries), "home": self.home,
            "devices": _pairs(self.devices), "nets": _pairs(self.nets),
            "merchants": _pairs(self.merchants),
            "new_merchant_ts": self.new_merchant_ts.tolist(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CardState:
        if d.get("v") != _STATE_VERSION:
            raise ValueError(f"unknown CardState version {d.get('v')!r}")
        c = cls()
        c.series = WindowSeries.from_dict(d["series"], cls.RAW_CAP, HOUR_MS)
        c.first = int(d["first"])
        c.newest = int(d["newest"])
        c.n = int(d["n"])
        c.amounts = array("d", d["amounts"])
        c.sorted_amounts = array("d", sorted(c.amounts))
        c.countries = {k: [int(x) for x in v] for k, v in _unpairs(d["countries"]).items()}
        c.home = str(d["home"])
        c.devices = {k: [int(x) for x in v] for k, v in _unpairs(d["devices"]).items()}
        c.nets = {k: [int(x) for x in v] for k, v in _unpairs(d["nets"]).items()}
        c.merchants = {k: int(v) for k, v in _unpairs(d["merchants"]).items()}
        c.merchant_seen = array("q", sorted(c.merchants.values()))
        c.new_merchant_ts = array("q", d["new_merchant_ts"])
        return c


class EntityWindow:
    """Velocity of one merchant or device: events over 1 min / 10 min / 1 h and distinct
    cards over 10 min / 1 h, in event time, bounded (``RAW_CAP`` exact events, minute
    buckets beyond; at most ``CARDS_CAP`` distinct cards, so those counts saturate).

    >>> w = EntityWindow()
    >>> for i, card in enumerate(["c1", "c2", "c1"]):
    ...     w.observe(1_000 + i * 20_000, card)
    >>> w.snapshot(50_000)["count_1m"], w.snapshot(50_000)["cards_10m"]
    (3.0, 2.0)
    """

    RAW_CAP = 256
    CARDS_CAP = 512
    SNAPSHOT_KEYS = ("count_1m", "count_10m", "count_1h", "cards_10m", "cards_1h")

    __slots__ = ("series", "newest", "cards", "card_seen")

    def __init__(self) -> None:
        self.series = WindowSeries(self.RAW_CAP, MINUTE_MS)
        self.newest = -1
        self.cards: dict[str, int] = {}  # card -> last seen, in order of sighting
        self.card_seen = array("q")  # sorted values of ``cards``

    def observe(self, ts: int, card_id: str, grace_ms: int = _GRACE_MS) -> None:
        """Count one transaction at ``ts`` (ignored if older than every window can see)."""
        if ts < self.newest - HOUR_MS - grace_ms:
            return
        self.series.add(ts, 0.0)
        if ts > self.newest:
            self.newest = ts
        cards, seen = self.cards, self.card_seen
        old = cards.get(card_id)
        if old is None:
            cards[card_id] = ts
            insort(seen, ts)
        elif ts > old:
            del cards[card_id]
            cards[card_id] = ts
            del seen[bisect_left(seen, old)]
            insort(seen, ts)
        cutoff = self.newest - HOUR_MS - grace_ms
        if seen[0] <= cutoff or len(cards) > self.CARDS_CAP:
            self._forget_cards(cutoff)
        s = self.series
        if (s.ts and s.ts[0] < cutoff) or (s.buckets and s.buckets[0][1] < cutoff):
            s.trim(cutoff)

    def _forget_cards(self, cutoff: int) -> bool:
        cards, seen = self.cards, self.card_seen
        forgot = False
        while cards:
            key = next(iter(cards))
            v = cards[key]
            if v > cutoff and len(cards) <= self.CARDS_CAP:
                break
            del cards[key]
            del seen[bisect_left(seen, v)]
            forgot = True
        return forgot

    def merchant_values(self, ts: int) -> tuple[float, float, float, float]:
        """Counts over 1 min / 10 min / 1 h and distinct cards over 10 min, at ``ts``."""
        seen = self.card_seen
        cards_10m = len(seen) - bisect_right(seen, ts - 10 * MINUTE_MS)
        s = self.series
        tl = s.ts
        if tl and ts >= tl[-1]:
            i3 = bisect_right(tl, ts - HOUR_MS)
            if i3 or not s.buckets:
                n = len(tl)
                i1 = bisect_right(tl, ts - MINUTE_MS, i3)
                i2 = bisect_right(tl, ts - 10 * MINUTE_MS, i3, i1)
                return n - i1, n - i2, n - i3, cards_10m
        n1, n2, n3, _, _, _, _, _ = s.spans(ts, MINUTE_MS, 10 * MINUTE_MS, HOUR_MS, HOUR_MS)
        return n1, n2, n3, cards_10m

    def device_values(self, ts: int) -> tuple[float, float]:
        """Count and distinct cards over 1 h, at ``ts``."""
        seen = self.card_seen
        return self.series.count(ts, HOUR_MS), len(seen) - bisect_right(seen, ts - HOUR_MS)

    def values(self, ts: int) -> tuple[float, float, float, float, float]:
        """The snapshot's values in ``SNAPSHOT_KEYS`` order (windows ending at ``ts``)."""
        n1, n2, n3, n4 = self.merchant_values(ts)
        seen = self.card_seen
        return n1, n2, n3, n4, len(seen) - bisect_right(seen, ts - HOUR_MS)

    def snapshot(self, ts: int) -> dict[str, float]:
        """Counts over 1 min / 10 min / 1 h and distinct cards over 10 min / 1 h at ``ts``."""
        return {k: float(v) for k, v in zip(self.SNAPSHOT_KEYS, self.values(ts), strict=True)}

    def trim(self, watermark_ts: int, grace_ms: int = _GRACE_MS) -> bool:
        """Forget entries that no event at or after ``watermark_ts`` - grace can see."""
        forgot = self._forget_cards(watermark_ts - HOUR_MS - grace_ms)
        return self.series.trim(watermark_ts - HOUR_MS - grace_ms) or forgot

    def to_dict(self) -> dict[str, Any]:
        return {"v": _STATE_VERSION, "series": self.series.to_dict(), "newest": self.newest,
                "cards": _pairs(self.cards)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EntityWindow:
        if d.get("v") != _STATE_VERSION:
            raise ValueError(f"unknown EntityWindow version {d.get('v')!r}")
        w = cls()
        w.series = WindowSeries.from_dict(d["series"], cls.RAW_CAP, MINUTE_MS)
        w.newest = int(d["newest"])
        w.cards = {k: int(v) for k, v in _unpairs(d["cards"]).items()}
        w.card_seen = array("q", sorted(w.cards.values()))
        return w
