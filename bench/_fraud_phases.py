"""The phases of bench/fraud.py: one (worker kind, worker count, rate) each.

* :class:`Worker`: a ``fraud`` (``streams.cli worker --pipelines fraud``) or ``bare``
  (``bench/hop_worker.py faust``) worker process, with its ``/metrics`` counters;
* :class:`DecisionReader`: the end consumer of a phase's ``fraud-decisions``;
* :class:`Phase`: fresh topics, workers, the paced producer and the end consumer;
* :func:`run_phase`: a phase from its workers' start to their stop (warm-up, offered
  window, drain, CPU, py-spy), and :func:`phase_result` / :func:`counter_delta`: what
  it measured (latencies, rates, whether it was sustained).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench._common import OUT_DIR, ROOT, fmt, percentiles, progress, wait_for_quiet
from bench._harness import (
    CORES,
    CpuSampler,
    ServiceWorker,
    assigned_consumer,
    bench_producer,
    bottleneck,
    cpu_now,
    cpu_share,
    phase_clients,
)
from bench._profile import finish_profile, start_profile
from streams.publisher import Codecs
from streams.stack import EmbeddedStack, StackInfo

KINDS = ("bare", "fraud")
CORES_NOTE = (f"This machine has {CORES} cores, shared by the producer, the broker, redis, "
              "the worker(s) and the end consumer (and by other sessions): absolute rates "
              "understate a deployment where each has its own cores; compare fraud with bare "
              "measured in the same run.")
#: Counters scraped from each worker's /metrics before and after the offered window.
METRICS = ("techshop_batch_size_events_sum", "techshop_batch_size_events_count",
           "techshop_dead_letters_total", "techshop_fraud_fallback_total",
           "techshop_fraud_late_events_total", "techshop_fraud_repeats_total")


class Worker(ServiceWorker):
    """One worker process (fraud or bare) of a phase, with its own data dir and port."""

    def __init__(self, kind: str, index: int, env: dict[str, str], tmp: Path,
                 label: str) -> None:
        super().__init__(kind, index, env, tmp, label, OUT_DIR / f"fraud_{kind}_w{index}.log")

    def command(self) -> list[str]:
        if self.kind == "fraud":
            return [sys.executable, "-m", "streams.cli", "worker", "--pipelines", "fraud"]
        return [sys.executable, str(ROOT / "bench" / "hop_worker.py"), "faust"]

    def counters(self) -> dict[str, float] | None:
        status, text = self._get("/metrics", 5)
        if status != 200:
            return None
        totals = dict.fromkeys(METRICS, 0.0)
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            name = line.split("{", 1)[0].split(" ", 1)[0]
            if name in totals and ('topic="transactions"' in line or "batch_size" not in name):
                with contextlib.suppress(ValueError):
                    totals[name] += float(line.rsplit(" ", 1)[1])
        return totals


# -- the end consumer ----------------------------------------------------------------

class DecisionReader:
    """Reads a phase's ``fraud-decisions`` from the start; when each txn_id first arrived."""

    def __init__(self, conf: dict[str, Any], topic: str, codecs: Codecs) -> None:
        self.decode = codecs["fraud-decisions"].decode
        self.consumer = assigned_consumer(conf, "bench-fraud", topic)
        self.received: dict[str, float] = {}
        self.counts: Counter[str] = Counter()  # by tag (the txn_id before ':')
        self.duplicates = self.errors = 0
        self.decisions: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"end-{topic}")
        self._thread.start()

    def _run(self) -> None:
        poll, consume, decode = self.consumer.poll, self.consumer.consume, self.decode
        received, counts, decisions = self.received, self.counts, self.decisions
        while not self._stop.is_set():
            first = poll(0.1)
            if first is None:
                continue
            at = time.time()
            for msg in [first, *consume(999, 0)]:
                if msg.error() is not None:
                    self.errors += 1
                    continue
                d = decode(msg.value())
                txn_id = d["txn_id"]
                if txn_id in received:
                    self.duplicates += 1
                    continue
                received[txn_id] = at
                counts[txn_id.partition(":")[0]] += 1
                decisions[d["decision"]] += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


# -- one phase -----------------------------------------------------------------------

