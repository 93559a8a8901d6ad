"""Avro schema resolution and Confluent compatibility levels (streams.registry.compat)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from schemas import SCHEMA_NAMES, load_schema
from streams.registry.compat import COMPATIBILITY_LEVELS, can_read, check_compatibility


def record(*fields: dict[str, Any], name: str = "T", **extra: Any) -> dict[str, Any]:
    return {"type": "record", "name": name, "fields": list(fields), **extra}


def f(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


V1 = record(f("id", "string"), f("amount", "double"))


# --- records ---------------------------------------------------------------------------------


def test_adding_a_field_with_default_is_backward_and_forward_compatible() -> None:
    v2 = record(f("id", "string"), f("amount", "double"), f("note", "string", default=""))
    assert check_compatibility(v2, [V1], "BACKWARD") == []
    assert check_compatibility(v2, [V1], "FORWARD") == []
    assert check_compatibility(v2, [V1], "FULL") == []


def test_adding_a_field_without_default_is_refused_under_backward() -> None:
    v2 = record(f("id", "string"), f("amount", "double"), f("note", "string"))
    problems = check_compatibility(v2, [V1], "BACKWARD")
    assert len(problems) == 1
    assert "'note'" in problems[0] and "no default" in problems[0]
    # old readers ignore the new field: forward compatible
    assert check_compatibility(v2, [V1], "FORWARD") == []
    assert check_compatibility(v2, [V1], "NONE") == []


def test_removing_a_field_is_backward_but_not_forward_compatible() -> None:
    v2 = record(f("id", "string"))
    assert check_compatibility(v2, [V1], "BACKWARD") == []
    problems = check_compatibility(v2, [V1], "FORWARD")
    assert problems and "'amount'" in problems[0]


def test_removing_a_field_with_default_is_fully_compatible() -> None:
    v1 = record(f("id", "string"), f("note", "string", default="x"))
    assert check_compatibility(record(f("id", "string")), [v1], "FULL") == []


def test_field_alias_matches_a_renamed_writer_field() -> None:
    reader = record(f("identifier", "string", aliases=["id"]), f("amount", "double"))
    assert can_read(reader, V1) == []
    assert can_read(record(f("identifier", "string"), f("amount", "double")), V1) != []


def test_record_names_must_match_unless_aliased() -> None:
    writer = record(f("id", "string"), name="Old", namespace="a")
    assert can_read(record(f("id", "string"), name="New"), writer) != []
    assert can_read(record(f("id", "string"), name="New", aliases=["a.Old"]), writer) == []
    # the namespace does not take part (Avro compares unqualified names)
    assert can_read(record(f("id", "string"), name="Old", namespace="b"), writer) == []


# --- promotions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("int", "long"),
        ("int", "float"),
        ("int", "double"),
        ("long", "float"),
        ("long", "double"),
        ("float", "double"),
        ("string", "bytes"),
        ("bytes", "string"),
    ],
)
def test_promotions(writer: str, reader: str) -> None:
    assert can_read(reader, writer) == []


@pytest.mark.parametrize(
    ("writer", "reader"),
    [
        ("long", "int"),
        ("double", "float"),
        ("string", "int"),
        ("boolean", "int"),
        ("null", "string"),
    ],
)
def test_no_promotion(writer: str, reader: str) -> None:
    assert can_read(reader, writer) != []


def test_int_to_long_field_is_backward_not_forward() -> None:
    v1 = record(f("n", "int"))
    v2 = record(f("n", {"type": "long", "logicalType": "timestamp-millis"}))
    assert check_compatibility(v2, [v1], "BACKWARD") == []
    problems = check_compatibility(v2, [v1], "FORWARD")
    assert problems and "/n" in problems[0]


# --- enums -----------------------------------------------------------------------------------

E1 = {"type": "enum", "name": "Decision", "symbols": ["APPROVE", "DECLINE"]}
E2 = {"type": "enum", "name": "Decision", "symbols": ["APPROVE", "DECLINE", "REVIEW"]}


def test_enum_symbol_added() -> None:
    # new readers know every old symbol; old readers may meet REVIEW
    assert check_compatibility(E2, [E1], "BACKWARD") == []
    problems = check_compatibility(E2, [E1], "FORWARD")
    assert problems and "REVIEW" in problems[0]


def test_enum_symbol_removed() -> None:
    problems = check_compatibility(E1, [E2], "BACKWARD")
    assert problems and "REVIEW" in problems[0]
    assert check_compatibility(E1, [E2], "FORWARD") == []


def test_enum_default_accepts_unknown_symbols() -> None:
    reader = {**E1, "default": "APPROVE"}
    assert can_read(reader, E2) == []


# --- unions ----------------------------------------------------------------------------------


def test_non_union_writer_matches_a_reader_branch() -> None:
    assert can_read(["null", "string"], "string") == []
    assert can_read(["null", "long"], "int") == []  # via promotion
    assert can_read(["null", "string"], "int") != []


def test_every_writer_branch_must_resolve() -> None:
    assert can_read(["null", "string", "long"], ["null", "string"]) == []
    problems = can_read(["null", "string"], ["null", "string", "long"])
    assert len(problems) == 1 and "long" in problems[0]
    assert can_read("string", ["null", "string"]) != []  # the null branch cannot be read
    assert can_read("string", ["string"]) == []


def test_making_a_field_optional() -> None:
    v1 = record(f("note", "string"))
    v2 = record(f("note", ["null", "string"], default=None))
    assert check_compatibility(v2, [v1], "BACKWARD") == []
    assert check_compatibility(v2, [v1], "FORWARD") != []


# --- arrays, maps, named references, recursion ----------------------------------------------


def test_arrays_and_maps_recurse() -> None:
    assert can_read({"type": "array", "items": "long"}, {"type": "array", "items": "int"}) == []
    assert can_read({"type": "array", "items": "int"}, {"type": "array", "items": "long"}) != []
    assert can_read({"type": "map", "values": "double"}, {"type": "map", "values": "float"}) == []
    assert can_read({"type": "map", "values": "int"}, {"type": "map", "values": "string"}) != []
    assert can_read({"type": "map", "values": "int"}, {"type": "array", "items": "int"}) != []


def test_named_type_references_and_namespaces() -> None:
    item = record(f("item_id", "string"), name="Item")
    writer = record(
        f("first", item),
        f("second", "Item"),  # relative to namespace "shop"
        f("third", "shop.Item"),
        name="Basket",
        namespace="shop",
    )
    reader = copy.deepcopy(writer)
    reader["fields"][0]["type"]["fields"].append(f("score", "double", default=0.0))
    assert can_read(reader, writer) == []
    broken = copy.deepcopy(writer)
    broken["fields"][0]["type"]["fields"].append(f("score", "double"))
    problems = can_read(broken, writer)
    # the change in Item shows at all three fields that use it
    assert len(problems) == 3


def test_unknown_type_is_a_problem_not_an_exception() -> None:
    problems = can_read(record(f("x", "Nowhere")), record(f("x", "string")))
    assert problems and "Nowhere" in problems[0]


def test_recursive_types() -> None:
    node = record(f("value", "int"), f("next", ["null", "Node"], default=None), name="Node")
    node_long = record(f("value", "long"), f("next", ["null", "Node"], default=None), name="Node")
    assert can_read(node, node) == []
    assert can_read(node_long, node) == []
    assert can_read(node, node_long) != []


def test_fixed_sizes_must_match() -> None:
    a = {"type": "fixed", "name": "H", "size": 16}
    assert can_read(a, dict(a)) == []
    assert can_read({**a, "size": 8}, a) != []


# --- levels ----------------------------------------------------------------------------------


def test_transitive_levels_check_every_version() -> None:
    v1 = record(f("id", "string"))
    v2 = record(f("id", "string"), f("n", "int", default=0))
    v3 = record(f("id", "string"), f("n", "int"))  # reads v2, not v1
    assert check_compatibility(v3, [v1, v2], "BACKWARD") == []
    problems = check_compatibility(v3, [v1, v2], "BACKWARD_TRANSITIVE")
    assert len(problems) == 1 and "existing schema 1" in problems[0]
    assert check_compatibility(v3, [v1, v2], "FULL") == []  # and v2 reads v3
    assert check_compatibility(v3, [v1, v2], "FULL_TRANSITIVE") != []
    assert check_compatibility(v3, [], "FULL_TRANSITIVE") == []


def test_unknown_level_raises() -> None:
    with pytest.raises(ValueError, match="unknown compatibility level"):
        check_compatibility(V1, [V1], "SIDEWAYS")
    assert "backward" not in COMPATIBILITY_LEVELS
    assert check_compatibility(V1, [V1], "backward") == []  # case-insensitive


@pytest.mark.parametrize("name", sorted(SCHEMA_NAMES))
def test_real_schemas_are_compatible_with_themselves(name: str) -> None:
    schema = load_schema(name)
    assert can_read(schema, schema) == []
    for level in COMPATIBILITY_LEVELS:
        assert check_compatibility(schema, [load_schema(name)], level) == []
