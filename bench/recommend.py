"""Recommendations: click -> top-K latency, and read latency from Redis and the web endpoint.

Issue 5: "click -> top-K latency p50/p99 at 1,000 clicks/s, and read latency p50/p99 at
1,000 reads/s against both Redis and the web endpoint, with the raw Redis GET latency of
the same run as the baseline ratio". Service levels: a top-K is fresh within 100 ms of
the click; a read answers in under 10 ms.

Starts an :class:`~streams.stack.EmbeddedStack` (Tansu, registry, redis) on free ports in
a temporary directory; then, for each click rate (``--rates``, default 1,000/s), a fresh
topic prefix and one fresh worker (``python -m streams.cli worker --pipelines
recommend``, own data dir, web port and empty model dir: the heuristic ranks until the
online trainer publishes a ranker). While it starts, the generator's catalog
(``--items``) and a click history of the last five minutes (``--history`` events) are
produced; once ``/ready`` answers 200, a live warm-up (``--warmup-s`` at
``--warmup-rate``) must come back before the offered window.

Clicks: generated ``clickstream`` events (``--users`` shoppers), filtered so that
actions (click / add_to_cart / purchase: each one publishes a top-K) make up all but
``--view-share`` of them (a view publishes only when the user had nothing published in
the last second of event time), cycled, with a fresh ``event_id`` and ``ts`` = the send
wall time (ms; one more than the user's last if that is not later), paced at the rate
for ``--seconds``. A ``recommendations`` record carries the user and the click's ``ts``:
that pair matches it to its click. Per action:

* ``published``: the record's Kafka timestamp (set by the worker's producer when it
  queues the record, just before it writes the batch's top-Ks to Redis) - send time;
* ``in Redis``: for a sample (``--probe-share``) of actions, a thread polls
  ``<prefix>recs:<user>`` (one MGET every ``--probe-interval-ms``) until the stored
  record's ``ts`` is the click's or later: send time -> first seen there (what a reader
  sees; includes up to one poll interval);
* ``consumed``: an end consumer's receive time of the record - send time (adds the
  broker round trip and the consumer's fetch wait, ``--fetch-wait-ms``);
* the worker's own ``techshop_recommend_latency_seconds`` (click record timestamp ->
  after the publisher flush): the share within 100 ms, from its buckets.

Reads go with the first rate's worker (``--reads``): ``after`` its click window (the
default; once every action has its top-K and the worker is idle, or after
``--read-drain-s``: then they meet a worker still working through its backlog, as the
printout says), ``before`` it (after the warm-up, the worker idle), or ``both``. Each is
three phases of ``--read-seconds`` at ``--read-rate`` (open loop: each request at its
scheduled time, one client thread; latency = that request's own round trip, the lag
behind the schedule is reported apart), over random users that have a top-K in Redis,
in this order:

* ``baseline``: redis-py GET of one fixed small key (16 bytes), the same connection pool;
* ``redis``: redis-py GET of ``<prefix>recs:<user>``;
* ``web``: ``GET /recommendations/<user>/`` on the worker's web port, over one reused
  keep-alive ``http.client.HTTPConnection``.

The ratios redis/baseline and web/baseline (p50 and p99) are what to compare across
runs. The CPU of the broker, the worker, redis, this process and everything else is
measured during every window (``others`` is other sessions' load on the shared machine).
``--py-spy PATH`` profiles the worker during each click window (raw collapsed stacks in
``bench/out/recommend_profile.txt``, ``..._r<rate>.txt`` for further rates; a summary
in the JSON and the printout).

Before the window (and before reads), the worker must go idle (``--settle-s``): every
click fans out into about ten ``recommend-signals`` records that the same worker works
through after the top-Ks are out, so "warm-up back" alone leaves a backlog.

Run: ``python bench/recommend.py`` (about 2 minutes; ``--rates 1000 100`` adds a fresh
worker per extra rate, about a minute each; ``--help``); results in
``bench/out/recommend.json``, worker logs in ``bench/out/recommend_worker_<label>.log``.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MEASURED_FILES = ("agents/recommend/agent.py", "agents/recommend/decide.py",
                  "agents/recommend/candidates.py", "agents/recommend/state.py",
                  "agents/recommend/serving.py", "streams/app.py", "streams/publisher.py")
MEASURED_DIRS = ("streams", "agents", "scorers", "bench/recommend.py")
sys.path.insert(0, str(ROOT))

import orjson  # noqa: E402
import redis  # noqa: E402
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
from bench.fraud import Worker as _ProcessWorker  # noqa: E402
from bench.fraud import (  # noqa: E402
    bottleneck,
    cpu_now,
    cpu_share,
    start_profile,
    summarise_profile,
)
from bench.hop import CpuSampler  # noqa: E402
from replay.generator import GeneratedEvent, TrafficGenerator  # noqa: E402
from streams.admin import ensure_topics  # noqa: E402
from streams.embedded import die_with_parent, free_port  # noqa: E402
from streams.publisher import Codecs  # noqa: E402
from streams.registry import LocalSchemaSource  # noqa: E402
from streams.settings import Settings  # noqa: E402
from streams.stack import EmbeddedStack, StackInfo  # noqa: E402
from streams.topics import TopicCatalog  # noqa: E402

ACTIONS = frozenset({"click", "add_to_cart", "purchase"})
CLICK_SLO_MS = 100.0
READ_SLO_MS = 10.0
#: Share of a rate's actions that must have published for its service level to count.
PUBLISHED_SLO = 0.99
READ_TARGETS = ("baseline", "redis", "web")
CORES = os.cpu_count() or 1
CORES_NOTE = (f"This machine has {CORES} cores, shared by the producer, the broker, redis, "
              "the worker, the end consumer and the readers (and by other sessions): "
              "absolute figures understate a deployment where each has its own cores.")
_SERIES = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# -- the worker ------------------------------------------------------------------------

class RecWorker(_ProcessWorker):
    """A ``streams.cli worker --pipelines recommend`` process (bench/fraud.py's Worker:
    own data dir and web port, SIGTERM then kill, dies with this process)."""

    def __init__(self, env: dict[str, str], tmp: Path, label: str) -> None:
        super().__init__("recommend", 0, env, tmp, label)
        self.log_path = OUT_DIR / f"recommend_worker_{label}.log"

    def start(self, cwd: Path) -> None:
        cmd = [sys.executable, "-m", "streams.cli", "worker", "--pipelines", "recommend"]
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            log.write(f"==== {self.label}: {' '.join(cmd)}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, cwd=cwd, env=self.env, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         preexec_fn=die_with_parent)

    def scrape(self) -> list[tuple[str, dict[str, str], float]] | None:
        """Every ``techshop_*`` series of ``/metrics`` (None if it did not answer)."""
        status, text = self._get("/metrics", 5)
        if status != 200:
            return None
        out = []
        for line in text.splitlines():
            m = _SERIES.match(line)
            if not m or not m.group(1).startswith("techshop_"):
                continue
            with contextlib.suppress(ValueError):
                out.append((m.group(1), dict(_LABEL.findall(m.group(2) or "")),
                            float(m.group(3))))
        return out


def msum(series: list[tuple[str, dict[str, str], float]] | None, name: str,
         **labels: str) -> float | None:
    """The sum of the series ``name`` whose labels include ``labels``."""
    if series is None:
        return None
    return sum(v for n, lab, v in series
               if n == name and all(lab.get(k) == x for k, x in labels.items()))


def worker_delta(before: Any, after: Any) -> dict[str, Any]:
    """What the worker's own metrics say about a window (None where it did not answer)."""
    def d(name: str, **labels: str) -> float | None:
        a, b = msum(after, name, **labels), msum(before, name, **labels)
        return None if a is None or b is None else a - b

    def ratio(x: float | None, y: float | None) -> float | None:
        return x / y if x is not None and y else None

    lat_n = d("techshop_recommend_latency_seconds_count")
    read_n = d("techshop_recommend_read_seconds_count")
    batches = d("techshop_batch_size_events_count", topic="clickstream")
    return {
        "published": d("techshop_recommend_published_total"),
        "throttled_views": d("techshop_recommend_throttled_views_total"),
        "latency_count": lat_n,
        "latency_mean_ms": ratio(1000 * (d("techshop_recommend_latency_seconds_sum") or 0),
                                 lat_n),
        "latency_within_100ms": ratio(d("techshop_recommend_latency_seconds_bucket", le="0.1"),
                                      lat_n),
        "latency_within_50ms": ratio(d("techshop_recommend_latency_seconds_bucket", le="0.05"),
                                     lat_n),
        "click_batches": batches,
        "mean_click_batch": ratio(d("techshop_batch_size_events_sum", topic="clickstream"),
                                  batches),
        "signal_batches": d("techshop_batch_size_events_count", topic="recommend-signals"),
        "mean_signal_batch": ratio(d("techshop_batch_size_events_sum",
                                     topic="recommend-signals"),
                                   d("techshop_batch_size_events_count",
                                     topic="recommend-signals")),
        "dead_letters": d("techshop_dead_letters_total"),
        "events_in": {t: d("techshop_events_in_total", topic=t)
                      for t in ("clickstream", "recommend-signals", "training-examples")},
        "events_out": {t: d("techshop_events_out_total", topic=t)
                       for t in ("recommendations", "training-examples", "recommend-signals")},
        "reads": read_n,
        "read_server_mean_ms": ratio(1000 * (d("techshop_recommend_read_seconds_sum") or 0),
                                     read_n),
        "read_server_within_1ms": ratio(d("techshop_recommend_read_seconds_bucket", le="0.001"),
                                        read_n),
        "catalog_items": msum(after, "techshop_recommend_catalog_items"),
    }