class Phase:
    """One (kind, workers, rate): fresh topics, workers, producer and end consumer."""

    def __init__(self, kind: str, n_workers: int, rate: float, label: str,
                 args: argparse.Namespace, info: StackInfo, stack: EmbeddedStack, tmp: Path,
                 prefix: str, models_dir: Path) -> None:
        self.kind, self.n_workers, self.rate, self.label = kind, n_workers, rate, label
        self.args, self.tmp, self.prefix = args, tmp, prefix
        self.catalog, codecs, conf = phase_clients(info, stack, prefix, args.partitions)
        self.encode = codecs["transactions"].encode
        self.topic = self.catalog.physical("transactions")
        self.producer: Producer | None = bench_producer(conf, args.linger_ms)
        self.reader: DecisionReader | None = DecisionReader(
            {**conf, "fetch.wait.max.ms": args.fetch_wait_ms},
            self.catalog.physical("fraud-decisions"), codecs)
        self.sent: dict[str, dict[str, float]] = {}  # tag -> txn_id -> send wall time
        self.received: dict[str, float] = {}  # the reader's, kept once it is closed
        env = {**os.environ, **info.env(), "TECHSHOP_TOPIC_PREFIX": prefix,
               "TECHSHOP_BROKER_COMPAT": "tansu", "TECHSHOP_PARTITIONS": str(args.partitions),
               "TECHSHOP_MODEL_DIR": str(models_dir), "PYTHONPATH": str(ROOT)}
        self.workers = [Worker(kind, i, env, tmp, label) for i in range(n_workers)]

    def start_workers(self) -> float:
        """Start every worker; seconds until all answered /ready 200 in the same round."""
        start = time.monotonic()
        for w in self.workers:
            w.start(self.tmp)
        deadline = start + self.args.ready_timeout
        while time.monotonic() < deadline:
            for w in self.workers:
                assert w.proc is not None
                if w.proc.poll() is not None:
                    raise RuntimeError(f"{self.label}: worker {w.index} exited "
                                       f"({w.proc.returncode}) while starting; see {w.log_path}")
            if all(w.ready() for w in self.workers):
                return time.monotonic() - start
            time.sleep(0.25)
        raise RuntimeError(f"{self.label}: workers not ready in {self.args.ready_timeout} s; "
                           f"see {', '.join(str(w.log_path) for w in self.workers)}")

    def offer(self, tag: str, rate: float, seconds: float,
              pool: list[dict[str, Any]]) -> tuple[int, float]:
        """Send ``rate`` transactions a second for ``seconds``, paced; (count, seconds)."""
        assert self.producer is not None
        producer, encode, topic = self.producer, self.encode, self.topic
        produce, poll = producer.produce, producer.poll
        sent = self.sent.setdefault(tag, {})
        base = f"{self.label}.{tag}:"
        total = int(rate * seconds)
        start = time.perf_counter()
        i = 0
        while i < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while i < due:
                value = dict(pool[i % len(pool)])
                txn_id = value["txn_id"] = f"{base}{i}"
                now = time.time()
                value["ts"] = int(now * 1000)
                while True:
                    try:
                        produce(topic, encode(value), value["card_id"])
                        break
                    except BufferError:
                        poll(0.01)
                sent[txn_id] = now
                i += 1
            poll(0)
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        elapsed = time.perf_counter() - start
        producer.flush(10)
        return total, elapsed

    def back(self, tag: str) -> int:
        assert self.reader is not None
        return self.reader.counts[f"{self.label}.{tag}"]

    def wait_back(self, tag: str, n: int, timeout: float) -> int:
        """Wait until ``n`` decisions of ``tag`` came back; how many are still missing."""
        deadline = time.monotonic() + timeout
        while self.back(tag) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return n - self.back(tag)

    def counters(self) -> list[dict[str, float] | None]:
        return [w.counters() for w in self.workers]

    def stop_workers(self) -> list[int | None]:
        return [w.stop() for w in self.workers]

    def close(self) -> None:
        """Stop the workers and the clients (idempotent)."""
        self.stop_workers()
        if self.reader is not None:
            self.received = self.reader.received
            self.reader.close()
            self.reader = None
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None


# -- a phase from start to finish ----------------------------------------------------

def cpu_line(cpu: dict[str, float]) -> str:
    """The CPU shares of a window, as printed."""
    workers = "+".join(f"{v:.0%}" for k, v in cpu.items() if k.startswith("worker"))
    return (f"workers {workers}, broker {cpu.get('broker', 0):.0%}, bench "
            f"{cpu.get('bench', 0):.0%}, redis {cpu.get('redis', 0):.0%}, others "
            f"{cpu.get('others', 0):.0%}; machine {cpu.get('machine', 0):.2f}/{CORES} cores")


