"""``techshop models``: the model registry from a terminal.

``list`` / ``show`` / ``export`` read the registry; ``promote``, ``rollback``,
``canary`` and ``shadow`` change a family's signed routing and announce it on
``model-updates`` (every worker reloads within seconds) and ``model-events`` (the
audit trail); ``--offline`` skips the announcement (workers pick the routing up at
their next start or model update). ``techshop train`` lives in :mod:`streams.cli.train_cmd`.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from collections.abc import Callable
from typing import Any

from streams.errors import ConfigError
from streams.settings import Settings, load_settings

__all__ = ["add_commands", "bootstrap_if_empty", "default_routing"]
FAMILIES = ("fraud", "recommend", "moderation")


def add_commands(sub: Any) -> None:
    p = sub.add_parser("models", help="list, inspect and bootstrap models",
                       description="The model registry (TECHSHOP_MODEL_DIR, default "
                       "<data dir>/models): versions with their metrics and thresholds; "
                       "`bootstrap` trains the fraud champion (LightGBM -> ONNX) and the "
                       "River challenger on synthetic history.")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    msub.add_parser("list", help="every model and version, with metrics and aliases"
                    ).set_defaults(func=list_models)
    show = msub.add_parser("show", help="one version's manifest (or a family's routing)")
    show.add_argument("name", help="a model name, or a family (fraud, ...) for its routing")
    show.add_argument("version", nargs="?", default="latest",
                      help="a version number, latest, champion or challenger")
    show.set_defaults(func=show_model)
    for action, text in (("promote", "make the family's challenger its champion"),
                         ("rollback", "bring back the champion before the last promotion")):
        cmd = msub.add_parser(action, help=text)
        cmd.add_argument("family", choices=FAMILIES)
        cmd.add_argument("--offline", action="store_true",
                         help="do not announce on model-updates / model-events")
        cmd.set_defaults(func=routing_command, action=action)
    canary = msub.add_parser("canary", help="let the challenger decide for a share of "
                             "entities (stable hash of the entity id)")
    canary.add_argument("family", choices=FAMILIES)
    canary.add_argument("percent", type=float, help="0..100 (0 = shadow)")
    canary.add_argument("--offline", action="store_true")
    canary.set_defaults(func=routing_command, action="canary")
    shadow = msub.add_parser("shadow", help="the challenger is scored and logged only")
    shadow.add_argument("family", choices=FAMILIES)
    shadow.add_argument("--offline", action="store_true")
    shadow.set_defaults(func=routing_command, action="shadow")
    challenger = msub.add_parser("challenge", help="make NAME@VERSION the challenger")
    challenger.add_argument("family", choices=FAMILIES)
    challenger.add_argument("ref", help="name@version")
    challenger.add_argument("--offline", action="store_true")
    challenger.set_defaults(func=routing_command, action="challenge")
    export = msub.add_parser("export", help="copy a version out: every file + manifest")
    export.add_argument("name")
    export.add_argument("version", help="a version number, latest, champion or challenger")
    export.add_argument("dest", help="folder to copy into (DEST/NAME-VERSION/)")
    export.set_defaults(func=export_command)
    boot = msub.add_parser("bootstrap", help="train the fraud models on synthetic history")
    boot.add_argument("--transactions", type=int, default=120_000, metavar="N",
                      help="history size (default 120,000)")
    boot.add_argument("--seed", type=int, default=1)
    boot.add_argument("--announce", action="store_true",
                      help="also announce the versions on model-updates (running stack)")
    boot.set_defaults(func=bootstrap_command)
    from streams.cli import train_cmd

    train_cmd.add_commands(sub)


def _readable(command: Callable[[argparse.Namespace], int]
              ) -> Callable[[argparse.Namespace], int]:
    """A registry or routing refusal is one readable line, not a traceback."""
    @functools.wraps(command)
    def run(args: argparse.Namespace) -> int:
        from scorers.errors import ScorerError

        try:
            return command(args)
        except ScorerError as exc:
            raise ConfigError(str(exc)) from None

    return run


def _registry(settings: Settings) -> Any:
    from models.registry import open_registry

    key = settings.model_signing_key.get_secret_value() if settings.model_signing_key else None
    return open_registry(settings.models_path, key)


def default_routing(family: str) -> Any:
    """A family's routing before anything was stored (fraud: newest gbdt / river)."""
    from models.routing import Routing

    if family == "fraud":
        from agents.fraud.models import default_routing as fraud_default

        return fraud_default()
    return Routing(family)


#: Metrics shown by ``list``, first found wins within each group.
_SHOWN = (("auc", ("valid_auc", "prequential_auc", "roc_auc", "train_auc")),
          ("recall", ("valid_recall", "prequential_recall_at_fpr")),
          ("fpr", ("valid_fpr",)),
          ("n", ("n_train", "prequential_n", "n_learnt", "n")))


def _aliases(registry: Any) -> dict[str, list[str]]:
    """model_id -> ["fraud:champion", ...] over every family's routing."""
    from models.routing import RoutingStore

    store = RoutingStore(registry)
    out: dict[str, list[str]] = {}
    for family in FAMILIES:
        try:
            routing = store.get(family, default_routing(family))
        except Exception as exc:  # a refused routing file is shown, not fatal
            print(f"routing of {family} refused: {exc}", file=sys.stderr)
            continue
        for role in ("champion", "challenger"):
            resolved = store.resolve(getattr(routing, role))
            if resolved is not None:
                label = f"{family}:{role}"
                if role == "challenger" and routing.mode == "canary":
                    label += f"(canary {routing.canary_percent:g}%)"
                out.setdefault("@".join(resolved), []).append(label)
    return out


