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
worker logs in ``bench/out/hop_<side>.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
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

from bench._common import NOISE_NOTE, OUT_DIR, machine, percentiles, progress, write_result  # noqa: E402,I001
from replay.generator import TrafficGenerator  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.embedded import free_port  # noqa: E402
from streams.publisher import Codecs  # noqa: E402
from streams.registry import LocalSchemaSource  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.stack import EmbeddedStack, StackInfo  # noqa: E402
from streams.topics import TopicCatalog  # noqa: E402

#: MEASURED.md, "Latency of one hop" (Faust agent, fetch wait 10 ms, producers linger 5 ms).
MEASURED = {500: (17, 27), 2000: (24, 75)}
SIDES = ("plain", "faust")


def _die_with_parent() -> None:  # in the worker, between fork and exec
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds of a process so far (0 if it is gone)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


class Side:
    """One worker (plain or faust) with its own topic prefix, producer and end consumer."""

    def __init__(self, name: str, args: argparse.Namespace, info: StackInfo,
                 stack: EmbeddedStack, tmp: Path, run_id: str) -> None:
        self.name, self.args, self.info, self.tmp = name, args, info, tmp
        self.prefix = f"hop{run_id}{name[0]}."
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
        self.proc: subprocess.Popen[bytes] | None = None
        self.web_port = free_port()
        self.stats_file = tmp / f"{name}-stats.json"
        self.log_path = OUT_DIR / f"hop_{name}.log"

    # -- the worker --------------------------------------------------------------
    def start_worker(self) -> float:
        """Start the worker; the seconds until it was ready."""
        env = {**os.environ, **self.info.env(), "TECHSHOP_TOPIC_PREFIX": self.prefix,
               "TECHSHOP_DATA_DIR": str(self.tmp / f"data-{self.name}"),
               "TECHSHOP_WEB_PORT": str(self.web_port), "TECHSHOP_BROKER_COMPAT": "tansu",
               "TECHSHOP_PARTITIONS": str(self.args.partitions),
               "TECHSHOP_CONSUMER_FETCH_WAIT_MS": str(self.args.fetch_wait_ms),
               "TECHSHOP_PRODUCER_LINGER_MS": str(self.args.linger_ms),
               "PYTHONPATH": str(ROOT)}
        ready_file = self.tmp / f"{self.name}-ready"
        cmd = [sys.executable, str(ROOT / "bench" / "hop_worker.py"), self.name,
               "--stats-file", str(self.stats_file), "--max-batch", str(self.args.max_batch)]
        if self.name == "plain":
            cmd += ["--ready-file", str(ready_file)]
        else:
            cmd += ["--within-s", str(self.args.within_s)]
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("wb")
        start = time.monotonic()
        self.proc = subprocess.Popen(cmd, cwd=self.tmp, env=env, stdin=subprocess.DEVNULL,
                                     stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent)
        log.close()
        deadline = start + self.args.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} worker exited ({self.proc.returncode}) while "
                                   f"starting; see {self.log_path}")
            if self._ready(ready_file):
                return time.monotonic() - start
            time.sleep(0.25)
        raise RuntimeError(f"{self.name} worker not ready in {self.args.ready_timeout} s; "
                           f"see {self.log_path}")

    def _ready(self, ready_file: Path) -> bool:
        if self.name == "plain":
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
                progress(f"{self.name} worker ignored SIGTERM for 20 s: killing it")
                proc.kill()
                proc.wait(5)
        return proc.returncode

    def stats(self) -> dict[str, float]:
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

    def phase_result(self, phase: str, rate: float, offered_s: float) -> dict[str, Any]:
        latencies, to_handler, from_handler = [], [], []
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
            to_handler.append(decided_at - ts)
            from_handler.append(at * 1000 - decided_at)
            last_in = at if last_in is None else max(last_in, at)
        n_sent = sum(1 for t in self.sent if t.startswith(f"{phase}:"))
        span = (last_in - first_sent) if (last_in and first_sent) else None
        return {
            "offered_rate": rate, "sent": n_sent, "received": len(latencies),
            "offered_seconds": offered_s, "sent_per_s": n_sent / offered_s if offered_s else None,
            "throughput_per_s": len(latencies) / span if span else None,
            "latency_ms": percentiles(latencies),
            "to_handler_ms": percentiles([float(x) for x in to_handler]),
            "from_handler_ms": percentiles([float(x) for x in from_handler]),
        }

    def close(self) -> None:
        self.stop_worker()
        self.end.close()
        self.producer.flush(5)


