"""The topic catalog: physical names, subjects, prefixes, and the contract's topics."""

from __future__ import annotations

import pytest

from schemas import SCHEMA_NAMES
from streams.errors import ConfigError
from streams.topics import INPUT_TOPICS, TOPICS, TopicCatalog, TopicKind

#: CONTRACTS.md: every topic and the value field its key comes from (None: the original key).
CONTRACT_KEYS: dict[str, str | None] = {
    "transactions": "card_id",
    "clickstream": "user_id",
    "image-uploads": "upload_id",
    "catalog": "item_id",
    "fraud-decisions": "card_id",
    "recommendations": "user_id",
    "moderation-decisions": "upload_id",
    "review-queue": "upload_id",
    "fraud-labels": "card_id",
    "moderation-reviews": "upload_id",
    "dead-letters": None,
}


@pytest.mark.parametrize("name", sorted(TOPICS))
def test_without_prefix(name: str) -> None:
    catalog = TopicCatalog()
    assert catalog.physical(name) == name
    assert catalog.subject(name) == f"{name}-value"
    assert catalog.logical(name) == name
    assert catalog.spec(name) is TOPICS[name]


@pytest.mark.parametrize("prefix", ["p.", "replay-2024_", "t1234abcd."])
@pytest.mark.parametrize("name", sorted(TOPICS))
def test_with_prefix(prefix: str, name: str) -> None:
    catalog = TopicCatalog(prefix)
    physical = catalog.physical(name)
    assert physical == f"{prefix}{name}"
    assert catalog.subject(name) == f"{prefix}{name}-value"
    assert catalog.logical(physical) == name  # logical() undoes physical()
    assert catalog.logical(name) == name
    # a physical name is accepted wherever a logical one is
    assert catalog.physical(physical) == physical
    assert catalog.subject(physical) == f"{physical}-value"
    assert catalog.spec(physical) is TOPICS[name]


def test_contract_example() -> None:
    catalog = TopicCatalog("p.")
    assert catalog.physical("transactions") == "p.transactions"
    assert catalog.subject("transactions") == "p.transactions-value"


def test_logical_leaves_foreign_names_alone() -> None:
    catalog = TopicCatalog("p.")
    assert catalog.logical("q.transactions") == "q.transactions"
    assert catalog.logical("p.no-such-topic") == "p.no-such-topic"


@pytest.mark.parametrize("prefix", ["", "p."])
@pytest.mark.parametrize(
    "name", ["no-such-topic", "Transactions", "", "q.transactions", "transactions-value"]
)
def test_unknown_topic(prefix: str, name: str) -> None:
    catalog = TopicCatalog(prefix)
    for call in (catalog.spec, catalog.physical, catalog.subject):
        with pytest.raises(ConfigError, match="unknown topic") as caught:
            call(name)
        assert "transactions" in str(caught.value)  # lists the known topics
        assert "\n" not in str(caught.value)


@pytest.mark.parametrize("name", sorted(CONTRACT_KEYS))
def test_contract_topics_and_keys(name: str) -> None:
    assert name in TOPICS
    assert TOPICS[name].key_field == CONTRACT_KEYS[name]


def test_kinds_and_schemas() -> None:
    assert set(INPUT_TOPICS) == {"transactions", "clickstream", "image-uploads", "catalog"}
    assert TOPICS["dead-letters"].kind is TopicKind.DEAD_LETTER
    assert {n for n, s in TOPICS.items() if s.kind is TopicKind.FEEDBACK} == {
        "fraud-labels",
        "moderation-reviews",
    }
    assert TOPICS["review-queue"].schema == TOPICS["moderation-decisions"].schema
    for spec in TOPICS.values():
        assert spec.schema in SCHEMA_NAMES
        assert spec.name == next(k for k, v in TOPICS.items() if v is spec)


def test_compaction() -> None:
    assert {n for n, s in TOPICS.items() if s.compacted} == {"catalog", "model-updates"}


def test_all_lists_every_topic_once() -> None:
    specs = TopicCatalog("p.").all()
    assert [s.name for s in specs] == list(TOPICS)
    physical = {TopicCatalog("p.").physical(s.name) for s in specs}
    assert len(physical) == len(TOPICS)