# -- the end consumer and the Redis probe ------------------------------------------------

class RecReader:
    """Reads a phase's ``recommendations`` from the start: for each (user, ts), when it
    first arrived here and its Kafka timestamp."""

    def __init__(self, conf: dict[str, Any], topic: str, codecs: Codecs) -> None:
        self.decode = codecs["recommendations"].decode
        self.consumer = Consumer({**conf, "group.id": f"bench-rec-{uuid.uuid4().hex[:8]}",
                                  "enable.auto.commit": False, "log.connection.close": False})
        parts = self.consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        self.first: dict[tuple[str, int], tuple[float, int]] = {}
        self.models: Counter[str] = Counter()
        self.timestamp_types: Counter[int] = Counter()
        self.records = self.errors = self.repeats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"end-{topic}")
        self._thread.start()

    def _run(self) -> None:
        poll, consume, decode, first = (self.consumer.poll, self.consumer.consume, self.decode,
                                        self.first)
        while not self._stop.is_set():
            msg0 = poll(0.1)
            if msg0 is None:
                continue
            at = time.time()
            for msg in [msg0, *consume(999, 0)]:
                if msg.error() is not None:
                    self.errors += 1
                    continue
                r = decode(msg.value())
                self.records += 1
                key = (r["user_id"], int(r["ts"]))
                if key in first:
                    self.repeats += 1
                    continue
                kind, kafka_ts = msg.timestamp()
                self.timestamp_types[kind] += 1
                first[key] = (at, kafka_ts)
                self.models[r["model"].split("@")[0]] += 1

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.consumer.close()


