"""Fraud patterns: each plans a small episode of transactions with its own signature.

- ``card_testing``: one stolen card tried for tiny amounts at many different merchants
  in a burst (a bot, seconds apart, from a hosting-provider IP), sometimes ending in
  one large cash-out purchase.
- ``account_takeover``: a new device in a foreign country, with that country's IP and
  currency, spends several times the card's habit on resellable goods.
- ``merchant_compromise``: many cards pay (legitimately) at one compromised merchant;
  minutes later most of them are defrauded elsewhere from unknown devices.
- ``high_value_burst``: a rapid series of large purchases in the home country, half of
  the time from the card's own (stolen) device.

An injected pattern shift, off by default (:data:`SHIFT_PATTERNS`, weighted in by
:meth:`FraudConfig.shifted`), for drift and retraining tests:

- ``gift_card_drain``: a cloned device of the card (known device, home network, home
  country) buys gift cards and digital goods for ordinary amounts, a few minutes apart,
  from many merchants: nothing the original four patterns taught a model to look for.

Times are milliseconds from the start of the episode; :class:`FraudConfig` holds every
knob, and :meth:`FraudConfig.expected_fraud_txns` is what the payment simulator uses
to hit the requested fraud rate.

>>> from replay.generator.world import PaymentWorld
>>> import random
>>> w = PaymentWorld(seed=1, n_cards=40, n_merchants=60, n_users=30)
>>> plan = plan_episode("card_testing", w, random.Random(0), FraudConfig(), 1_000)
>>> all(p.is_fraud and p.pattern == "card_testing" for p in plan)
True
>>> len({p.merchant for p in plan}) > 1
True
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from replay.generator.world import COUNTRIES, PaymentWorld

__all__ = ["FRAUD_PATTERNS", "SHIFT_PATTERNS", "FraudConfig", "PlannedTxn", "plan_episode"]

FRAUD_PATTERNS = ("card_testing", "account_takeover", "merchant_compromise", "high_value_burst")
#: Patterns outside the default mix: an injected shift (see :meth:`FraudConfig.shifted`).
SHIFT_PATTERNS = ("gift_card_drain",)

_RESALE = ("electronics", "jewelry", "gift_cards")
_FOREIGN = tuple(c for c in COUNTRIES if c not in ("US", "GB", "CA", "AU"))
_MINUTE = 60_000


@dataclass(frozen=True, slots=True)
class FraudConfig:
    """Knobs of the fraud patterns and of the labels (chargebacks) that follow.

    ``mix`` is the share of *episodes* of each pattern. Label delays are log-normal
    with median ``label_delay_median_ms``, clipped to ``[label_delay_min_ms,
    label_delay_max_ms]`` (defaults: 1 hour, 1.5 days, 6 days, inside the 7-day label
    window of the contract). ``legit_label_rate`` is the share of legitimate
    transactions that get a confirmed-legitimate label (ten times more for purchases
    abroad, which customers are more often asked to confirm). ``warmup_ms`` is how far
    back episodes are planned when a stream warm-starts (long enough for every pattern
    to reach a steady state).
    """

    mix: dict[str, float] = field(default_factory=lambda: {
        "card_testing": 0.25, "account_takeover": 0.35,
        "merchant_compromise": 0.10, "high_value_burst": 0.30,
    })
    card_testing_txns: tuple[int, int] = (5, 20)
    card_testing_gap_ms: float = 4_000.0
    cash_out_probability: float = 0.3
    takeover_txns: tuple[int, int] = (1, 5)
    takeover_gap_ms: float = 3 * _MINUTE
    compromise_cards: tuple[int, int] = (8, 25)
    compromise_window_ms: int = 3 * _MINUTE
    compromise_defraud_probability: float = 0.8
    compromise_delay_ms: float = 5 * _MINUTE
    burst_txns: tuple[int, int] = (3, 8)
    burst_gap_ms: float = 20_000.0
    drain_txns: tuple[int, int] = (5, 12)
    drain_gap_ms: float = 60_000.0
    label_delay_min_ms: int = 3_600_000
    label_delay_median_ms: int = 36 * 3_600_000
    label_delay_max_ms: int = 6 * 24 * 3_600_000
    label_delay_sigma: float = 0.9
    legit_label_rate: float = 0.002
    warmup_ms: int = 30 * _MINUTE

    def __post_init__(self) -> None:
        unknown = set(self.mix) - set(FRAUD_PATTERNS) - set(SHIFT_PATTERNS)
        if unknown or not any(w > 0 for w in self.mix.values()):
            raise ValueError(f"mix must weight some of {FRAUD_PATTERNS + SHIFT_PATTERNS}; "
                             f"got {self.mix}")
        if not 0 < self.label_delay_min_ms <= self.label_delay_median_ms \
                <= self.label_delay_max_ms:
            raise ValueError("need 0 < label_delay_min_ms <= median <= max")

    @classmethod
    def shifted(cls, share: float = 0.6, **knobs: object) -> FraudConfig:
        """The default mix with ``gift_card_drain`` taking ``share`` of the episodes:
        the injected pattern shift of the drift and retraining tests."""
        base = cls().mix
        rest = sum(base.values())
        mix = {p: w / rest * (1.0 - share) for p, w in base.items()}
        return cls(mix={**mix, "gift_card_drain": share}, **knobs)  # type: ignore[arg-type]

    def expected_fraud_txns(self) -> float:
        """Mean number of fraudulent transactions per episode, over the mix."""
        def mean(r: tuple[int, int]) -> float:
            return (r[0] + r[1]) / 2

        per = {
            "card_testing": mean(self.card_testing_txns) + self.cash_out_probability,
            "account_takeover": mean(self.takeover_txns),
            "merchant_compromise": mean(self.compromise_cards)
            * self.compromise_defraud_probability * 1.5,
            "high_value_burst": mean(self.burst_txns),
            "gift_card_drain": mean(self.drain_txns),
        }
        total = sum(self.mix.values())
        return sum(w * per[p] for p, w in self.mix.items()) / total

    def expected_legit_txns(self) -> float:
        """Mean number of legitimate transactions an episode adds (compromise exposure)."""
        share = self.mix.get("merchant_compromise", 0.0) / sum(self.mix.values())
        return share * (self.compromise_cards[0] + self.compromise_cards[1]) / 2

    def label_delay(self, rng: random.Random) -> int:
        """A chargeback/confirmation delay in ms, always > 0."""
        median = self.label_delay_median_ms
        delay = int(rng.lognormvariate(0.0, self.label_delay_sigma) * median)
        return max(self.label_delay_min_ms, min(self.label_delay_max_ms, delay))


@dataclass(slots=True)
class PlannedTxn:
    """A transaction an episode scheduled at ``ts`` (``pattern`` None: not fraud)."""

    ts: int
    card: int
    merchant: int
    amount: float
    country: str
    device_id: str
    ip: str
    pattern: str | None
    is_fraud: bool


def plan_episode(pattern: str, world: PaymentWorld, rng: random.Random, cfg: FraudConfig,
                 t0: int) -> list[PlannedTxn]:
    """Plan one episode of ``pattern`` starting at event time ``t0`` (ms)."""
    planners = {
        "card_testing": _card_testing,
        "account_takeover": _account_takeover,
        "merchant_compromise": _merchant_compromise,
        "high_value_burst": _high_value_burst,
        "gift_card_drain": _gift_card_drain,
    }
    return planners[pattern](world, rng, cfg, t0)


def _victim(world: PaymentWorld, rng: random.Random) -> int:
    return rng.randrange(len(world.cards))


def _habit_usd(world: PaymentWorld, card: int, category: str, rng: random.Random) -> float:
    c = world.cards[card]
    return world.amount(c.mu, c.sigma, category, rng.gauss(0.0, 1.0), "US")


def _card_testing(world: PaymentWorld, rng: random.Random, cfg: FraudConfig,
                  t0: int) -> list[PlannedTxn]:
    card = _victim(world, rng)
    home = world.cards[card].home
    device, ip = world.new_device(), world.hosting_ip()
    n = rng.randint(*cfg.card_testing_txns)
    plan: list[PlannedTxn] = []
    t = float(t0)
    for _ in range(n):
        category = rng.choice(("digital_goods", "digital_goods", "entertainment", "gift_cards"))
        usd = rng.choice((1.0, 1.0, 0.5, 0.99, 2.0, round(rng.uniform(0.1, 5.0), 2)))
        plan.append(PlannedTxn(int(t), card, world.merchant_in(home, category),
                               world.local(usd, home), home, device, ip, "card_testing", True))
        t += max(200.0, rng.expovariate(1.0 / cfg.card_testing_gap_ms))
    if rng.random() < cfg.cash_out_probability:
        category = rng.choice(_RESALE)
        plan.append(PlannedTxn(int(t), card, world.merchant_in(home, category),
                               world.local(rng.uniform(200.0, 800.0), home), home, device, ip,
                               "card_testing", True))
    return plan


def _account_takeover(world: PaymentWorld, rng: random.Random, cfg: FraudConfig,
                      t0: int) -> list[PlannedTxn]:
    card = _victim(world, rng)
    home = world.cards[card].home
    country = rng.choice([c for c in _FOREIGN if c != home])
    device, ip = world.new_device(), world.ip_in(country)
    plan: list[PlannedTxn] = []
    t = float(t0)
    for _ in range(rng.randint(*cfg.takeover_txns)):
        category = rng.choice(("electronics", "electronics", "jewelry", "gift_cards", "travel"))
        usd = max(rng.uniform(300.0, 3000.0), rng.uniform(5.0, 20.0)
                  * _habit_usd(world, card, category, rng))
        plan.append(PlannedTxn(int(t), card, world.merchant_in(country, category),
                               world.local(usd, country), country, device, ip,
                               "account_takeover", True))
        t += rng.expovariate(1.0 / cfg.takeover_gap_ms)
    return plan


def _merchant_compromise(world: PaymentWorld, rng: random.Random, cfg: FraudConfig,
                         t0: int) -> list[PlannedTxn]:
    # Skimmed at a physical shop: the merchant is domestic to the cards it exposes.
    home = world.cards[_victim(world, rng)].home
    category = rng.choice(("restaurants", "fuel", "grocery", "fashion"))
    merchant = world.merchant_in(home, category)
    pool = world.cards_by_country[home]
    k = min(len(pool), rng.randint(*cfg.compromise_cards))
    plan: list[PlannedTxn] = []
    end = t0 + cfg.compromise_window_ms
    for card in rng.sample(pool, k):
        c = world.cards[card]
        t_hit = t0 + rng.randrange(cfg.compromise_window_ms)
        plan.append(PlannedTxn(t_hit, card, merchant,
                               world.amount(c.mu, c.sigma, category, rng.gauss(0, 1), home),
                               home, c.devices[0], c.ip_prefix + str(rng.randrange(1, 255)),
                               None, False))
        if rng.random() >= cfg.compromise_defraud_probability:
            continue
        abroad = rng.random() < 0.4
        country = rng.choice([x for x in _FOREIGN if x != home]) if abroad else home
        device = world.new_device()
        ip = world.ip_in(country) if abroad else world.hosting_ip()
        t = end + 30_000 + rng.expovariate(1.0 / cfg.compromise_delay_ms)
        for _ in range(rng.randint(1, 2)):
            cat = rng.choice(_RESALE)
            usd = max(150.0, rng.uniform(3.0, 10.0) * _habit_usd(world, card, cat, rng))
            plan.append(PlannedTxn(int(t), card, world.merchant_in(country, cat),
                                   world.local(usd, country), country, device, ip,
                                   "merchant_compromise", True))
            t += rng.expovariate(1.0 / 60_000.0)
    return plan


def _high_value_burst(world: PaymentWorld, rng: random.Random, cfg: FraudConfig,
                      t0: int) -> list[PlannedTxn]:
    card = _victim(world, rng)
    c = world.cards[card]
    device = c.devices[0] if rng.random() < 0.5 else world.new_device()
    ip = c.ip_prefix + str(rng.randrange(1, 255))
    plan: list[PlannedTxn] = []
    t = float(t0)
    for _ in range(rng.randint(*cfg.burst_txns)):
        category = rng.choice(("electronics", "jewelry", "gift_cards", "travel", "fashion"))
        usd = max(rng.uniform(500.0, 5000.0), rng.uniform(10.0, 40.0)
                  * _habit_usd(world, card, category, rng))
        plan.append(PlannedTxn(int(t), card, world.merchant_in(c.home, category),
                               world.local(usd, c.home), c.home, device, ip,
                               "high_value_burst", True))
        t += rng.expovariate(1.0 / cfg.burst_gap_ms)
    return plan


def _gift_card_drain(world: PaymentWorld, rng: random.Random, cfg: FraudConfig,
                     t0: int) -> list[PlannedTxn]:
    card = _victim(world, rng)
    c = world.cards[card]
    plan: list[PlannedTxn] = []
    t = float(t0)
    for _ in range(rng.randint(*cfg.drain_txns)):
        category = rng.choice(("gift_cards", "gift_cards", "digital_goods"))
        usd = rng.uniform(40.0, 150.0)
        plan.append(PlannedTxn(int(t), card, world.merchant_in(c.home, category),
                               world.local(usd, c.home), c.home, c.devices[0],
                               c.ip_prefix + str(rng.randrange(1, 255)), "gift_card_drain",
                               True))
        t += max(15_000.0, rng.expovariate(1.0 / cfg.drain_gap_ms))
    return plan
