"""The payment world: countries, merchants and cards with their habits.

A card has a home country (and that country's currency), one to three usual devices,
an IP range at home, a spending level (log-normal amounts), favourite merchants and
categories, and one country it sometimes travels to. :class:`PaymentWorld` builds all of
it from a seed; :mod:`replay.generator.payments` draws transactions from it.

>>> w = PaymentWorld(seed=5, n_cards=50, n_merchants=80, n_users=40)
>>> card = w.cards[0]
>>> w.currency("JP"), len(card.home), card.card_id == f"card-{w.tag}-000000"
('JPY', 2, True)
>>> w.amount(card.mu, card.sigma, "grocery", 0.0, card.home) > 0
True
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

import numpy as np

from replay.generator._common import numpy_rng, run_tag
from replay.generator.shoppers import user_id_for

__all__ = ["COUNTRIES", "MERCHANT_CATEGORIES", "Card", "PaymentWorld"]

#: country -> (currency, units per USD, share of cards issued there, first IP octets)
COUNTRIES: dict[str, tuple[str, float, float, tuple[int, ...]]] = {
    "US": ("USD", 1.0, 0.30, (23, 34, 50, 64, 98)),
    "GB": ("GBP", 0.79, 0.10, (25, 51, 81, 86)),
    "DE": ("EUR", 0.92, 0.09, (46, 77, 87, 91)),
    "FR": ("EUR", 0.92, 0.07, (37, 62, 78, 90)),
    "ES": ("EUR", 0.92, 0.05, (79, 83, 88)),
    "IT": ("EUR", 0.92, 0.05, (79, 93, 151)),
    "NL": ("EUR", 0.92, 0.04, (31, 84, 145)),
    "CA": ("CAD", 1.36, 0.05, (24, 70, 99)),
    "AU": ("AUD", 1.52, 0.04, (1, 49, 101)),
    "JP": ("JPY", 150.0, 0.04, (27, 60, 126)),
    "BR": ("BRL", 5.0, 0.04, (177, 186, 189)),
    "IN": ("INR", 83.0, 0.04, (49, 103, 117)),
    "MX": ("MXN", 17.0, 0.03, (187, 189, 201)),
    "SE": ("SEK", 10.5, 0.02, (78, 81, 85)),
    "PL": ("PLN", 4.0, 0.03, (31, 83, 89)),
    "SG": ("SGD", 1.34, 0.01, (8, 103, 175)),
    # Issued no cards here, but fraudsters and foreign merchants live here too.
    "NG": ("NGN", 1500.0, 0.0, (41, 102, 105)),
    "RO": ("RON", 4.6, 0.0, (5, 86, 188)),
    "VN": ("VND", 24000.0, 0.0, (14, 113, 171)),
    "ID": ("IDR", 15600.0, 0.0, (36, 110, 180)),
    "UA": ("UAH", 39.0, 0.0, (31, 91, 176)),
}
_NO_CENTS = frozenset({"JPY", "VND", "IDR"})
#: Ranges of hosting providers and proxies that fraudsters route through.
HOSTING_PREFIXES = ("185.220", "45.133", "104.244", "193.32", "89.248", "5.188")

#: merchant category -> (median amount in USD, share of legitimate spending)
MERCHANT_CATEGORIES: dict[str, tuple[float, float]] = {
    "grocery": (45.0, 0.20),
    "restaurants": (30.0, 0.17),
    "fuel": (40.0, 0.10),
    "electronics": (150.0, 0.06),
    "fashion": (60.0, 0.10),
    "travel": (350.0, 0.03),
    "digital_goods": (12.0, 0.10),
    "entertainment": (25.0, 0.08),
    "pharmacy": (20.0, 0.07),
    "home_garden": (55.0, 0.06),
    "jewelry": (200.0, 0.015),
    "gift_cards": (50.0, 0.015),
}
_CAT_NAMES = tuple(MERCHANT_CATEGORIES)
_CAT_LOG = {c: math.log(m) for c, (m, _) in MERCHANT_CATEGORIES.items()}


@dataclass(slots=True)
class Card:
    """A payment card and the habits of its owner (``mu``/``sigma``: log-amount spread)."""

    card_id: str
    user_id: str
    home: str
    ip_prefix: str
    devices: list[str]
    mu: float
    sigma: float
    merchants: list[int]
    travel_country: str
    travel_merchants: list[int]


class PaymentWorld:
    """Cards, merchants and countries; every draw at build time comes from ``seed``."""

    def __init__(self, seed: int = 0, n_cards: int = 5000, n_merchants: int = 3000,
                 n_users: int = 2000) -> None:
        rng = numpy_rng(seed, "payments", "world")
        self.tag = run_tag(seed)
        self.rng = random.Random(int(rng.integers(0, 2**63)))
        self._device_count = 0
        countries = list(COUNTRIES)
        home_w = np.array([COUNTRIES[c][2] for c in countries])
        merchant_w = home_w + 0.01
        cat_w = np.array([MERCHANT_CATEGORIES[c][1] for c in _CAT_NAMES])

        m_country = rng.choice(len(countries), n_merchants, p=merchant_w / merchant_w.sum())
        m_cat = rng.choice(len(_CAT_NAMES), n_merchants, p=cat_w / cat_w.sum())
        self.merchant_ids = [f"m-{self.tag}-{i:05d}" for i in range(n_merchants)]
        self.merchant_country = [countries[i] for i in m_country.tolist()]
        self.merchant_category = [_CAT_NAMES[i] for i in m_cat.tolist()]
        self.merchant_log = [_CAT_LOG[c] for c in self.merchant_category]
        self.merchants_by: dict[tuple[str, str], list[int]] = {}
        for i, key in enumerate(zip(self.merchant_country, self.merchant_category, strict=True)):
            self.merchants_by.setdefault(key, []).append(i)
        # Every (country, category) gets at least one merchant so draws never fail.
        for country, cat in itertools.product(countries, _CAT_NAMES):
            if (country, cat) not in self.merchants_by:
                self.merchant_ids.append(f"m-{self.tag}-{len(self.merchant_ids):05d}")
                self.merchant_country.append(country)
                self.merchant_category.append(cat)
                self.merchant_log.append(_CAT_LOG[cat])
                self.merchants_by[(country, cat)] = [len(self.merchant_ids) - 1]

        homes = rng.choice(len(countries), n_cards, p=home_w / home_w.sum()).tolist()
        owners = rng.integers(0, n_users, n_cards).tolist()
        octets = rng.integers(1, 255, (n_cards, 3)).tolist()
        # Each card's taste over categories, and 30 merchant picks drawn from it.
        tastes = rng.dirichlet(6.0 * cat_w / cat_w.sum(), n_cards).cumsum(axis=1)
        picks = (rng.random((n_cards, 30, 1)) > tastes[:, None, :]).sum(axis=2)
        picks = np.minimum(picks, len(_CAT_NAMES) - 1).tolist()
        draws = rng.integers(0, 2**31, (n_cards, 35)).tolist()
        n_devices = rng.integers(1, 4, n_cards).tolist()
        mus = rng.normal(0.0, 0.45, n_cards).tolist()
        sigmas = rng.uniform(0.35, 0.8, n_cards).tolist()
        abroad = {h: [c for c in countries if c != h and COUNTRIES[c][2] > 0]
                  for h in countries}
        self.cards: list[Card] = []
        self.cards_by_country: dict[str, list[int]] = {}
        for i in range(n_cards):
            home = countries[homes[i]]
            o = octets[i]
            r = draws[i]
            first = COUNTRIES[home][3][o[0] % len(COUNTRIES[home][3])]
            pool = [self._merchant_in(home, _CAT_NAMES[k], r[j])
                    for j, k in enumerate(picks[i])]
            # The first six are favourites: repeated so they get most of the spending.
            merchants = pool[:6] * 4 + pool[6:]
            travel = abroad[home][r[30] % len(abroad[home])]
            travel_merchants = [
                self._merchant_in(travel, cat, r[31 + j])
                for j, cat in enumerate(("restaurants", "travel", "fuel", "grocery"))
            ]
            card = Card(
                card_id=f"card-{self.tag}-{i:06d}",
                user_id=user_id_for(self.tag, owners[i]),
                home=home,
                ip_prefix=f"{first}.{o[1]}.{o[2]}.",
                devices=[self.new_device() for _ in range(n_devices[i])],
                mu=mus[i],
                sigma=sigmas[i],
                merchants=merchants,
                travel_country=travel,
                travel_merchants=travel_merchants,
            )
            self.cards.append(card)
            self.cards_by_country.setdefault(home, []).append(i)
        self.activity = rng.lognormal(0.0, 1.0, n_cards)

    def _merchant_in(self, country: str, category: str, r: int) -> int:
        candidates = self.merchants_by[(country, category)]
        return candidates[r % len(candidates)]

    def merchant_in(self, country: str, category: str) -> int:
        """A random merchant of ``category`` in ``country`` (uses the world's own RNG)."""
        return self._merchant_in(country, category, self.rng.getrandbits(31))

    def new_device(self) -> str:
        """A device id never seen before."""
        self._device_count += 1
        return f"dev-{self.tag}-{self._device_count:07d}"

    @staticmethod
    def currency(country: str) -> str:
        """The currency used in ``country`` (ISO 4217)."""
        return COUNTRIES[country][0]

    @staticmethod
    def amount(mu: float, sigma: float, category: str, z: float, country: str) -> float:
        """A card's amount for ``category`` at standard-normal draw ``z``, in local money."""
        usd = math.exp(mu + _CAT_LOG[category] + sigma * z)
        return PaymentWorld.local(usd, country)

    @staticmethod
    def local(usd: float, country: str) -> float:
        """``usd`` converted to ``country``'s currency and rounded as that currency is."""
        currency, fx = COUNTRIES[country][0], COUNTRIES[country][1]
        return float(round(usd * fx)) if currency in _NO_CENTS else round(usd * fx, 2)

    def ip_in(self, country: str) -> str:
        """A random IPv4 address in one of ``country``'s ranges."""
        r = self.rng
        firsts = COUNTRIES[country][3]
        return (f"{firsts[r.randrange(len(firsts))]}.{r.randrange(1, 255)}."
                f"{r.randrange(1, 255)}.{r.randrange(1, 255)}")

    def hosting_ip(self) -> str:
        """A random address at a hosting provider or proxy."""
        r = self.rng
        prefix = HOSTING_PREFIXES[r.randrange(len(HOSTING_PREFIXES))]
        return f"{prefix}.{r.randrange(1, 255)}.{r.randrange(1, 255)}"