def run_side(side: Side, args: argparse.Namespace, pool: list[dict[str, Any]],
             stack: EmbeddedStack) -> dict[str, Any]:
    progress(f"{side.name}: starting worker (prefix {side.prefix})")
    ready_s = side.start_worker()
    progress(f"{side.name}: ready after {ready_s:.1f} s; warming up {args.warmup_s:.0f} s "
             f"at {args.rates[0]:.0f}/s")
    side.offer("warmup", args.rates[0], args.warmup_s, pool)
    side.drain("warmup", 15)
    phases = {}
    for rate in args.rates:
        phase = f"r{rate:g}"
        stats0, t0 = side.stats(), time.monotonic()
        cpu0 = {"worker": cpu_seconds(side.proc.pid if side.proc else None),
                "broker": cpu_seconds(stack.broker.pid), "bench": time.process_time()}
        progress(f"{side.name}: offering {rate:.0f}/s for {args.seconds:.0f} s")
        start = time.monotonic()
        side.offer(phase, rate, args.seconds, pool)
        offered_s = time.monotonic() - start
        missing = side.drain(phase, args.drain_s)
        elapsed = time.monotonic() - t0
        cpu1 = {"worker": cpu_seconds(side.proc.pid if side.proc else None),
                "broker": cpu_seconds(stack.broker.pid), "bench": time.process_time()}
        time.sleep(0.6)  # let the stats file catch up
        stats1 = side.stats()
        result = side.phase_result(phase, rate, offered_s)
        result["missing_after_drain"] = missing
        result["cpu_share_of_one_core"] = {k: (cpu1[k] - cpu0[k]) / elapsed for k in cpu0}
        batches = stats1.get("batches", 0) - stats0.get("batches", 0)
        events = stats1.get("events", 0) - stats0.get("events", 0)
        flush_s = stats1.get("flush_s", 0.0) - stats0.get("flush_s", 0.0)
        result["worker"] = {"batches": batches, "events": events,
                            "mean_batch": events / batches if batches else None,
                            "batches_per_s": batches / elapsed,
                            "mean_flush_ms": 1000 * flush_s / batches if batches else None,
                            "flush_share_of_time": flush_s / elapsed}
        lat = result["latency_ms"]
        progress(f"{side.name} @ {rate:.0f}/s: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms, "
                 f"{result['received']}/{result['sent']} back")
        phases[phase] = result
    code = side.stop_worker()
    return {"prefix": side.prefix, "ready_s": ready_s, "worker_exit": code, "phases": phases,
            "log": str(side.log_path)}


