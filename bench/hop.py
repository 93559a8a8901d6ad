"""Latency of one hop on the embedded stack: produce -> worker -> produce -> consume.

Starts an :class:`~streams.stack.EmbeddedStack` (Tansu, registry, redis) on free ports
in a temporary directory, then measures two workers doing the same work
(``bench/hop_worker.py``: decode + validate ``transactions``, publish one
``fraud-decisions`` record each, flush per batch), one after the other so they never
share the two cores:

* ``plain``: a confluent-kafka consume-and-produce loop, assigned to the input partitions;
* ``faust``: a ``TechShopApp`` worker with ``input_agent`` (the adapter every pipeline
  uses), started as a subprocess and used once ``/ready`` answers 200.

Both get the same paced producer (linger 5 ms) and the same end consumer; each side has
its own topic prefix. A transaction's ``ts`` is its send wall time (epoch ms); latency
is the end consumer's receive wall time minus the precise send time. The decision's
``decided_at`` splits it into "to the handler" and "from the handler".

Run: ``python bench/hop.py`` (``--help`` for options); results in ``bench/out/hop.json``,
worker logs in ``bench/out/hop_<side>.log``. Variants of a side (``faust:within=0.001``,
``plain:flush=linger``) measure what the adapter's choices cost; each phase also
records the CPU of the broker, the worker and every other process on the machine,
and a latency/CPU series in 3 s windows (Tansu slows down as a topic fills).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402

from bench._common import (  # noqa: E402,I001
    NOISE_NOTE,
    OUT_DIR,
    code_version,
    machine,
    percentiles,
    progress,
    wait_for_quiet,
    write_result,
)
from replay.generator import TrafficGenerator  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.embedded import die_with_parent, free_port  # noqa: E402
from streams.publisher import Codecs  # noqa: E402
from streams.registry import LocalSchemaSource  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.stack import EmbeddedStack, StackInfo  # noqa: E402
from streams.topics import TopicCatalog  # noqa: E402

#: MEASURED.md, "Latency of one hop" (Faust agent, fetch wait 10 ms, producers linger 5 ms).
MEASURED = {500: (17, 27), 2000: (24, 75)}
KINDS = ("plain", "faust")


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (from /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_now(stack: EmbeddedStack, side: Side) -> dict[str, float]:
    """CPU seconds so far: the broker, the worker, this process, everything else."""
    now = {"worker": cpu_seconds(side.proc.pid if side.proc else None),
           "broker": cpu_seconds(stack.broker.pid), "bench": cpu_seconds(os.getpid()),
           "redis": cpu_seconds(stack.redis.pid if stack.redis else None)}
    now["others"] = machine_busy_seconds() - sum(now.values())
    return now


class CpuSampler:
    """Samples the CPU seconds of a few processes once a second, in a thread."""

    def __init__(self, read: Any) -> None:
        self.read = read  # () -> {name: cpu seconds so far}
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="cpu-sampler")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self.read()))
            self._stop.wait(1.0)

    def share(self, name: str, start: float, end: float) -> float | None:
        """Share of one core ``name`` used between two wall times (nearest samples)."""
        inside = [(t, c[name]) for t, c in self.samples if start <= t <= end and c[name] != 0]
        if len(inside) < 2:
            return None
        (t0, c0), (t1, c1) = inside[0], inside[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)


class EndConsumer:
    """Reads one side's decisions from the start and records when each arrived."""

    def __init__(self, conf: dict[str, Any], topic: str, codecs: Codecs) -> None:
        self.codec = codecs["fraud-decisions"]
        self.consumer = Consumer({**conf, "group.id": f"bench-end-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "log.connection.close": False})
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
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
        self.catalog = TopicCatalog(self.prefix)
        client = Settings(kafka_bootstrap_servers=info.bootstrap_servers,
                          schema_registry_url=info.schema_registry_url,
                          topic_prefix=self.prefix, partitions=args.partitions)
        ensure_topics(client, self.catalog)
        stack.register_subjects(self.catalog)
        assert stack.store is not None
        self.codecs = Codecs(LocalSchemaSource(stack.store), self.catalog)
        self.codec = self.codecs["transactions"]
        self.topic = self.catalog.physical("transactions")
        conf = {**client.kafka_client_config(), "log.connection.close": False}
        self.producer = Producer({**conf, "linger.ms": args.linger_ms,
                                  "batch.size": 256 * 1024, "enable.idempotence": False})
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
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"==== {' '.join(cmd)} (prefix {self.prefix})\n".encode())
        log.flush()
        start = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=self.tmp, env=env, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=die_with_parent)
        log.close()
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
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                progress(f"{self.spec} worker ignored SIGTERM for 20 s: killing it")
                proc.kill()
                proc.wait(5)
        return proc.returncode

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
                     f"{w['p50']:.0f} ({_pct(w['broker_cpu'])}, {_pct(w['others_cpu'])})"
                     for w in result["windows"])
                 + "; gaps between batches (ms): " + ", ".join(
                     f"{k} {v}" for k, v in result["worker"]["batch_gap_ms_histogram"].items()))
        phases[phase] = result
    code = side.stop_worker()
    return {"prefix": side.prefix, "rates": rates, "ready_s": ready_s, "worker_exit": code,
            "phases": phases, "log": str(side.log_path)}


