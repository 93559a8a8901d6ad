"""Fraud pipeline throughput and latency, one worker and two, against a bare Faust agent.

Starts an :class:`~streams.stack.EmbeddedStack` (Tansu, registry, redis) on free ports in
a temporary directory, trains the fraud models once into a temporary registry
(:func:`~replay.fraud_backtest.bootstrap_fraud_models`; ``--models DIR`` reuses or fills
a registry), pre-generates the transactions, then runs one phase for each combination of

* the worker: ``fraud`` (``python -m streams.cli worker --pipelines fraud``: decide,
  publish, tables, entity windows, Redis) or ``bare`` (``bench/hop_worker.py faust``:
  the same ``TechShopApp.input_agent`` adapter whose handler only republishes each
  admitted transaction as an APPROVE ``fraud-decisions`` record);
* the number of workers sharing the input partitions (1 or 2; both must answer
  ``/ready`` 200 in the same round before any traffic);
* the offered rate (default 1k, 5k, 10k txn/s), paced, for ``--seconds``.

Every phase gets fresh topics (its own ``TECHSHOP_TOPIC_PREFIX``), fresh workers (own
data dir and web port), fresh ``txn_id``s, a short warm-up whose decisions must all come
back, then the offered window and a drain. A transaction's ``ts`` is its send wall time;
latency is the end consumer's receive wall time minus the send time. A phase is
*sustained* when >= 95 % of its decisions arrived by the end of the window + 2 s and the
p99 of the last send window is not more than twice (+250 ms) that of the first. An
overloaded phase drains only ``--overload-drain-s`` more (enough to measure the rate the
workers keep up). Afterwards, for each worker kind and count that was overloaded, more
phases look for the highest sustained rate (``--find-max-steps``, default 1): halfway
between the highest rate sustained and the lowest not, or with none sustained, half the
rate kept while overloaded.

The CPU of the broker, each worker, redis, this process (producer + end consumer) and
everything else is measured during each offered window. ``--py-spy PATH`` profiles the
single worker of each kind at the highest rate (collapsed stacks in
``bench/out/fraud_profile_<kind>.txt``, a summary in the JSON and the printout).

Run: ``python bench/fraud.py`` (``--quick``: 1k and 5k only, no max search; ``--help``);
results in ``bench/out/fraud.json``, worker logs in ``bench/out/fraud_<kind>_w<i>.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
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
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MEASURED_FILES = ("streams/app.py", "streams/publisher.py", "agents/fraud/agent.py",
                  "agents/fraud/decide.py", "agents/fraud/features.py", "bench/hop_worker.py")
MEASURED_DIRS = ("streams", "agents", "scorers", "models", "bench/hop_worker.py")
sys.path.insert(0, str(ROOT))

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402

from bench._common import (  # noqa: E402,I001
    NOISE_NOTE,
    OUT_DIR,
    code_version,
    fmt,
    fmt_ratio,
    leftover_children,
    machine,
    percentiles,
    progress,
    wait_for_quiet,
    write_result,
)
from bench.hop import CpuSampler, cpu_seconds, machine_busy_seconds  # noqa: E402
from replay.generator import TrafficGenerator  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.embedded import die_with_parent, free_port  # noqa: E402
from streams.publisher import Codecs  # noqa: E402
from streams.registry import LocalSchemaSource  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.stack import EmbeddedStack, StackInfo  # noqa: E402
from streams.topics import TopicCatalog  # noqa: E402

KINDS = ("bare", "fraud")
#: With no rate sustained, the search for the maximum starts at this fraction of the rate
#: kept while overloaded.
MAX_FIRST_STEP = 0.5
CORES = os.cpu_count() or 1
CORES_NOTE = (f"This machine has {CORES} cores, shared by the producer, the broker, redis, "
              "the worker(s) and the end consumer (and by other sessions): absolute rates "
              "understate a deployment where each has its own cores; compare fraud with bare "
              "measured in the same run.")
#: Counters scraped from each worker's /metrics before and after the offered window.
METRICS = ("techshop_batch_size_events_sum", "techshop_batch_size_events_count",
           "techshop_dead_letters_total", "techshop_fraud_fallback_total",
           "techshop_fraud_late_events_total", "techshop_fraud_repeats_total")


# -- workers -------------------------------------------------------------------------

class Worker:
    """One worker process (fraud or bare) of a phase, with its own data dir and port."""

    def __init__(self, kind: str, index: int, env: dict[str, str], tmp: Path,
                 label: str) -> None:
        self.kind, self.index, self.label = kind, index, label
        self.port = free_port()
        self.env = {**env, "TECHSHOP_WEB_PORT": str(self.port),
                    "TECHSHOP_DATA_DIR": str(tmp / f"data-{label}-w{index}")}
        self.log_path = OUT_DIR / f"fraud_{kind}_w{index}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self, cwd: Path) -> None:
        if self.kind == "fraud":
            cmd = [sys.executable, "-m", "streams.cli", "worker", "--pipelines", "fraud"]
        else:
            cmd = [sys.executable, str(ROOT / "bench" / "hop_worker.py"), "faust"]
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"==== {self.label}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent)

    def _get(self, path: str, timeout: float) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}",
                                        timeout=timeout) as response:
                return int(response.status), response.read().decode()
        except urllib.error.HTTPError as exc:
            return int(exc.code), ""
        except (urllib.error.URLError, OSError):
            return 0, ""

    def ready(self) -> bool:
        return self._get("/ready", 2)[0] == 200

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

    def stop(self, timeout: float = 15.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                progress(f"{self.label} worker {self.index} ignored SIGTERM for "
                         f"{timeout:.0f} s: killing it")
                proc.kill()
                proc.wait(5)
        return proc.returncode


# -- the end consumer ----------------------------------------------------------------

class DecisionReader:
    """Reads a phase's ``fraud-decisions`` from the start; when each txn_id first arrived."""

    def __init__(self, conf: dict[str, Any], topic: str, codecs: Codecs) -> None:
        self.decode = codecs["fraud-decisions"].decode
        self.consumer = Consumer({**conf, "group.id": f"bench-fraud-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "log.connection.close": False})
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
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
        self.catalog = TopicCatalog(prefix)
        client = Settings(kafka_bootstrap_servers=info.bootstrap_servers,
                          schema_registry_url=info.schema_registry_url,
                          topic_prefix=prefix, partitions=args.partitions)
        ensure_topics(client, self.catalog)
        stack.register_subjects(self.catalog)
        assert stack.store is not None
        codecs = Codecs(LocalSchemaSource(stack.store), self.catalog)
        self.encode = codecs["transactions"].encode
        self.topic = self.catalog.physical("transactions")
        conf = {**client.kafka_client_config(), "log.connection.close": False}
        self.producer: Producer | None = Producer({
            **conf, "linger.ms": args.linger_ms, "batch.size": 256 * 1024,
            "enable.idempotence": False})
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


# -- CPU ---------------------------------------------------------------------------

def cpu_now(stack: EmbeddedStack, workers: list[Worker]) -> dict[str, float]:
    """CPU seconds so far: broker, redis, this process, each worker, everything else."""
    now = {"broker": cpu_seconds(stack.broker.pid),
           "redis": cpu_seconds(stack.redis.pid if stack.redis else None),
           "bench": cpu_seconds(os.getpid())}
    for w in workers:
        now[f"worker{w.index}"] = cpu_seconds(w.pid)
    now["others"] = machine_busy_seconds() - sum(now.values())
    return now


def cpu_share(before: dict[str, float], after: dict[str, float], seconds: float
              ) -> dict[str, float]:
    """Share of one core each process used between two :func:`cpu_now` readings."""
    shares = {k: (after[k] - before[k]) / seconds for k in before} if seconds > 0 else {}
    shares["machine"] = sum(shares.values())  # cores busy, out of CORES
    return shares


def bottleneck(cpu: dict[str, float]) -> str:
    """Which CPU resource was saturated, judged from the shares of one core."""
    workers = {k: v for k, v in cpu.items() if k.startswith("worker")}
    hot = [k for k, v in workers.items() if v >= 0.85]
    if hot:
        return f"worker CPU ({', '.join(f'{k} {workers[k]:.0%}' for k in hot)} of a core)"
    if cpu.get("machine", 0) >= 0.85 * CORES:
        return f"the machine: {cpu['machine']:.2f} of {CORES} cores busy"
    if cpu.get("broker", 0) >= 0.85:
        return f"broker CPU ({cpu['broker']:.0%})"
    return (f"no process at a full core and {cpu.get('machine', 0):.2f} of {CORES} cores busy: "
            "the workers wait (round trips) as much as they compute")


# -- profiling ---------------------------------------------------------------------

def start_profile(py_spy: str, pid: int, seconds: float, out: Path, rate: int,
                  idle: bool = False) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [py_spy, "record", "-p", str(pid), "-d", str(max(1, int(seconds))), "-r", str(rate),
         "--nonblocking", "--threads", "--format", "raw", "-o", str(out),
         *(["--idle"] if idle else [])],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        preexec_fn=die_with_parent)


def _frame(frame: str) -> tuple[str, str]:
    """'func (path/file.py:123)' -> ('func (path/file.py)', package)."""
    match = re.match(r"(.*) \((.*?)(?::\d+)?\)$", frame)
    if not match:
        return frame, "?"
    func, path = match.groups()
    parts = Path(path).parts
    if "site-packages" in parts:
        parts = parts[parts.index("site-packages") + 1:]
    elif str(ROOT) in path:
        parts = Path(path).relative_to(ROOT).parts
    package = "/".join(parts[:2]) if parts and parts[0] in ("agents", "streams") else (
        parts[0].removesuffix(".py") if parts else "?")
    return f"{func} ({'/'.join(parts[-2:])})", package


#: Frames on (nearly) every stack: left out of the inclusive list.
_WRAPPERS = re.compile(
    r"^(<module>|main|_run_code|_run_module_as_main|worker_command|run_worker|run_faust|"
    r"Worker\.execute_from_commandline|BaseEventLoop\.(run_until_complete|run_forever|"
    r"_run_once)|Handle\._run|Thread\._bootstrap(_inner)?|Thread\.run|"
    r"ServiceThread\._start_thread|WorkerThread\.run|Service\._execute_task|"
    r"Agent\._execute_actor) ")


def summarise_profile(path: Path, seconds: float, rate: int, top: int = 25) -> dict[str, Any]:
    """Self and inclusive shares by function, self shares by package and samples by
    thread, of a py-spy raw (collapsed, ``--threads``) profile: over every thread's busy
    samples, and over the main thread's alone (the event loop: Faust, the handlers)."""
    stacks: list[tuple[str, list[tuple[str, str]], int]] = []
    threads: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        names = stack.split(";")
        thread = ""
        if names[0].startswith("thread ("):
            thread = names[0].split(": ", 1)[-1]
            names = names[1:]
        threads[thread] += int(count)
        stacks.append((thread, [_frame(f) for f in names] or [("(native)", "?")], int(count)))
    total = sum(threads.values())
    if not total:
        return {"samples": 0}
    out: dict[str, Any] = {
        "samples": total, "seconds": seconds, "rate_hz": rate, "file": str(path),
        "busy_thread_seconds_per_s": total / (seconds * rate),
        "by_thread": [(name, n / total) for name, n in threads.most_common(8)]}
    for key, only in (("all_threads", None), ("main_thread", "MainThread")):
        self_s: Counter[str] = Counter()
        incl: Counter[str] = Counter()
        pkg: Counter[str] = Counter()
        n_all = 0
        for thread, frames, n in stacks:
            if only is not None and thread != only:
                continue
            n_all += n
            self_s[frames[-1][0]] += n
            pkg[frames[-1][1]] += n
            for name in {f for f, _ in frames}:
                incl[name] += n
        if not n_all:
            continue
        out[key] = {
            "samples": n_all,
            "self": [(name, n / n_all) for name, n in self_s.most_common(top)],
            "inclusive": [(name, n / n_all) for name, n in incl.most_common()
                          if not _WRAPPERS.match(name)][:top],
            "self_by_package": [(name, n / n_all) for name, n in pkg.most_common(14)]}
    return out


# -- a phase from start to finish ----------------------------------------------------

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
            try:
                _, err = spy.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            if spy_out.exists():
                profile_summary = summarise_profile(spy_out, args.seconds, args.profile_rate)
                profile_summary["idle_included"] = args.profile_idle
            else:
                profile_summary = {"error": err.decode(errors="replace")[-500:]}
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
             f"({result['why']}); cpu " + _cpu(result["cpu_offered_window"]))
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


