"""The two sides of bench/hop.py: one worker each (``bench/hop_worker.py plain`` or
``faust``) with its own topic prefix, paced producer and end consumer.

* :func:`parse_side` / :func:`side_spec`: ``kind[:opt=value,...]`` (``--sides``);
* :class:`EndConsumer`: reads a side's decisions and records when each arrived;
* :class:`Side`: starts and stops the worker, offers a rate, drains, and turns a
  phase's sends and receipts into latencies (:meth:`Side.phase_result`);
* :func:`run_side`: a side from its worker's start to its stop, one phase per rate.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from bench._common import OUT_DIR, ROOT, percentiles, progress, wait_for_quiet
from bench._harness import (
    CpuSampler,
    assigned_consumer,
    bench_producer,
    cpu_seconds,
    machine_busy_seconds,
    pct,
    phase_clients,
    start_logged,
    stop_process,
)
from streams.embedded import free_port
from streams.publisher import Codecs
from streams.stack import EmbeddedStack, StackInfo

KINDS = ("plain", "faust")


def cpu_now(stack: EmbeddedStack, side: Side) -> dict[str, float]:
    """CPU seconds so far: the broker, the worker, this process, everything else."""
    now = {"worker": cpu_seconds(side.proc.pid if side.proc else None),
           "broker": cpu_seconds(stack.broker.pid), "bench": cpu_seconds(os.getpid()),
           "redis": cpu_seconds(stack.redis.pid if stack.redis else None)}
    now["others"] = machine_busy_seconds() - sum(now.values())
    return now


class EndConsumer:
    """Reads one side's decisions from the start and records when each arrived."""

    def __init__(self, conf: dict[str, Any], topic: str, codecs: Codecs) -> None:
        self.codec = codecs["fraud-decisions"]
        self.consumer = assigned_consumer(conf, "bench-end", topic)
        self.received: dict[str, tuple[float, int, int]] = {}  # txn_id -> (at, ts, decided)
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"end-{topic}")
        self._thread.start()

    def _run(self) -> None:
        poll, decode, received = self.consumer.poll, self.codec.decode, self.received
        while not self._stop.is_set():
            msg = poll(0.1)
            if msg is None:
                continue
            at = time.time()
            if msg.error() is not None:
                self.errors += 1
                continue
            d = decode(msg.value())
            received.setdefault(d["txn_id"], (at, d["ts"], d["decided_at"]))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


def parse_side(spec: str) -> tuple[str, dict[str, str]]:
    """``kind[:opt=value,...]`` -> (kind, options); see ``--sides``."""
    kind, _, rest = spec.partition(":")
    if kind not in KINDS:
        raise argparse.ArgumentTypeError(f"{spec!r}: the kind is one of {', '.join(KINDS)}")
    opts = dict(item.split("=", 1) for item in rest.split(",") if item)
    unknown = set(opts) - {"within", "flush", "maxbatch"}
    if unknown:
        raise argparse.ArgumentTypeError(f"{spec!r}: unknown options {sorted(unknown)}")
    if opts.get("flush", "batch") not in ("batch", "linger"):
        raise argparse.ArgumentTypeError(f"{spec!r}: flush is batch or linger")
    return kind, opts


def side_spec(spec: str) -> str:
    parse_side(spec)
    return spec


