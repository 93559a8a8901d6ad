"""The embedded registry against confluent-kafka's own client and Avro serdes (no broker)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from schemas import load_schema, schema_text
from streams.errors import (
    IncompatibleSchemaError,
    PortInUseError,
    RegistryError,
    SchemaNotFoundError,
)
from streams.registry import (
    RegistryServer,
    RemoteSchemaSource,
    SchemaSource,
    SchemaStore,
    register_builtin,
)
from streams.registry.server import CONTENT_TYPE
from streams.topics import TopicCatalog

TXN = schema_text("transaction")
SUBJECT = "t1.transactions-value"
CTX = SerializationContext("t1.transactions", MessageField.VALUE)
TS = 1_700_000_000_123
TRANSACTION: dict[str, Any] = {
    "txn_id": "tx-1",
    "card_id": "card-9",
    "user_id": "u-3",
    "merchant_id": "m-7",
    "merchant_category": "grocery",
    "amount": 12.5,
    "currency": "EUR",
    "country": "FR",
    "device_id": "d-1",
    "ip": "10.0.0.1",
    "ts": TS,
}


def txn_with(field: dict[str, Any]) -> str:
    schema = load_schema("transaction")
    schema["fields"].append(field)
    return json.dumps(schema)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RegistryServer]:
    with RegistryServer(SchemaStore(tmp_path / "registry.json"), port=0) as running:
        yield running


@pytest.fixture
def client(server: RegistryServer) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": server.url}) as sr:
        yield sr


def http(method: str, url: str, body: Any = None) -> tuple[int, str, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": CONTENT_TYPE}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.headers["Content-Type"], json.loads(response.read())
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], json.loads(exc.read())


def test_register_get_and_list(client: SchemaRegistryClient) -> None:
    schema_id = client.register_schema(SUBJECT, Schema(TXN, "AVRO"))
    assert schema_id == 1
    assert client.register_schema("other-value", Schema(TXN, "AVRO")) == schema_id
    assert json.loads(client.get_schema(schema_id).schema_str or "") == load_schema("transaction")
    latest = client.get_latest_version(SUBJECT)
    assert (latest.schema_id, latest.version, latest.subject) == (1, 1, SUBJECT)
    assert latest.guid
    assert client.get_schema_by_guid(str(latest.guid)).schema_str == latest.schema.schema_str
    assert sorted(client.get_subjects()) == ["other-value", SUBJECT]
    assert client.get_subjects(subject_prefix="t1.") == [SUBJECT]
    assert client.get_versions(SUBJECT) == [1]
    assert client.get_version(SUBJECT, 1).schema_id == 1
    found = client.lookup_schema(SUBJECT, Schema(TXN, "AVRO"))
    assert (found.schema_id, found.version) == (1, 1)
    pairs = client.get_schema_versions(schema_id)
    assert sorted((p.subject, p.version) for p in pairs) == [("other-value", 1), (SUBJECT, 1)]
    assert sorted(client.get_subjects_by_schema_id(schema_id)) == ["other-value", SUBJECT]


def test_not_found_errors_carry_confluent_codes(client: SchemaRegistryClient) -> None:
    client.register_schema(SUBJECT, Schema(TXN, "AVRO"))
    cases = [
        (lambda: client.get_schema(42), 40403),
        (lambda: client.get_latest_version("nope-value"), 40401),
        (lambda: client.get_version(SUBJECT, 7), 40402),
        (lambda: client.lookup_schema(SUBJECT, Schema('"string"', "AVRO")), 40403),
    ]
    for call, code in cases:
        with pytest.raises(SchemaRegistryError) as caught:
            call()
        assert (caught.value.http_status_code, caught.value.error_code) == (404, code)
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(SUBJECT, Schema('{"type": "nosuchtype"}', "AVRO"))
    assert (caught.value.http_status_code, caught.value.error_code) == (422, 42201)


def test_compatibility_and_config(client: SchemaRegistryClient) -> None:
    client.register_schema(SUBJECT, Schema(TXN, "AVRO"))
    optional = Schema(txn_with({"name": "channel", "type": "string", "default": "web"}), "AVRO")
    required = Schema(txn_with({"name": "channel", "type": "string"}), "AVRO")
    assert client.test_compatibility(SUBJECT, optional) is True
    assert client.test_compatibility(SUBJECT, required, verbose=True) is False
    assert client.test_compatibility(SUBJECT, required, version=1) is False
    assert client.test_compatibility_all_versions(SUBJECT, optional) is True
    assert client.test_compatibility("fresh-value", required) is True  # nothing to break

    assert client.get_compatibility() == "BACKWARD"
    # annotated "-> str", but it returns the server's JSON answer
    answer: object = client.set_compatibility(level="full")
    assert answer == {"compatibility": "FULL"}
    assert client.get_compatibility() == "FULL"
    client.set_compatibility(SUBJECT, "NONE")
    assert client.get_compatibility(SUBJECT) == "NONE"
    assert client.get_config(SUBJECT).compatibility_level == "NONE"
    assert client.test_compatibility(SUBJECT, required) is True
    with pytest.raises(SchemaRegistryError) as caught:
        client.set_compatibility(level="SIDEWAYS")
    assert caught.value.error_code == 42203


def test_incompatible_schema_gets_409(client: SchemaRegistryClient) -> None:
    client.register_schema(SUBJECT, Schema(TXN, "AVRO"))
    required = Schema(txn_with({"name": "channel", "type": "string"}), "AVRO")
    with pytest.raises(SchemaRegistryError) as caught:
        client.register_schema(SUBJECT, required)
    assert (caught.value.http_status_code, caught.value.error_code) == (409, 409)
    assert "channel" in caught.value.error_message
    assert client.get_versions(SUBJECT) == [1]


def test_raw_http_answers(server: RegistryServer) -> None:
    status, ctype, body = http("POST", f"{server.url}/subjects/{SUBJECT}/versions", {"schema": TXN})
    assert (status, ctype, body["id"]) == (200, CONTENT_TYPE, 1)
    status, _, body = http("GET", f"{server.url}/schemas/ids/1?subject={SUBJECT}")
    assert status == 200 and json.loads(body["schema"])["name"] == "Transaction"
    status, _, body = http("GET", f"{server.url}/subjects/{SUBJECT}/versions/latest")
    assert (body["subject"], body["id"], body["version"]) == (SUBJECT, 1, 1)
    status, _, body = http(
        "POST",
        f"{server.url}/compatibility/subjects/{SUBJECT}/versions/latest?verbose=true",
        {"schema": txn_with({"name": "x", "type": "int"})},
    )
    assert body["is_compatible"] is False and "'x'" in body["messages"][0]
    status, _, body = http("GET", f"{server.url}/subjects/{SUBJECT}/versions/zero")
    assert (status, body["error_code"]) == (422, 42202)
    status, _, body = http(
        "POST",
        f"{server.url}/subjects/x/versions",
        {"schema": TXN, "references": [{"name": "a", "subject": "b", "version": 1}]},
    )
    assert (status, body["error_code"]) == (422, 42201)
    # the serdes' default subject name strategy asks for associations first
    status, _, body = http("GET", f"{server.url}/associations/resources/-/t1.transactions")
    assert (status, body) == (200, [])
    status, _, body = http("GET", f"{server.url}/no/such/path")
    assert (status, body["error_code"]) == (404, 404)
    status, _, body = http("PUT", f"{server.url}/config", {"compatibility": "FORWARD"})
    assert body == {"compatibility": "FORWARD"}
    assert http("GET", f"{server.url}/config")[2] == {"compatibilityLevel": "FORWARD"}


def test_delete_subject(client: SchemaRegistryClient) -> None:
    client.register_schema(SUBJECT, Schema(TXN, "AVRO"))
    assert client.delete_subject(SUBJECT) == [1]
    assert client.get_subjects() == []
    assert client.get_subjects(deleted=True) == [SUBJECT]
    assert client.get_schema(1, subject_name=SUBJECT).schema_str  # ids stay readable
    with pytest.raises(SchemaRegistryError) as caught:
        client.get_versions(SUBJECT)
    assert caught.value.error_code == 40401
    assert client.delete_subject(SUBJECT, permanent=True) == [1]
    assert client.get_subjects(deleted=True) == []


def test_avro_serializer_round_trip(server: RegistryServer, client: SchemaRegistryClient) -> None:
    serializer = AvroSerializer(client, TXN)
    payload = serializer(TRANSACTION, CTX)
    assert payload is not None and payload[0] == 0
    schema_id = int.from_bytes(payload[1:5], "big")
    assert schema_id == client.get_latest_version(SUBJECT).schema_id

    # a fresh client, so the schema really comes from the server by id
    with SchemaRegistryClient({"url": server.url}) as other:
        decoded = AvroDeserializer(other)(payload, CTX)
    assert decoded == {**TRANSACTION, "ts": datetime.fromtimestamp(TS / 1000, UTC)}


def test_deserializer_reads_an_older_writer_schema(client: SchemaRegistryClient) -> None:
    old_payload = AvroSerializer(client, TXN)(TRANSACTION, CTX)
    newer = txn_with({"name": "channel", "type": "string", "default": "web"})
    AvroSerializer(client, newer)({**TRANSACTION, "channel": "app"}, CTX)
    assert client.get_versions(SUBJECT) == [1, 2]
    reader = AvroDeserializer(client, newer)
    assert reader(old_payload, CTX)["channel"] == "web"

    # a reader that follows the subject's latest version looks the writer schema up
    # (deleted=true) and walks the versions in between
    newest = txn_with({"name": "channel", "type": "string", "default": "web"})
    newest = newest.replace('"fields": [', '"doc2": "v3", "fields": [', 1)
    client.register_schema(SUBJECT, Schema(newest, "AVRO"))
    assert client.get_versions(SUBJECT) == [1, 2, 3]
    latest_reader = AvroDeserializer(client, conf={"use.latest.version": True})
    assert latest_reader(old_payload, CTX)["channel"] == "web"


def test_restart_over_the_same_file_keeps_ids(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    with RegistryServer(SchemaStore(path), port=0) as first:
        ids = register_builtin(RemoteSchemaSource({"url": first.url}), TopicCatalog("t1."))
        with SchemaRegistryClient({"url": first.url}) as sr:
            payload = AvroSerializer(sr, TXN)(TRANSACTION, CTX)
    assert ids[SUBJECT] == register_builtin(SchemaStore(None), TopicCatalog("t1."))[SUBJECT]

    with RegistryServer(SchemaStore(path), port=0) as second:
        with RemoteSchemaSource({"url": second.url}) as source:
            assert register_builtin(source, TopicCatalog("t1.")) == ids
            assert source.latest(SUBJECT) == (ids[SUBJECT], TXN)
        with SchemaRegistryClient({"url": second.url}) as sr:
            assert AvroDeserializer(sr)(payload, CTX)["txn_id"] == "tx-1"


def test_remote_source_maps_errors(server: RegistryServer) -> None:
    with RemoteSchemaSource({"url": server.url}) as source:
        assert isinstance(source, SchemaSource)
        schema_id = source.register(SUBJECT, TXN)
        assert source.schema_by_id(schema_id) == TXN
        with pytest.raises(SchemaNotFoundError):
            source.schema_by_id(999)
        with pytest.raises(SchemaNotFoundError):
            source.latest("nope-value")
        with pytest.raises(IncompatibleSchemaError):
            source.register(SUBJECT, txn_with({"name": "channel", "type": "string"}))
        # latest is not cached for ever
        newer = txn_with({"name": "channel", "type": "string", "default": "web"})
        newer_id = source.register(SUBJECT, newer)
        assert source.latest(SUBJECT)[0] == newer_id


def test_port_in_use_and_stop(server: RegistryServer) -> None:
    clash = RegistryServer(SchemaStore(None), port=server.port)
    with pytest.raises(PortInUseError, match=str(server.port)):
        clash.start()
    with RemoteSchemaSource({"url": server.url, "max.retries": 0}) as source:
        source.register(SUBJECT, TXN)  # leaves a keep-alive connection open
        server.stop()
        server.stop()  # idempotent
        # the open connection is closed too: nothing answers after stop()
        with pytest.raises(RegistryError, match="cannot reach the schema registry"):
            source.latest(SUBJECT)
