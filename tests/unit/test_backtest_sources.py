"""Ranges, ordering and export files of replays and backtests (no broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from replay.generator import TrafficGenerator
from replay.sources import (
    Bound,
    FileEvent,
    merge_partitions,
    parse_bound,
    read_file,
    write_export,
)
from streams.errors import ConfigError


def test_bounds_parse_times_offsets_and_relative_times() -> None:
    assert parse_bound(None) is None
    assert parse_bound("@0") == Bound("offset", 0)
    assert parse_bound("1764064800000") == Bound("time", 1_764_064_800_000)
    assert parse_bound("2025-11-25T10:00:00Z") == Bound("time", 1_764_064_800_000)
    assert parse_bound("2025-11-25T10:00:00") == Bound("time", 1_764_064_800_000)
    assert parse_bound("2025-11-25T11:00:00+01:00") == Bound("time", 1_764_064_800_000)
    assert parse_bound("-15m", now_ms=1_000_000_000) == Bound("time", 1_000_000_000 - 900_000)
    assert parse_bound("-2h", now_ms=10**10) == Bound("time", 10**10 - 7_200_000)
    for bad in ("yesterday", "@-1", "@x", "-3w"):
        with pytest.raises(ConfigError):
            parse_bound(bad)


def test_merge_keeps_each_partition_in_order_and_interleaves_by_time() -> None:
    # partition 1 has a late event (ts 5 after ts 30): it must stay behind ts 30
    items = [(0, 10), (0, 20), (0, 40), (1, 15), (1, 30), (1, 5), (1, 50)]
    merged = merge_partitions([items], ts_of=lambda x: x[1], partition_of=lambda x: x[0])
    assert [x for x in merged if x[0] == 1] == [(1, 15), (1, 30), (1, 5), (1, 50)]
    assert [x for x in merged if x[0] == 0] == [(0, 10), (0, 20), (0, 40)]
    assert merged[:3] == [(0, 10), (1, 15), (0, 20)]
    assert len(merged) == len(items)


@pytest.mark.parametrize("suffix", [".jsonl", ".avro"])
def test_export_files_round_trip_and_filter_by_range(tmp_path: Path, suffix: str) -> None:
    gen = TrafficGenerator(seed=3, start_ts_ms=1_765_000_000_000,
                           rates={"transactions": 100.0}, n_cards=500, n_users=300)
    txns = [e.value for e in gen.take(200, {"transactions"})]
    path = tmp_path / f"txns{suffix}"
    n = write_export(path, "transactions", (FileEvent(t, i % 4, i // 4, t["card_id"],
                                                      t["ts"]) for i, t in enumerate(txns)))
    assert n == 200
    back = list(read_file(path, "transactions"))
    assert [e.value for e in back] == txns
    assert all(e.key == t["card_id"] for e, t in zip(back, txns, strict=True))
    if suffix == ".jsonl":
        assert [(e.partition, e.offset) for e in back[:5]] == [(0, 0), (1, 0), (2, 0), (3, 0),
                                                               (0, 1)]
    middle = txns[50]["ts"], txns[149]["ts"]
    sliced = list(read_file(path, "transactions", Bound("time", middle[0]),
                            Bound("time", middle[1])))
    assert [e.value["txn_id"] for e in sliced] == [t["txn_id"] for t in txns
                                                   if middle[0] <= t["ts"] <= middle[1]]


def test_plain_json_lines_are_values_and_bad_lines_are_one_readable_error(
        tmp_path: Path) -> None:
    path = tmp_path / "plain.jsonl"
    path.write_text('{"txn_id": "a", "ts": 1}\n\n{"txn_id": "b", "ts": 2}\n')
    assert [e.value["txn_id"] for e in read_file(path)] == ["a", "b"]
    path.write_text('{"txn_id": "a", "ts": 1}\nnot json\n')
    with pytest.raises(ConfigError, match="plain.jsonl:2"):
        list(read_file(path))
    with pytest.raises(ConfigError, match="no such file"):
        list(read_file(tmp_path / "missing.jsonl"))


@pytest.mark.parametrize("seed", range(5))
def test_the_streaming_merge_gives_the_whole_merge_whatever_the_arrival(seed: int) -> None:
    import random

    from replay.sources import StreamMerge

    rng = random.Random(seed)
    parts = {p: [(p, rng.randrange(0, 1000)) for _ in range(rng.randrange(0, 40))]
             for p in range(4)}
    expected = merge_partitions([[x for p in parts for x in parts[p]]],
                                ts_of=lambda x: x[1], partition_of=lambda x: x[0])
    merge = StreamMerge(ts_of=lambda x: x[1])
    merge.open(sorted(parts))
    cursors = dict.fromkeys(parts, 0)
    out: list[tuple[int, int]] = []
    while any(cursors[p] <= len(parts[p]) for p in parts):
        p = rng.choice([q for q in parts if cursors[q] <= len(parts[q])])
        take = rng.randrange(1, 6)
        for item in parts[p][cursors[p]:cursors[p] + take]:
            merge.push(p, item)
        cursors[p] += take
        if cursors[p] > len(parts[p]):
            merge.close(p)  # the partition's end
        out.extend(merge.ready())
        assert merge.buffered <= sum(len(v) for v in parts.values())
    out.extend(merge.drain())
    assert out == expected
