"""Backtest speed: read + decode + decide in process, against the live pipeline and a
bare decode loop, on the same transactions in the same run.

Starts an :class:`~streams.stack.EmbeddedStack` on free ports in a temporary directory,
trains (or reuses, ``--models DIR``) the fraud models, generates ``--events``
transactions and produces them onto a fresh prefix. Then, on those records:

* ``decode``: the Avro values, already in memory, through ``AvroCodec.decode`` only
  (repeated until ``--min-seconds``): the ceiling of any reader;
* ``read+decode``: the topic read from the broker (:func:`replay.sources.read_topic`)
  and decoded;
* ``backtest``: what ``techshop backtest fraud`` does before its report, streamed:
  read, admit (decode + validate), order by event time
  (:func:`replay.backtest.inputs.iter_events`) and
  :func:`replay.backtest.fraud.run_fraud_stream` with the ONNX champion (``decide()``,
  the live agent's function); the time spent in ``decide`` is reported too;
* ``live``: one fraud worker (``techshop worker --pipelines fraud``) on another fresh
  prefix, the same records produced as fast as possible once it is ready; the rate is
  decisions / (last decision received - first record sent).

The ratio ``backtest / live`` says how much faster a backtest replays history than the
live pipeline decides it on this machine. Goal: decode >= 100k events/s.

Run: ``python bench/backtest.py`` (``--quick``: 4,000 events, a 40,000-row training);
results in ``bench/out/backtest.json``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
MEASURED_FILES = ("replay/sources.py", "replay/backtest/fraud.py", "replay/backtest/inputs.py",
                  "agents/fraud/decide.py", "agents/fraud/features.py", "streams/codec.py")

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402

from bench._common import (  # noqa: E402
    NOISE_NOTE,
    OUT_DIR,
    code_version,
    leftover_children,
    machine,
    progress,
    write_result,
)
from streams.admin import ensure_topics  # noqa: E402
from streams.embedded import die_with_parent, free_port  # noqa: E402
from streams.publisher import Codecs  # noqa: E402
from streams.registry import LocalSchemaSource  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.stack import EmbeddedStack, StackInfo  # noqa: E402
from streams.topics import TopicCatalog  # noqa: E402


def prepare_models(args: argparse.Namespace, tmp: Path) -> Path:
    from agents.fraud.models import CHAMPION
    from models.registry import ModelRegistry, signing_key_from
    from replay.fraud_backtest import bootstrap_fraud_models

    root = Path(args.models).resolve() if args.models else tmp / "models"
    root.mkdir(parents=True, exist_ok=True)
    registry = ModelRegistry(root, signing_key_from(root / "signing.key"))
    if CHAMPION not in registry.names():
        progress(f"training the fraud models into {root} (n={args.train_n:,})")
        bootstrap_fraud_models(registry, seed=1, n=args.train_n)
    return root


def make_events(n: int) -> list[dict[str, Any]]:
    from replay.fraud_backtest import world_size
    from replay.generator import TrafficGenerator

    cards, users = world_size(200.0)
    gen = TrafficGenerator(seed=5, start_ts_ms=int(time.time() * 1000) - 3_600_000,
                           rates={"transactions": 200.0}, n_cards=cards, n_users=users)
    return [e.value for e in gen.take(n, {"transactions"})]


def client_settings(info: StackInfo, prefix: str, partitions: int) -> Settings:
    return Settings(kafka_bootstrap_servers=info.bootstrap_servers,
                    schema_registry_url=info.schema_registry_url, redis_url=info.redis_url,
                    topic_prefix=prefix, partitions=partitions, broker_compat="tansu")


def fresh_prefix(info: StackInfo, stack: EmbeddedStack, letters: str, partitions: int
                 ) -> tuple[Settings, TopicCatalog, Codecs]:
    """A new topic prefix (``letters`` and random hex) with its topics and schema
    subjects: its settings, catalog and codecs."""
    prefix = f"{letters}{uuid.uuid4().hex[:6]}."
    settings = client_settings(info, prefix, partitions)
    catalog = TopicCatalog(prefix)
    ensure_topics(settings, catalog)
    stack.register_subjects(catalog)
    assert stack.store is not None
    return settings, catalog, Codecs(LocalSchemaSource(stack.store), catalog)


def produce(settings: Settings, codecs: Codecs, events: list[dict[str, Any]]) -> float:
    """Produce ``events`` to ``transactions``; wall time of the first send."""
    producer = Producer({**settings.kafka_client_config(), "linger.ms": 20,
                         "batch.size": 512 * 1024, "enable.idempotence": False,
                         "log.connection.close": False})
    topic = TopicCatalog(settings.topic_prefix).physical("transactions")
    encode = codecs["transactions"].encode
    first = time.time()
    for e in events:
        while True:
            try:
                producer.produce(topic, encode(e), e["card_id"].encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(60)
    return first


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else 0.0


def measure_in_process(args: argparse.Namespace, info: StackInfo, stack: EmbeddedStack,
                       models: Path, events: list[dict[str, Any]]) -> dict[str, Any]:
    from replay.backtest.fraud import ModelSpec, load_variants, run_fraud_stream
    from replay.backtest.inputs import Loaded, Where, iter_events
    from replay.backtest.jobs import open_registry
    from replay.sources import read_topic

    settings, catalog, codecs = fresh_prefix(info, stack, "bb", args.partitions)
    progress(f"producing {len(events):,} transactions to {catalog.physical('transactions')}")
    produce(settings, codecs, events)
    codec = codecs["transactions"]
    out: dict[str, Any] = {"events": len(events)}

    started = time.perf_counter()
    raw = [m.value for batch in read_topic(settings, catalog.physical("transactions"))
           for m in batch]
    read_s = time.perf_counter() - started
    assert len(raw) == len(events), (len(raw), len(events))
    decode = codec.decode
    started, rounds = time.perf_counter(), 0
    while True:
        for value in raw:
            decode(value)
        rounds += 1
        if time.perf_counter() - started >= args.min_seconds:
            break
    decode_s = time.perf_counter() - started
    out["decode"] = {"events_per_s": rate(rounds * len(raw), decode_s), "rounds": rounds}
    out["read"] = {"seconds": read_s, "events_per_s": rate(len(raw), read_s)}
    out["read_decode"] = {"events_per_s": rate(len(raw), read_s + decode_s / rounds)}
    progress(f"decode {out['decode']['events_per_s']:,.0f}/s, read "
             f"{out['read']['events_per_s']:,.0f}/s")

    variants = load_variants(open_registry(settings, models), [ModelSpec("fraud_gbdt")])
    started = time.perf_counter()
    loaded = Loaded(source="")
    run = run_fraud_stream(iter_events(settings, Where("transactions"), loaded), variants)
    total_s = time.perf_counter() - started
    assert run.n == len(events), run.n
    out["backtest"] = {"events_per_s": rate(run.n, total_s), "seconds": total_s,
                       "decide_s": run.seconds,
                       "decide_events_per_s": rate(run.n, run.seconds),
                       "decide_cpu_us_per_event": 1e6 * run.cpu_seconds / run.n,
                       "decide_calls": run.calls, "models": dict(run.decided_by)}
    progress(f"backtest {out['backtest']['events_per_s']:,.0f}/s (decide alone "
             f"{out['backtest']['decide_events_per_s']:,.0f}/s)")
    return out


def measure_live(args: argparse.Namespace, info: StackInfo, stack: EmbeddedStack,
                 models: Path, events: list[dict[str, Any]], tmp: Path) -> dict[str, Any]:
    settings, catalog, codecs = fresh_prefix(info, stack, "bl", args.partitions)
    port = free_port()
    env = {**os.environ, **info.env(), "TECHSHOP_TOPIC_PREFIX": settings.topic_prefix,
           "TECHSHOP_BROKER_COMPAT": "tansu", "TECHSHOP_PARTITIONS": str(args.partitions),
           "TECHSHOP_MODEL_DIR": str(models), "TECHSHOP_WEB_PORT": str(port),
           "TECHSHOP_DATA_DIR": str(tmp / "live"), "PYTHONPATH": str(ROOT)}
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    log = (OUT_DIR / "backtest_live_worker.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker", "--pipelines",
                             "fraud"], cwd=tmp, env=env, stdin=subprocess.DEVNULL, stdout=log,
                            stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the worker exited; see {log.name}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the worker was not ready in 120 s")
            time.sleep(0.3)
        topic = catalog.physical("fraud-decisions")
        consumer = Consumer({**settings.kafka_client_config(), "group.id": "bench-bt",
                             "enable.auto.commit": False, "fetch.wait.max.ms": 10,
                             "log.connection.close": False})
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        progress(f"live: producing {len(events):,} transactions to a ready fraud worker")
        first = produce(settings, codecs, events)
        seen, last = 0, first
        deadline = time.monotonic() + args.live_timeout
        while seen < len(events) and time.monotonic() < deadline:
            got = [m for m in consumer.consume(1000, 0.2) if m.error() is None]
            if got:
                seen += len(got)
                last = time.time()
        consumer.close()
        seconds = last - first
        progress(f"live: {seen:,} decisions in {seconds:.1f} s")
        return {"decided": seen, "seconds": seconds, "events_per_s": rate(seen, seconds),
                "complete": seen >= len(events)}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--quick", action="store_true", help="4,000 events, smaller training")
    parser.add_argument("--models", help="model registry to reuse (trained into it if empty)")
    parser.add_argument("--train-n", type=int, default=100_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--min-seconds", type=float, default=2.0,
                        help="repeat the decode loop at least this long")
    parser.add_argument("--live-timeout", type=float, default=300.0)
    parser.add_argument("--no-live", action="store_true", help="skip the live worker")
    args = parser.parse_args()
    if args.quick:
        args.events, args.train_n, args.min_seconds = 4_000, 40_000, 1.0
    result: dict[str, Any] = {"benchmark": "backtest", "note": NOISE_NOTE, "args": vars(args),
                              "machine": machine(),
                              "code": code_version(MEASURED_FILES, ["replay", "agents"])}
    tmp = Path(tempfile.mkdtemp(prefix="techshop-backtest-"))
    progress(f"generating {args.events:,} transactions")
    events = make_events(args.events)
    stack = EmbeddedStack(Settings(kafka_bootstrap_servers=None, schema_registry_url=None,
                                   redis_url=None, topic_prefix="", data_dir=tmp / "stack",
                                   broker_port=free_port(), registry_port=free_port(),
                                   embedded_redis_port=free_port(),
                                   partitions=args.partitions))
    try:
        info = stack.start()
        models = prepare_models(args, tmp)
        result.update(measure_in_process(args, info, stack, models, events))
        if not args.no_live:
            result["live"] = measure_live(args, info, stack, models, events, tmp)
            live = result["live"]["events_per_s"]
            result["ratio_backtest_to_live"] = (result["backtest"]["events_per_s"] / live
                                                if live else None)
        result["ratio_decode_to_backtest"] = (result["decode"]["events_per_s"]
                                              / result["backtest"]["events_per_s"])
        result["goal_decode_100k"] = result["decode"]["events_per_s"] >= 100_000
    finally:
        stack.stop()
        result["leftover_children"] = leftover_children()
    path = write_result("backtest", result)
    print(f"events                 {args.events:,}")
    print(f"decode only            {result['decode']['events_per_s']:>10,.0f} events/s "
          f"(goal >= 100,000: {'met' if result['goal_decode_100k'] else 'NOT met'})")
    print(f"read + decode          {result['read_decode']['events_per_s']:>10,.0f} events/s")
    b = result["backtest"]
    print(f"backtest (read+decide) {b['events_per_s']:>10,.0f} events/s; decide() alone "
          f"{b['decide_events_per_s']:,.0f}/s ({b['decide_cpu_us_per_event']:.0f} us CPU/event)")
    if "live" in result:
        print(f"live fraud worker      {result['live']['events_per_s']:>10,.0f} events/s "
              f"({result['live']['decided']:,} decided)")
        print(f"backtest / live        {result['ratio_backtest_to_live']:>10.1f}x")
    print(f"decode / backtest      {result['ratio_decode_to_backtest']:>10.1f}x")
    print(f"{NOISE_NOTE}\nresult: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
