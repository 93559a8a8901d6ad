"""The Avro codec: Confluent wire format, every decode reason, schema resolution, interop."""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from typing import Any

import fastavro
import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import SCHEMA_NAMES, load_schema, schema_text
from streams.codec import HEADER, AvroCodec, strip_logical_types
from streams.errors import DecodeError, EncodeError
from streams.registry import LocalSchemaSource, RegistryServer, RemoteSchemaSource, SchemaStore

TS = 1_700_000_000_123
DECIDED = TS + 42

#: One valid value per schema, every field given (defaults included), for round trips.
SAMPLES: dict[str, dict[str, Any]] = {
    "transaction": {
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
    },
    "click_event": {
        "event_id": "e-1",
        "user_id": "u-3",
        "session_id": "s-1",
        "item_id": "i-4",
        "event_type": "add_to_cart",
        "ts": TS,
    },
    "image_upload": {
        "upload_id": "up-1",
        "product_id": "p-1",
        "seller_id": "s-1",
        "uri": "file:///data/uploads/up-1.png",
        "ts": TS,
    },
    "catalog_item": {
        "item_id": "i-4",
        "title": "Kettle",
        "category": "kitchen",
        "price": 29.99,
        "ts": TS,
    },
    "fraud_label": {"txn_id": "tx-1", "is_fraud": True, "ts": TS, "card_id": "card-9"},
    "moderation_review": {
        "upload_id": "up-1",
        "decision": "REJECT",
        "reviewer": "alice",
        "ts": TS,
    },
    "fraud_decision": {
        "txn_id": "tx-1",
        "decision": "REVIEW",
        "score": 0.61,
        "model": "rules@1",
        "ts": TS,
        "decided_at": DECIDED,
        "reasons": ["rule:high_amount"],
        "card_id": "card-9",
        "variant": "challenger",
    },
    "recommendation": {
        "user_id": "u-3",
        "items": [{"item_id": "i-1", "score": 0.9}, {"item_id": "i-2", "score": 0.5}],
        "model": "covisit@3",
        "ts": TS,
    },
    "moderation_decision": {
        "upload_id": "up-1",
        "decision": "APPROVE",
        "scores": {"nudity": 0.01, "violence": 0.0},
        "model": "nsfw@2",
        "ts": TS,
        "decided_at": DECIDED,
        "reasons": [],
    },
    "dead_letter": {
        "source_topic": "p.transactions",
        "partition": 3,
        "offset": 12345678901,
        "reason": "decode.truncated",
        "detail": "body ends early",
        "key": b"card-9",
        "value": b"\x00\x00\x00\x00\x01\x02",
        "ts": TS,
    },
    "training_example": {
        "example_id": "tx-1",
        "model": "fraud",
        "entity_id": "card-9",
        "features": {"amount": 12.5, "velocity": 1.0},
        "label": 0.0,
        "score": 0.1,
        "decided_by": "rules@1",
        "event_ts": TS,
        "ts": DECIDED,
    },
    "model_update": {
        "model": "fraud",
        "version": "7",
        "kind": "onnx",
        "uri": "file:///m/fraud-7.onnx",
        "sha256": "ab" * 32,
        "signature": "cd" * 32,
        "role": "challenger",
        "metrics": {"auc": 0.93},
        "ts": TS,
    },
    "item_signal": {"key": "i:item-1", "kind": "covisit", "data": "{}", "ts": 1_700_000_000_000},
    "entity_observation": {"entity": "m:m-1", "card_id": "c-1", "ts": 1_700_000_000_000},
    "model_event": {
        "event_id": "ev-1",
        "model": "fraud",
        "kind": "drift",
        "detail": "psi 0.3",
        "metrics": {"psi": 0.3},
        "ts": TS,
    },
}
INPUTS = (
    "transaction",
    "click_event",
    "image_upload",
    "catalog_item",
    "fraud_label",
    "moderation_review",
)
DECISIONS = ("fraud_decision", "recommendation", "moderation_decision", "dead_letter")


