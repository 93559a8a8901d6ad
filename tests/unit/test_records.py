"""The typed records mirror the .avsc files field for field, and both meet CONTRACTS.md."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate

from schemas import AVSC_DIR, SCHEMA_NAMES, load_schema, records
from schemas.records import RECORD_TYPES, Record
from streams.topics import TOPICS

TS = 1_700_000_000_000
_PRIMITIVES: dict[str, type] = {
    "string": str,
    "long": int,
    "int": int,
    "double": float,
    "float": float,
    "boolean": bool,
    "bytes": bytes,
}


def python_type(avro: Any) -> Any:
    """The Python annotation a record field of Avro type ``avro`` should carry."""
    if isinstance(avro, str):
        return _PRIMITIVES.get(avro) or getattr(records, avro)
    if isinstance(avro, list):
        branches = [python_type(b) for b in avro if b != "null"]
        assert len(branches) == 1, f"only [null, X] unions are mirrored: {avro}"
        return branches[0] | None if "null" in avro else branches[0]
    kind = avro["type"]
    if kind == "array":
        return list[python_type(avro["items"])]
    if kind == "map":
        return dict[str, python_type(avro["values"])]
    if kind == "enum":
        return str
    if kind == "record":
        return getattr(records, avro["name"])
    return python_type(kind)  # a primitive with a logicalType


def example(avro: Any) -> Any:
    """A valid value of Avro type ``avro`` (the last enum symbol, one-element containers)."""
    if isinstance(avro, list):
        return example(next(b for b in avro if b != "null"))
    if isinstance(avro, str):
        return {
            "string": "x",
            "long": TS,
            "int": 7,
            "double": 0.25,
            "float": 0.5,
            "boolean": True,
            "bytes": b"\x00\xff",
        }[avro]
    kind = avro["type"]
    if kind == "array":
        return [example(avro["items"])]
    if kind == "map":
        return {"k": example(avro["values"])}
    if kind == "enum":
        return avro["symbols"][-1]
    if kind == "record":
        return {f["name"]: example(f["type"]) for f in avro["fields"]}
    return example(kind)


def nested_records(schema: dict[str, Any]) -> list[dict[str, Any]]:
    """``schema`` and every record schema defined inside it."""
    found = [schema]
    for f in schema["fields"]:
        t = f["type"]
        while isinstance(t, dict) and t["type"] in ("array", "map"):
            t = t.get("items", t.get("values"))
        if isinstance(t, dict) and t["type"] == "record":
            found += nested_records(t)
    return found


def test_every_avsc_has_a_record_type() -> None:
    assert {p.stem for p in AVSC_DIR.glob("*.avsc")} == SCHEMA_NAMES == set(RECORD_TYPES)
    for name, cls in RECORD_TYPES.items():
        assert name == cls.SCHEMA
        assert cls.__name__ == load_schema(name)["name"]
        assert issubclass(cls, Record) and dataclasses.is_dataclass(cls)


@pytest.mark.parametrize("name", sorted(SCHEMA_NAMES))
def test_fields_match_in_order_with_types_and_defaults(name: str) -> None:
    for avro in nested_records(load_schema(name)):
        cls = getattr(records, avro["name"])
        fields = dataclasses.fields(cls)
        hints = typing.get_type_hints(cls)
        assert [f.name for f in fields] == [f["name"] for f in avro["fields"]], avro["name"]
        for field, avro_field in zip(fields, avro["fields"], strict=True):
            where = f"{avro['name']}.{field.name}"
            assert hints[field.name] == python_type(avro_field["type"]), where
            if "default" in avro_field:
                if field.default_factory is not dataclasses.MISSING:
                    default = field.default_factory()
                else:
                    default = field.default
                assert default == avro_field["default"], where
                assert type(default) is type(avro_field["default"]), where
            else:
                assert field.default is dataclasses.MISSING, where
                assert field.default_factory is dataclasses.MISSING, where


@pytest.mark.parametrize("name", sorted(SCHEMA_NAMES))
def test_to_dict_validates_against_the_schema(name: str) -> None:
    schema = load_schema(name)
    parsed = fastavro.parse_schema(schema)
    value = example(schema)
    record = RECORD_TYPES[name].from_dict(value)
    assert record.to_dict() == value
    assert validate(record.to_dict(), parsed, raise_errors=True)
    assert RECORD_TYPES[name].from_dict(record.to_dict()) == record

    # only the required fields: the record's own defaults must validate too
    required = {f["name"]: value[f["name"]] for f in schema["fields"] if "default" not in f}
    minimal = RECORD_TYPES[name].from_dict(required)
    assert validate(minimal.to_dict(), parsed, raise_errors=True)


def test_records_are_frozen() -> None:
    label = records.FraudLabel(txn_id="t1", is_fraud=False, ts=TS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        label.is_fraud = True  # type: ignore[misc]


# -- CONTRACTS.md: the minimum fields, their names and types ---------------------------

TS_MILLIS = ("long", "timestamp-millis")

#: The contract's tables: topic -> {field: type}. A type is an Avro primitive, a
#: (primitive, logicalType) pair, ("enum", symbols), ("map", values), ("array", items),
#: ("union", branches) or {record field: type}.
CONTRACT: dict[str, dict[str, Any]] = {
    "transactions": {
        "txn_id": "string",
        "card_id": "string",
        "user_id": "string",
        "merchant_id": "string",
        "merchant_category": "string",
        "amount": "double",
        "currency": "string",
        "country": "string",
        "device_id": "string",
        "ip": "string",
        "ts": TS_MILLIS,
    },
    "clickstream": {
        "event_id": "string",
        "user_id": "string",
        "session_id": "string",
        "item_id": "string",
        "event_type": ("enum", ["view", "click", "add_to_cart", "purchase"]),
        "ts": TS_MILLIS,
    },
    "image-uploads": {
        "upload_id": "string",
        "product_id": "string",
        "seller_id": "string",
        "uri": "string",
        "ts": TS_MILLIS,
    },
    "catalog": {
        "item_id": "string",
        "title": "string",
        "category": "string",
        "price": "double",
        "ts": TS_MILLIS,
    },
    "fraud-decisions": {
        "txn_id": "string",
        "decision": ("enum", ["APPROVE", "REVIEW", "DECLINE"]),
        "score": "double",
        "model": "string",
        "ts": TS_MILLIS,
        "decided_at": TS_MILLIS,
        "reasons": ("array", "string"),
    },
    "recommendations": {
        "user_id": "string",
        "items": ("array", {"item_id": "string", "score": "double"}),
        "model": "string",
        "ts": TS_MILLIS,
    },
    "moderation-decisions": {
        "upload_id": "string",
        "decision": ("enum", ["APPROVE", "REJECT", "REVIEW"]),
        "scores": ("map", "double"),
        "model": "string",
        "ts": TS_MILLIS,
        "decided_at": TS_MILLIS,
        "reasons": ("array", "string"),
    },
    "fraud-labels": {"txn_id": "string", "is_fraud": "boolean", "ts": TS_MILLIS},
    "moderation-reviews": {
        "upload_id": "string",
        "decision": ("enum", ["APPROVE", "REJECT"]),
        "reviewer": "string",
        "ts": TS_MILLIS,
    },
    "dead-letters": {
        "source_topic": "string",
        "partition": "int",
        "offset": "long",
        "reason": "string",
        "detail": "string",
        "key": ("union", ["null", "bytes"]),
        "value": ("union", ["null", "bytes"]),
        "ts": TS_MILLIS,
    },
}
CONTRACT["review-queue"] = CONTRACT["moderation-decisions"]


def matches(avro: Any, expected: Any) -> bool:
    """Whether Avro type ``avro`` is the contract's ``expected`` type."""
    if isinstance(expected, dict):
        return (
            isinstance(avro, dict)
            and avro["type"] == "record"
            and all(
                any(f["name"] == n and matches(f["type"], t) for f in avro["fields"])
                for n, t in expected.items()
            )
        )
    if isinstance(expected, str):
        return avro == expected
    kind, arg = expected
    if kind == "union":
        return avro == arg
    if not isinstance(avro, dict):
        return False
    if kind == "enum":
        return avro["type"] == "enum" and avro["symbols"] == arg
    if kind == "map":
        return avro["type"] == "map" and matches(avro["values"], arg)
    if kind == "array":
        return avro["type"] == "array" and matches(avro["items"], arg)
    return avro == {"type": kind, "logicalType": arg}