class Side:
    """One worker (plain or faust) with its own topic prefix, producer and end consumer."""

    def __init__(self, spec: str, args: argparse.Namespace, info: StackInfo,
                 stack: EmbeddedStack, tmp: Path, prefix: str) -> None:
        self.spec, self.args, self.info, self.tmp = spec, args, info, tmp
        self.kind, self.opts = parse_side(spec)
        self.name = re.sub(r"[^A-Za-z0-9.-]+", "_", spec)
        self.prefix = prefix
        self.catalog, self.codecs, conf = phase_clients(info, stack, prefix, args.partitions)
        self.codec = self.codecs["transactions"]
        self.topic = self.catalog.physical("transactions")
        self.producer = bench_producer(conf, args.linger_ms)
        self.end = EndConsumer({**conf, "fetch.wait.max.ms": args.fetch_wait_ms},
                               self.catalog.physical("fraud-decisions"), self.codecs)
        self.sent: dict[str, float] = {}
        self._phase_start = time.time()
        self.proc: subprocess.Popen[bytes] | None = None
        self.web_port = free_port()
        self.stats_file = tmp / f"{prefix}stats.json"
        self.log_path = OUT_DIR / f"{args.name}_{self.name}.log"

    # -- the worker --------------------------------------------------------------
    def start_worker(self) -> float:
        """Start the worker; the seconds until it was ready."""
        env = {**os.environ, **self.info.env(), "TECHSHOP_TOPIC_PREFIX": self.prefix,
               "TECHSHOP_DATA_DIR": str(self.tmp / f"data-{self.prefix}"),
               "TECHSHOP_WEB_PORT": str(self.web_port), "TECHSHOP_BROKER_COMPAT": "tansu",
               "TECHSHOP_PARTITIONS": str(self.args.partitions),
               "TECHSHOP_CONSUMER_FETCH_WAIT_MS": str(self.args.fetch_wait_ms),
               "TECHSHOP_PRODUCER_LINGER_MS": str(self.args.linger_ms),
               "PYTHONPATH": str(ROOT)}
        ready_file = self.tmp / f"{self.prefix}ready"
        cmd = [sys.executable, str(ROOT / "bench" / "hop_worker.py"), self.kind,
               "--stats-file", str(self.stats_file),
               "--max-batch", self.opts.get("maxbatch", str(self.args.max_batch)),
               "--flush", self.opts.get("flush", "batch")]
        if self.kind == "plain":
            cmd += ["--ready-file", str(ready_file)]
        else:
            cmd += ["--within-s", self.opts.get("within", str(self.args.within_s))]
        start = time.monotonic()
        self.proc = start_logged(cmd, self.tmp, env, self.log_path,
                                 f"{' '.join(cmd)} (prefix {self.prefix})")
        deadline = start + self.args.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.spec} worker exited ({self.proc.returncode}) while "
                                   f"starting; see {self.log_path}")
            if self._ready(ready_file):
                return time.monotonic() - start
            time.sleep(0.25)
        raise RuntimeError(f"{self.spec} worker not ready in {self.args.ready_timeout} s; "
                           f"see {self.log_path}")

    def _ready(self, ready_file: Path) -> bool:
        if self.kind == "plain":
            return ready_file.exists()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}/ready",
                                        timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop_worker(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        return stop_process(proc, 20, f"{self.spec} worker")

    def stats(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.stats_file.read_text()))
        except (OSError, ValueError):
            return {}

    # -- load --------------------------------------------------------------------
    def offer(self, phase: str, rate: float, seconds: float, pool: list[dict[str, Any]]) -> int:
        """Send ``rate`` transactions a second for ``seconds``, paced; the count sent."""
        produce, encode, sent, topic = (self.producer.produce, self.codec.encode, self.sent,
                                        self.topic)
        total = int(rate * seconds)
        self._phase_start = time.time()
        start = time.perf_counter()
        i = 0
        while i < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while i < due:
                value = dict(pool[i % len(pool)])
                txn_id = f"{phase}:{i}"
                value["txn_id"] = txn_id
                now = time.time()
                value["ts"] = int(now * 1000)
                while True:
                    try:
                        produce(topic, encode(value), value["card_id"])
                        break
                    except BufferError:
                        self.producer.poll(0.01)
                sent[txn_id] = now
                i += 1
            self.producer.poll(0)
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        self.producer.flush(10)
        return total

    def drain(self, phase: str, timeout: float) -> int:
        """Wait until every record of ``phase`` came back; the number still missing."""
        wanted = [t for t in self.sent if t.startswith(f"{phase}:")]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            missing = sum(1 for t in wanted if t not in self.end.received)
            if not missing:
                return 0
            time.sleep(0.1)
        return sum(1 for t in wanted if t not in self.end.received)

    def phase_result(self, phase: str, rate: float, offered_s: float,
                     sampler: CpuSampler | None = None, window_s: float = 3.0) -> dict[str, Any]:
        latencies, to_handler, from_handler = [], [], []
        by_window: dict[int, list[float]] = {}
        first_sent = last_in = None
        for txn_id, sent_at in self.sent.items():
            if not txn_id.startswith(f"{phase}:"):
                continue
            first_sent = sent_at if first_sent is None else min(first_sent, sent_at)
            got = self.end.received.get(txn_id)
            if got is None:
                continue
            at, ts, decided_at = got
            latencies.append((at - sent_at) * 1000)
            by_window.setdefault(int((sent_at - self._phase_start) // window_s), []).append(
                latencies[-1])
            to_handler.append(decided_at - ts)
            from_handler.append(at * 1000 - decided_at)
            last_in = at if last_in is None else max(last_in, at)
        n_sent = sum(1 for t in self.sent if t.startswith(f"{phase}:"))
        span = (last_in - first_sent) if (last_in and first_sent) else None
        windows = []
        for w in sorted(by_window):
            lo = self._phase_start + w * window_s
            pct = percentiles(by_window[w])
            windows.append({"from_s": w * window_s, "n": pct["n"], "p50": pct["p50"],
                            "p99": pct["p99"],
                            "broker_cpu": sampler.share("broker", lo, lo + window_s)
                            if sampler else None,
                            "worker_cpu": sampler.share("worker", lo, lo + window_s)
                            if sampler else None,
                            "others_cpu": sampler.share("others", lo, lo + window_s)
                            if sampler else None})
        return {
            "offered_rate": rate, "sent": n_sent, "received": len(latencies),
            "offered_seconds": offered_s, "sent_per_s": n_sent / offered_s if offered_s else None,
            "throughput_per_s": len(latencies) / span if span else None,
            "latency_ms": percentiles(latencies),
            "to_handler_ms": percentiles([float(x) for x in to_handler]),
            "from_handler_ms": percentiles([float(x) for x in from_handler]),
            "windows": windows,
        }

    def close(self) -> None:
        """Stop the worker and the clients (idempotent: no client outlives the stack)."""
        self.stop_worker()
        if self.end is not None:
            self.end.close()
            self.end = None  # type: ignore[assignment]
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None  # type: ignore[assignment]


def run_side(side: Side, args: argparse.Namespace, pool: list[dict[str, Any]],
             stack: EmbeddedStack, rates: list[float]) -> dict[str, Any]:
    """Start the side's worker, warm up, offer each rate; the side's results."""
    progress(f"{side.spec}: starting worker (prefix {side.prefix})")
    ready_s = side.start_worker()
    sampler = CpuSampler(lambda: cpu_now(stack, side))
    try:
        return _run_phases(side, args, pool, stack, sampler, ready_s, rates)
    finally:
        sampler.close()


def _run_phases(side: Side, args: argparse.Namespace, pool: list[dict[str, Any]],
                stack: EmbeddedStack, sampler: CpuSampler, ready_s: float,
                rates: list[float]) -> dict[str, Any]:
    warm_rate = min(rates[0], args.warmup_rate)
    progress(f"{side.spec}: ready after {ready_s:.1f} s; warming up {args.warmup_s:.0f} s "
             f"at {warm_rate:.0f}/s")
    side.offer("warmup", warm_rate, args.warmup_s, pool)
    side.drain("warmup", 15)
    phases = {}
    for rate in rates:
        phase = f"r{rate:g}"
        if args.quiet_wait_s > 0:
            wait_for_quiet(lambda: cpu_now(stack, side)["others"], args.quiet_wait_s)
        stats0, t0 = side.stats(), time.monotonic()
        cpu0 = cpu_now(stack, side)
        progress(f"{side.spec}: offering {rate:.0f}/s for {args.seconds:.0f} s")
        start = time.monotonic()
        side.offer(phase, rate, args.seconds, pool)
        offered_s = time.monotonic() - start
        missing = side.drain(phase, args.drain_s)
        elapsed = time.monotonic() - t0
        cpu1 = cpu_now(stack, side)
        time.sleep(0.6)  # let the stats file catch up
        stats1 = side.stats()
        result = side.phase_result(phase, rate, offered_s, sampler, args.window_s)
        result["missing_after_drain"] = missing
        result["cpu_share_of_one_core"] = {k: (cpu1[k] - cpu0[k]) / elapsed for k in cpu0}
        batches = stats1.get("batches", 0) - stats0.get("batches", 0)
        events = stats1.get("events", 0) - stats0.get("events", 0)
        flush_s = stats1.get("flush_s", 0.0) - stats0.get("flush_s", 0.0)
        flushes = stats1.get("flushes", 0) - stats0.get("flushes", 0)
        gaps = [b - a for a, b in zip(stats0.get("gaps", []) or [0] * len(stats1.get("gaps", [])),
                                      stats1.get("gaps", []), strict=False)]
        edges = stats1.get("gap_edges_ms", [])
        labels = [f"<{e:g}" for e in edges] + [f">={edges[-1]:g}" if edges else "all"]
        result["worker"] = {"batches": batches, "events": events,
                            "batch_gap_ms_histogram": dict(zip(labels, gaps, strict=False)),
                            "mean_batch": events / batches if batches else None,
                            "batches_per_s": batches / elapsed,
                            "flushes": flushes,
                            "mean_flush_ms": 1000 * flush_s / flushes if flushes else None,
                            "flush_share_of_time": flush_s / elapsed}
        lat = result["latency_ms"]
        progress(f"{side.spec} @ {rate:.0f}/s: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
                 f"{result['received']}/{result['sent']} back; by {args.window_s:g} s window "
                 "p50 ms (broker cpu, other processes' cpu): " + ", ".join(
                     f"{w['p50']:.0f} ({pct(w['broker_cpu'])}, {pct(w['others_cpu'])})"
                     for w in result["windows"])
                 + "; gaps between batches (ms): " + ", ".join(
                     f"{k} {v}" for k, v in result["worker"]["batch_gap_ms_histogram"].items()))
        phases[phase] = result
    code = side.stop_worker()
    return {"prefix": side.prefix, "rates": rates, "ready_s": ready_s, "worker_exit": code,
            "phases": phases, "log": str(side.log_path)}