@_readable
def list_models(args: argparse.Namespace) -> int:
    from scorers.errors import ScorerError

    registry = _registry(load_settings())
    names = registry.names()
    if not names:
        print(f"no models in {registry.root} (try `techshop models bootstrap`)")
        return 0
    aliases = _aliases(registry)
    width = max(22, *(len(f"{n}@{v}") for n in names for v in registry.versions(n)))
    print(f"{'model':{width}} {'kind':6} {'created':24} {'parent':6} {'metrics':44} "
          "review/decline  aliases")
    for name in names:
        for version in registry.versions(name):
            try:
                m = registry.manifest(name, version)
            except ScorerError as exc:
                print(f"{name + '@' + version:{width}} REFUSED: {exc}")
                continue
            shown = []
            for label, keys in _SHOWN:
                value = next((m.metrics[k] for k in keys
                              if isinstance(m.metrics.get(k), int | float)), None)
                if value is not None:
                    shown.append(f"{label} {value:.4f}" if label != "n"
                                 else f"n {int(value):,}")
            thresholds = (f"{m.thresholds['review']:.3f}/{m.thresholds['decline']:.3f}"
                          if {"review", "decline"} <= set(m.thresholds) else "-")
            print(f"{m.model_id:{width}} {m.kind:6} {m.created_at:24} "
                  f"{m.parent_version or '-':6} {'  '.join(shown):44} {thresholds:14} "
                  + ",".join(aliases.get(m.model_id, [])))
    return 0


def _version(registry: Any, name: str, version: str) -> str:
    """A version number from a number, ``latest``, or an alias of name's family."""
    if version not in ("champion", "challenger"):
        return version
    from models.routing import RoutingStore

    store = RoutingStore(registry)
    for family in FAMILIES:
        ref = getattr(store.get(family, default_routing(family)), version)
        resolved = store.resolve(ref)
        if resolved is not None and resolved[0] == name:
            return resolved[1]
    raise ConfigError(f"{name} is no family's {version}")


@_readable
def show_model(args: argparse.Namespace) -> int:
    import orjson

    registry = _registry(load_settings())
    if args.name in FAMILIES and args.name not in registry.names():
        from models.routing import RoutingStore

        routing = RoutingStore(registry).get(args.name, default_routing(args.name))
        body: dict[str, Any] = routing.as_dict()
    else:
        body = registry.manifest(args.name, _version(registry, args.name,
                                                     args.version)).unsigned()
    sys.stdout.buffer.write(orjson.dumps(body, option=orjson.OPT_INDENT_2) + b"\n")
    return 0


@_readable
def export_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    registry = _registry(load_settings())
    target = registry.export(args.name, _version(registry, args.name, args.version),
                             Path(args.dest))
    print(target)
    return 0


@_readable
def routing_command(args: argparse.Namespace) -> int:
    """promote / rollback / canary / shadow / challenge, then announce."""
    from models.routing import RoutingStore

    settings = load_settings()
    registry = _registry(settings)
    store = RoutingStore(registry)
    default = default_routing(args.family)
    if args.action == "promote":
        routing = store.promote(args.family, default)
    elif args.action == "rollback":
        routing = store.rollback(args.family, default)
    elif args.action == "canary":
        routing = store.canary(args.family, args.percent, default)
    elif args.action == "shadow":
        routing = store.canary(args.family, 0.0, default)
    else:
        routing = store.set_challenger(args.family, args.ref, default)
    print(f"{args.family}: champion {routing.champion}, challenger {routing.challenger}, "
          f"{routing.mode}" + (f" {routing.canary_percent:g}%" if routing.mode == "canary"
                               else ""))
    if not args.offline:
        announce_routing(settings, registry, routing, args.action)
    return 0


def announce_routing(settings: Settings, registry: Any, routing: Any, action: str) -> None:
    """``model-updates`` (role ``routing``) and a ``model-events`` record of a change."""
    from models.records import event_record, update_record
    from models.routing import parse_ref

    ts = int(time.time() * 1000)
    ref = routing.champion or routing.challenger
    publisher = _publisher(settings)
    if ref is not None:
        name, version = parse_ref(ref)
        publisher.publish("model-updates", update_record(
            registry, registry.manifest(name, version), "routing", ts))
    model = (routing.challenger if action in ("canary", "shadow", "challenge")
             else routing.champion) or ""
    publisher.publish("model-events", event_record(
        model, action, f"champion {routing.champion}, challenger {routing.challenger}, "
        f"{routing.mode} {routing.canary_percent:g}%",
        {"canary_percent": routing.canary_percent, "revision": routing.revision}, ts))
    publisher.flush_sync(10)


def _publisher(settings: Settings) -> Any:
    from prometheus_client import CollectorRegistry

    from streams.metrics import StreamMetrics
    from streams.publisher import Codecs, Publisher
    from streams.topics import TopicCatalog
    from streams.worker import schema_source

    return Publisher(settings.kafka_client_config(),
                     Codecs(schema_source(settings), TopicCatalog(settings.topic_prefix)),
                     StreamMetrics.create(CollectorRegistry()))


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