class RedisProbe:
    """Polls ``<prefix>recs:<user>`` of sampled clicks (one MGET per interval) until the
    stored top-K's ``ts`` is the click's or later; records send -> first seen (ms)."""

    def __init__(self, client: redis.Redis, prefix: str, interval_s: float,
                 give_up_s: float = 120.0) -> None:
        self.client, self.prefix, self.interval_s, self.give_up_s = (client, prefix,
                                                                     interval_s, give_up_s)
        self.pending: dict[str, list[tuple[int, float, str]]] = {}  # user -> (ts, sent, tag)
        self.seen: dict[str, list[float]] = {}  # tag -> latencies (ms)
        self.missed: Counter[str] = Counter()
        self.polls = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="redis-probe")
        self._thread.start()

    def add(self, user: str, ts: int, sent: float, tag: str) -> None:
        with self._lock:
            self.pending.setdefault(user, []).append((ts, sent, tag))

    def outstanding(self) -> int:
        with self._lock:
            return sum(len(v) for v in self.pending.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                users = list(self.pending)
            if users:
                try:
                    values = self.client.mget([f"{self.prefix}recs:{u}" for u in users])
                except redis.RedisError:
                    values = [None] * len(users)
                now = time.time()
                self.polls += 1
                with self._lock:
                    for user, raw in zip(users, values, strict=True):
                        waiting = self.pending.get(user, [])
                        stored = int(orjson.loads(raw)["ts"]) if raw else -1
                        keep = []
                        for ts, sent, tag in waiting:
                            if stored >= ts:
                                self.seen.setdefault(tag, []).append((now - sent) * 1000)
                            elif now - sent > self.give_up_s:
                                self.missed[tag] += 1
                            else:
                                keep.append((ts, sent, tag))
                        if keep:
                            self.pending[user] = keep
                        else:
                            self.pending.pop(user, None)
            self._stop.wait(self.interval_s)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- one phase: a fresh prefix and worker, one click rate ---------------------------------

class Phase:
    """Fresh topics, one recommend worker, the bench producer, end consumer and probe."""

    def __init__(self, rate: float, label: str, args: argparse.Namespace, info: StackInfo,
                 stack: EmbeddedStack, tmp: Path, prefix: str) -> None:
        self.rate, self.label, self.args, self.prefix, self.tmp = rate, label, args, prefix, tmp
        self.catalog = TopicCatalog(prefix)
        client = Settings(kafka_bootstrap_servers=info.bootstrap_servers,
                          schema_registry_url=info.schema_registry_url,
                          topic_prefix=prefix, partitions=args.partitions)
        ensure_topics(client, self.catalog)
        stack.register_subjects(self.catalog)
        assert stack.store is not None
        self.codecs = Codecs(LocalSchemaSource(stack.store), self.catalog)
        self.encode = self.codecs["clickstream"].encode
        self.topic = self.catalog.physical("clickstream")
        conf = {**client.kafka_client_config(), "log.connection.close": False}
        self.producer: Producer | None = Producer({
            **conf, "linger.ms": args.linger_ms, "batch.size": 256 * 1024,
            "enable.idempotence": False})
        self.reader: RecReader | None = RecReader(
            {**conf, "fetch.wait.max.ms": args.fetch_wait_ms},
            self.catalog.physical("recommendations"), self.codecs)
        self.redis = redis.Redis.from_url(info.redis_url, socket_timeout=5)
        self.probe: RedisProbe | None = RedisProbe(
            redis.Redis.from_url(info.redis_url, socket_timeout=5), prefix,
            args.probe_interval_ms / 1000)
        self.first: dict[tuple[str, int], tuple[float, int]] = {}  # the reader's, once closed
        # tag -> (user, ts) -> (send wall time, event type)
        self.sent: dict[str, dict[tuple[str, int], tuple[float, str]]] = {}
        self.last_ts: dict[str, int] = {}
        self.rng = random.Random(11)
        env = {**os.environ, **info.env(), "TECHSHOP_TOPIC_PREFIX": prefix,
               "TECHSHOP_BROKER_COMPAT": "tansu", "TECHSHOP_PARTITIONS": str(args.partitions),
               "TECHSHOP_MODEL_DIR": str(tmp / f"models-{label}"), "PYTHONPATH": str(ROOT)}
        self.worker = RecWorker(env, tmp, label)

    @property
    def workers(self) -> list[_ProcessWorker]:
        return [self.worker]

    def produce_events(self, events: list[GeneratedEvent]) -> None:
        """The catalog and the history, as generated (their own keys and times)."""
        assert self.producer is not None
        for e in events:
            topic = self.catalog.physical(e.topic)
            encode = self.codecs[e.topic].encode
            while True:
                try:
                    self.producer.produce(topic, encode(e.value), e.key)
                    break
                except BufferError:
                    self.producer.poll(0.01)
        self.producer.flush(30)

    def wait_ready(self) -> float:
        start = time.monotonic()
        deadline = start + self.args.ready_timeout
        while time.monotonic() < deadline:
            proc = self.worker.proc
            assert proc is not None
            if proc.poll() is not None:
                raise RuntimeError(f"{self.label}: the worker exited ({proc.returncode}) "
                                   f"while starting; see {self.worker.log_path}")
            if self.worker.ready():
                return time.monotonic() - start
            time.sleep(0.25)
        raise RuntimeError(f"{self.label}: worker not ready in {self.args.ready_timeout} s; "
                           f"see {self.worker.log_path}")

    def offer(self, tag: str, rate: float, seconds: float, pool: list[dict[str, Any]],
              probe_share: float = 0.0) -> tuple[int, float]:
        """Send ``rate`` clickstream events a second for ``seconds``, paced."""
        assert self.producer is not None and self.probe is not None
        producer, encode, topic, last_ts = self.producer, self.encode, self.topic, self.last_ts
        produce, poll, rand, probe = producer.produce, producer.poll, self.rng.random, self.probe
        sent = self.sent.setdefault(tag, {})
        base = f"{self.label}.{tag}:"
        total = int(rate * seconds)
        start = time.perf_counter()
        i = 0
        while i < total:
            due = min(total, int((time.perf_counter() - start) * rate) + 1)
            while i < due:
                value = dict(pool[i % len(pool)])
                user = value["user_id"]
                value["event_id"] = f"{base}{i}"
                now = time.time()
                ts = max(int(now * 1000), last_ts.get(user, 0) + 1)
                value["ts"] = last_ts[user] = ts
                while True:
                    try:
                        produce(topic, encode(value), user)
                        break
                    except BufferError:
                        poll(0.01)
                sent[(user, ts)] = (now, value["event_type"])
                if probe_share and value["event_type"] in ACTIONS and rand() < probe_share:
                    probe.add(user, ts, now, tag)
                i += 1
            poll(0)
            pause = start + i / rate - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
        elapsed = time.perf_counter() - start
        producer.flush(10)
        return total, elapsed

    def actions_back(self, tag: str) -> tuple[int, int]:
        """(actions of ``tag`` whose top-K arrived, actions sent)."""
        first = self.reader.first if self.reader is not None else self.first
        sent = [k for k, (_, etype) in list(self.sent.get(tag, {}).items()) if etype in ACTIONS]
        return sum(1 for k in sent if k in first), len(sent)

    def wait_back(self, tag: str, until: float) -> tuple[int, int]:
        while True:
            back, n = self.actions_back(tag)
            if back >= n or time.time() >= until:
                return back, n
            time.sleep(0.1)

    def close(self) -> None:
        """Stop the worker and the clients (idempotent)."""
        self.worker.stop()
        if self.probe is not None:
            self.probe.close()
            self.probe = None
        if self.reader is not None:
            self.first = self.reader.first
            self.reader.close()
            self.reader = None
        if self.producer is not None:
            self.producer.flush(5)
            self.producer = None
        with contextlib.suppress(Exception):
            self.redis.close()


# -- click results -----------------------------------------------------------------------

def click_result(ph: Phase, tag: str, start: float, end: float, sampler: CpuSampler,
                 window_s: float) -> dict[str, Any]:
    """Latencies of one tag's clicks (actions; views apart), windows, throughput."""
    first = ph.reader.first if ph.reader is not None else ph.first
    sent = ph.sent.get(tag, {})
    published: list[float] = []
    consumed: list[float] = []
    arrivals: list[float] = []
    views_sent = views_back = 0
    by_window: dict[int, list[float]] = {}
    for key, (sent_at, etype) in sent.items():
        got = first.get(key)
        if etype not in ACTIONS:
            views_sent += 1
            views_back += got is not None
            continue
        if got is None:
            continue
        at, kafka_ts = got
        published.append(kafka_ts - sent_at * 1000)
        consumed.append((at - sent_at) * 1000)
        arrivals.append(at)
        by_window.setdefault(int((sent_at - start) // window_s), []).append(published[-1])
    n_actions = len(sent) - views_sent
    within = sum(1 for a in arrivals if a <= end + 2.0)
    in_window = sum(1 for a in arrivals if start + 2.0 <= a <= end)
    windows = []
    for w in sorted(by_window):
        lo = start + w * window_s
        pct = percentiles(by_window[w])
        windows.append({"from_s": w * window_s, "n": pct["n"], "p50": pct["p50"],
                        "p99": pct["p99"],
                        **{f"{k}_cpu": sampler.share(k, lo, lo + window_s)
                           for k in ("worker0", "broker", "redis", "bench", "others")}})
    probe = ph.probe
    in_redis = percentiles(probe.seen.get(tag, [])) if probe is not None else percentiles([])
    if probe is not None:  # still waited for: not seen (yet) when the window was measured
        with probe._lock:
            in_redis["not_seen"] = probe.missed.get(tag, 0) + sum(
                1 for waiting in probe.pending.values() for _, _, t in waiting if t == tag)
    return {
        "sent": len(sent), "actions_sent": n_actions, "views_sent": views_sent,
        "sent_per_s": len(sent) / (end - start) if end > start else None,
        "actions_published": len(published),
        "published_share": len(published) / n_actions if n_actions else None,
        "published_within_window_plus_2s": within / n_actions if n_actions else None,
        "views_published": views_back,
        "rate_in_window_per_s": in_window / (end - start - 2.0) if end - start > 3.0 else None,
        "latency_ms": {"published": percentiles(published), "in_redis": in_redis,
                       "consumed": percentiles(consumed)},
        "windows": windows,
    }


# -- reads -------------------------------------------------------------------------------

class WebClient:
    """``GET /recommendations/<user>/`` over one reused keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        self.reconnects = 0

    def get(self, user: str) -> bool:
        try:
            self.conn.request("GET", f"/recommendations/{user}/")
            response = self.conn.getresponse()
            body = response.read()
            if response.getheader("Connection", "").lower() == "close":
                self._reconnect()
            return response.status == 200 and bool(body)
        except (OSError, http.client.HTTPException):
            self._reconnect()
            return False

    def _reconnect(self) -> None:
        self.reconnects += 1
        self.conn.close()
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)

    def close(self) -> None:
        self.conn.close()


def read_phase(get: Callable[[str], bool], users: list[str], rate: float, seconds: float,
               seed: int) -> dict[str, Any]:
    """``rate`` requests a second for ``seconds``, open loop, one thread; each request's
    own round trip (ms) and its lag behind the schedule."""
    rng = random.Random(seed)
    order = [users[rng.randrange(len(users))] for _ in range(int(rate * seconds))]
    latencies: list[float] = []
    lags: list[float] = []
    failures = 0
    clock = time.perf_counter
    start = clock()
    for i, user in enumerate(order):
        due = start + i / rate
        pause = due - clock()
        if pause > 0:
            time.sleep(pause)
        t0 = clock()
        ok = get(user)
        t1 = clock()
        latencies.append((t1 - t0) * 1000)
        lags.append(max(0.0, (t0 - due) * 1000))
        failures += not ok
    elapsed = clock() - start
    return {"requests": len(order), "failures": failures, "seconds": elapsed,
            "achieved_per_s": len(order) / elapsed if elapsed else None,
            "latency_ms": percentiles(latencies), "schedule_lag_ms": percentiles(lags)}


def run_reads(ph: Phase, args: argparse.Namespace, stack: EmbeddedStack, when: str
              ) -> dict[str, Any]:
    """The three read phases against users that have a top-K in Redis."""
    first = ph.reader.first if ph.reader is not None else ph.first
    candidates = sorted({user for user, _ in list(first)})
    random.Random(3).shuffle(candidates)
    users: list[str] = []
    sizes: list[int] = []
    for i in range(0, min(len(candidates), args.read_users * 2), 500):
        chunk = candidates[i:i + 500]
        for user, raw in zip(chunk, ph.redis.mget([f"{ph.prefix}recs:{u}" for u in chunk]),
                             strict=True):
            if raw:
                users.append(user)
                sizes.append(len(raw))
        if len(users) >= args.read_users:
            break
    users = users[:args.read_users]
    if not users:
        raise RuntimeError(f"{ph.label}: no user has a top-K in Redis to read")
    small_key = f"{ph.prefix}bench:small"
    ph.redis.set(small_key, b"0123456789abcdef")
    web = WebClient(ph.worker.port)
    getters: dict[str, Callable[[str], bool]] = {
        "baseline": lambda _user: ph.redis.get(small_key) is not None,
        "redis": lambda user: ph.redis.get(f"{ph.prefix}recs:{user}") is not None,
        "web": web.get,
    }
    out: dict[str, Any] = {"users": len(users), "rate": args.read_rate,
                           "seconds": args.read_seconds,
                           "value_bytes": percentiles([float(s) for s in sizes]),
                           "targets": {}}
    try:
        for target in READ_TARGETS:
            getters[target](users[0])  # connect outside the measurement
            if args.quiet_wait_s > 0:
                wait_for_quiet(lambda: cpu_now(stack, ph.workers)["others"], args.quiet_wait_s)
            metrics0 = ph.worker.scrape()
            cpu0 = cpu_now(stack, ph.workers)
            progress(f"{ph.label}: reads {when} the clicks, '{target}' at "
                     f"{args.read_rate:.0f}/s for {args.read_seconds:.0f} s over {len(users)} "
                     "users")
            t0 = time.time()
            r = read_phase(getters[target], users, args.read_rate, args.read_seconds, seed=5)
            r["cpu"] = cpu_share(cpu0, cpu_now(stack, ph.workers), time.time() - t0)
            if target == "web":
                r["worker"] = worker_delta(metrics0, ph.worker.scrape())
                r["reconnects"] = web.reconnects
            lat = r["latency_ms"]
            progress(f"{ph.label}: '{target}' p50 {lat['p50']:.3f} ms, p99 {lat['p99']:.3f} ms, "
                     f"{r['achieved_per_s']:.0f}/s, {r['failures']} failed")
            out["targets"][target] = r
    finally:
        web.close()
    base = out["targets"].get("baseline", {}).get("latency_ms", {})
    out["ratios"] = {}
    for target in ("redis", "web"):
        lat = out["targets"].get(target, {}).get("latency_ms")
        if lat and base:
            out["ratios"][target] = {q: lat[q] / base[q] if lat[q] and base[q] else None
                                     for q in ("p50", "p95", "p99")}
    return out


# -- a phase from start to finish --------------------------------------------------------

def run_phase(ph: Phase, args: argparse.Namespace, stack: EmbeddedStack,
              preload: list[GeneratedEvent], pool: list[dict[str, Any]], reads: str,
              profile_out: Path | None) -> dict[str, Any]:
    progress(f"{ph.label}: starting the recommend worker (prefix {ph.prefix}); producing "
             f"the catalog and {args.history:,} history clicks meanwhile")
    started = time.monotonic()
    ph.worker.start(ph.tmp)
    ph.produce_events(preload)
    ready_s = ph.wait_ready()
    sampler = CpuSampler(lambda: cpu_now(stack, ph.workers))
    result: dict[str, Any] = {"offered_rate": ph.rate, "prefix": ph.prefix, "ready_s": ready_s,
                              "log": str(ph.worker.log_path)}
    try:
        warm_rate = min(ph.rate, args.warmup_rate)
        ph.offer("warmup", warm_rate, args.warmup_s, pool)
        back, n = ph.wait_back("warmup", time.time() + args.warmup_timeout)
        result["warmup"] = {"rate": warm_rate, "actions_back": back, "actions_sent": n,
                            "seconds_from_start": time.monotonic() - started}
        progress(f"{ph.label}: ready after {ready_s:.1f} s; warm-up {back}/{n} actions back")
        result["before_window"] = settle(ph, stack, args.settle_s, "warmup", "the window")
        if reads in ("before", "both"):
            result["reads"] = {"before": run_reads(ph, args, stack, "before")}
            result["reads"]["before"]["worker_state"] = result["before_window"]
        result["others_cpu_before"] = (wait_for_quiet(
            lambda: cpu_now(stack, ph.workers)["others"], args.quiet_wait_s)
                                       if args.quiet_wait_s > 0 else None)
        metrics0 = ph.worker.scrape()
        cpu0 = cpu_now(stack, ph.workers)
        spy = None
        if profile_out is not None and ph.worker.pid is not None:
            spy = start_profile(args.py_spy, ph.worker.pid, args.seconds, profile_out,
                                args.profile_rate, args.profile_idle)
        progress(f"{ph.label}: offering {ph.rate:.0f} clicks/s for {args.seconds:.0f} s"
                 + (" (py-spy on the worker)" if spy else ""))
        start = time.time()
        n_sent, offered_s = ph.offer("run", ph.rate, args.seconds, pool, args.probe_share)
        end = start + offered_s
        cpu1 = cpu_now(stack, ph.workers)
        back, n = ph.wait_back("run", end + 2.0)
        overloaded = back < 0.95 * n
        back, n = ph.wait_back("run", end + 2.0 + (args.overload_drain_s if overloaded
                                                    else args.drain_s))
        deadline = time.time() + 3.0
        assert ph.probe is not None
        while ph.probe.outstanding() and time.time() < deadline:
            time.sleep(0.05)
        drained = time.time()
        cpu2 = cpu_now(stack, ph.workers)
        metrics1 = ph.worker.scrape()
        if spy is not None and profile_out is not None:
            try:
                _, err = spy.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                spy.kill()
                _, err = spy.communicate()
            if profile_out.exists():
                result["profile"] = summarise_profile(profile_out, args.seconds,
                                                      args.profile_rate)
                result["profile"]["idle_included"] = args.profile_idle
            else:
                result["profile"] = {"error": err.decode(errors="replace")[-500:]}
        result.update(click_result(ph, "run", start, end, sampler, args.window_s))
        result.update({
            "offered_seconds": offered_s, "measured_until_s_after_window": drained - end,
            "overloaded": overloaded, "cpu_offered_window": cpu_share(cpu0, cpu1, offered_s),
            "cpu_drain": cpu_share(cpu1, cpu2, drained - end),
            "worker_metrics": worker_delta(metrics0, metrics1),
        })
        if ph.reader is not None:
            result["end_consumer"] = {
                "records": ph.reader.records, "repeats": ph.reader.repeats,
                "errors": ph.reader.errors, "models": dict(ph.reader.models),
                "timestamp_types": {str(k): v for k, v in ph.reader.timestamp_types.items()}}
        result["probe_polls"] = ph.probe.polls
        result["bottleneck"] = bottleneck(result["cpu_offered_window"])
        lat = result["latency_ms"]
        progress(f"{ph.label}: {result['actions_published']}/{result['actions_sent']} actions "
                 f"published; published p50 {fmt(lat['published']['p50'])} ms, p99 "
                 f"{fmt(lat['published']['p99'])} ms; in Redis p99 "
                 f"{fmt(lat['in_redis']['p99'])} ms; cpu " + _cpu(result["cpu_offered_window"]))
        if reads in ("after", "both"):
            state = settle(ph, stack, args.read_drain_s, "run", "the reads")
            result.setdefault("reads", {})["after"] = run_reads(ph, args, stack, "after")
            result["reads"]["after"]["worker_state"] = state
        result["worker_exit"] = ph.worker.stop()
    finally:
        sampler.close()
        ph.close()
    result["log_warnings"] = log_warnings(ph.worker.log_path)
    return result


def log_warnings(path: Path, top: int = 6) -> list[tuple[str, int]]:
    """The worker log's most frequent WARNING/ERROR messages (digits as N)."""
    counts: Counter[str] = Counter()
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            m = re.search(r"\b(WARNING|ERROR)\b\]?\s*(.*)", line)
            if m:
                counts[f"{m.group(1)} {re.sub(r'[0-9]+', 'N', m.group(2))[:120]}"] += 1
    return counts.most_common(top)


def settle(ph: Phase, stack: EmbeddedStack, most_s: float, tag: str, what: str
           ) -> dict[str, Any]:
    """Wait (at most ``most_s``) until every action of ``tag`` has its top-K and the
    worker uses under a fifth of a core over a second: each click fans out into about
    ten ``recommend-signals`` (and training examples) that the worker works through
    after the top-Ks are out."""
    started = time.monotonic()
    back, n = ph.wait_back(tag, time.time() + most_s)
    while True:  # at least one reading, even when the wait for the top-Ks used it all up
        before = cpu_now(stack, ph.workers)["worker0"]
        time.sleep(1.0)
        share = cpu_now(stack, ph.workers)["worker0"] - before
        if share < 0.2 or time.monotonic() >= started + most_s:
            break
    waited = time.monotonic() - started
    progress(f"{ph.label}: before {what}: {back}/{n} actions back, worker at "
             f"{_pct(share)} of a core, after {waited:.1f} s")
    return {"actions_back": back, "actions_sent": n, "worker_cpu": share, "waited_s": waited}


def slo(result: dict[str, Any]) -> dict[str, Any]:
    """Whether each service level was met, per click rate and read target."""
    out: dict[str, Any] = {"clicks": {}, "reads": {}}
    for label, r in result["phases"].items():
        lat = r["latency_ms"]
        p99s = [x for x in (lat["published"]["p99"], lat["in_redis"]["p99"]) if x is not None]
        share = r["published_share"] or 0.0
        out["clicks"][label] = {
            "p99_ms": max(p99s) if p99s else None, "published_share": share,
            "met": bool(p99s) and max(p99s) <= CLICK_SLO_MS and share >= PUBLISHED_SLO}
        for when, rd in r.get("reads", {}).items():
            for target, t in rd["targets"].items():
                if target == "baseline":
                    continue
                p99 = t["latency_ms"]["p99"]
                out["reads"][f"{label}/{when}/{target}"] = {
                    "p99_ms": p99, "met": p99 is not None and p99 < READ_SLO_MS
                    and t["failures"] == 0}
    return out


# -- the run -----------------------------------------------------------------------------

def make_events(args: argparse.Namespace) -> tuple[list[GeneratedEvent], list[dict[str, Any]]]:
    """(the catalog and a history of the last five minutes, the pool of live clicks)."""
    span_ms = 300_000
    now = int(time.time() * 1000)
    gen = TrafficGenerator(seed=args.seed, start_ts_ms=now - span_ms,
                           rates={"clickstream": max(1.0, args.history / (span_ms / 1000))},
                           n_users=args.users, n_items=args.items)
    preload = gen.take(args.items + args.history, {"catalog", "clickstream"})
    raw = [e.value for e in gen.take(args.pool_events, {"clickstream"})]
    n_actions = sum(1 for v in raw if v["event_type"] in ACTIONS)
    n_views = len(raw) - n_actions
    keep_view = (args.view_share / (1 - args.view_share) * n_actions / n_views
                 if n_views and args.view_share < 1 else 1.0)
    rng = random.Random(args.seed)
    pool = [v for v in raw if v["event_type"] in ACTIONS or rng.random() < keep_view]
    return preload, pool


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=float, nargs="+", default=[1000.0],
                        help="offered click rates, events/s (each: a fresh worker and topics; "
                        "the reads go with the first)")
    parser.add_argument("--seconds", type=float, default=15.0, help="offered window per rate")
    parser.add_argument("--read-rate", type=float, default=1000.0, help="reads/s per target")
    parser.add_argument("--read-seconds", type=float, default=10.0, help="seconds per target")
    parser.add_argument("--read-users", type=int, default=5000,
                        help="at most this many users with a top-K are read (at random)")
    parser.add_argument("--reads", choices=("after", "before", "both", "none"), default="after",
                        help="when the first rate's worker is read: after its click window "
                        "(once the backlog drained and the worker is idle, or --read-drain-s "
                        "passed: then the worker is still busy), before it (after the warm-up, "
                        "the worker idle), both, or not at all")
    parser.add_argument("--settle-s", type=float, default=60.0,
                        help="before the window, wait up to this long for the worker to go "
                        "idle (the history's signals worked through)")
    parser.add_argument("--read-drain-s", type=float, default=30.0,
                        help="before the reads, wait up to this long for the click backlog "
                        "to drain and the worker to go idle")
    parser.add_argument("--view-share", type=float, default=0.1,
                        help="share of views among the offered events (the rest: actions)")
    parser.add_argument("--users", type=int, default=2000, help="shoppers in the generator")
    parser.add_argument("--items", type=int, default=1200, help="catalog items")
    parser.add_argument("--history", type=int, default=5000,
                        help="clickstream events of the last five minutes, before the worker "
                        "is used")
    parser.add_argument("--pool-events", type=int, default=60_000,
                        help="generated clickstream events the offered pool is drawn from")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--warmup-s", type=float, default=3.0)
    parser.add_argument("--warmup-rate", type=float, default=200.0)
    parser.add_argument("--warmup-timeout", type=float, default=60.0)
    parser.add_argument("--drain-s", type=float, default=10.0,
                        help="longest wait after the window for the last top-Ks")
    parser.add_argument("--overload-drain-s", type=float, default=3.0,
                        help="drain after the window + 2 s once < 95 %% came back")
    parser.add_argument("--probe-share", type=float, default=0.05,
                        help="share of actions whose top-K is watched for in Redis")
    parser.add_argument("--probe-interval-ms", type=float, default=2.0,
                        help="how often the Redis probe polls (one MGET)")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--fetch-wait-ms", type=int, default=10,
                        help="fetch.wait.max.ms of the end consumer (the worker: its default)")
    parser.add_argument("--linger-ms", type=int, default=5, help="the bench producer's linger")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--quiet-wait-s", type=float, default=2.0,
                        help="before each window, wait up to this long for other processes "
                        "to use under 30%% of a core (0: do not wait)")
    parser.add_argument("--window-s", type=float, default=3.0,
                        help="width of the latency/cpu series windows (by send time)")
    parser.add_argument("--py-spy", default=None,
                        help="py-spy binary: profile the worker during each click window")
    parser.add_argument("--profile-rate", type=int, default=100, help="py-spy samples/s")
    parser.add_argument("--profile-idle", action="store_true",
                        help="py-spy --idle: also sample waiting threads (wall-time shares)")
    parser.add_argument("--keep-tmp", action="store_true")
    args = parser.parse_args()
    if not 0 <= args.view_share < 1:
        parser.error("--view-share must be in [0, 1)")

    started = time.monotonic()
    result: dict[str, Any] = {"benchmark": "recommend", "machine": machine(),
                              "params": vars(args),
                              "code": code_version(MEASURED_FILES, MEASURED_DIRS),
                              "phases": {},
                              "note": NOISE_NOTE, "cores_note": CORES_NOTE,
                              "service_levels": {"click_to_topk_p99_ms": CLICK_SLO_MS,
                                                 "read_p99_ms": READ_SLO_MS,
                                                 "published_share": PUBLISHED_SLO}}
    for old in OUT_DIR.glob("recommend_worker_*.log"):
        old.unlink()
    progress(f"generating the catalog, {args.history:,} history events and the click pool")
    preload, pool = make_events(args)
    result["pool"] = {"events": len(pool), "users": len({v["user_id"] for v in pool}),
                      "types": dict(Counter(v["event_type"] for v in pool))}
    tmp = Path(tempfile.mkdtemp(prefix="techshop-recommend-"))
    run_id = uuid.uuid4().hex[:6]
    settings = Settings(kafka_bootstrap_servers=None, schema_registry_url=None,
                        redis_url=None, topic_prefix="", data_dir=tmp / "stack",
                        broker_port=free_port(), registry_port=free_port(),
                        embedded_redis_port=free_port(), partitions=args.partitions)
    stack = EmbeddedStack(settings)
    phases: list[Phase] = []
    left: list[str] = []
    interrupted = False

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        progress(f"starting the embedded stack in {tmp}")
        info = stack.start()
        result["stack"] = info.as_json()
        progress(f"stack up: broker {info.bootstrap_servers} (pid {stack.broker.pid})")
        for n, rate in enumerate(args.rates):
            label = f"r{rate:g}"
            ph = Phase(rate, label, args, info, stack, tmp, f"rb{run_id}n{n}.")
            phases.append(ph)
            profile_out = None
            if args.py_spy:
                profile_out = OUT_DIR / ("recommend_profile.txt" if n == 0
                                         else f"recommend_profile_{label}.txt")
            try:
                result["phases"][label] = run_phase(ph, args, stack, preload, pool,
                                                    reads=args.reads if n == 0 else "none",
                                                    profile_out=profile_out)
            except RuntimeError as exc:  # a worker that did not start: note it, go on
                progress(f"{label}: FAILED: {exc}")
                result.setdefault("failed", {})[label] = str(exc)
            finally:
                ph.close()
    except KeyboardInterrupt:
        interrupted = True
        progress("interrupted: cleaning up")
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
    result["interrupted"] = interrupted
    result["slo"] = slo(result)
    result["total_s"] = time.monotonic() - started
    path = write_result("recommend", result)
    print(report(result))
    print(f"\nresults: {path} (total {result['total_s']:.0f} s)")
    return 1 if interrupted or result.get("failed") else 0