def report(result: dict[str, Any]) -> str:
    out = []
    p = result["params"]
    specs = p["sides"]
    base = result["baseline"]
    width = max(6, *(len(x) for x in specs)) + 1
    out.append("One hop on the embedded stack (Tansu): produce -> worker -> produce -> "
               "consume.")
    out.append(NOISE_NOTE)
    code = result["code"]
    out.append(f"Code: commit {code['commit']}, streams/app.py sha256 "
               f"{code['sha256'].get('streams/app.py', '?')}"
               + (f", uncommitted changes in streams/: {code['dirty']!r}"
                  if code["dirty"] else ", streams/ clean"))
    out.append(f"Settings: consumer fetch.wait.max.ms {p['fetch_wait_ms']} (worker input and "
               f"end consumer, every side), producers linger {p['linger_ms']} ms (bench and "
               f"workers), {p['partitions']} partitions, max batch {p['max_batch']}, faust "
               f"take_events within {p['within_s']} s unless a side says otherwise, flush per "
               f"batch unless a side says flush=linger; {p['seconds']:.0f} s per rate after "
               f"{p['warmup_s']:.0f} s warm-up; "
               + ("fresh topics and a fresh worker for every rate and side, run in the order "
                  "of the table." if p["fresh_topics"] else
                  "one worker and one set of topics per side, rates in turn."))
    out.append("")
    out.append(f"{'side':<{width}}{'offered/s':>10}{'thru/s':>8}{'back':>13}"
               f"{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}  {'to handler':>11}"
               f"{'from handler':>13}{'batch':>7}{'flush ms':>9}{'cpu wrk/brk/oth':>17}")
    out.append(f"{'':<{width}}{'':>10}{'':>8}{'':>13}{'(ms)':>8}{'':>8}{'':>8}{'':>8}  "
               f"{'p50/p99':>11}{'p50/p99':>13}")
    for rate in p["rates"]:
        phase = f"r{rate:g}"
        for spec in specs:
            r = result["sides"].get(spec, {}).get("phases", {}).get(phase)
            if r is None:
                continue
            lat, th, fh, w = r["latency_ms"], r["to_handler_ms"], r["from_handler_ms"], r["worker"]
            cpu = r["cpu_share_of_one_core"]
            out.append(
                f"{spec:<{width}}{rate:>10.0f}{r['throughput_per_s'] or 0:>8.0f}"
                f"{r['received']:>7}/{r['sent']:<5}"
                f"{_ms(lat['p50'])}{_ms(lat['p95'])}{_ms(lat['p99'])}{_ms(lat['max'])}  "
                f"{_pair(th):>11}{_pair(fh):>13}"
                f"{w['mean_batch'] or 0:>7.1f}{w['mean_flush_ms'] or 0:>9.1f}"
                f"{cpu['worker']:>8.0%}/{cpu['broker']:.0%}/{cpu['others']:.0%}")
    if result["ratios"]:
        out.append("")
        out.append(f"Latency ratio to the baseline '{base}' measured in this run "
                   "(> 1: slower than the plain loop):")
        for spec, by_rate in result["ratios"].items():
            for rate, ratio in by_rate.items():
                out.append(f"  {spec} / {base} at {rate}/s: p50 {ratio['p50']:.2f}x, "
                           f"p99 {ratio['p99']:.2f}x")
    out.append("")
    out.append("MEASURED.md (Faust agent, fetch wait 10 ms, linger 5 ms): "
               + "; ".join(f"{r:,}/s p50 {a} ms, p99 {b} ms" for r, (a, b) in MEASURED.items())
               + "; raw confluent-kafka consumers p50/p99 6/9 ms at 5 ms wait.")
    for rate in p["rates"]:
        faust = result["sides"].get("faust", {}).get("phases", {}).get(f"r{rate:g}")
        if faust and int(rate) in MEASURED and faust["latency_ms"]["p50"] is not None:
            a, b = MEASURED[int(rate)]
            out.append(f"  faust here at {rate:,.0f}/s: p50 {faust['latency_ms']['p50']:.0f} ms "
                       f"({faust['latency_ms']['p50'] / a:.2f}x MEASURED), p99 "
                       f"{faust['latency_ms']['p99']:.0f} ms "
                       f"({faust['latency_ms']['p99'] / b:.2f}x MEASURED)")
    out.append("Columns: latency = end consumer receive - send; 'to handler' = decided_at - "
               "ts, 'from handler' = receive - decided_at (whole-ms clocks); thru = outputs/s "
               "from first send to last receive; batch = mean events per handler call; "
               "flush ms = mean wait per publisher flush (faust: one per take_events batch, "
               "plain: one per batch); cpu = share of one core used by the worker / the broker "
               "/ every process outside this benchmark during the phase (the machine has "
               f"{os.cpu_count()} cores; a high 'oth' means the figures are disturbed). "
               "Per-window series in the JSON.")
    busy = [(spec, rate) for rate in p["rates"] for spec in specs
            if (result["sides"].get(spec, {}).get("phases", {}).get(f"r{rate:g}") or {})
            .get("cpu_share_of_one_core", {}).get("others", 0) > 0.25]
    if busy:
        out.append("WARNING: other processes used more than a quarter of a core during: "
                   + ", ".join(f"{spec} at {rate:g}/s" for spec, rate in busy)
                   + " - rerun those when the machine is quieter.")
    return "\n".join(out)


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{x:.0%}"


