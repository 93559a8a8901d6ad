"""``techshop train fraud``: retrain the fraud model offline from recorded training
examples (gradient-boosted trees → ONNX) and register it as the challenger.

Examples come from the ``training-examples`` topic (read from the beginning, outside
any consumer group, up to its end when the command started) or from a JSON-lines file
(``techshop consume training-examples --from-beginning > examples.jsonl``). The new
version is announced on ``model-updates`` and ``model-events`` unless ``--offline``;
running workers then score it in shadow. Promote it with ``techshop models promote
fraud`` (or let the policy do it).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from streams.errors import ConfigError
from streams.settings import Settings, load_settings

__all__ = ["add_commands"]


def add_commands(sub: Any) -> None:
    p = sub.add_parser("train", help="retrain a model offline from training examples",
                       description=__doc__.split("\n\n")[0] if __doc__ else None)
    tsub = p.add_subparsers(dest="train_command", metavar="FAMILY", required=True)
    fraud = tsub.add_parser("fraud", help="LightGBM -> ONNX, registered as the fraud "
                            "challenger")
    src = fraud.add_mutually_exclusive_group()
    src.add_argument("--from-file", type=Path, metavar="JSONL",
                     help="training examples as JSON lines (default: the topic)")
    src.add_argument("--from-topic", action="store_true",
                     help="read the training-examples topic (the default)")
    fraud.add_argument("--since-ms", type=int, default=None,
                       help="only examples of events at or after this event time")
    fraud.add_argument("--min-examples", type=int, default=1_000)
    fraud.add_argument("--valid-fraction", type=float, default=0.2,
                       help="the latest share (event time) used for thresholds (0.2)")
    fraud.add_argument("--seed", type=int, default=0)
    fraud.add_argument("--trees", type=int, default=200)
    fraud.add_argument("--offline", action="store_true",
                       help="do not announce on model-updates / model-events")
    fraud.set_defaults(func=train_fraud_command)


def _progress() -> Any:
    from rich.console import Console

    console = Console(stderr=True)
    started = time.monotonic()

    def say(message: str) -> None:
        console.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {message}")

    return say


def read_topic_examples(settings: Settings, family: str, say: Any) -> list[dict[str, Any]]:
    """Every ``training-examples`` record of ``family`` up to the topic's current end."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    from streams.admin import quiet_client_config, wait_for_broker
    from streams.errors import EventError
    from streams.publisher import Codecs
    from streams.topics import TopicCatalog
    from streams.worker import schema_source

    catalog = TopicCatalog(settings.topic_prefix)
    physical = catalog.physical("training-examples")
    codec = Codecs(schema_source(settings), catalog)["training-examples"]
    wait_for_broker(settings, timeout=5)
    consumer = Consumer({**quiet_client_config(settings), "group.id": "techshop-train",
                         "enable.auto.commit": False, "enable.partition.eof": True,
                         "fetch.wait.max.ms": 50})
    meta = consumer.list_topics(physical, timeout=10).topics.get(physical)
    if meta is None or meta.error is not None:
        raise ConfigError(f"topic {physical} does not exist (run `techshop up`)")
    consumer.assign([TopicPartition(physical, p, OFFSET_BEGINNING) for p in meta.partitions])
    out: list[dict[str, Any]] = []
    done: set[int] = set()
    bad = 0
    last_report = time.monotonic()
    try:
        while done < set(meta.partitions):
            for msg in consumer.consume(1000, 1.0):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        done.add(msg.partition() or 0)
                    continue
                try:
                    record = codec.decode(msg.value())
                except EventError:
                    bad += 1
                    continue
                if record["model"] == family:
                    out.append(record)
            if time.monotonic() - last_report > 2:
                say(f"read {len(out):,} examples so far")
                last_report = time.monotonic()
    finally:
        consumer.close()
    say(f"read {len(out):,} {family} examples from {physical}"
        + (f" ({bad} undecodable skipped)" if bad else ""))
    return out


def train_fraud_command(args: argparse.Namespace) -> int:
    from scorers.errors import ScorerError

    try:
        return _train_fraud(args)
    except ScorerError as exc:
        raise ConfigError(str(exc)) from None


def _train_fraud(args: argparse.Namespace) -> int:
    from agents.fraud.features import FEATURE_NAMES
    from agents.fraud.lifecycle import KEY_FEATURES
    from agents.fraud.models import CHAMPION, default_routing
    from models.train import parse_examples, retrain
    from streams.cli.models_cmd import _publisher, _registry

    if args.min_examples < 100:
        raise ConfigError("--min-examples must be at least 100")
    if not 0.05 <= args.valid_fraction <= 0.5:
        raise ConfigError("--valid-fraction must be within 0.05..0.5")
    if args.trees < 1:
        raise ConfigError("--trees must be at least 1")
    settings = load_settings()
    say = _progress()
    if args.from_file is not None:
        try:
            with open(args.from_file, "rb") as f:
                examples = parse_examples(f, "fraud")
        except OSError as exc:
            raise ConfigError(f"--from-file: {exc.strerror}: {args.from_file}") from None
        except ValueError as exc:
            raise ConfigError(f"--from-file {args.from_file}: {exc}") from None
        source = f"file:{args.from_file}"
        say(f"read {len(examples):,} fraud examples from {args.from_file}")
    else:
        examples = read_topic_examples(settings, "fraud", say)
        source = f"topic:{settings.topic_prefix}training-examples"
    if args.since_ms is not None:
        examples = [ex for ex in examples if int(ex["event_ts"]) >= args.since_ms]
    if len(examples) < args.min_examples:
        raise ConfigError(f"only {len(examples):,} fraud training examples (need "
                          f"--min-examples {args.min_examples:,})")
    registry = _registry(settings)
    try:
        report = retrain(registry, examples, FEATURE_NAMES, name=CHAMPION, family="fraud",
                         default_routing=default_routing(), key_features=KEY_FEATURES,
                         seed=args.seed, valid_fraction=args.valid_fraction,
                         params={"n_estimators": args.trees}, source=source, progress=say)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    m = report.manifest
    print(f"{m.model_id} is the fraud challenger (champion {report.routing.champion}); "
          f"validation recall {report.validation['recall']:.4f}, FPR "
          f"{report.validation['fpr']:.4f}, AUC {report.validation['auc']:.4f}; "
          f"{report.n_train:,} + {report.n_valid:,} examples in {report.seconds:.1f} s")
    if not args.offline:
        from models.records import event_record, update_record

        ts = int(time.time() * 1000)
        publisher = _publisher(settings)
        publisher.publish("model-updates", update_record(registry, m, "challenger", ts))
        publisher.publish("model-events", event_record(
            m.model_id, "retrain", f"offline retrain from {source}",
            {**report.validation, "n_examples": float(len(examples))}, ts))
        publisher.flush_sync(10)
    return 0