# -- the run -------------------------------------------------------------------------

def prepare_models(args: argparse.Namespace, tmp: Path) -> tuple[Path, float | None]:
    """A registry with the fraud champion; (its dir, seconds spent training or None)."""
    from agents.fraud.models import CHAMPION
    from models.registry import ModelRegistry, signing_key_from
    from replay.fraud_backtest import bootstrap_fraud_models

    root = Path(args.models).resolve() if args.models else tmp / "models"
    root.mkdir(parents=True, exist_ok=True)
    registry = ModelRegistry(root, signing_key_from(root / "signing.key"))
    if CHAMPION in registry.names():
        progress(f"models: reusing the registry in {root}")
        return root, None
    progress(f"models: training the fraud models into {root} (n={args.train_n:,})")
    started = time.monotonic()
    bootstrap_fraud_models(registry, seed=1, n=args.train_n, progress=progress)
    return root, time.monotonic() - started


def make_pool(n: int) -> list[dict[str, Any]]:
    from replay.fraud_backtest import world_size

    cards, users = world_size(200.0)  # the world the models were trained on
    gen = TrafficGenerator(seed=5, start_ts_ms=int(time.time() * 1000) - 600_000,
                           rates={"transactions": 200.0}, n_cards=cards, n_users=users)
    return [e.value for e in gen.take(n, {"transactions"})]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1000.0, 5000.0, 10000.0],
                        help="offered rates, transactions/s")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2],
                        help="worker counts to measure")
    parser.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS))
    parser.add_argument("--quick", action="store_true",
                        help="1k and 5k/s only and no search for the maximum")
    parser.add_argument("--seconds", type=float, default=10.0, help="offered window per phase")
    parser.add_argument("--drain-s", type=float, default=20.0,
                        help="longest wait after the window for the last decisions")
    parser.add_argument("--overload-drain-s", type=float, default=3.0,
                        help="drain after the window + 2 s once a phase is overloaded")
    parser.add_argument("--find-max-steps", type=int, default=1,
                        help="extra phases per overloaded kind/worker count, each halfway "
                        "between the highest rate sustained and the lowest not (none "
                        "sustained: half the rate kept while overloaded); 0: none")
    parser.add_argument("--warmup-s", type=float, default=2.0)
    parser.add_argument("--warmup-rate", type=float, default=200.0)
    parser.add_argument("--warmup-timeout", type=float, default=30.0)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--fetch-wait-ms", type=int, default=10,
                        help="fetch.wait.max.ms of the end consumer (workers: their default)")
    parser.add_argument("--linger-ms", type=int, default=5, help="the bench producer's linger")
    parser.add_argument("--pool", type=int, default=50_000,
                        help="distinct generated transactions, cycled (fresh txn_id and ts)")
    parser.add_argument("--models", help="model registry to reuse (trained into it if empty)")
    parser.add_argument("--train-n", type=int, default=100_000,
                        help="history size when the models are trained")
    parser.add_argument("--ready-timeout", type=float, default=90.0)
    parser.add_argument("--quiet-wait-s", type=float, default=1.0,
                        help="before each window, wait up to this long for other processes "
                        "to use under 30%% of a core (0: do not wait)")
    parser.add_argument("--window-s", type=float, default=2.0,
                        help="width of the latency/cpu series windows (by send time)")
    parser.add_argument("--py-spy", default=shutil.which("py-spy"),
                        help="py-spy binary: profile the 1-worker phases at the highest rate")
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s")
    parser.add_argument("--profile-idle", action="store_true",
                        help="py-spy --idle: also sample waiting threads (wall-time shares)")
    parser.add_argument("--keep-tmp", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.rates = [r for r in args.rates if r <= 5000] or args.rates[:2]
        args.find_max_steps = 0

    started = time.monotonic()
    result: dict[str, Any] = {"benchmark": "fraud", "machine": machine(), "params": vars(args),
                              "code": code_version(MEASURED_FILES, MEASURED_DIRS), "phases": {},
                              "note": NOISE_NOTE,
                              "cores_note": CORES_NOTE}
    for old in OUT_DIR.glob("fraud_*_w*.log"):
        old.unlink()
    progress(f"generating {args.pool:,} transactions")
    pool = make_pool(args.pool)
    tmp = Path(tempfile.mkdtemp(prefix="techshop-fraud-"))
    run_id = uuid.uuid4().hex[:6]
    settings = Settings(kafka_bootstrap_servers=None, schema_registry_url=None,
                        redis_url=None, topic_prefix="", data_dir=tmp / "stack",
                        broker_port=free_port(), registry_port=free_port(),
                        embedded_redis_port=free_port(), partitions=args.partitions)
    stack = EmbeddedStack(settings)
    phases: list[Phase] = []
    top_rate = max(args.rates)
    n = 0

    def one(kind: str, workers: int, rate: float, profile: bool = False, suffix: str = ""
            ) -> dict[str, Any] | None:
        nonlocal n
        label = f"{kind}-w{workers}-r{rate:g}{suffix}"
        ph = Phase(kind, workers, rate, label, args, info, stack, tmp, f"fb{run_id}n{n}.",
                   models_dir)
        n += 1
        phases.append(ph)
        try:
            r = run_phase(ph, args, pool, stack, profile)
        except RuntimeError as exc:  # a worker that did not start: note it, go on
            progress(f"{label}: FAILED: {exc}")
            result.setdefault("failed", {})[label] = str(exc)
            return None
        finally:
            ph.close()
        result["phases"][label] = r
        return r

    try:
        progress(f"starting the embedded stack in {tmp}")
        info = stack.start()
        result["stack"] = info.as_json()
        progress(f"stack up: broker {info.bootstrap_servers} (pid {stack.broker.pid})")
        models_dir, trained_s = prepare_models(args, tmp)
        result["models"] = {"dir": str(models_dir), "trained_s": trained_s}
        for workers in args.workers:
            for rate in args.rates:
                for kind in args.kinds:
                    one(kind, workers, rate, profile=bool(args.py_spy) and workers == 1
                        and rate == top_rate)
        result["configs"] = configs = summarise_configs(result["phases"], args)
        for _ in range(args.find_max_steps):
            for key, c in configs.items():
                kind, workers = key.split("/")
                rate = next_rate(c)
                if rate is None:
                    continue
                r = one(kind, int(workers[1:]), rate, suffix=f"-max{len(c['checks']) + 1}")
                if r is None:
                    continue
                c["checks"].append({"rate": rate, "sustained": r["sustained"], "why": r["why"],
                                    "p50": r["latency_ms"]["p50"], "p99": r["latency_ms"]["p99"]})
                if r["sustained"]:
                    c["max_sustained_offered"] = max(c["max_sustained_offered"] or 0, rate)
                else:
                    c["lowest_not_sustained"] = min(c["lowest_not_sustained"] or rate, rate)
    finally:
        for ph in phases:
            with contextlib.suppress(Exception):
                ph.close()
        progress("stopping the stack")
        stack.stop()
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
        left = leftover_children()
        if left:
            progress(f"WARNING: child processes still running: {left}")
    result["leftover_children"] = left
    result["ratios"] = ratios(result["phases"], args)
    result["total_s"] = time.monotonic() - started
    path = write_result("fraud", result)
    print(report(result))
    print(f"\nresults: {path} (total {result['total_s']:.0f} s)")
    return 0


def summarise_configs(phases: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Per kind and worker count: the rates sustained and the rate kept while overloaded."""
    out: dict[str, Any] = {}
    for r in phases.values():
        c = out.setdefault(f"{r['kind']}/w{r['workers']}", {
            "sustained_rates": [], "max_sustained_offered": None, "lowest_not_sustained": None,
            "capacity_per_s": None, "capacity_from": None, "checks": []})
        if r["sustained"]:
            c["sustained_rates"].append(r["offered_rate"])
            c["max_sustained_offered"] = max(c["max_sustained_offered"] or 0, r["offered_rate"])
        else:
            c["lowest_not_sustained"] = min(c["lowest_not_sustained"] or r["offered_rate"],
                                            r["offered_rate"])
            rate = r["rate_in_window_per_s"]
            if rate and (c["capacity_per_s"] is None or rate > c["capacity_per_s"]):
                c["capacity_per_s"], c["capacity_from"] = rate, r["offered_rate"]
    return out


def next_rate(c: dict[str, Any]) -> float | None:
    """The next rate to try for one kind/worker count, or None: halfway between the
    highest rate sustained and the lowest not sustained; with none sustained yet, half
    the rate kept while overloaded (overloaded workers batch more, so they process more
    per second than they sustain at a steady latency)."""
    lo, hi = c["max_sustained_offered"] or 0.0, c["lowest_not_sustained"]
    if hi is None:
        return None  # never overloaded
    hi = min(hi, c["capacity_per_s"] or hi)  # it never sustains more than it processes
    rate = (lo + hi) / 2 if lo else hi * MAX_FIRST_STEP
    step = 100 if rate >= 1000 else 50
    rate = math.floor(rate / step) * step
    if rate < step or rate <= lo * 1.1 or rate >= hi * 0.9:
        return None  # close enough
    return float(rate)


def ratios(phases: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workers in args.workers:
        for rate in args.rates:
            f = phases.get(f"fraud-w{workers}-r{rate:g}")
            b = phases.get(f"bare-w{workers}-r{rate:g}")
            if not f or not b:
                continue
            entry: dict[str, float | None] = {}
            for key in ("throughput_per_s", "rate_in_window_per_s"):
                entry[key] = f[key] / b[key] if f[key] and b[key] else None
            for q in ("p50", "p99"):
                fb, bb = f["latency_ms"][q], b["latency_ms"][q]
                entry[q] = fb / bb if fb and bb else None
            out[f"w{workers}/r{rate:g}"] = entry
    return out


# -- the printout ------------------------------------------------------------------

def _cpu(cpu: dict[str, float]) -> str:
    workers = "+".join(f"{v:.0%}" for k, v in cpu.items() if k.startswith("worker"))
    return (f"workers {workers}, broker {cpu.get('broker', 0):.0%}, bench "
            f"{cpu.get('bench', 0):.0%}, redis {cpu.get('redis', 0):.0%}, others "
            f"{cpu.get('others', 0):.0%}; machine {cpu.get('machine', 0):.2f}/{CORES} cores")


def report(result: dict[str, Any]) -> str:
    p, out = result["params"], []
    out.append("Fraud pipeline vs a bare Faust agent (decode + republish) on the embedded "
               "stack (Tansu): produce -> worker(s) -> fraud-decisions -> consume.")
    out.append(CORES_NOTE)
    out.append(NOISE_NOTE)
    code = result["code"]
    out.append(f"Code: commit {code['commit']}"
               + (f", uncommitted changes: {code['dirty']!r}" if code["dirty"] else ", clean"))
    out.append(f"Settings: {p['partitions']} partitions; {p['seconds']:.0f} s offered per phase "
               f"after a {p['warmup_s']:.0f} s warm-up at {p['warmup_rate']:.0f}/s; drain up to "
               f"{p['drain_s']:.0f} s ({p['overload_drain_s']:.0f} s once overloaded); bench "
               f"producer linger {p['linger_ms']} ms, end consumer fetch wait "
               f"{p['fetch_wait_ms']} ms; workers on their defaults (Tansu: fetch wait 10 ms, "
               "linger 5 ms); fresh topics, workers and txn_ids for every phase.")
    out.append("")
    head = (f"{'kind':<6}{'wrk':>4}{'offered':>9}{'sent/s':>8}{'thru/s':>8}{'in-win/s':>9}"
            f"{'decided':>15}{'+2s':>5}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}"
            f"{'batch':>7}  {'ok':<4}cpu: workers / broker / bench / others (one core = 100%)")
    out.append(head)
    for label, r in result["phases"].items():
        lat, cpu = r["latency_ms"], r["cpu_offered_window"]
        workers = "+".join(f"{v:.0%}" for k, v in cpu.items() if k.startswith("worker"))
        within = r["decided_within_window_plus_2s"] / r["sent"] if r["sent"] else 0
        out.append(
            f"{r['kind']:<6}{r['workers']:>4}{r['offered_rate']:>9.0f}{fmt(r['sent_per_s']):>8}"
            f"{fmt(r['throughput_per_s']):>8}{fmt(r['rate_in_window_per_s']):>9}"
            f"{r['decided']:>8}/{r['sent']:<6}{within:>5.0%}{fmt(lat['p50']):>8}"
            f"{fmt(lat['p95']):>8}{fmt(lat['p99']):>8}{fmt(lat['max']):>8}"
            f"{fmt(r['worker_counters']['mean_batch'], '.1f'):>7}  "
            f"{'yes' if r['sustained'] else 'NO':<4}{workers} / {cpu.get('broker', 0):.0%} / "
            f"{cpu.get('bench', 0):.0%} / {cpu.get('others', 0):.0%}"
            + ("" if label == f"{r['kind']}-w{r['workers']}-r{r['offered_rate']:g}"
               else f"  ({label})"))
    out.append("")
    out.append("Columns: offered = target txn/s; sent/s = achieved by the producer; thru/s = "
               "decisions / (last decision received - first send); in-win/s = decisions "
               "received per second during the offered window after its first 2 s (while "
               "overloaded: the rate the workers keep up); +2s = share decided by the window's "
               "end + 2 s; latency (ms) = receive - send; batch = mean events per take_events "
               "batch (the handler is then called once per partition in it); ok = sustained "
               "(>= 95 % by the window's end + 2 s and p99 not growing: it says nothing of "
               "the latency level); cpu = share of one core over the offered window.")
    if result.get("ratios"):
        out.append("")
        out.append("fraud / bare, measured in this run (throughput < 1: fraud slower; "
                   "latency > 1: fraud slower):")
        for key, e in result["ratios"].items():
            out.append(f"  {key:<10} throughput {fmt_ratio(e['throughput_per_s'])}, in-window "
                       f"{fmt_ratio(e['rate_in_window_per_s'])}, p50 {fmt_ratio(e['p50'])}, "
                       f"p99 {fmt_ratio(e['p99'])}")
    configs = result.get("configs", {})
    if configs:
        out.append("")
        out.append("Maximum sustained (highest offered rate that was sustained; 'kept up "
                   "while overloaded' = best in-window rate of an overloaded phase):")
        for key, c in configs.items():
            checks = "; ".join(f"check at {x['rate']:.0f}/s: "
                               f"{'sustained' if x['sustained'] else 'not sustained'} (p50 "
                               f"{fmt(x['p50'])} ms, p99 {fmt(x['p99'])} ms)"
                               for x in c["checks"])
            cap = (f"kept up {c['capacity_per_s']:.0f}/s while offered {c['capacity_from']:.0f}/s"
                   if c["capacity_per_s"] else "never overloaded: at least the highest rate")
            not_ok = c["lowest_not_sustained"]
            out.append(f"  {key:<9} max sustained {fmt(c['max_sustained_offered'])}/s"
                       + (f" (not sustained at {not_ok:.0f}/s)" if not_ok else "") + f"; {cap}"
                       + (f"; {checks}" if checks else ""))
    out.append("")
    out.append("What saturated while overloaded (CPU over the offered window):")
    for label, r in result["phases"].items():
        if not r["sustained"]:
            out.append(f"  {label}: {r['bottleneck']} ({_cpu(r['cpu_offered_window'])})")
    for label, r in result["phases"].items():
        prof = r.get("profile")
        if not prof or not prof.get("samples"):
            continue
        out.append("")
        out.append(f"py-spy, worker 0 of {label}: {prof['samples']} samples at "
                   f"{prof['rate_hz']} Hz over {prof['seconds']:.0f} s ("
                   + ("idle threads included: shares of wall time" if prof.get("idle_included")
                      else f"busy threads only: {prof['busy_thread_seconds_per_s']:.2f} "
                      "thread-seconds per second") + f"). Collapsed stacks: {prof['file']}")
        out.append("  samples by thread: " + ", ".join(
            f"{name} {share:.0%}" for name, share in prof["by_thread"]))
        for key, title in (("all_threads", "all threads"), ("main_thread", "main thread "
                                                                          "(event loop)")):
            part = prof.get(key)
            if not part:
                continue
            out.append(f"  {title}, {part['samples']} samples; self time by package: "
                       + ", ".join(f"{name} {share:.0%}"
                                   for name, share in part["self_by_package"][:10]))
            if key == "main_thread":
                out.append("  main thread, inclusive (the function and what it calls):")
                for name, share in part["inclusive"][:22]:
                    out.append(f"    {share:6.1%}  {name}")
                out.append("  main thread, self (the function's own code):")
                for name, share in part["self"][:12]:
                    out.append(f"    {share:6.1%}  {name}")
    busy = [label for label, r in result["phases"].items()
            if r["cpu_offered_window"].get("others", 0) > 0.25]
    if busy:
        out.append("")
        out.append("WARNING: other processes used more than a quarter of a core during: "
                   + ", ".join(busy) + " - those figures are disturbed.")
    for label, error in result.get("failed", {}).items():
        out.append(f"FAILED {label}: {error}")
    if result.get("leftover_children"):
        out.append(f"WARNING: child processes left running: {result['leftover_children']}")
    return "\n".join(out)


if __name__ == "__main__":
    sys.exit(main())