def run_phase(ph: Phase, args: argparse.Namespace, pool: list[dict[str, Any]],
              stack: EmbeddedStack, profile: bool) -> dict[str, Any]:
    progress(f"{ph.label}: starting {ph.n_workers} {ph.kind} worker(s) (prefix {ph.prefix})")
    ready_s = ph.start_workers()
    sampler = CpuSampler(lambda: cpu_now(stack, ph.workers))
    try:
        warm_rate = min(ph.rate, args.warmup_rate)
        n_warm, _ = ph.offer("warmup", warm_rate, args.warmup_s, pool)
        warm_missing = ph.wait_back("warmup", n_warm, args.warmup_timeout)
        still_ready = [w.ready() for w in ph.workers]
        progress(f"{ph.label}: ready after {ready_s:.1f} s; warm-up {n_warm - warm_missing}/"
                 f"{n_warm} back; ready now: {still_ready}")
        others_before = wait_for_quiet(
            lambda: cpu_now(stack, ph.workers)["others"], args.quiet_wait_s) \
            if args.quiet_wait_s > 0 else None
        counters0 = ph.counters()
        cpu0 = cpu_now(stack, ph.workers)
        spy = spy_out = None
        if profile and ph.workers[0].pid is not None:
            spy_out = OUT_DIR / f"fraud_profile_{ph.kind}.txt"
            spy = start_profile(args.py_spy, ph.workers[0].pid, args.seconds, spy_out,
                                args.profile_rate, args.profile_idle)
        progress(f"{ph.label}: offering {ph.rate:.0f}/s for {args.seconds:.0f} s"
                 + (" (py-spy on worker 0)" if spy else ""))
        offer_start = time.time()
        n_sent, offered_s = ph.offer("run", ph.rate, args.seconds, pool)
        offer_end = offer_start + offered_s
        cpu1 = cpu_now(stack, ph.workers)
        # Drain: all back, or --drain-s; once clearly overloaded (< 95 % back at the end
        # of the window + 2 s) only --overload-drain-s more, to measure the rate kept up.
        ph.wait_back("run", n_sent, max(0.0, offer_end + 2.0 - time.time()))
        overloaded = ph.back("run") < 0.95 * n_sent
        drain = args.overload_drain_s if overloaded else args.drain_s
        ph.wait_back("run", n_sent, max(0.0, offer_end + 2.0 + drain - time.time()))
        end = time.time()
        cpu2 = cpu_now(stack, ph.workers)
        counters1 = ph.counters()
        profile_summary = None
        if spy is not None and spy_out is not None:
            profile_summary = finish_profile(spy, spy_out, args.seconds, args.profile_rate,
                                             args.profile_idle)
        dups = ph.reader.duplicates if ph.reader else 0
        decisions = dict(ph.reader.decisions) if ph.reader else {}
        exits = ph.stop_workers()
    finally:
        sampler.close()
        ph.close()
    result = phase_result(ph, offer_start, offer_end, end, sampler, args.window_s)
    result.update({
        "kind": ph.kind, "workers": ph.n_workers, "offered_rate": ph.rate,
        "offered_seconds": offered_s, "ready_s": ready_s, "warmup_missing": warm_missing,
        "ready_after_warmup": still_ready, "others_cpu_before": others_before,
        "duplicates": dups, "decisions": decisions, "worker_exit_codes": exits,
        "cpu_offered_window": cpu_share(cpu0, cpu1, offered_s),
        "cpu_drain": cpu_share(cpu1, cpu2, end - offer_end),
        "worker_counters": counter_delta(counters0, counters1),
        "profile": profile_summary, "prefix": ph.prefix,
    })
    result["bottleneck"] = bottleneck(result["cpu_offered_window"])
    lat = result["latency_ms"]
    progress(f"{ph.label}: {result['decided']}/{result['sent']} decided, "
             f"{result['throughput_per_s'] or 0:.0f}/s overall, "
             f"{result['rate_in_window_per_s'] or 0:.0f}/s in window, p50 {fmt(lat['p50'])} ms, "
             f"p99 {fmt(lat['p99'])} ms, sustained {result['sustained']} "
             f"({result['why']}); cpu " + cpu_line(result["cpu_offered_window"]))
    return result