# -- the printout ------------------------------------------------------------------------

def _cpu(cpu: dict[str, float]) -> str:
    return (f"worker {cpu.get('worker0', 0):.0%}, broker {cpu.get('broker', 0):.0%}, redis "
            f"{cpu.get('redis', 0):.0%}, bench {cpu.get('bench', 0):.0%}, others "
            f"{cpu.get('others', 0):.0%}; machine {cpu.get('machine', 0):.2f}/{CORES} cores")


def report(result: dict[str, Any]) -> str:
    p, out = result["params"], []
    out.append("Recommendations on the embedded stack (Tansu): click -> recommend worker -> "
               "top-K (recommendations topic + Redis), then reads from Redis and the web.")
    out.append(CORES_NOTE)
    out.append(NOISE_NOTE)
    code = result["code"]
    out.append(f"Code: commit {code['commit']}"
               + (f", uncommitted changes: {code['dirty']!r}" if code["dirty"] else ", clean"))
    m = result["machine"]
    load = m.get("loadavg_at_start")
    out.append(f"Machine: {m['cpus']} cpus, python {m['python']}, load average at start "
               + (", ".join(f"{x:.2f}" for x in load) if load else "?") + ".")
    pool = result.get("pool", {})
    out.append(f"Settings: {p['partitions']} partitions; catalog {p['items']} items, "
               f"{p['users']} shoppers, {p['history']:,} history clicks; offered events "
               f"{dict(pool.get('types', {}))} cycled, {p['view_share']:.0%} views; "
               f"{p['seconds']:.0f} s per rate after a {p['warmup_s']:.0f} s warm-up at "
               f"{p['warmup_rate']:.0f}/s; bench producer linger {p['linger_ms']} ms, end "
               f"consumer fetch wait {p['fetch_wait_ms']} ms; Redis probe on "
               f"{p['probe_share']:.0%} of actions every {p['probe_interval_ms']:g} ms; worker "
               "on its defaults (Tansu: fetch wait 10 ms, linger 5 ms).")
    out.append("")
    out.append("Click -> top-K (actions: click / add_to_cart / purchase; latency in ms from "
               "the click's send time):")
    head = (f"{'rate':>6}{'sent/s':>8}{'in-win/s':>9}{'published':>16}{'+2s':>6}"
            f"{'views':>11}  {'published p50/p95/p99/max':>27}  {'in Redis p50/p99 (n/unseen)':>28}"
            f"  {'consumed p50/p99':>16}{'wrk<=100':>9}{'batch':>7}  "
            f"{'SLO':<5}cpu worker/broker/redis/bench/others")
    out.append(head)
    for label, r in result["phases"].items():
        lat = r["latency_ms"]
        pub, red, con = lat["published"], lat["in_redis"], lat["consumed"]
        cpu = r["cpu_offered_window"]
        wm = r["worker_metrics"]
        met = result["slo"]["clicks"].get(label, {}).get("met")
        within = r["published_within_window_plus_2s"]
        out.append(
            f"{r['offered_rate']:>6.0f}{fmt(r['sent_per_s']):>8}{fmt(r['rate_in_window_per_s']):>9}"
            f"{r['actions_published']:>8}/{r['actions_sent']:<7}"
            f"{fmt(within and 100 * within):>5}%"
            f"{r['views_published']:>5}/{r['views_sent']:<5}  "
            f"{fmt(pub['p50']):>6}/{fmt(pub['p95']):>5}/{fmt(pub['p99']):>6}/{fmt(pub['max']):>6}  "
            f"{fmt(red['p50']):>6}/{fmt(red['p99']):>6} "
            f"({red['n']:>5}/{red.get('not_seen', 0):<5})  "
            f"{fmt(con['p50']):>7}/{fmt(con['p99']):>7}"
            f"{fmt(wm['latency_within_100ms'] and 100 * wm['latency_within_100ms']):>8}%"
            f"{fmt(wm['mean_click_batch'], '.1f'):>7}  {'yes' if met else 'NO':<5}"
            f"{cpu.get('worker0', 0):.0%}/{cpu.get('broker', 0):.0%}/{cpu.get('redis', 0):.0%}/"
            f"{cpu.get('bench', 0):.0%}/{cpu.get('others', 0):.0%}")
    out.append(f"Columns: sent/s = achieved offered rate; in-win/s = actions whose top-K "
               f"arrived per second during the window after its first 2 s; published = "
               f"actions with a top-K / actions sent; +2s = share published by the window's end "
               f"+ 2 s; views = views with a top-K (one a second per user at most); published "
               f"= the top-K record's Kafka timestamp (queued by the worker, just before the "
               f"batch's Redis write) - send; in Redis = first seen by the probe - send "
               f"(unseen: probed top-Ks not in Redis by the end of the drain); "
               f"consumed = end consumer receive - send; wrk<=100 = share of the worker's own "
               f"techshop_recommend_latency_seconds (click timestamp -> after its flush) within "
               f"100 ms; batch = mean clickstream events per take_events batch; SLO = p99 of "
               f"published and in-Redis <= {CLICK_SLO_MS:.0f} ms with >= {PUBLISHED_SLO:.0%} "
               f"published; cpu = share of one core over the offered window.")
    for label, r in result["phases"].items():
        series = ", ".join(f"{w['p50']:.0f}/{w['p99']:.0f} (w {_pct(w['worker0_cpu'])}, "
                           f"o {_pct(w['others_cpu'])})" for w in r["windows"])
        out.append(f"  {label} by {p['window_s']:g} s window, published p50/p99 ms (worker cpu, "
                   f"others' cpu): {series}")
        wm = r["worker_metrics"]
        n_in = (wm["events_in"] or {}).get("clickstream")
        if n_in:
            outs = wm["events_out"]
            out.append(f"  {label} fan-out, per clickstream event the worker read: "
                       + ", ".join(f"{(v or 0) / n_in:.2f} {k} out" for k, v in outs.items())
                       + f"; {(wm['events_in'].get('recommend-signals') or 0) / n_in:.2f} "
                       f"recommend-signals and "
                       f"{(wm['events_in'].get('training-examples') or 0) / n_in:.2f} "
                       f"training-examples read back; mean batch: clicks "
                       f"{fmt(wm['mean_click_batch'], '.1f')}, signals "
                       f"{fmt(wm['mean_signal_batch'], '.1f')}")
        if r.get("log_warnings"):
            out.append(f"  {label} worker log: " + "; ".join(f"{n} x {msg}"
                                                              for msg, n in r["log_warnings"]))
        if r.get("bottleneck") and not result["slo"]["clicks"].get(label, {}).get("met"):
            out.append(f"  {label}: {r['bottleneck']} ({_cpu(r['cpu_offered_window'])})")
    for label, r in result["phases"].items():
        for when, rd in r.get("reads", {}).items():
            out.append("")
            out.extend(_read_table(result, label, when, rd))
    out.append("")
    verdicts = []
    for label, s in result["slo"]["clicks"].items():
        verdicts.append(f"click->top-K {label}: p99 {fmt(s['p99_ms'])} ms, "
                        f"{s['published_share']:.1%} published: "
                        + ("met" if s["met"] else "MISSED"))
    for key, s in result["slo"]["reads"].items():
        verdicts.append(f"read {key}: p99 {fmt(s['p99_ms'], '.2f')} ms: "
                        + ("met" if s["met"] else "MISSED"))
    out.append(f"Service levels (top-K within {CLICK_SLO_MS:.0f} ms of a click, reads < "
               f"{READ_SLO_MS:.0f} ms, at p99): " + "; ".join(verdicts))
    for label, r in result["phases"].items():
        prof = r.get("profile")
        if not prof or not prof.get("samples"):
            if prof and prof.get("error"):
                out.append(f"py-spy {label}: {prof['error']}")
            continue
        out.append("")
        out.append(f"py-spy, the worker during {label}: {prof['samples']} samples at "
                   f"{prof['rate_hz']} Hz over {prof['seconds']:.0f} s ("
                   + ("idle threads included: shares of wall time" if prof.get("idle_included")
                      else f"busy threads only: {prof['busy_thread_seconds_per_s']:.2f} "
                      "thread-seconds per second") + f"). Collapsed stacks: {prof['file']}")
        out.append("  samples by thread: " + ", ".join(
            f"{name} {share:.0%}" for name, share in prof["by_thread"]))
        part = prof.get("main_thread")
        if part:
            out.append("  main thread, self time by package: " + ", ".join(
                f"{name} {share:.0%}" for name, share in part["self_by_package"][:10]))
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
        out.append("WARNING: other processes used more than a quarter of a core during the "
                   "click window of: " + ", ".join(busy) + " - those figures are disturbed.")
    for label, error in result.get("failed", {}).items():
        out.append(f"FAILED {label}: {error}")
    if result.get("leftover_children"):
        out.append(f"WARNING: child processes left running: {result['leftover_children']}")
    return "\n".join(out)


