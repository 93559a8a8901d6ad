"""Synthetic traffic for TechShop: demos, tests and bootstrap training.

Pure Python + numpy + Pillow, no Kafka: :class:`TrafficGenerator` yields
:class:`GeneratedEvent` records (logical topic, contract key, Avro-ready value, event
time) for ``catalog``, ``clickstream``, ``transactions``, ``image-uploads`` and
``fraud-labels``, deterministically from a ``seed``; :func:`paced` releases them in
real time. Ground truth (fraud, fraud pattern, image category, reviewer verdict, user
tastes) is kept beside the events, never inside them.

>>> gen = TrafficGenerator(seed=1, rates={"transactions": 1000.0}, n_cards=200, n_users=100)
>>> [e.topic for e in gen.take(2, topics={"transactions"})]
['transactions', 'transactions']

Modules: :mod:`.catalog`, :mod:`.shoppers`, :mod:`.world` and :mod:`.fraud` (the payment
world and its fraud patterns), :mod:`.payments`, :mod:`.images`, :mod:`.traffic`,
:mod:`.pacing`. ``python -m replay.generator --help`` samples events or measures speed.
"""

from replay.generator._common import DEFAULT_START_TS_MS, GeneratedEvent
from replay.generator.catalog import CATEGORIES, Catalog, Item
from replay.generator.fraud import FRAUD_PATTERNS, FraudConfig
from replay.generator.images import (
    BROKEN_CATEGORIES,
    IMAGE_CATEGORIES,
    POLICY_CATEGORIES,
    ImageLabel,
    ImageUploadSimulator,
)
from replay.generator.pacing import Pacer, paced
from replay.generator.payments import PaymentSimulator
from replay.generator.shoppers import ShopperSimulator
from replay.generator.traffic import DEFAULT_RATES, RATED_TOPICS, TOPICS, TrafficGenerator
from replay.generator.world import COUNTRIES, MERCHANT_CATEGORIES, PaymentWorld

__all__ = [
    "BROKEN_CATEGORIES",
    "CATEGORIES",
    "COUNTRIES",
    "DEFAULT_RATES",
    "DEFAULT_START_TS_MS",
    "FRAUD_PATTERNS",
    "IMAGE_CATEGORIES",
    "MERCHANT_CATEGORIES",
    "POLICY_CATEGORIES",
    "RATED_TOPICS",
    "TOPICS",
    "Catalog",
    "FraudConfig",
    "GeneratedEvent",
    "ImageLabel",
    "ImageUploadSimulator",
    "Item",
    "Pacer",
    "PaymentSimulator",
    "PaymentWorld",
    "ShopperSimulator",
    "TrafficGenerator",
    "paced",
]
