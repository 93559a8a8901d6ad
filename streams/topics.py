"""Every topic of the system, declared once: key, value schema, partitions, cleanup.

:class:`TopicCatalog` turns the logical names below into physical ones for a
deployment prefix (``TECHSHOP_TOPIC_PREFIX``), so a replay can run beside live
traffic. Schema subjects follow Confluent's TopicNameStrategy on the physical name.

>>> cat = TopicCatalog("p.")
>>> cat.physical("transactions"), cat.subject("transactions")
('p.transactions', 'p.transactions-value')
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from streams.errors import ConfigError

__all__ = ["TOPICS", "INPUT_TOPICS", "TopicCatalog", "TopicKind", "TopicSpec"]


class TopicKind(StrEnum):
    INPUT = "input"
    DECISION = "decision"
    FEEDBACK = "feedback"
    LEARNING = "learning"
    INTERNAL = "internal"
    DEAD_LETTER = "dead-letter"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One logical topic.

    ``key_field`` names the value field whose string is the record key (``None``: the
    key comes from elsewhere, e.g. the original key for dead letters).
    ``partitions`` of ``None`` means "the deployment's default".
    """

    name: str
    schema: str
    key_field: str | None
    kind: TopicKind
    compacted: bool = False
    partitions: int | None = None
    doc: str = ""


TOPICS: dict[str, TopicSpec] = {
    spec.name: spec
    for spec in (
        TopicSpec("transactions", "transaction", "card_id", TopicKind.INPUT,
                  doc="card payments to score"),
        TopicSpec("clickstream", "click_event", "user_id", TopicKind.INPUT,
                  doc="views, clicks, carts, purchases"),
        TopicSpec("image-uploads", "image_upload", "upload_id", TopicKind.INPUT,
                  doc="product images to moderate (URI only)"),
        TopicSpec("catalog", "catalog_item", "item_id", TopicKind.INPUT, compacted=True,
                  doc="the item catalog; null value deletes"),
        TopicSpec("fraud-decisions", "fraud_decision", "card_id", TopicKind.DECISION),
        TopicSpec("recommendations", "recommendation", "user_id", TopicKind.DECISION),
        TopicSpec("moderation-decisions", "moderation_decision", "upload_id",
                  TopicKind.DECISION),
        TopicSpec("review-queue", "moderation_decision", "upload_id", TopicKind.DECISION,
                  doc="every REVIEW decision, for human reviewers"),
        TopicSpec("fraud-labels", "fraud_label", "card_id", TopicKind.FEEDBACK),
        TopicSpec("moderation-reviews", "moderation_review", "upload_id", TopicKind.FEEDBACK),
        TopicSpec("training-examples", "training_example", "model", TopicKind.LEARNING,
                  partitions=1, doc="one online trainer per model reads it in order"),
        TopicSpec("model-updates", "model_update", "model", TopicKind.LEARNING,
                  compacted=True, partitions=1),
        TopicSpec("model-events", "model_event", "model", TopicKind.LEARNING, partitions=1),
        TopicSpec("fraud-entities", "entity_observation", "entity", TopicKind.INTERNAL,
                  doc="transactions re-keyed by merchant and device, for their velocity"),
        TopicSpec("recommend-signals", "item_signal", "key", TopicKind.INTERNAL,
                  doc="clicks re-keyed by item and category, for co-visitation and trends"),
        TopicSpec("dead-letters", "dead_letter", None, TopicKind.DEAD_LETTER),
    )
}

INPUT_TOPICS: tuple[str, ...] = tuple(n for n, s in TOPICS.items() if s.kind is TopicKind.INPUT)


class TopicCatalog:
    """Physical topic names and schema subjects for one deployment prefix."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix

    def spec(self, name: str) -> TopicSpec:
        """The spec of a logical topic name (a physical name with our prefix works too)."""
        logical = self.logical(name)
        try:
            return TOPICS[logical]
        except KeyError:
            raise ConfigError(
                f"unknown topic {name!r}; topics are: {', '.join(TOPICS)}"
            ) from None

    def logical(self, name: str) -> str:
        if self.prefix and name.startswith(self.prefix) and name[len(self.prefix):] in TOPICS:
            return name[len(self.prefix):]
        return name

    def physical(self, name: str) -> str:
        return f"{self.prefix}{self.spec(name).name}"

    def subject(self, name: str) -> str:
        return f"{self.physical(name)}-value"

    def all(self) -> list[TopicSpec]:
        return list(TOPICS.values())
