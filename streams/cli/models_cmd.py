"""``techshop models``: the model registry from a terminal."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from streams.errors import ConfigError
from streams.settings import Settings, load_settings

__all__ = ["add_commands", "bootstrap_if_empty"]


def add_commands(sub: Any) -> None:
    p = sub.add_parser("models", help="list, inspect and bootstrap models",
                       description="The model registry (TECHSHOP_MODEL_DIR, default "
                       "<data dir>/models): versions with their metrics and thresholds; "
                       "`bootstrap` trains the fraud champion (LightGBM -> ONNX) and the "
                       "River challenger on synthetic history.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    msub.add_parser("list", help="every model and version").set_defaults(func=list_models)
    show = msub.add_parser("show", help="one version's manifest")
    show.add_argument("name")
    show.add_argument("version", nargs="?", default="latest")
    show.set_defaults(func=show_model)
    boot = msub.add_parser("bootstrap", help="train the fraud models on synthetic history")
    boot.add_argument("--transactions", type=int, default=120_000, metavar="N",
                      help="history size (default 120,000)")
    boot.add_argument("--seed", type=int, default=1)
    boot.add_argument("--announce", action="store_true",
                      help="also announce the versions on model-updates (running stack)")
    boot.set_defaults(func=bootstrap_command)


def _registry(settings: Settings) -> Any:
    from models.registry import open_registry

    key = settings.model_signing_key.get_secret_value() if settings.model_signing_key else None
    return open_registry(settings.models_path, key)


def list_models(args: argparse.Namespace) -> int:
    registry = _registry(load_settings())
    names = registry.names()
    if not names:
        print(f"no models in {registry.root} (try `techshop models bootstrap`)")
    for name in names:
        for version in registry.versions(name):
            m = registry.manifest(name, version)
            auc = m.metrics.get("valid_auc", m.metrics.get("roc_auc"))
            print(f"{m.model_id:20} {m.kind:6} {m.created_at}  "
                  + (f"auc {auc:.4f}  " if isinstance(auc, float) else "")
                  + " ".join(f"{k} {v:.4f}" for k, v in m.thresholds.items()))
    return 0


def show_model(args: argparse.Namespace) -> int:
    import orjson

    registry = _registry(load_settings())
    manifest = registry.manifest(args.name, args.version)
    sys.stdout.buffer.write(orjson.dumps(manifest.unsigned(), option=orjson.OPT_INDENT_2)
                            + b"\n")
    return 0


def bootstrap_if_empty(settings: Settings, log: Any = print, *,
                       transactions: int = 120_000, seed: int = 1) -> bool:
    """Train the fraud models when the registry has none; True if it trained."""
    from agents.fraud.models import CHAMPION
    from replay.fraud_backtest import bootstrap_fraud_models

    registry = _registry(settings)
    if CHAMPION in registry.names():
        return False
    started = time.monotonic()
    report = bootstrap_fraud_models(registry, seed=seed, n=transactions, progress=log)
    log(f"bootstrap done in {time.monotonic() - started:.0f} s: {report.champion.model_id}, "
        f"{report.challenger.model_id}")
    return True


def bootstrap_command(args: argparse.Namespace) -> int:
    from replay.fraud_backtest import bootstrap_fraud_models

    if args.transactions < 10_000:
        raise ConfigError("--transactions must be at least 10,000 (fraud is ~1.5 % of them)")
    settings = load_settings()
    registry = _registry(settings)
    report = bootstrap_fraud_models(registry, seed=args.seed, n=args.transactions,
                                    progress=lambda m: print(m, file=sys.stderr))
    print(f"{report.champion.model_id} and {report.challenger.model_id} in {registry.root} "
          f"({report.seconds:.0f} s)")
    if args.announce:
        announce(settings, registry, [report.champion, report.challenger])
    return 0


def announce(settings: Settings, registry: Any, manifests: list[Any]) -> None:
    """Publish ``model-updates`` records so running workers load these versions."""
    from prometheus_client import CollectorRegistry

    from streams.metrics import StreamMetrics
    from streams.publisher import Codecs, Publisher
    from streams.topics import TopicCatalog
    from streams.worker import schema_source

    publisher = Publisher(settings.kafka_client_config(),
                          Codecs(schema_source(settings), TopicCatalog(settings.topic_prefix)),
                          StreamMetrics.create(CollectorRegistry()))
    for m in manifests:
        publisher.publish("model-updates", {
            "model": m.name, "version": m.version, "kind": m.kind,
            "uri": (registry.root / m.name / m.version).as_uri(), "sha256": m.sha256,
            "signature": m.signature, "role": "champion" if m.kind == "onnx" else "challenger",
            "metrics": {k: float(v) for k, v in m.metrics.items()
                        if isinstance(v, int | float)},
            "ts": int(time.time() * 1000)})
    publisher.flush_sync()
