"""admit(): every raw message is either accepted (in order) or a dead letter; none lost."""

from __future__ import annotations

import json
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import load_schema
from streams.codec import HEADER, AvroCodec
from streams.errors import DecodeError, ProcessingError, ValidationError
from streams.intake import Admitted, Batch, RawMessage, admit, dead_letter
from streams.registry import LocalSchemaSource, SchemaStore
from streams.validation import Limits

NOW = 1_700_000_000_000
TOPIC = "p.transactions"


def txn(i: int, **changes: Any) -> dict[str, Any]:
    return {
        "txn_id": f"tx-{i}",
        "card_id": f"card-{i % 3}",
        "user_id": "u1",
        "merchant_id": "m1",
        "merchant_category": "grocery",
        "amount": 10.0 + i,
        "currency": "EUR",
        "country": "FR",
        "device_id": "d1",
        "ip": "10.0.0.1",
        "ts": NOW - 1000,
        **changes,
    }


@pytest.fixture
def codec() -> AvroCodec:
    return AvroCodec(
        LocalSchemaSource(SchemaStore(None)), f"{TOPIC}-value", load_schema("transaction")
    )


def raw(
    offset: int, value: bytes | None, key: bytes | None = b"card-1", partition: int = 2
) -> RawMessage:
    return RawMessage(TOPIC, partition, offset, key, value, timestamp_ms=NOW - 5)


def test_mixed_batch(codec: AvroCodec) -> None:
    good = [codec.encode(txn(i)) for i in range(4)]
    other_writer = load_schema("transaction")
    other_writer["fields"][5]["type"] = "string"  # amount as a string: cannot be resolved
    other_id = codec.source.register("elsewhere-value", json.dumps(other_writer))
    incompatible = HEADER.pack(0, other_id) + b"\x00"
    messages = [
        raw(100, good[0]),
        raw(101, b"not avro at all", key=b"\xff\xfe"),  # bad magic, non-UTF-8 key
        raw(102, good[1], key=None),
        raw(103, None),  # a null value
        raw(104, codec.encode(txn(9, amount=-3.0))),  # validate.amount
        raw(105, good[2]),
        raw(106, good[3][:-2]),  # truncated
        raw(107, HEADER.pack(0, 999) + good[0][5:]),  # unknown schema id
        raw(108, codec.encode(txn(8, ts=0))),  # validate.ts_range
        raw(109, incompatible),
        raw(110, good[0] + b"\x00"),  # trailing bytes
        raw(111, codec.encode(txn(6, currency="EURO"))),  # validate.currency
    ]
    batch = admit("transactions", messages, codec, Limits(), NOW)

    assert isinstance(batch, Batch)
    assert len(batch.accepted) + len(batch.rejected) == len(messages)
    assert [a.message.offset for a in batch.accepted] == [100, 102, 105]
    assert [a.event["txn_id"] for a in batch.accepted] == ["tx-0", "tx-1", "tx-2"]
    assert all(isinstance(a, Admitted) and a.message in messages for a in batch.accepted)

    assert [(d["offset"], d["reason"]) for d in batch.rejected] == [
        (101, "decode.bad_magic"),
        (103, "decode.empty"),
        (104, "validate.amount"),
        (106, "decode.truncated"),
        (107, "decode.unknown_schema"),
        (108, "validate.ts_range"),
        (109, "decode.incompatible_schema"),
        (110, "decode.trailing_bytes"),
        (111, "validate.currency"),
    ]
    by_offset = {m.offset: m for m in messages}
    for letter in batch.rejected:
        original = by_offset[letter["offset"]]
        assert letter["source_topic"] == TOPIC
        assert letter["partition"] == 2
        assert letter["key"] == original.key  # the original bytes, untouched
        assert letter["value"] == original.value
        assert letter["ts"] == NOW
        assert letter["detail"]


def test_dead_letters_fit_the_dead_letter_schema(codec: AvroCodec) -> None:
    messages = [
        raw(1, b"\x01junk"),
        raw(2, None, key=None),
        raw(3, codec.encode(txn(1, txn_id=""))),
    ]
    batch = admit("transactions", messages, codec, Limits(), NOW)
    assert [d["reason"] for d in batch.rejected] == [
        "decode.bad_magic",
        "decode.empty",
        "validate.empty_id",
    ]
    parsed = fastavro.parse_schema(load_schema("dead_letter"))
    for letter in batch.rejected:
        assert validate(letter, parsed, raise_errors=True)


def test_too_large_uses_the_encoded_size(codec: AvroCodec) -> None:
    value = codec.encode(txn(1, merchant_category="x" * 1000))
    limits = Limits(max_record_bytes=len(value) - 1)
    batch = admit("transactions", [raw(1, value)], codec, limits, NOW)
    assert [d["reason"] for d in batch.rejected] == ["validate.too_large"]
    batch = admit("transactions", [raw(1, value)], codec, Limits(len(value)), NOW)
    assert len(batch.accepted) == 1


def test_empty_batch(codec: AvroCodec) -> None:
    batch = admit("transactions", [], codec, Limits(), NOW)
    assert (batch.accepted, batch.rejected) == ([], [])


def test_dead_letter_of_each_error_kind() -> None:
    message = RawMessage("p.image-uploads", 0, 7, b"up-1", b"\x00\x00\x00\x00\x01")
    for error, reason in [
        (DecodeError("no bytes", "decode.empty"), "decode.empty"),
        (ValidationError("uri too long", "validate.too_large"), "validate.too_large"),
        (ProcessingError("no such file", "image.missing"), "image.missing"),
        (ProcessingError("boom"), "process.error"),
    ]:
        letter = dead_letter(message, error, NOW)
        assert letter == {
            "source_topic": "p.image-uploads",
            "partition": 0,
            "offset": 7,
            "reason": reason,
            "detail": error.detail,
            "key": b"up-1",
            "value": b"\x00\x00\x00\x00\x01",
            "ts": NOW,
        }


def test_detail_is_capped() -> None:
    message = RawMessage("t", 0, 0, None, None)
    letter = dead_letter(message, ProcessingError("x" * 10_000), NOW)
    assert len(letter["detail"]) == 2000


@given(
    values=st.lists(
        st.one_of(st.none(), st.binary(max_size=40), st.sampled_from(["good", "bad"])), max_size=20
    )
)
@settings(max_examples=60, deadline=None)
def test_nothing_is_lost(values: list[Any]) -> None:
    codec = AvroCodec(
        LocalSchemaSource(SchemaStore(None)), f"{TOPIC}-value", load_schema("transaction")
    )
    payloads = [
        codec.encode(txn(i))
        if v == "good"
        else codec.encode(txn(i, amount=float("nan")))
        if v == "bad"
        else v
        for i, v in enumerate(values)
    ]
    messages = [raw(i, p) for i, p in enumerate(payloads)]
    batch = admit("transactions", messages, codec, Limits(), NOW)
    accepted = [a.message.offset for a in batch.accepted]
    rejected = [d["offset"] for d in batch.rejected]
    assert sorted(accepted + rejected) == list(range(len(messages)))
    assert accepted == sorted(accepted) and rejected == sorted(rejected)
    assert accepted == [i for i, v in enumerate(values) if v == "good"]
