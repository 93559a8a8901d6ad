"""``techshop up``, ``worker``, ``demo`` and ``generate``: running the system."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

import orjson

from streams.errors import ConfigError
from streams.settings import load_settings

__all__ = ["add_commands", "PIPELINE_NAMES"]

log = logging.getLogger(__name__)
PIPELINE_NAMES = ("fraud", "recommend", "moderation")


def add_commands(sub: Any) -> None:
    up = sub.add_parser(
        "up", help="start the embedded stack (broker, schema registry, redis)",
        description="Start a Kafka-compatible broker (Tansu), a Confluent-compatible schema "
        "registry and redis on 127.0.0.1, create every topic, register every value schema "
        "under <topic>-value, print one JSON line {bootstrap_servers, schema_registry_url, "
        "redis_url} on stdout when ready, and run until interrupted (Ctrl-C).")
    up.add_argument("--broker-port", type=int, default=None, help="default 9092")
    up.add_argument("--registry-port", type=int, default=None, help="default 8081")
    up.add_argument("--redis-port", type=int, default=None, help="default 6379")
    up.set_defaults(func=up_command)

    worker = sub.add_parser(
        "worker", help="run a Faust worker for the pipelines",
        description="Run a Faust worker for every pipeline (or those of --pipelines) on the "
        "configured or embedded stack. Any number of workers share the partitions; on one "
        "host give each its own TECHSHOP_DATA_DIR and TECHSHOP_WEB_PORT. Serves /health, "
        "/ready and /metrics on the web port.")
    worker.add_argument("--pipelines", default=",".join(PIPELINE_NAMES),
                        help=f"comma-separated subset of {','.join(PIPELINE_NAMES)} "
                        "(default: all that exist)")
    worker.add_argument("--loglevel", default="info",
                        choices=["debug", "info", "warning", "error"])
    worker.set_defaults(func=worker_command)

    from streams.cli import demo as demo_module
    from streams.cli import models_cmd

    demo_module.add_commands(sub)
    models_cmd.add_commands(sub)


def up_command(args: argparse.Namespace) -> int:
    from streams.stack import EmbeddedStack

    overrides = {k: v for k, v in {"broker_port": args.broker_port,
                                   "registry_port": args.registry_port,
                                   "embedded_redis_port": args.redis_port}.items()
                 if v is not None}
    settings = load_settings(**overrides)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with EmbeddedStack(settings) as stack:
        assert stack.info is not None
        sys.stdout.buffer.write(orjson.dumps(stack.info.as_json()) + b"\n")
        sys.stdout.flush()
        log.info("embedded stack up; %d subjects registered; Ctrl-C stops it",
                 len(stack.info.subjects))
        stop.wait()
        log.info("stopping the embedded stack")
    return 0


def parse_pipelines(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(names) - set(PIPELINE_NAMES))
    if unknown or not names:
        raise ConfigError(f"--pipelines: unknown {', '.join(unknown) or '(none given)'}; "
                          f"choose from {','.join(PIPELINE_NAMES)}")
    return names


def worker_command(args: argparse.Namespace) -> int:
    from agents import register_pipelines
    from streams.worker import build_app, run_worker

    settings = load_settings()
    names = parse_pipelines(args.pipelines)
    app = build_app(settings)
    registered = register_pipelines(app, names)
    log.info("pipelines: %s", ", ".join(registered) or "(none)")
    return run_worker(app, loglevel=args.loglevel)
