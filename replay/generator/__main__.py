"""``python -m replay.generator``: print sample events, or measure generation speed.

    python -m replay.generator sample -n 5 --topics transactions
    python -m replay.generator bench --transactions 100000
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter

from replay.generator.traffic import DEFAULT_RATES, TrafficGenerator


def _sample(args: argparse.Namespace) -> int:
    topics = set(args.topics.split(",")) if args.topics else None
    images_dir = args.images_dir or tempfile.mkdtemp(prefix="techshop-images-")
    print(f"images in {images_dir}", file=sys.stderr)
    gen = TrafficGenerator(seed=args.seed, images_dir=images_dir, rates=DEFAULT_RATES,
                           emit_catalog=topics is None or "catalog" in topics)
    for event in gen.take(args.n, topics):
        print(json.dumps({"topic": event.topic, "key": event.key, "value": event.value}))
    return 0


def _bench(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    gen = TrafficGenerator(seed=args.seed, rates={"transactions": args.rate},
                           emit_catalog=False)
    t1 = time.perf_counter()
    events = gen.take(args.transactions, {"transactions"})
    t2 = time.perf_counter()
    patterns = Counter(gen.fraud_pattern(e.value["txn_id"]) for e in events)
    fraud = sum(n for p, n in patterns.items() if p is not None)
    print(json.dumps({
        "transactions": len(events),
        "setup_s": round(t1 - t0, 3),
        "generate_s": round(t2 - t1, 3),
        "txn_per_s": round(len(events) / (t2 - t1)),
        "fraud_share": round(fraud / len(events), 4),
        "patterns": {p: n for p, n in patterns.items() if p is not None},
    }))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m replay.generator", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sample = sub.add_parser("sample", help="print events as JSON lines")
    sample.add_argument("-n", type=int, default=10)
    sample.add_argument("--topics", default="", help="comma-separated logical topics")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--images-dir", default="")
    sample.set_defaults(run=_sample)
    bench = sub.add_parser("bench", help="time the generation of transactions")
    bench.add_argument("--transactions", type=int, default=100_000)
    bench.add_argument("--rate", type=float, default=200.0, help="event-time txn/s")
    bench.add_argument("--seed", type=int, default=0)
    bench.set_defaults(run=_bench)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
