"""Avro encode/decode speed: our ``AvroCodec`` (fastavro) against the Apache ``avro`` package.

Both write the Confluent wire format (byte 0 = 0, a 4-byte schema id, the Avro body) of
the same records: realistic ``transactions`` and ``clickstream`` values from the
traffic generator. The ``avro`` side adds the 5-byte header by hand and does the same
header and trailing-byte checks on decode that our codec does. Both use the schema
without logical types (our codec keeps timestamps as int epoch ms; the ``avro``
package would otherwise want ``datetime`` objects). A third row, bare fastavro
(``schemaless_writer``/``reader`` on a BytesIO, no header, no checks), shows what our
wrapper costs.

Run: ``python bench/codec.py`` (``--help`` for options); results in
``bench/out/codec.json``.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import avro.io  # noqa: E402
import avro.schema  # noqa: E402
import fastavro  # noqa: E402

from bench._common import NOISE_NOTE, machine, progress, write_result  # noqa: E402
from replay.generator import TrafficGenerator  # noqa: E402
from schemas import load_schema  # noqa: E402
from streams.codec import HEADER, MAGIC, AvroCodec, strip_logical_types  # noqa: E402
from streams.registry import LocalSchemaSource, SchemaStore  # noqa: E402

DATASETS = {"transactions": "transaction", "clickstream": "click_event"}


class ApacheAvroCodec:
    """The same wire format with the Apache ``avro`` package, writer/reader built once."""

    def __init__(self, schema: dict[str, Any], schema_id: int) -> None:
        self.schema = avro.schema.parse(json.dumps(strip_logical_types(schema)))
        self.writer = avro.io.DatumWriter(self.schema)
        self.reader = avro.io.DatumReader(self.schema, self.schema)
        self.schema_id = schema_id
        self.header = HEADER.pack(MAGIC, schema_id)

    def encode(self, value: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        buf.write(self.header)
        self.writer.write(value, avro.io.BinaryEncoder(buf))
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        if not data or data[0] != MAGIC or len(data) < HEADER.size:
            raise ValueError("not Confluent Avro")
        _, schema_id = HEADER.unpack_from(data)
        if schema_id != self.schema_id:
            raise ValueError(f"unknown schema id {schema_id}")
        body = io.BytesIO(data)
        body.seek(HEADER.size)
        record: dict[str, Any] = self.reader.read(avro.io.BinaryDecoder(body))  # type: ignore[assignment]
        if body.tell() != len(data):
            raise ValueError("trailing bytes")
        return record


class BareFastavro:
    """fastavro with nothing around it: no header, no checks (a floor, not a codec)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.parsed = fastavro.parse_schema(strip_logical_types(schema))

    def encode(self, value: dict[str, Any]) -> bytes:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.parsed, value)
        return buf.getvalue()

    def decode(self, data: bytes) -> dict[str, Any]:
        return fastavro.schemaless_reader(io.BytesIO(data), self.parsed, None)  # type: ignore[return-value]


def _ops(codec: Any, values: list[dict[str, Any]]) -> dict[str, Callable[[], None]]:
    encode, decode = codec.encode, codec.decode
    encoded = [encode(v) for v in values]

    def enc() -> None:
        for v in values:
            encode(v)

    def dec() -> None:
        for b in encoded:
            decode(b)

    def both() -> None:
        for v in values:
            decode(encode(v))

    return {"encode_per_s": enc, "decode_per_s": dec, "round_trip_per_s": both}


def measure(codecs: dict[str, Any], values: list[dict[str, Any]],
            repeat: int) -> dict[str, dict[str, Any]]:
    """Records/s of each operation of each codec: best and median of ``repeat`` passes.

    Passes are interleaved (codec A, B, C, then A, B, C again) so that a burst of load
    from elsewhere on the machine hits every codec alike; the garbage collector is off
    while a pass runs, as in ``timeit``.
    """
    n = len(values)
    ops = {name: _ops(codec, values) for name, codec in codecs.items()}
    rates: dict[str, dict[str, list[float]]] = {
        name: {op: [] for op in ops[name]} for name in codecs}
    for _ in range(repeat):
        for name in codecs:
            for op, fn in ops[name].items():
                gc.collect()
                gc.disable()
                try:
                    start = time.perf_counter()
                    fn()
                    elapsed = time.perf_counter() - start
                finally:
                    gc.enable()
                rates[name][op].append(n / elapsed)
    result: dict[str, dict[str, Any]] = {}
    for name, codec in codecs.items():
        result[name] = {op: {"best": max(r), "median": statistics.median(r), "all": r}
                        for op, r in rates[name].items()}
        result[name]["mean_bytes"] = sum(len(codec.encode(v)) for v in values) / n
    return result


