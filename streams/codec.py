"""Avro in the Confluent wire format: byte 0 = 0, bytes 1-4 = schema id, then the body.

One :class:`AvroCodec` per topic value schema, built once: the reader schema is parsed
once, each writer schema id is looked up once (through a :class:`SchemaSource`: the
registry) and its resolution to our schema is checked once and cached. Decoding never
raises anything but :class:`~streams.errors.DecodeError`, whose ``reason`` is a stable
dead-letter code:

==============================  ===========================================================
``decode.empty``                no bytes at all (a null value where an event was expected)
``decode.bad_magic``            byte 0 is not 0: not the Confluent wire format
``decode.bad_header``           fewer than 5 bytes
``decode.unknown_schema``       the schema id is not in the registry
``decode.incompatible_schema``  the writer schema cannot be resolved to ours
``decode.truncated``            the body ends before the record does
``decode.trailing_bytes``       bytes left after the record
``decode.malformed``            a body that is not a valid record (bad enum index, UTF-8)
==============================  ===========================================================

Timestamps stay ``int`` epoch milliseconds (logical types are not converted).
"""

from __future__ import annotations

import copy
import io
import json
import struct
import time
from collections.abc import Callable
from typing import Any

import fastavro

from streams.errors import DecodeError, EncodeError, SchemaNotFoundError
from streams.registry.client import SchemaSource
from streams.registry.compat import can_read

__all__ = ["AvroCodec", "strip_logical_types", "MAGIC", "HEADER"]

MAGIC = 0
HEADER = struct.Struct(">bI")
_UNKNOWN_ID_RETRY_S = 30.0


def strip_logical_types(schema: Any) -> Any:
    """Return a copy of ``schema`` without ``logicalType`` annotations (ints stay ints)."""
    if isinstance(schema, dict):
        return {k: strip_logical_types(v) for k, v in schema.items() if k != "logicalType"}
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    return schema


Reader = Callable[[io.BytesIO], dict[str, Any]]


class AvroCodec:
    """Encode and decode one topic's values; ``subject`` is ``<physical topic>-value``.

    The schema is registered under ``subject`` on first use (idempotent), so producers
    and the registry always agree on the id we write with.
    """

    def __init__(self, source: SchemaSource, subject: str, schema: dict[str, Any]) -> None:
        self.source = source
        self.subject = subject
        self.schema_json = json.dumps(schema)
        self._reader_plain = strip_logical_types(copy.deepcopy(schema))
        self._parsed = fastavro.parse_schema(copy.deepcopy(self._reader_plain))
        self._schema_id: int | None = None
        self._readers: dict[int, Reader] = {}
        self._refused: dict[int, tuple[float, DecodeError]] = {}

    # -- encoding --------------------------------------------------------------
    @property
    def schema_id(self) -> int:
        if self._schema_id is None:
            self._schema_id = self.source.register(self.subject, self.schema_json)
            self._readers[self._schema_id] = self._same_schema_reader
        return self._schema_id

    def encode(self, value: dict[str, Any]) -> bytes:
        """Encode ``value`` (a dict valid for our schema); raises ``EncodeError``."""
        buf = io.BytesIO()
        buf.write(HEADER.pack(MAGIC, self.schema_id))
        try:
            fastavro.schemaless_writer(buf, self._parsed, value)
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise EncodeError(f"cannot encode for {self.subject}: {exc}") from exc
        return buf.getvalue()

    # -- decoding --------------------------------------------------------------
    def decode(self, data: bytes | None) -> dict[str, Any]:
        """Decode one value; raises :class:`DecodeError` with a dead-letter reason."""
        if not data:
            raise DecodeError("no value: expected an Avro event", "decode.empty")
        if data[0] != MAGIC:
            raise DecodeError(
                f"byte 0 is {data[0]}, not 0: not Confluent Avro wire format", "decode.bad_magic"
            )
        if len(data) < HEADER.size:
            raise DecodeError(f"{len(data)} bytes: shorter than the 5-byte header",
                              "decode.bad_header")
        _, schema_id = HEADER.unpack_from(data)
        reader = self._readers.get(schema_id) or self._reader_for(schema_id)
        body = io.BytesIO(data)
        body.seek(HEADER.size)
        try:
            record = reader(body)
        except (EOFError, StopIteration, struct.error) as exc:
            raise DecodeError(f"body ends early (schema id {schema_id}): {exc!r}",
                              "decode.truncated") from None
        except (UnicodeDecodeError, IndexError, ValueError, TypeError, OverflowError) as exc:
            # fastavro reports a body cut inside a varint (last byte still says "more
            # follows") as an IndexError: that is a truncation, not a malformed body.
            if isinstance(exc, IndexError) and body.tell() >= len(data) and data[-1] & 0x80:
                raise DecodeError(f"body ends early (schema id {schema_id}): {exc!r}",
                                  "decode.truncated") from None
            raise DecodeError(f"malformed body (schema id {schema_id}): {exc!r}",
                              "decode.malformed") from None
        if body.tell() != len(data):
            raise DecodeError(
                f"{len(data) - body.tell()} bytes left after the record (schema id {schema_id})",
                "decode.trailing_bytes",
            )
        return record

    def _same_schema_reader(self, fo: io.BytesIO) -> dict[str, Any]:
        return fastavro.schemaless_reader(fo, self._parsed, None)  # type: ignore[return-value]

    def _reader_for(self, schema_id: int) -> Reader:
        refused = self._refused.get(schema_id)
        if refused and time.monotonic() - refused[0] < _UNKNOWN_ID_RETRY_S:
            raise refused[1]
        if schema_id == self.schema_id:
            return self._readers[schema_id]
        try:
            writer_json = json.loads(self.source.schema_by_id(schema_id))
        except SchemaNotFoundError:
            return self._refuse(schema_id, DecodeError(
                f"schema id {schema_id} is not in the registry", "decode.unknown_schema"))
        writer_plain = strip_logical_types(writer_json)
        problems = can_read(self._reader_plain, writer_plain)
        if problems:
            return self._refuse(schema_id, DecodeError(
                f"schema id {schema_id} cannot be read as {self.subject}: "
                + "; ".join(problems[:3]),
                "decode.incompatible_schema",
            ))
        writer = fastavro.parse_schema(writer_plain)
        reader_schema = self._parsed

        def resolve(fo: io.BytesIO) -> dict[str, Any]:
            return fastavro.schemaless_reader(fo, writer, reader_schema)  # type: ignore[return-value]

        self._readers[schema_id] = resolve
        return resolve

    def _refuse(self, schema_id: int, error: DecodeError) -> Reader:
        self._refused[schema_id] = (time.monotonic(), error)
        raise error