def counter_delta(before: list[dict[str, float] | None], after: list[dict[str, float] | None]
                  ) -> dict[str, Any]:
    total = dict.fromkeys(METRICS, 0.0)
    complete = True
    for b, a in zip(before, after, strict=True):
        if a is None or b is None:
            complete = False
            continue
        for k in METRICS:
            total[k] += a[k] - b[k]
    n = total["techshop_batch_size_events_count"]
    return {"complete": complete, "batches": n,
            "mean_batch": total["techshop_batch_size_events_sum"] / n if n else None,
            "dead_letters": total["techshop_dead_letters_total"],
            "fallbacks": total["techshop_fraud_fallback_total"],
            "late_events": total["techshop_fraud_late_events_total"],
            "repeats": total["techshop_fraud_repeats_total"]}


def phase_result(ph: Phase, offer_start: float, offer_end: float, end: float,
                 sampler: CpuSampler, window_s: float) -> dict[str, Any]:
    assert ph.reader is None  # closed: its dict is final
    return _phase_result(ph.sent.get("run", {}), ph.received, offer_start, offer_end, end,
                         sampler, window_s, [f"worker{w.index}" for w in ph.workers])


def _phase_result(sent: dict[str, float], received: dict[str, float], offer_start: float,
                  offer_end: float, end: float, sampler: CpuSampler, window_s: float,
                  worker_keys: list[str]) -> dict[str, Any]:
    latencies: list[float] = []
    arrivals: list[float] = []
    by_window: dict[int, list[float]] = {}
    for txn_id, sent_at in sent.items():
        at = received.get(txn_id)
        if at is None:
            continue
        latencies.append((at - sent_at) * 1000)
        arrivals.append(at)
        by_window.setdefault(int((sent_at - offer_start) // window_s), []).append(latencies[-1])
    n_sent, decided = len(sent), len(latencies)
    first = min(sent.values()) if sent else offer_start
    last = max(arrivals) if arrivals else None
    within = sum(1 for a in arrivals if a <= offer_end + 2.0)
    ramp_end = first + 2.0
    in_window = sum(1 for a in arrivals if ramp_end <= a <= offer_end)
    after = sum(1 for a in arrivals if a > offer_end)
    windows: list[dict[str, Any]] = []
    for w in sorted(by_window):
        lo = offer_start + w * window_s
        pct = percentiles(by_window[w])
        windows.append({"from_s": w * window_s, "n": pct["n"], "p50": pct["p50"],
                        "p99": pct["p99"], "broker_cpu": sampler.share("broker", lo, lo + window_s),
                        **{f"{k}_cpu": sampler.share(k, lo, lo + window_s) for k in worker_keys},
                        "others_cpu": sampler.share("others", lo, lo + window_s)})
    full = [w for w in windows if w["n"] and w["from_s"] + window_s <= offer_end - offer_start]
    growing = False
    if len(full) >= 2 and full[0]["p99"] is not None and full[-1]["p99"] is not None:
        growing = full[-1]["p99"] > max(2 * full[0]["p99"], full[0]["p99"] + 250)
    kept_up = n_sent > 0 and within >= 0.95 * n_sent
    sustained = kept_up and not growing
    why = (f"{within / n_sent:.0%} back by window end + 2 s" if n_sent else "nothing sent") + (
        f", p99 {full[0]['p99']:.0f} -> {full[-1]['p99']:.0f} ms across the window"
        if len(full) >= 2 else "")
    backlog_at_end = n_sent - sum(1 for a in arrivals if a <= offer_end)
    return {
        "sent": n_sent, "sent_per_s": n_sent / (offer_end - offer_start)
        if offer_end > offer_start else None,
        "decided": decided, "decided_within_window_plus_2s": within,
        "missing_at_end": n_sent - decided, "measured_until_s_after_window": end - offer_end,
        "throughput_per_s": decided / (last - first) if last and last > first else None,
        "rate_in_window_per_s": in_window / (offer_end - ramp_end)
        if offer_end > ramp_end + 1 else None,
        "rate_after_window_per_s": after / (last - offer_end)
        if last and last > offer_end + 0.5 and backlog_at_end > 0.05 * n_sent else None,
        "backlog_at_window_end": backlog_at_end,
        "latency_ms": percentiles(latencies), "windows": windows,
        "p99_growing": growing, "sustained": sustained, "why": why,
    }