def _read_table(result: dict[str, Any], label: str, when: str, rd: dict[str, Any]
                ) -> list[str]:
    out = []
    vb, st = rd["value_bytes"], rd.get("worker_state", {})
    idle = st.get("worker_cpu") is not None and st["worker_cpu"] < 0.2
    out.append(f"Reads {when} {label}'s click window ({rd['rate']:.0f}/s per target for "
               f"{rd['seconds']:.0f} s each, one client thread, open loop, random of "
               f"{rd['users']} users with a top-K; values {fmt(vb['p50'])} bytes p50; the "
               f"worker {'idle' if idle else 'STILL BUSY'} before them: "
               f"{st.get('actions_back')}/{st.get('actions_sent')} actions had their top-K, "
               f"worker at {_pct(st.get('worker_cpu'))} of a core); latency in ms of each "
               "request's round trip:")
    out.append(f"{'target':<10}{'requests':>9}{'failed':>7}{'achieved/s':>11}{'p50':>8}"
               f"{'p95':>8}{'p99':>8}{'max':>8}{'x base p50':>11}{'x base p99':>11}"
               f"{'lag p99':>8}  {'SLO':<5}cpu worker/redis/bench/others")
    for target in READ_TARGETS:
        t = rd["targets"].get(target)
        if t is None:
            continue
        lat, ratio = t["latency_ms"], rd["ratios"].get(target, {})
        met = result["slo"]["reads"].get(f"{label}/{when}/{target}", {}).get("met")
        cpu = t["cpu"]
        out.append(
            f"{target:<10}{t['requests']:>9}{t['failures']:>7}"
            f"{fmt(t['achieved_per_s']):>11}{fmt(lat['p50'], '.3f'):>8}"
            f"{fmt(lat['p95'], '.3f'):>8}{fmt(lat['p99'], '.3f'):>8}{fmt(lat['max'], '.1f'):>8}"
            f"{fmt_ratio(ratio.get('p50')) if target != 'baseline' else '1':>11}"
            f"{fmt_ratio(ratio.get('p99')) if target != 'baseline' else '1':>11}"
            f"{fmt(t['schedule_lag_ms']['p99'], '.2f'):>8}  "
            f"{'-' if target == 'baseline' else ('yes' if met else 'NO'):<5}"
            f"{cpu.get('worker0', 0):.0%}/{cpu.get('redis', 0):.0%}/"
            f"{cpu.get('bench', 0):.0%}/{cpu.get('others', 0):.0%}")
    web = rd["targets"].get("web", {}).get("worker")
    if web:
        out.append(f"  web: the worker's own techshop_recommend_read_seconds (its Redis GET "
                   f"only) mean {fmt(web['read_server_mean_ms'], '.3f')} ms over "
                   f"{fmt(web['reads'])} reads; {fmt(rd['targets']['web'].get('reconnects'))} "
                   "reconnects.")
    out.append("  baseline = redis-py GET of a 16-byte key; redis = GET <prefix>recs:<user>; "
               "web = GET /recommendations/<user>/ (keep-alive http.client); x base = ratio "
               "to the baseline measured in this run; lag = how far requests started behind "
               f"the schedule; SLO = p99 < {READ_SLO_MS:.0f} ms and no failures.")
    return out


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{x:.0%}"


if __name__ == "__main__":
    sys.exit(main())