@pytest.fixture
def store() -> SchemaStore:
    return SchemaStore(None)


def make_codec(store: SchemaStore, name: str, subject: str | None = None) -> AvroCodec:
    return AvroCodec(LocalSchemaSource(store), subject or f"{name}-value", load_schema(name))


def frame(schema_id: int, schema: Any, value: dict[str, Any]) -> bytes:
    """``value`` in the wire format, written with ``schema`` (not through our codec)."""
    buf = io.BytesIO()
    buf.write(HEADER.pack(0, schema_id))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(strip_logical_types(schema)), value)
    return buf.getvalue()


def reason_of(codec: AvroCodec, data: bytes | None) -> str:
    with pytest.raises(DecodeError) as caught:
        codec.decode(data)
    assert caught.value.detail  # always a readable message too
    return caught.value.reason


def test_samples_cover_every_schema() -> None:
    assert set(SAMPLES) == SCHEMA_NAMES
    assert set(INPUTS) | set(DECISIONS) <= SCHEMA_NAMES


@pytest.mark.parametrize(
    "name", INPUTS + DECISIONS + ("training_example", "model_update", "model_event")
)
def test_round_trip(store: SchemaStore, name: str) -> None:
    codec = make_codec(store, name)
    data = codec.encode(SAMPLES[name])
    assert codec.decode(data) == SAMPLES[name]


def test_confluent_header(store: SchemaStore) -> None:
    make_codec(store, "click_event").encode(SAMPLES["click_event"])  # takes id 1
    codec = make_codec(store, "transaction")
    data = codec.encode(SAMPLES["transaction"])
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5])[0] == codec.schema_id == 2
    assert store.schema_by_id(2) == json.dumps(load_schema("transaction"), separators=(",", ":"))


def test_registers_its_schema_under_its_subject(store: SchemaStore) -> None:
    codec = make_codec(store, "fraud_decision", "p.fraud-decisions-value")
    assert store.subjects() == []  # nothing until first use
    schema_id = codec.schema_id
    assert store.subjects() == ["p.fraud-decisions-value"]
    found_id, version, text = store.version("p.fraud-decisions-value")
    assert (found_id, version) == (schema_id, 1)
    assert json.loads(text) == load_schema("fraud_decision")
    # idempotent: a second codec for the same subject gets the same id, no new version
    assert make_codec(store, "fraud_decision", "p.fraud-decisions-value").schema_id == schema_id
    assert store.versions("p.fraud-decisions-value") == [1]


def test_timestamps_come_back_as_int(store: SchemaStore) -> None:
    codec = make_codec(store, "moderation_decision")
    decoded = codec.decode(codec.encode(SAMPLES["moderation_decision"]))
    assert type(decoded["ts"]) is int and type(decoded["decided_at"]) is int
    assert (decoded["ts"], decoded["decided_at"]) == (TS, DECIDED)


def test_encode_rejects_a_value_that_does_not_fit(store: SchemaStore) -> None:
    codec = make_codec(store, "transaction")
    with pytest.raises(EncodeError):
        codec.encode({k: v for k, v in SAMPLES["transaction"].items() if k != "amount"})
    with pytest.raises(EncodeError):
        codec.encode({**SAMPLES["transaction"], "amount": "twelve"})


# -- every decode reason ---------------------------------------------------------------


@pytest.mark.parametrize("data", [b"", None])
def test_empty(store: SchemaStore, data: bytes | None) -> None:
    assert reason_of(make_codec(store, "transaction"), data) == "decode.empty"


@given(first=st.integers(1, 255), rest=st.binary(max_size=64))
@settings(max_examples=50, deadline=None)
def test_bad_magic(first: int, rest: bytes) -> None:
    codec = make_codec(SchemaStore(None), "transaction")
    assert reason_of(codec, bytes([first]) + rest) == "decode.bad_magic"


@pytest.mark.parametrize("data", [b"\x00", b"\x00\x00", b"\x00\x00\x00\x00"])
def test_bad_header(store: SchemaStore, data: bytes) -> None:
    assert reason_of(make_codec(store, "transaction"), data) == "decode.bad_header"