def _ms(x: float | None) -> str:
    return f"{x:>8.1f}" if x is not None else f"{'-':>8}"


def _pair(p: dict[str, Any]) -> str:
    if p["p50"] is None:
        return "-"
    return f"{p['p50']:.0f}/{p['p99']:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[500.0, 2000.0],
                        help="offered rates, events/s")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per rate")
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--drain-s", type=float, default=10.0,
                        help="longest wait for the last outputs of a rate")
    parser.add_argument("--fetch-wait-ms", type=int, default=10,
                        help="fetch.wait.max.ms of every consumer (worker input, end consumer)")
    parser.add_argument("--linger-ms", type=int, default=5, help="linger of every producer")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--max-batch", type=int, default=1000)
    parser.add_argument("--within-s", type=float, default=0.01,
                        help="faust take_events window (the adapter's default)")
    parser.add_argument(
        "--sides", nargs="+", type=side_spec, default=["plain", "faust"],
        help="workers to compare, each 'plain' or 'faust' with options after a colon: "
             "within=<s> (faust take_events window), flush=batch|linger, maxbatch=<n>; e.g. "
             "faust:within=0.001 plain:flush=linger. The first plain side is the baseline")
    parser.add_argument("--fresh-topics", action=argparse.BooleanOptionalAction, default=True,
                        help="new topics and a new worker for every rate (Tansu slows down "
                        "as a topic fills with small batches, which would bias later rates)")
    parser.add_argument("--warmup-rate", type=float, default=500.0,
                        help="warm-up rate (at most the first rate of a worker)")
    parser.add_argument("--ready-timeout", type=float, default=90.0)
    parser.add_argument("--quiet-wait-s", type=float, default=10.0,
                        help="before each rate, wait up to this long for other processes "
                        "to use under 30%% of a core (0: do not wait)")
    parser.add_argument("--window-s", type=float, default=3.0,
                        help="width of the windows of the latency/cpu time series")
    parser.add_argument("--name", default="hop",
                        help="results go to bench/out/<name>.json, logs to <name>_<side>.log")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()

    result: dict[str, Any] = {"benchmark": "hop", "machine": machine(), "params": vars(args),
                              "code": code_version(("streams/app.py", "streams/publisher.py"),
                                                   ("streams",)),
                              "sides": {}, "note": NOISE_NOTE}
    pool = [e.value for e in TrafficGenerator(seed=1, rates={"transactions": 100.0})
            .take(5000, {"transactions"})]
    for old in OUT_DIR.glob(f"{args.name}_*.log"):
        old.unlink()
    tmp = Path(tempfile.mkdtemp(prefix="techshop-hop-"))
    run_id = uuid.uuid4().hex[:6]
    settings = Settings(kafka_bootstrap_servers=None, schema_registry_url=None,
                        redis_url=None, topic_prefix="", data_dir=tmp / "stack",
                        broker_port=free_port(), registry_port=free_port(),
                        embedded_redis_port=free_port(), partitions=args.partitions)
    stack = EmbeddedStack(settings)
    sides: list[Side] = []
    if args.fresh_topics:
        plan = [(spec, [rate]) for rate in args.rates for spec in args.sides]
    else:
        plan = [(spec, list(args.rates)) for spec in args.sides]
    try:
        progress(f"starting the embedded stack in {tmp}")
        info = stack.start()
        progress(f"stack up: broker {info.bootstrap_servers} (pid {stack.broker.pid}), "
                 f"registry {info.schema_registry_url}")
        result["stack"] = info.as_json()
        for n, (spec, rates) in enumerate(plan):
            side = Side(spec, args, info, stack, tmp, f"hop{run_id}n{n}.")
            sides.append(side)
            try:
                ran = run_side(side, args, pool, stack, rates)
            finally:
                side.close()
            entry = result["sides"].setdefault(spec, {"runs": [], "phases": {}})
            entry["phases"].update(ran.pop("phases"))
            entry["runs"].append(ran)
    finally:
        for side in sides:
            with contextlib.suppress(Exception):
                side.close()
        progress("stopping the stack")
        stack.stop()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    base = next((s for s in args.sides if parse_side(s)[0] == "plain"), args.sides[0])
    ratios: dict[str, dict[str, dict[str, float]]] = {}
    for spec in args.sides:
        if spec == base:
            continue
        for rate in args.rates:
            phase = f"r{rate:g}"
            try:
                f = result["sides"][spec]["phases"][phase]["latency_ms"]
                b = result["sides"][base]["phases"][phase]["latency_ms"]
                ratios.setdefault(spec, {})[f"{rate:g}"] = {
                    q: f[q] / b[q] for q in ("p50", "p95", "p99", "max")}
            except (KeyError, TypeError, ZeroDivisionError):
                continue
    result["baseline"] = base
    result["ratios"] = ratios
    path = write_result(args.name, result)
    print(report(result))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
