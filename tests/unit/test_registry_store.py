"""The registry's state: ids, versions, persistence, compatibility (streams.registry.store)."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from schemas import load_schema, schema_text
from streams.errors import IncompatibleSchemaError, RegistryError, SchemaNotFoundError
from streams.registry import (
    CompatibilityError,
    InvalidCompatibilityLevelError,
    InvalidSchemaError,
    InvalidVersionError,
    LocalSchemaSource,
    SchemaSource,
    SchemaStore,
    SubjectNotFoundError,
    VersionNotFoundError,
    register_builtin,
)
from streams.topics import TOPICS, TopicCatalog

TXN = schema_text("transaction")


def txn_with(field: dict[str, object]) -> str:
    schema = load_schema("transaction")
    schema["fields"].append(field)
    return json.dumps(schema)


def test_builtin_ids_are_deterministic(tmp_path: Path) -> None:
    first = register_builtin(SchemaStore(None), TopicCatalog())
    second = register_builtin(SchemaStore(tmp_path / "r.json"), TopicCatalog())
    assert first == second
    assert set(first) == {f"{name}-value" for name in TOPICS}
    # sorted by topic name: "catalog" comes first, ids count up from 1
    assert first["catalog-value"] == 1
    # review-queue carries the moderation-decisions record: same schema, same id
    assert first["review-queue-value"] == first["moderation-decisions-value"]
    assert sorted(set(first.values())) == list(range(1, len(set(first.values())) + 1))


def test_builtin_with_a_prefix_and_idempotent() -> None:
    store = SchemaStore(None)
    ids = register_builtin(store, TopicCatalog("p."))
    assert "p.transactions-value" in ids
    assert register_builtin(LocalSchemaSource(store), TopicCatalog("p.")) == ids
    assert store.versions("p.transactions-value") == [1]


def test_persistence_across_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "registry.json"
    store = SchemaStore(path)
    ids = register_builtin(store, TopicCatalog())
    v2 = txn_with({"name": "channel", "type": "string", "default": "web"})
    new_id = store.register("transactions-value", v2)
    store.set_config("FULL", "fraud-labels-value")
    store.set_config("FORWARD")

    again = SchemaStore(path)
    assert again.subjects() == store.subjects()
    assert again.versions("transactions-value") == [1, 2]
    assert again.version("transactions-value", "latest")[0] == new_id
    assert again.schema_by_id(new_id) == store.schema_by_id(new_id)
    assert again.get_config("fraud-labels-value") == "FULL"
    assert again.get_config() == "FORWARD"
    assert register_builtin(again, TopicCatalog()) == ids
    # the next id carries on after the reloaded ones
    assert again.register("other-value", '"string"') == new_id + 1
    assert not list(path.parent.glob(".registry.json.*"))  # no temp file left behind


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text("{not json")
    with pytest.raises(RegistryError, match="registry.json"):
        SchemaStore(path)


def test_register_is_idempotent() -> None:
    store = SchemaStore(None)
    first = store.register("transactions-value", TXN)
    # the same schema with other whitespace and key order is the same schema
    reordered = json.dumps(load_schema("transaction"), indent=2, sort_keys=True)
    assert store.register("transactions-value", reordered) == first
    assert store.versions("transactions-value") == [1]
    assert store.lookup("transactions-value", reordered) == (first, 1)


def test_same_schema_in_two_subjects_has_one_id() -> None:
    store = SchemaStore(None)
    a = store.register("a-value", TXN)
    b = store.register("b-value", TXN)
    c = store.register("c-value", '"string"')
    assert a == b == 1 and c == 2
    assert store.subject_versions_of(1) == [("a-value", 1), ("b-value", 1)]


def test_incompatible_schema_is_refused() -> None:
    store = SchemaStore(None)
    store.register("transactions-value", TXN)
    required = txn_with({"name": "channel", "type": "string"})
    with pytest.raises(IncompatibleSchemaError) as caught:
        store.register("transactions-value", required)
    assert isinstance(caught.value, CompatibilityError)
    assert any("'channel'" in p for p in caught.value.problems)
    assert store.versions("transactions-value") == [1]
    assert store.test_compatibility("transactions-value", required) == caught.value.problems
    optional = txn_with({"name": "channel", "type": "string", "default": "web"})
    assert store.test_compatibility("transactions-value", optional) == []
    # under NONE anything goes
    store.set_config("NONE", "transactions-value")
    assert store.register("transactions-value", required) == 2


def test_config_global_and_per_subject() -> None:
    store = SchemaStore(None)
    assert store.get_config() == "BACKWARD"
    assert store.get_config("x-value") == "BACKWARD"
    assert store.set_config("forward_transitive", "x-value") == "FORWARD_TRANSITIVE"
    assert store.get_config("x-value") == "FORWARD_TRANSITIVE"
    store.set_config("FULL")
    assert store.get_config("y-value") == "FULL"
    assert store.delete_config("x-value") == "FORWARD_TRANSITIVE"
    assert store.get_config("x-value") == "FULL"
    with pytest.raises(InvalidCompatibilityLevelError):
        store.set_config("SIDEWAYS")


def test_versions_and_lookups() -> None:
    store = SchemaStore(None)
    with pytest.raises(SubjectNotFoundError):
        store.version("nope-value")
    store.register("s", '"int"')
    store.register("s", '"long"')
    assert store.version("s", 1)[2] == '"int"'
    assert store.version("s", "2") == store.version("s", -1) == store.version("s")
    with pytest.raises(VersionNotFoundError):
        store.version("s", 3)
    with pytest.raises(InvalidVersionError):
        store.version("s", 0)
    with pytest.raises(InvalidVersionError):
        store.version("s", "first")
    with pytest.raises(SchemaNotFoundError):
        store.schema_by_id(99)
    with pytest.raises(SchemaNotFoundError) as caught:
        store.lookup("s", '"string"')
    assert not isinstance(caught.value, SubjectNotFoundError)
    assert store.schema_ids() == [1, 2]


def test_invalid_schema_is_refused() -> None:
    store = SchemaStore(None)
    with pytest.raises(InvalidSchemaError, match="not JSON"):
        store.register("s", "{")
    with pytest.raises(InvalidSchemaError, match="invalid Avro schema"):
        store.register("s", '{"type": "record", "name": "R", "fields": [{"name": "a"}]}')
    with pytest.raises(InvalidSchemaError):
        store.register("s", '"nosuchtype"')
    assert store.subjects() == []


def test_soft_and_permanent_delete() -> None:
    store = SchemaStore(None)
    schema_id = store.register("s", '"int"')
    with pytest.raises(RegistryError):
        store.delete_subject("s", permanent=True)  # must be soft-deleted first
    assert store.delete_subject("s") == [1]
    assert store.subjects() == [] and store.subjects(deleted=True) == ["s"]
    with pytest.raises(SubjectNotFoundError):
        store.versions("s")
    assert store.schema_by_id(schema_id) == '"int"'  # ids stay readable
    # registering again starts a new version with the same id
    assert store.register("s", '"int"') == schema_id
    assert store.versions("s") == [2]
    assert store.versions("s", deleted=True) == [1, 2]
    store.delete_subject("s")
    assert store.delete_subject("s", permanent=True) == [1, 2]
    assert store.subjects(deleted=True) == []


def test_local_source_meets_the_protocol() -> None:
    source = LocalSchemaSource(SchemaStore(None))
    assert isinstance(source, SchemaSource)
    schema_id = source.register("transactions-value", TXN)
    assert source.schema_by_id(schema_id) == TXN
    assert source.latest("transactions-value") == (schema_id, TXN)
    with pytest.raises(SchemaNotFoundError):
        source.latest("nope-value")


def test_concurrent_registrations_get_distinct_ids(tmp_path: Path) -> None:
    store = SchemaStore(tmp_path / "r.json")
    ids: dict[int, int] = {}

    def worker(n: int) -> None:
        ids[n] = store.register(
            f"s{n}", json.dumps({"type": "enum", "name": f"E{n}", "symbols": ["A"]})
        )

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ids.values()) == list(range(1, 17))
    assert len(SchemaStore(tmp_path / "r.json").subjects()) == 16