def test_unknown_schema(store: SchemaStore) -> None:
    codec = make_codec(store, "transaction")
    body = codec.encode(SAMPLES["transaction"])[5:]
    data = HEADER.pack(0, 4242) + body
    assert reason_of(codec, data) == "decode.unknown_schema"
    assert reason_of(codec, data) == "decode.unknown_schema"  # cached refusal, same answer


def test_truncated_at_every_length(store: SchemaStore) -> None:
    codec = make_codec(store, "transaction")
    data = codec.encode(SAMPLES["transaction"])
    for cut in range(HEADER.size, len(data)):
        assert reason_of(codec, data[:cut]) == "decode.truncated", cut


def test_trailing_bytes(store: SchemaStore) -> None:
    codec = make_codec(store, "click_event")
    data = codec.encode(SAMPLES["click_event"])
    assert reason_of(codec, data + b"\x00") == "decode.trailing_bytes"
    assert reason_of(codec, data + data) == "decode.trailing_bytes"


def test_malformed_enum_index(store: SchemaStore) -> None:
    codec = make_codec(store, "click_event")
    data = codec.encode({**SAMPLES["click_event"], "ts": 0})
    # the body ends with the enum index (add_to_cart = 2, zigzag 4) and ts 0
    assert data[-2:] == b"\x04\x00"
    assert reason_of(codec, data[:-2] + b"\x28\x00") == "decode.malformed"  # index 20


def test_malformed_utf8(store: SchemaStore) -> None:
    codec = make_codec(store, "click_event")
    data = codec.encode({**SAMPLES["click_event"], "event_id": "ab"})
    assert data[5:8] == b"\x04ab"
    assert reason_of(codec, data[:6] + b"\xff\xfe" + data[8:]) == "decode.malformed"


def test_incompatible_schema(store: SchemaStore) -> None:
    codec = make_codec(store, "transaction")
    codec.encode(SAMPLES["transaction"])  # our schema registered first
    writer = load_schema("transaction")
    for f in writer["fields"]:
        if f["name"] == "amount":
            f["type"] = "string"
    writer_id = store.register("someone-else-value", json.dumps(writer))
    data = frame(writer_id, writer, {**SAMPLES["transaction"], "amount": "12.50"})
    assert reason_of(codec, data) == "decode.incompatible_schema"
    with pytest.raises(DecodeError, match="amount"):
        codec.decode(data)


def test_a_different_record_is_incompatible(store: SchemaStore) -> None:
    clicks = make_codec(store, "click_event")
    data = clicks.encode(SAMPLES["click_event"])
    assert reason_of(make_codec(store, "transaction"), data) == "decode.incompatible_schema"


# -- schema resolution -------------------------------------------------------------------


def test_older_producer_schema_gets_defaults(store: SchemaStore) -> None:
    old = load_schema("fraud_decision")
    old["fields"] = [f for f in old["fields"] if f["name"] not in {"reasons", "card_id", "variant"}]
    old_id = store.register("fraud-decisions-value", json.dumps(old))
    codec = make_codec(store, "fraud_decision", "fraud-decisions-value")
    assert codec.schema_id != old_id
    assert store.versions("fraud-decisions-value") == [1, 2]  # BACKWARD accepts ours
    sent = {
        k: v
        for k, v in SAMPLES["fraud_decision"].items()
        if k not in {"reasons", "card_id", "variant"}
    }
    decoded = codec.decode(frame(old_id, old, sent))
    assert decoded == {**sent, "reasons": [], "card_id": "", "variant": "champion"}
    assert type(decoded["ts"]) is int and type(decoded["decided_at"]) is int


def test_newer_producer_schema_extra_field_dropped(store: SchemaStore) -> None:
    codec = make_codec(store, "transaction", "transactions-value")
    codec.encode(SAMPLES["transaction"])
    newer = load_schema("transaction")
    newer["fields"].append({"name": "channel", "type": "string", "default": "web"})
    new_id = store.register("transactions-value", json.dumps(newer))
    assert new_id != codec.schema_id
    decoded = codec.decode(frame(new_id, newer, {**SAMPLES["transaction"], "channel": "app"}))
    assert decoded == SAMPLES["transaction"]
    assert type(decoded["ts"]) is int