def check(ours: AvroCodec, apache: ApacheAvroCodec, bare: BareFastavro,
          values: list[dict[str, Any]]) -> dict[str, Any]:
    """Identical bytes, and each side reads what the other wrote back to the input."""
    same_bytes = same_body = cross_ok = 0
    first_diff = None
    for i, v in enumerate(values):
        a, b = ours.encode(v), apache.encode(v)
        same_bytes += a == b
        same_body += a[HEADER.size:] == bare.encode(v)
        if ours.decode(b) == v and apache.decode(a) == v:
            cross_ok += 1
        elif first_diff is None:
            first_diff = i
    n = len(values)
    return {"records": n, "identical_wire_bytes": same_bytes,
            "body_equals_bare_fastavro": same_body, "cross_decode_equal_input": cross_ok,
            "all_identical": same_bytes == n and same_body == n and cross_ok == n,
            "first_mismatch_index": first_diff}


def generate(topic: str, n: int, seed: int) -> list[dict[str, Any]]:
    gen = TrafficGenerator(seed=seed, rates={topic: 100.0})
    return [e.value for e in gen.take(n, {topic})]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000, help="records per data set")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed passes per operation; the best is reported")
    parser.add_argument("--seed", type=int, default=1, help="traffic generator seed")
    parser.add_argument("--topics", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    args = parser.parse_args()

    result: dict[str, Any] = {"benchmark": "codec", "machine": machine(),
                              "params": vars(args), "datasets": {}, "note": NOISE_NOTE}
    source = LocalSchemaSource(SchemaStore(None))
    lines = []
    for topic in args.topics:
        schema_name = DATASETS[topic]
        progress(f"{topic}: generating {args.records} records (seed {args.seed})")
        values = generate(topic, args.records, args.seed)
        schema = load_schema(schema_name)
        ours = AvroCodec(source, f"bench.{topic}-value", schema)
        apache = ApacheAvroCodec(schema, ours.schema_id)
        bare = BareFastavro(schema)
        progress(f"{topic}: checking bytes")
        checked = check(ours, apache, bare, values)
        progress(f"{topic}: timing ours, avro, bare fastavro ({args.repeat} passes each)")
        figures = measure({"ours": ours, "avro": apache, "fastavro_bare": bare}, values,
                          args.repeat)
        ratios = {op: figures["ours"][op]["best"] / figures["avro"][op]["best"]
                  for op in ("encode_per_s", "decode_per_s", "round_trip_per_s")}
        wrapper = {op: figures["ours"][op]["best"] / figures["fastavro_bare"][op]["best"]
                   for op in ("encode_per_s", "decode_per_s", "round_trip_per_s")}
        result["datasets"][topic] = {"schema": schema_name, "check": checked,
                                     "codecs": figures, "ratio_ours_over_avro": ratios,
                                     "ratio_ours_over_bare_fastavro": wrapper}
        lines.append(f"\n{topic} ({args.records} records, schema {schema_name}, "
                     f"{figures['ours']['mean_bytes']:.0f} bytes each on the wire; "
                     f"best of {args.repeat})")
        lines.append(f"  {'codec':<28}{'encode/s':>12}{'decode/s':>12}{'round trip/s':>14}")
        labels = {"ours": "ours (AvroCodec, fastavro)", "avro": "avro 1.x (Apache)",
                  "fastavro_bare": "fastavro bare (no header)"}
        for name, fig in figures.items():
            lines.append(f"  {labels[name]:<28}{fig['encode_per_s']['best']:>12,.0f}"
                         f"{fig['decode_per_s']['best']:>12,.0f}"
                         f"{fig['round_trip_per_s']['best']:>14,.0f}")
        lines.append(f"  {'ratio ours / avro':<28}{ratios['encode_per_s']:>11.1f}x"
                     f"{ratios['decode_per_s']:>11.1f}x{ratios['round_trip_per_s']:>13.1f}x")
        lines.append(f"  {'ratio ours / bare fastavro':<28}{wrapper['encode_per_s']:>12.2f}"
                     f"{wrapper['decode_per_s']:>12.2f}{wrapper['round_trip_per_s']:>14.2f}")
        verdict = ("identical" if checked["all_identical"] else "NOT identical")
        lines.append(f"  bytes: {verdict} - {checked['identical_wire_bytes']}/{checked['records']}"
                     f" records give the same wire bytes (header + body) from both codecs, "
                     f"{checked['body_equals_bare_fastavro']} bodies equal bare fastavro's, "
                     f"{checked['cross_decode_equal_input']} read back equal to the input "
                     f"by the other codec")

    path = write_result("codec", result)
    print("Avro codec speed: encode, decode and encode+decode of the same records, "
          "Confluent wire format.")
    print(NOISE_NOTE)
    print("\n".join(lines))
    print("\nMEASURED.md says: fastavro decode ~200k records/s, the avro package ~60k.")
    print(f"\nresults: {path}")
    return 0 if all(d["check"]["all_identical"] for d in result["datasets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