def report(result: dict[str, Any]) -> str:
    out = []
    p = result["params"]
    out.append("One hop on the embedded stack (Tansu): produce -> worker -> produce -> "
               "consume.")
    out.append(NOISE_NOTE)
    out.append(f"Settings: consumer fetch.wait.max.ms {p['fetch_wait_ms']} (worker input and "
               f"end consumer, both sides), producers linger {p['linger_ms']} ms (bench and "
               f"workers), {p['partitions']} partitions, max batch {p['max_batch']}, faust "
               f"take_events within {p['within_s']} s, flush per batch on both sides; "
               f"{p['seconds']:.0f} s per rate after {p['warmup_s']:.0f} s warm-up.")
    out.append("")
    head = (f"{'side':<6}{'offered/s':>10}{'sent/s':>9}{'thru/s':>9}{'back':>12}"
            f"{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}   {'to handler p50/p99':>19}"
            f"{'from handler p50/p99':>22}{'batch':>7}{'flush ms':>9}{'cpu wrk/brk':>12}")
    out.append(head)
    for rate in p["rates"]:
        phase = f"r{rate:g}"
        for side in SIDES:
            r = result["sides"].get(side, {}).get("phases", {}).get(phase)
            if r is None:
                continue
            lat, th, fh, w = r["latency_ms"], r["to_handler_ms"], r["from_handler_ms"], r["worker"]
            cpu = r["cpu_share_of_one_core"]
            out.append(
                f"{side:<6}{rate:>10.0f}{r['sent_per_s'] or 0:>9.0f}"
                f"{r['throughput_per_s'] or 0:>9.0f}{r['received']:>6}/{r['sent']:<5}"
                f"{_ms(lat['p50'])}{_ms(lat['p95'])}{_ms(lat['p99'])}{_ms(lat['max'])}   "
                f"{_pair(th):>19}{_pair(fh):>22}"
                f"{w['mean_batch'] or 0:>7.1f}{w['mean_flush_ms'] or 0:>9.1f}"
                f"{cpu['worker']:>7.0%}/{cpu['broker']:.0%}")
    out.append("")
    out.append("Ratio faust / plain (latency; > 1 means the Faust hop is slower):")
    for rate, ratio in result["ratios_faust_over_plain"].items():
        out.append(f"  {rate}/s: p50 {ratio['p50']:.2f}x, p99 {ratio['p99']:.2f}x")
    out.append("")
    out.append("MEASURED.md (Faust agent, fetch wait 10 ms, linger 5 ms): "
               + "; ".join(f"{r}/s p50 {a} ms, p99 {b} ms" for r, (a, b) in MEASURED.items())
               + "; raw confluent-kafka consumer p50/p99 6/9 ms at 5 ms wait.")
    for rate in p["rates"]:
        faust = result["sides"].get("faust", {}).get("phases", {}).get(f"r{rate:g}")
        if faust and int(rate) in MEASURED and faust["latency_ms"]["p50"] is not None:
            a, b = MEASURED[int(rate)]
            out.append(f"  faust here at {rate:g}/s: p50 {faust['latency_ms']['p50']:.0f} ms "
                       f"({faust['latency_ms']['p50'] / a:.2f}x MEASURED), p99 "
                       f"{faust['latency_ms']['p99']:.0f} ms "
                       f"({faust['latency_ms']['p99'] / b:.2f}x MEASURED)")
    out.append("Columns: latency = end consumer receive - send (ms); 'to handler' = "
               "decided_at - ts, 'from handler' = receive - decided_at (ms, whole-ms clocks); "
               "batch = mean events per worker batch; flush ms = mean flush wait per batch; "
               "cpu = share of one core used by the worker / the broker during the phase.")
    return "\n".join(out)


def _ms(x: float | None) -> str:
    return f"{x:>8.1f}" if x is not None else f"{'-':>8}"


def _pair(p: dict[str, Any]) -> str:
    if p["p50"] is None:
        return "-"
    return f"{p['p50']:.0f}/{p['p99']:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[500.0, 2000.0],
                        help="offered rates, events/s (the first is also the warm-up rate)")
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
    parser.add_argument("--sides", nargs="+", default=list(SIDES), choices=SIDES)
    parser.add_argument("--ready-timeout", type=float, default=90.0)
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs)")
    args = parser.parse_args()

    result: dict[str, Any] = {"benchmark": "hop", "machine": machine(), "params": vars(args),
                              "sides": {}, "note": NOISE_NOTE}
    pool = [e.value for e in TrafficGenerator(seed=1, rates={"transactions": 100.0})
            .take(5000, {"transactions"})]
    tmp = Path(tempfile.mkdtemp(prefix="techshop-hop-"))
    run_id = uuid.uuid4().hex[:6]
    settings = Settings(kafka_bootstrap_servers=None, schema_registry_url=None,
                        redis_url=None, topic_prefix="", data_dir=tmp / "stack",
                        broker_port=free_port(), registry_port=free_port(),
                        embedded_redis_port=free_port(), partitions=args.partitions)
    stack = EmbeddedStack(settings)
    sides: list[Side] = []
    try:
        progress(f"starting the embedded stack in {tmp}")
        info = stack.start()
        progress(f"stack up: broker {info.bootstrap_servers} (pid {stack.broker.pid}), "
                 f"registry {info.schema_registry_url}")
        result["stack"] = info.as_json()
        for name in args.sides:
            side = Side(name, args, info, stack, tmp, run_id)
            sides.append(side)
            try:
                result["sides"][name] = run_side(side, args, pool, stack)
            finally:
                side.close()
    finally:
        for side in sides:
            with contextlib.suppress(Exception):
                side.close()
        progress("stopping the stack")
        stack.stop()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    ratios = {}
    for rate in args.rates:
        phase = f"r{rate:g}"
        try:
            f = result["sides"]["faust"]["phases"][phase]["latency_ms"]
            p = result["sides"]["plain"]["phases"][phase]["latency_ms"]
            ratios[f"{rate:g}"] = {q: f[q] / p[q] for q in ("p50", "p95", "p99", "max")}
        except (KeyError, TypeError, ZeroDivisionError):
            continue
    result["ratios_faust_over_plain"] = ratios
    path = write_result("hop", result)
    print(report(result))
    print(f"\nresults: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
