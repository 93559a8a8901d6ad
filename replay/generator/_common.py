"""Shared helpers of the generator: seed derivation, ids, the event record, defaults.

Every random choice of the generator comes from an RNG built here from the caller's
``seed`` and a fixed stream path, so each stream (catalog, shoppers, payments, images)
has its own independent, reproducible sequence, whatever the others do.

>>> derive_seed(7, "payments") == derive_seed(7, "payments")
True
>>> derive_seed(7, "payments") != derive_seed(8, "payments")
True
>>> run_tag(7)
'b0ae'
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

__all__ = [
    "DEFAULT_START_TS_MS",
    "EventSource",
    "GeneratedEvent",
    "derive_seed",
    "numpy_rng",
    "py_rng",
    "run_tag",
]

#: 2023-11-14T22:13:20Z: a fixed default so that output does not depend on the clock.
DEFAULT_START_TS_MS = 1_700_000_000_000


@dataclass(frozen=True, slots=True)
class GeneratedEvent:
    """One event for a logical topic: its key (as the contract says), Avro-ready value, time.

    ``value`` holds exactly the fields of the topic's schema (``ts`` equals ``self.ts``).
    """

    topic: str
    key: str
    value: dict[str, Any]
    ts: int


class EventSource(Protocol):
    """A time-ordered, endless stream of events: peek the next time, pop the next event."""

    @property
    def next_ts(self) -> int:
        """Event time of the event :meth:`pop` returns next (never less than the last one)."""
        ...

    def pop(self) -> GeneratedEvent:
        """Return the next event and advance."""
        ...


def derive_seed(seed: int, *path: str) -> int:
    """A 64-bit seed for the sub-stream ``path`` of ``seed`` (stable across platforms)."""
    text = "/".join((str(int(seed)), *path)).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "big")


def numpy_rng(seed: int, *path: str) -> np.random.Generator:
    """A numpy Generator (PCG64) for the sub-stream ``path`` of ``seed``."""
    return np.random.default_rng(derive_seed(seed, *path))


def py_rng(seed: int, *path: str) -> random.Random:
    """A ``random.Random`` for the sub-stream ``path`` of ``seed`` (fast per-event draws)."""
    return random.Random(derive_seed(seed, *path))


def run_tag(seed: int) -> str:
    """A short tag put in every id, so runs with different seeds never share an id."""
    return hashlib.blake2b(str(int(seed)).encode(), digest_size=2).hexdigest()
