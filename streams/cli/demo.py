"""``techshop demo`` (the whole system, live) and ``techshop generate`` (traffic only)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from streams.errors import ConfigError, StackError
from streams.settings import Settings, load_settings

__all__ = ["add_commands"]

log = logging.getLogger(__name__)


def _rate_args(parser: argparse.ArgumentParser, *, rate: float) -> None:
    parser.add_argument("--rate", type=float, default=rate,
                        help=f"transactions per second (default {rate:g}); clicks are "
                        "2x, image uploads 1%% of it")
    parser.add_argument("--seed", type=int, default=7, help="generator seed (default 7)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop after S seconds (default: until Ctrl-C)")
    parser.add_argument("--max-events", type=int, default=2_000_000, metavar="N",
                        help="stop producing after N events: the embedded broker keeps "
                        "every record in memory (default 2,000,000)")


def add_commands(sub: Any) -> None:
    demo = sub.add_parser(
        "demo", help="everything live: stack, worker, traffic and a summary",
        description="Start the embedded stack, a worker for every pipeline and a synthetic "
        "traffic generator, and show events in, decisions out and dead letters per topic "
        "per second. Ctrl-C stops everything, children included.")
    _rate_args(demo, rate=20.0)
    demo.add_argument("--no-worker", action="store_true", help="traffic only, no worker")
    demo.set_defaults(func=demo_command)

    gen = sub.add_parser(
        "generate", help="synthetic traffic onto the topics of a running stack",
        description="Produce synthetic clickstream, transactions (with fraud patterns and "
        "delayed labels), image uploads (real image files under the first "
        "TECHSHOP_IMAGE_ROOTS directory) and the catalog, paced in real time.")
    _rate_args(gen, rate=200.0)
    gen.set_defaults(func=generate_command)


def _rates(rate: float) -> dict[str, float]:
    if rate <= 0:
        raise ConfigError(f"--rate must be > 0 (got {rate:g})")
    return {"transactions": rate, "clickstream": 2 * rate,
            "image-uploads": max(0.2, rate / 100), "catalog": 0.0}


def generate_command(args: argparse.Namespace) -> int:
    from replay.live import LiveTraffic
    from streams.worker import schema_source

    settings = load_settings()
    traffic = LiveTraffic(settings, schema_source(settings), _rates(args.rate), seed=args.seed,
                          duration_s=args.duration, max_events=args.max_events)
    started = time.monotonic()
    with contextlib.suppress(KeyboardInterrupt):
        traffic.run()
    elapsed = time.monotonic() - started
    print(f"produced {sum(traffic.sent.values()):,} events in {elapsed:.0f} s: "
          + ", ".join(f"{t} {n:,}" for t, n in sorted(traffic.sent.items())), file=sys.stderr)
    return 0


def _start_worker(settings: Settings, env: dict[str, str]) -> subprocess.Popen[bytes]:
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = (logs / "worker.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "worker"], env={**os.environ, **env},
        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,
    )


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def demo_command(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from replay.live import LiveTraffic
    from streams.cli.summary import TopicCounter, render_table
    from streams.registry import LocalSchemaSource
    from streams.stack import EmbeddedStack

    settings = load_settings()
    rates = _rates(args.rate)
    console = Console(stderr=not sys.stdout.isatty())
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    console.print("[bold]starting the embedded stack…[/bold]")
    with EmbeddedStack(settings) as stack:
        assert stack.info is not None and stack.store is not None
        env = stack.info.env()
        console.print(f"broker {stack.info.bootstrap_servers} · registry "
                      f"{stack.info.schema_registry_url} · redis {stack.info.redis_url}")
        worker = None if args.no_worker else _start_worker(settings, env)
        if worker is not None:
            console.print(f"worker pid {worker.pid}: http://{settings.web_host}:"
                          f"{settings.web_port}/ready and /metrics · "
                          f"logs {settings.data_dir}/logs/")
        traffic = LiveTraffic(settings, LocalSchemaSource(stack.store), rates,
                              seed=args.seed, duration_s=args.duration,
                              max_events=args.max_events).start()
        counter = TopicCounter(settings).start()
        bootstrap = _bootstrap_in_background(settings, env, console) if worker else None
        try:
            _show(console, counter, traffic, worker, stop, args, Live, render_table, bootstrap)
        except KeyboardInterrupt:
            pass
        finally:
            console.print("[bold]stopping: traffic, worker, stack…[/bold]")
            traffic.stop()
            counter.stop()
            if bootstrap is not None:
                _stop_process(bootstrap, timeout=5)
            if worker is not None:
                _stop_process(worker)
    console.print("stopped cleanly")
    return 0


def _bootstrap_in_background(settings: Settings, env: dict[str, str], console: Any
                             ) -> subprocess.Popen[bytes] | None:
    """Train the fraud models in a child process if the registry is empty, then announce
    them: the worker decides with the rules meanwhile and swaps without a restart. A
    child (not a thread) so Ctrl-C can stop native training threads cleanly."""
    from agents.fraud.models import CHAMPION
    from streams.cli.models_cmd import _registry

    if CHAMPION in _registry(settings).names():
        return None
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    out = (logs / "bootstrap.log").open("ab")
    console.print(f"models: training the fraud models on synthetic history (log "
                  f"{logs / 'bootstrap.log'}); the rules decide until they are announced")
    return subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "models", "bootstrap", "--announce"],
        env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL, start_new_session=True)


def _show(console: Any, counter: Any, traffic: Any, worker: Any, stop: threading.Event,
          args: argparse.Namespace, live_cls: Any, render: Any,
          bootstrap: subprocess.Popen[bytes] | None = None) -> None:
    interactive = console.is_terminal
    started = time.monotonic()
    last_print = 0.0
    live_view: Any = (live_cls(render(counter), console=console, refresh_per_second=2,
                               auto_refresh=False) if interactive else _NullLive())
    with live_view as live:
        while not stop.is_set():
            time.sleep(0.5)
            if worker is not None and worker.poll() is not None:
                raise StackError(f"the worker exited with code {worker.returncode}; "
                                 "see its log under the data dir")
            caption = f"up {time.monotonic() - started:,.0f} s · produced " \
                      f"{sum(traffic.sent.values()):,}"
            if bootstrap is not None:
                state = bootstrap.poll()
                caption += (" · models: training…" if state is None else
                            " · models: trained and announced" if state == 0 else
                            f" · models: bootstrap failed ({state}), rules decide")
            if interactive:
                live.update(render(counter, caption), refresh=True)
            elif time.monotonic() - last_print >= 5:
                last_print = time.monotonic()
                rates = counter.rates()
                console.print(caption + " · " + " · ".join(
                    f"{t} {rates.get(t, 0):.1f}/s ({n:,})" for t, n in sorted(
                        counter.counts.items())))
            if not traffic.running and args.duration is not None:
                break


class _NullLive:
    def __enter__(self) -> _NullLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None
