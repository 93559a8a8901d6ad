"""Contract checks for input events (CONTRACTS.md "What counts as invalid").

:func:`validate` raises :class:`~streams.errors.ValidationError` whose ``reason`` is the
dead-letter code; it returns nothing for a valid event. Pure: the clock and limits are
arguments.

>>> limits = Limits()
>>> validate("transactions", {"txn_id": "t1", "card_id": "c1", "user_id": "u",
...     "merchant_id": "m", "merchant_category": "grocery", "amount": -1.0,
...     "currency": "EUR", "country": "FR", "device_id": "d", "ip": "1.2.3.4",
...     "ts": 1_700_000_000_000}, 100, now_ms=1_700_000_000_000, limits=limits)
Traceback (most recent call last):
...
streams.errors.ValidationError: amount is -1.0: must be a finite number >= 0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from streams.errors import ValidationError

__all__ = ["Limits", "validate", "EARLIEST_TS_MS"]

#: 2000-01-01T00:00:00Z: anything earlier is an absurd event time.
EARLIEST_TS_MS = 946_684_800_000

#: Fields that must be non-empty ids, per logical input topic.
_ID_FIELDS: dict[str, tuple[str, ...]] = {
    "transactions": ("txn_id", "card_id", "user_id", "merchant_id"),
    "clickstream": ("event_id", "user_id", "session_id", "item_id"),
    "image-uploads": ("upload_id", "product_id", "seller_id"),
    "catalog": ("item_id",),
    "fraud-labels": ("txn_id",),
    "moderation-reviews": ("upload_id", "reviewer"),
}
_MONEY_FIELDS: dict[str, str] = {"transactions": "amount", "catalog": "price"}
_LONG_STRING_LIMITS: dict[str, int] = {"uri": 4096}


@dataclass(frozen=True, slots=True)
class Limits:
    """The bounds an input must respect (from the settings)."""

    max_record_bytes: int = 256 * 1024
    max_string_chars: int = 1024
    max_future_ms: int = 3_600_000


def validate(topic: str, event: dict[str, Any], size: int, *, now_ms: int,
             limits: Limits) -> None:
    """Check one decoded event of logical ``topic`` whose encoded size was ``size`` bytes."""
    if size > limits.max_record_bytes:
        raise ValidationError(
            f"record is {size} bytes, over the {limits.max_record_bytes}-byte limit",
            "validate.too_large",
        )
    # String caps are part of the input contract; internal topics (re-keyed state
    # signals) carry longer JSON payloads and are only bounded by the record size.
    for name, value in event.items() if topic in _ID_FIELDS else ():
        if isinstance(value, str):
            cap = _LONG_STRING_LIMITS.get(name, limits.max_string_chars)
            if len(value) > cap:
                raise ValidationError(
                    f"{name} has {len(value)} characters, over the {cap} limit",
                    "validate.too_large",
                )
    for name in _ID_FIELDS.get(topic, ()):
        if not event.get(name, "").strip():
            raise ValidationError(f"{name} is empty", "validate.empty_id")
    money = _MONEY_FIELDS.get(topic)
    if money is not None:
        amount = event[money]
        if not math.isfinite(amount) or amount < 0:
            raise ValidationError(
                f"{money} is {amount!r}: must be a finite number >= 0", f"validate.{money}"
            )
    if topic == "transactions":
        currency, country = event["currency"], event["country"]
        if len(currency) != 3 or not currency.isalpha():
            raise ValidationError(f"currency {currency!r} is not 3 letters",
                                  "validate.currency")
        if len(country) != 2 or not country.isalpha():
            raise ValidationError(f"country {country!r} is not 2 letters", "validate.country")
    ts = event.get("ts")
    if isinstance(ts, int) and (ts < EARLIEST_TS_MS or ts > now_ms + limits.max_future_ms):
        raise ValidationError(
            f"event time {ts} is before 2000-01-01 or more than "
            f"{limits.max_future_ms} ms ahead of the clock ({now_ms})",
            "validate.ts_range",
        )
