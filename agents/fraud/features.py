"""Fraud features, pure and batch-shaped: transactions + card/entity state -> a matrix.

One function, :func:`compute_features`, serves the live agent and the backtest alike.
Three kinds of feature, in the stable column order :data:`FEATURE_NAMES`:

- real time, from the event: amount in USD (static rates) and its log, hour of day in
  the card's home time zone (sin/cos), home/foreign country, and whether the country,
  merchant, device and IP /24 network are new to the card; the merchant category
  one-hot;
- windowed, in event time (``t - W < ts <= t``): per card counts and USD sums over
  1 min / 10 min / 1 h / 24 h, distinct merchants and countries over 1 h / 24 h,
  merchants new to the card over 10 min, seconds since the previous transaction; per
  merchant and per device velocity from :class:`EntityWindow` snapshots (kept by the
  re-keyed agents through :func:`update_entities`);
- profile: lifetime count, rolling median amount, the amount's ratio to it and robust
  z-score, number of known devices, and the share of the card's transactions made from
  this device and this /24 network, and how long ago the device was first seen.

Built for the synthetic patterns and their look-alikes: card testing (tiny amounts,
a burst, new merchants, a young device and network), account takeover (new device,
foreign country and network, several times the usual amount), merchant compromise
(unknown device, resale goods far above habit), high-value bursts (large amounts in
quick succession), against trips abroad (known device) and new phones (home network).

A transaction's features come from the state *before* it; it is then added, so the
next one sees it. A transaction more than ``grace_ms`` older than the newest one of its
card is *late*: reported in :attr:`FeatureBatch.late` (to be counted and dead-lettered
as ``late_event``), with no features and no change of state. :attr:`FeatureBatch.windows`
keeps, per row, the windowed and profile values the row was built from (provenance).

>>> cards: dict[str, CardState] = {}
>>> txn = {"txn_id": "t1", "card_id": "c1", "user_id": "u1", "merchant_id": "m1",
...        "merchant_category": "grocery", "amount": 20.0, "currency": "EUR",
...        "country": "FR", "device_id": "d1", "ip": "81.2.3.4", "ts": 1_700_000_000_000}
>>> later = dict(txn, txn_id="t2", ts=txn["ts"] + 30_000)
>>> batch = compute_features([txn, later], cards, {}, {})
>>> batch.matrix.shape == (2, len(FEATURE_NAMES)), batch.index, batch.late
(True, [0, 1], [])
>>> batch.windows[0]["count_1m"], batch.windows[1]["count_1m"]
(0, 1)
>>> compute_features([dict(txn, txn_id="t0", ts=txn["ts"] - 120_000)], cards, {}, {}).late
[0]
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from itertools import chain
from typing import Any

import numpy as np

from agents.fraud.state import DAY_MS, HOUR_MS, MINUTE_MS, CardState, EntityWindow

__all__ = [
    "CATEGORIES",
    "FEATURE_NAMES",
    "GRACE_MS",
    "WINDOW_FEATURES",
    "CardState",
    "EntityWindow",
    "FeatureBatch",
    "compute_features",
    "expire",
    "expire_entities",
    "ip_network",
    "observe",
    "update_entities",
]

#: Default grace for late events, per card, behind the newest event time of that card.
GRACE_MS: int = 60_000

#: Merchant categories with a one-hot column (an unknown category sets none of them).
CATEGORIES: tuple[str, ...] = (
    "grocery", "restaurants", "fuel", "electronics", "fashion", "travel", "digital_goods",
    "entertainment", "pharmacy", "home_garden", "jewelry", "gift_cards",
)
_EVENT_FEATURES = (
    "amount_usd", "log_amount_usd", "hour_sin", "hour_cos", "is_home_country", "is_foreign",
    "country_is_new", "merchant_is_new", "device_is_new", "ip_is_new",
)
#: The windowed and profile columns, also the keys of each provenance record.
WINDOW_FEATURES: tuple[str, ...] = (
    "card_txn_count", "log_secs_since_prev", "median_amount_usd", "amount_to_median",
    "amount_z", "count_1m", "count_10m", "count_1h", "count_24h", "sum_1m", "sum_10m",
    "sum_1h", "sum_24h", "merchants_1h", "merchants_24h", "countries_1h", "countries_24h",
    "known_devices", "new_merchants_10m", "device_txn_share", "device_age_log",
    "ip_txn_share", "merchant_count_1m", "merchant_count_10m", "merchant_count_1h",
    "merchant_cards_10m", "device_count_1h", "device_cards_1h",
)
#: Column order of :attr:`FeatureBatch.matrix`; append-only.
FEATURE_NAMES: tuple[str, ...] = (
    _EVENT_FEATURES + WINDOW_FEATURES + tuple(f"cat_{c}" for c in CATEGORIES)
)

#: Units per USD (approximate, static: features need scale, not accounting).
_FX: dict[str, float] = {
    "USD": 1.0, "GBP": 0.79, "EUR": 0.92, "CAD": 1.36, "AUD": 1.52, "JPY": 150.0,
    "BRL": 5.0, "INR": 83.0, "MXN": 17.0, "SEK": 10.5, "PLN": 4.0, "SGD": 1.34,
    "NGN": 1500.0, "RON": 4.6, "VND": 24000.0, "IDR": 15600.0, "UAH": 39.0,
    "CHF": 0.88, "CNY": 7.2, "DKK": 6.9, "NOK": 10.6, "NZD": 1.64, "HKD": 7.8,
    "KRW": 1330.0, "ZAR": 18.5, "TRY": 32.0, "CZK": 23.0, "HUF": 360.0,
}
#: Usual UTC offset (hours) of a country, for the hour of day in a card's home zone.
_UTC_OFFSET: dict[str, float] = {
    "US": -5.0, "CA": -5.0, "MX": -6.0, "BR": -3.0, "GB": 0.0, "DE": 1.0, "FR": 1.0,
    "ES": 1.0, "IT": 1.0, "NL": 1.0, "SE": 1.0, "PL": 1.0, "NG": 1.0, "RO": 2.0, "UA": 2.0,
    "IN": 5.5, "VN": 7.0, "ID": 7.0, "SG": 8.0, "JP": 9.0, "AU": 10.0, "CH": 1.0,
    "CN": 8.0, "NZ": 12.0, "ZA": 2.0, "TR": 3.0,
}
_CATEGORY_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
_N_DENSE = len(_EVENT_FEATURES) + len(WINDOW_FEATURES)
_NO_MERCHANT = (0.0, 0.0, 0.0, 0.0)
_NO_DEVICE = (0.0, 0.0)
#: Seconds since the previous transaction of a card with none (30 days).
_COLD_GAP_S = 30 * 86_400.0
_TWO_PI_PER_HOUR = 2.0 * math.pi / 24.0


@dataclass
class FeatureBatch:
    """Features of the accepted transactions of a batch, with their provenance.

    ``matrix`` is float32, one row per accepted transaction, columns :data:`FEATURE_NAMES`;
    ``index[i]`` is the position in the input of row ``i``; ``late`` the positions
    rejected as late; ``windows[i]`` the :data:`WINDOW_FEATURES` values of row ``i``.
    """

    matrix: np.ndarray
    index: list[int]
    late: list[int]
    windows: list[dict[str, float]]


def ip_network(ip: str) -> str:
    """The /24 of an IPv4 address (``'81.2.3'``), the first three groups of an IPv6 one."""
    if ":" in ip:
        return ":".join(ip.split(":", 3)[:3])
    return ip.rpartition(".")[0] or ip


def compute_features(
    txns: Sequence[Mapping[str, Any]],
    cards: MutableMapping[str, CardState],
    merchants: Mapping[str, EntityWindow],
    devices: Mapping[str, EntityWindow],
    *,
    grace_ms: int = GRACE_MS,
) -> FeatureBatch:
    """Features of ``txns`` (in order), updating ``cards``; entity maps are only read.

    Each card touched is written back to ``cards`` once, at the end of the batch (one
    changelog write per card for a Faust table). A merchant or device missing from its
    map has zero velocity. Feed the same transactions through :func:`update_entities`
    *after* this call, so that a transaction is not counted in its own velocity.
    """
    rows: list[list[float]] = []
    index: list[int] = []
    late: list[int] = []
    windows: list[dict[str, float]] = []
    touched: dict[str, CardState] = {}
    categories: list[int] = []
    fx, offsets, category_index = _FX, _UTC_OFFSET, _CATEGORY_INDEX
    exp, log1p, sin, cos = math.exp, math.log1p, math.sin, math.cos
    for pos, txn in enumerate(txns):
        card_id = txn["card_id"]
        ts = int(txn["ts"])
        card = touched.get(card_id)
        if card is None:
            card = cards.get(card_id)
            if card is None:
                card = CardState()
        if ts < card.newest - grace_ms:
            late.append(pos)
            continue
        touched[card_id] = card
        usd = float(txn["amount"]) / fx.get(txn["currency"], 1.0)
        log_usd = log1p(usd) if usd > 0.0 else 0.0
        country = txn["country"]
        merchant = txn["merchant_id"]
        device = txn["device_id"]
        ip = txn["ip"]
        net = (ip.rpartition(".")[0] or ip) if ":" not in ip else ip_network(ip)
        home = card.home
        angle = ((ts / HOUR_MS + offsets.get(home or country, 0.0)) % 24.0) * _TWO_PI_PER_HOUR

        series = card.series
        tl = series.ts
        if tl and ts >= tl[-1]:
            gap_s = (ts - tl[-1]) / 1000.0
        elif tl and ts >= tl[0]:
            gap_s = (ts - tl[bisect_right(tl, ts) - 1]) / 1000.0
        elif 0 <= card.newest <= ts:
            gap_s = (ts - card.newest) / 1000.0
        else:
            gap_s = _COLD_GAP_S
        n1, n10, n60, n1440, s1, s10, s60, s1440 = series.spans(
            ts, MINUTE_MS, 10 * MINUTE_MS, HOUR_MS, DAY_MS)

        srt = card.sorted_amounts
        k = len(srt)
        if k:
            med = (srt[(k - 1) >> 1] + srt[k >> 1]) * 0.5
            spread = (srt[(3 * k) >> 2] - srt[k >> 2]) / 1.349
            median_usd = exp(med) - 1.0
            ratio = exp(log_usd - med)
            z = (log_usd - med) / (spread if spread > 0.1 else 0.1)
        else:
            median_usd, ratio, z = 0.0, 1.0, 0.0

        mw = merchants.get(merchant)
        m1, m10, m60, m_cards = mw.merchant_values(ts) if mw is not None else _NO_MERCHANT
        dw = devices.get(device)
        d60, d_cards = dw.device_values(ts) if dw is not None else _NO_DEVICE
        countries = card.countries
        countries_1h = countries_24h = 0
        for c in countries.values():
            if c[1] > ts - DAY_MS:
                countries_24h += 1
                if c[1] > ts - HOUR_MS:
                    countries_1h += 1
        dev = card.devices.get(device)
        ipn = card.nets.get(net)
        seen = card.merchant_seen
        n_seen = len(seen)
        nm = card.new_merchant_ts
        # Keys in WINDOW_FEATURES order (a literal is the fast way to build it).
        w = {
            "card_txn_count": card.n, "log_secs_since_prev": log1p(gap_s),
            "median_amount_usd": median_usd, "amount_to_median": ratio, "amount_z": z,
            "count_1m": n1, "count_10m": n10, "count_1h": n60, "count_24h": n1440,
            "sum_1m": s1, "sum_10m": s10, "sum_1h": s60, "sum_24h": s1440,
            "merchants_1h": n_seen - bisect_right(seen, ts - HOUR_MS),
            "merchants_24h": n_seen - bisect_right(seen, ts - DAY_MS),
            "countries_1h": countries_1h, "countries_24h": countries_24h,
            "known_devices": len(card.devices),
            "new_merchants_10m": (bisect_right(nm, ts) - bisect_right(nm, ts - 10 * MINUTE_MS)
                                  if nm else 0),
            "device_txn_share": dev[2] / card.n if dev else 0.0,
            "device_age_log": log1p((ts - dev[0]) / 1000.0) if dev and ts > dev[0] else 0.0,
            "ip_txn_share": ipn[2] / card.n if ipn else 0.0,
            "merchant_count_1m": m1, "merchant_count_10m": m10, "merchant_count_1h": m60,
            "merchant_cards_10m": m_cards, "device_count_1h": d60, "device_cards_1h": d_cards,
        }
        rows.append([
            usd, log_usd, sin(angle), cos(angle),
            1.0 if home == country else 0.0,
            1.0 if home and home != country else 0.0,
            0.0 if country in countries else 1.0,
            0.0 if merchant in card.merchants else 1.0,
            0.0 if dev else 1.0,
            0.0 if ipn else 1.0,
            *w.values(),
        ])
        categories.append(category_index.get(txn["merchant_category"], -1))
        windows.append(w)
        index.append(pos)
        card.update(ts, usd, log_usd, merchant, country, device, net, grace_ms)
    for card_id, card in touched.items():
        cards[card_id] = card
    n = len(rows)
    matrix = np.zeros((n, len(FEATURE_NAMES)), dtype=np.float32)
    if n:
        matrix[:, :_N_DENSE] = np.fromiter(
            chain.from_iterable(rows), dtype=np.float32, count=n * _N_DENSE
        ).reshape(n, _N_DENSE)
        cat = np.array(categories, dtype=np.intp)
        known = cat >= 0
        matrix[known.nonzero()[0], _N_DENSE + cat[known]] = 1.0
    return FeatureBatch(matrix, index, late, windows)


def observe(txns: Sequence[Mapping[str, Any]], cards: MutableMapping[str, CardState], *,
            grace_ms: int = GRACE_MS) -> list[int]:
    """Add ``txns`` to the card state without computing features; returns the late ones.

    For building profiles from history (a bootstrap, a backtest's warm-up): the state
    ends exactly as :func:`compute_features` would leave it.
    """
    late: list[int] = []
    touched: dict[str, CardState] = {}
    for pos, txn in enumerate(txns):
        card_id = txn["card_id"]
        ts = int(txn["ts"])
        card = touched.get(card_id) or cards.get(card_id) or CardState()
        if ts < card.newest - grace_ms:
            late.append(pos)
            continue
        touched[card_id] = card
        usd = float(txn["amount"]) / _FX.get(txn["currency"], 1.0)
        card.update(ts, usd, math.log1p(usd) if usd > 0.0 else 0.0, txn["merchant_id"],
                    txn["country"], txn["device_id"], ip_network(txn["ip"]), grace_ms)
    for card_id, card in touched.items():
        cards[card_id] = card
    return late


def update_entities(
    txns: Sequence[Mapping[str, Any]],
    merchants: MutableMapping[str, EntityWindow],
    devices: MutableMapping[str, EntityWindow],
    *,
    grace_ms: int = GRACE_MS,
) -> None:
    """Count ``txns`` in the velocity windows of their merchant and of their device.

    The one implementation behind the re-keyed merchant/device agents and the backtest;
    each window touched is written back once at the end of the batch.
    """
    touched_m: dict[str, EntityWindow] = {}
    touched_d: dict[str, EntityWindow] = {}
    for txn in txns:
        ts = int(txn["ts"])
        card_id = txn["card_id"]
        for key, table, touched in ((txn["merchant_id"], merchants, touched_m),
                                    (txn["device_id"], devices, touched_d)):
            w = touched.get(key)
            if w is None:
                w = table.get(key)
                if w is None:
                    w = EntityWindow()
                touched[key] = w
            w.observe(ts, card_id, grace_ms)
    for key, w in touched_m.items():
        merchants[key] = w
    for key, w in touched_d.items():
        devices[key] = w


def expire(cards: MutableMapping[str, CardState], watermark_ts: int, *,
           idle_ms: int = DAY_MS + GRACE_MS, grace_ms: int = GRACE_MS) -> int:
    """Drop cards with no event in the ``idle_ms`` before ``watermark_ts``; trim the rest.

    Returns how many cards were dropped. A card kept has its window entries that no
    event within grace of the watermark can see forgotten (and is written back only
    if that changed it). A longer ``idle_ms`` keeps profiles (known devices, median)
    of rarely used cards, at the cost of their memory.
    """
    cutoff = watermark_ts - idle_ms
    stale = [k for k, c in cards.items() if c.newest < cutoff]
    for k in stale:
        del cards[k]
    for k, c in list(cards.items()):
        if c.trim(watermark_ts, grace_ms):
            cards[k] = c
    return len(stale)


def expire_entities(windows: MutableMapping[str, EntityWindow], watermark_ts: int, *,
                    idle_ms: int = HOUR_MS + GRACE_MS, grace_ms: int = GRACE_MS) -> int:
    """:func:`expire` for merchant or device windows (1 h + grace of idleness)."""
    cutoff = watermark_ts - idle_ms
    stale = [k for k, w in windows.items() if w.newest < cutoff]
    for k in stale:
        del windows[k]
    for k, w in list(windows.items()):
        if w.trim(watermark_ts, grace_ms):
            windows[k] = w
    return len(stale)
