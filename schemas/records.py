"""Typed records mirroring the ``.avsc`` schemas, field for field.

Records are frozen dataclasses with ``slots``; ``to_dict``/``from_dict`` convert to and
from the plain dicts the Avro codec reads and writes. Enum fields are plain strings
whose allowed values are listed in the ``*_VALUES`` tuples.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

CLICK_EVENT_TYPES = ("view", "click", "add_to_cart", "purchase")
FRAUD_OUTCOMES = ("APPROVE", "REVIEW", "DECLINE")
MODERATION_OUTCOMES = ("APPROVE", "REJECT", "REVIEW")
REVIEW_VERDICTS = ("APPROVE", "REJECT")


class Record:
    """Base of every record: the schema it mirrors and dict conversion."""

    SCHEMA: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload,no-any-return]

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True, slots=True)
class Transaction(Record):
    SCHEMA: ClassVar[str] = "transaction"
    txn_id: str
    card_id: str
    user_id: str
    merchant_id: str
    merchant_category: str
    amount: float
    currency: str
    country: str
    device_id: str
    ip: str
    ts: int


@dataclass(frozen=True, slots=True)
class ClickEvent(Record):
    SCHEMA: ClassVar[str] = "click_event"
    event_id: str
    user_id: str
    session_id: str
    item_id: str
    event_type: str
    ts: int


@dataclass(frozen=True, slots=True)
class ImageUpload(Record):
    SCHEMA: ClassVar[str] = "image_upload"
    upload_id: str
    product_id: str
    seller_id: str
    uri: str
    ts: int


@dataclass(frozen=True, slots=True)
class CatalogItem(Record):
    SCHEMA: ClassVar[str] = "catalog_item"
    item_id: str
    title: str
    category: str
    price: float
    ts: int


@dataclass(frozen=True, slots=True)
class FraudDecision(Record):
    SCHEMA: ClassVar[str] = "fraud_decision"
    txn_id: str
    decision: str
    score: float
    model: str
    ts: int
    decided_at: int
    reasons: list[str] = field(default_factory=list)
    card_id: str = ""
    variant: str = "champion"


@dataclass(frozen=True, slots=True)
class ScoredItem(Record):
    SCHEMA: ClassVar[str] = "recommendation"
    item_id: str
    score: float


@dataclass(frozen=True, slots=True)
class Recommendation(Record):
    SCHEMA: ClassVar[str] = "recommendation"
    user_id: str
    items: list[ScoredItem]
    model: str
    ts: int

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        items = [i if isinstance(i, ScoredItem) else ScoredItem(**i) for i in data["items"]]
        return cls(user_id=data["user_id"], items=items, model=data["model"], ts=data["ts"])


@dataclass(frozen=True, slots=True)
class ModerationDecision(Record):
    SCHEMA: ClassVar[str] = "moderation_decision"
    upload_id: str
    decision: str
    scores: dict[str, float]
    model: str
    ts: int
    decided_at: int
    reasons: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FraudLabel(Record):
    SCHEMA: ClassVar[str] = "fraud_label"
    txn_id: str
    is_fraud: bool
    ts: int
    card_id: str = ""


@dataclass(frozen=True, slots=True)
class ModerationReview(Record):
    SCHEMA: ClassVar[str] = "moderation_review"
    upload_id: str
    decision: str
    reviewer: str
    ts: int


@dataclass(frozen=True, slots=True)
class DeadLetter(Record):
    SCHEMA: ClassVar[str] = "dead_letter"
    source_topic: str
    partition: int
    offset: int
    reason: str
    detail: str
    # keyword-only: they have defaults (as in the .avsc) but come before ts
    key: bytes | None = field(default=None, kw_only=True)
    value: bytes | None = field(default=None, kw_only=True)
    ts: int


@dataclass(frozen=True, slots=True)
class TrainingExample(Record):
    SCHEMA: ClassVar[str] = "training_example"
    example_id: str
    model: str
    entity_id: str
    features: dict[str, float]
    label: float
    score: float
    decided_by: str
    event_ts: int
    ts: int


@dataclass(frozen=True, slots=True)
class ModelUpdate(Record):
    SCHEMA: ClassVar[str] = "model_update"
    model: str
    version: str
    kind: str
    uri: str
    sha256: str
    signature: str
    # keyword-only: they have defaults but come before ts, in the .avsc's field order
    role: str = field(default="champion", kw_only=True)
    metrics: dict[str, float] = field(default_factory=dict, kw_only=True)
    ts: int


@dataclass(frozen=True, slots=True)
class ModelEvent(Record):
    SCHEMA: ClassVar[str] = "model_event"
    event_id: str
    model: str
    kind: str
    # keyword-only: they have defaults but come before ts, in the .avsc's field order
    detail: str = field(default="", kw_only=True)
    metrics: dict[str, float] = field(default_factory=dict, kw_only=True)
    ts: int


@dataclass(frozen=True, slots=True)
class EntityObservation(Record):
    SCHEMA: ClassVar[str] = "entity_observation"
    entity: str
    card_id: str
    ts: int


@dataclass(frozen=True, slots=True)
class ItemSignal(Record):
    SCHEMA: ClassVar[str] = "item_signal"
    key: str
    kind: str
    data: str
    ts: int


#: Every top-level record, by schema name.
RECORD_TYPES: dict[str, type[Record]] = {
    cls.SCHEMA: cls
    for cls in (
        Transaction, ClickEvent, ImageUpload, CatalogItem, FraudDecision, Recommendation,
        ModerationDecision, FraudLabel, ModerationReview, DeadLetter, TrainingExample,
        ModelUpdate, ModelEvent, EntityObservation, ItemSignal,
    )
}