def test_contract_covers_every_contract_topic() -> None:
    assert set(CONTRACT) <= set(TOPICS)
    learning = {"training-examples", "model-updates", "model-events", "fraud-entities",
                "recommend-signals"}
    assert set(TOPICS) - set(CONTRACT) == learning  # internal, not part of the contract


@pytest.mark.parametrize("topic", sorted(CONTRACT))
def test_schema_meets_the_contract(topic: str) -> None:
    schema = load_schema(TOPICS[topic].schema)
    by_name = {f["name"]: f for f in schema["fields"]}
    for name, expected in CONTRACT[topic].items():
        assert name in by_name, f"{topic}: no field {name}"
        assert matches(by_name[name]["type"], expected), (
            f"{topic}.{name}: {by_name[name]['type']!r} is not {expected!r}"
        )
    # anything beyond the contract is optional: old readers and writers keep working
    for name, f in by_name.items():
        if name not in CONTRACT[topic]:
            assert "default" in f, f"{topic}.{name} is not in the contract and has no default"
    assert by_name["reasons"]["default"] == [] if "reasons" in by_name else True


@pytest.mark.parametrize("name", sorted(SCHEMA_NAMES))
def test_every_time_field_is_timestamp_millis(name: str) -> None:
    for f in load_schema(name)["fields"]:
        if f["name"] in ("ts", "decided_at", "event_ts"):
            assert f["type"] == {"type": "long", "logicalType": "timestamp-millis"}, f