# -- never anything but DecodeError ------------------------------------------------------


@cache
def _fuzz_codecs() -> tuple[AvroCodec, ...]:
    store = SchemaStore(None)
    codecs = tuple(make_codec(store, name) for name in sorted(SCHEMA_NAMES))
    for codec in codecs:
        assert codec.schema_id > 0
    return codecs


def _framed(schema_id: int, body: bytes) -> bytes:
    return HEADER.pack(0, schema_id) + body


@given(
    data=st.one_of(
        st.binary(max_size=80),
        st.builds(_framed, st.integers(0, len(SCHEMA_NAMES) + 2), st.binary(max_size=80)),
    )
)
@settings(max_examples=400, deadline=None)
def test_random_bytes_raise_only_decode_error(data: bytes) -> None:
    for codec in _fuzz_codecs():
        try:
            codec.decode(data)
        except DecodeError as exc:
            assert exc.reason.startswith("decode.")


_text = st.text(max_size=20)


@given(
    txn=st.fixed_dictionaries(
        {
            "txn_id": _text,
            "card_id": _text,
            "user_id": _text,
            "merchant_id": _text,
            "merchant_category": _text,
            "amount": st.floats(allow_nan=False),
            "currency": _text,
            "country": _text,
            "device_id": _text,
            "ip": _text,
            "ts": st.integers(-(2**63), 2**63 - 1),
        }
    )
)
@settings(max_examples=100, deadline=None)
def test_any_transaction_round_trips(txn: dict[str, Any]) -> None:
    codec = _fuzz_codecs()[sorted(SCHEMA_NAMES).index("transaction")]
    assert codec.decode(codec.encode(txn)) == txn


# -- interop with confluent-kafka's serdes over the embedded registry --------------------

TOPIC = "t1.transactions"
CTX = SerializationContext(TOPIC, MessageField.VALUE)


@pytest.fixture
def server() -> Iterator[RegistryServer]:
    with RegistryServer(SchemaStore(None), port=0) as running:
        yield running


@pytest.fixture
def client(server: RegistryServer) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": server.url}) as sr:
        yield sr


def test_our_encode_confluent_decode(server: RegistryServer, client: SchemaRegistryClient) -> None:
    with RemoteSchemaSource({"url": server.url}) as source:
        codec = AvroCodec(source, f"{TOPIC}-value", load_schema("transaction"))
        payload = codec.encode(SAMPLES["transaction"])
    assert server.store.subjects() == [f"{TOPIC}-value"]
    decoded = AvroDeserializer(client)(payload, CTX)
    assert decoded == {**SAMPLES["transaction"], "ts": datetime.fromtimestamp(TS / 1000, UTC)}


def test_confluent_encode_our_decode(server: RegistryServer, client: SchemaRegistryClient) -> None:
    payload = AvroSerializer(client, schema_text("transaction"))(SAMPLES["transaction"], CTX)
    assert payload is not None
    assert server.store.subjects() == [f"{TOPIC}-value"]
    with RemoteSchemaSource({"url": server.url}) as source:
        codec = AvroCodec(source, f"{TOPIC}-value", load_schema("transaction"))
        assert codec.decode(payload) == SAMPLES["transaction"]
        assert codec.schema_id == int.from_bytes(payload[1:5], "big")

        # a newer producer schema through confluent's serializer is resolved to ours
        newer = load_schema("transaction")
        newer["fields"].append({"name": "channel", "type": "string", "default": "web"})
        newer_payload = AvroSerializer(client, json.dumps(newer))(
            {**SAMPLES["transaction"], "channel": "app"}, CTX
        )
        assert newer_payload is not None
        assert codec.decode(newer_payload) == SAMPLES["transaction"]
    assert server.store.versions(f"{TOPIC}-value") == [1, 2]
