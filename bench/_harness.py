"""Machinery the stack benchmarks (hop, fraud, recommend) share.

* CPU accounting: :func:`cpu_seconds` of a process, :func:`machine_busy_seconds`, the
  :class:`CpuSampler` thread, :func:`cpu_now` / :func:`cpu_share` over the stack and a
  phase's workers, and :func:`bottleneck` (which CPU resource saturated);
* the embedded stack and a phase's clients: :func:`embedded_stack`,
  :func:`phase_clients` (fresh topics, registered subjects, codecs, client config),
  :func:`bench_producer` and :func:`assigned_consumer` (reads a topic from the start);
* worker processes: :func:`start_logged` (a child that dies with this process, output
  appended to a log), :func:`stop_process` (SIGTERM, then kill) and
  :class:`ServiceWorker` (a worker with its own data dir and web port, ``/ready``);
* :func:`tear_down`: after a run, close every phase, stop the stack, remove the temp dir;
* :func:`pct`, a share printed as a percentage.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from bench._common import OUT_DIR, leftover_children, progress
from streams.admin import ensure_topics
from streams.embedded import die_with_parent, free_port
from streams.publisher import Codecs
from streams.registry import LocalSchemaSource
from streams.settings import Settings
from streams.stack import EmbeddedStack, StackInfo
from streams.topics import TopicCatalog

CORES = os.cpu_count() or 1


# -- CPU ---------------------------------------------------------------------------

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


def cpu_now(stack: EmbeddedStack, workers: Sequence[ServiceWorker]) -> dict[str, float]:
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


def pct(x: float | None) -> str:
    return "?" if x is None else f"{x:.0%}"


# -- the stack and a phase's clients ------------------------------------------------

def tear_down(phases: Iterable[Any], stack: EmbeddedStack, tmp: Path, keep_tmp: bool,
              check_children: bool = True) -> list[str]:
    """Close every phase (errors ignored), stop the stack, remove ``tmp`` unless kept;
    the child processes still running (warned about; none looked for unless
    ``check_children``)."""
    for ph in phases:
        with contextlib.suppress(Exception):
            ph.close()
    progress("stopping the stack")
    stack.stop()
    if not keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    left = leftover_children() if check_children else []
    if left:
        progress(f"WARNING: child processes still running: {left}")
    return left


def embedded_stack(tmp: Path, partitions: int) -> EmbeddedStack:
    """An embedded stack (Tansu, registry, redis) on free ports, its data under ``tmp``."""
    settings = Settings(kafka_bootstrap_servers=None, schema_registry_url=None,
                        redis_url=None, topic_prefix="", data_dir=tmp / "stack",
                        broker_port=free_port(), registry_port=free_port(),
                        embedded_redis_port=free_port(), partitions=partitions)
    return EmbeddedStack(settings)


def phase_clients(info: StackInfo, stack: EmbeddedStack, prefix: str, partitions: int
                  ) -> tuple[TopicCatalog, Codecs, dict[str, Any]]:
    """Fresh topics under ``prefix`` with their subjects registered; (the catalog, its
    codecs, the Kafka client config every bench client starts from)."""
    catalog = TopicCatalog(prefix)
    client = Settings(kafka_bootstrap_servers=info.bootstrap_servers,
                      schema_registry_url=info.schema_registry_url,
                      topic_prefix=prefix, partitions=partitions)
    ensure_topics(client, catalog)
    stack.register_subjects(catalog)
    assert stack.store is not None
    codecs = Codecs(LocalSchemaSource(stack.store), catalog)
    return catalog, codecs, {**client.kafka_client_config(), "log.connection.close": False}


def bench_producer(conf: dict[str, Any], linger_ms: int) -> Producer:
    """The bench's paced producer (large batches, no idempotence)."""
    return Producer({**conf, "linger.ms": linger_ms, "batch.size": 256 * 1024,
                     "enable.idempotence": False})


def assigned_consumer(conf: dict[str, Any], group_prefix: str, topic: str) -> Consumer:
    """A consumer assigned every partition of ``topic`` from the beginning (own group)."""
    consumer = Consumer({**conf, "group.id": f"{group_prefix}-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "log.connection.close": False})
    parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
    return consumer


# -- worker processes ------------------------------------------------------------------

def start_logged(cmd: list[str], cwd: Path, env: dict[str, str], log_path: Path,
                 header: str) -> subprocess.Popen[bytes]:
    """Start ``cmd`` (dies with this process), its output appended to ``log_path`` after
    a ``==== header`` line."""
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(f"==== {header}\n".encode())
        log.flush()
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=die_with_parent)


def stop_process(proc: subprocess.Popen[bytes], timeout: float, who: str) -> int | None:
    """SIGTERM, then kill after ``timeout`` s; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            progress(f"{who} ignored SIGTERM for {timeout:.0f} s: killing it")
            proc.kill()
            proc.wait(5)
    return proc.returncode


class ServiceWorker:
    """One worker process of a phase, with its own data dir and web port; subclasses say
    the command (:meth:`command`) and the log."""

    def __init__(self, kind: str, index: int, env: dict[str, str], tmp: Path, label: str,
                 log_path: Path) -> None:
        self.kind, self.index, self.label = kind, index, label
        self.port = free_port()
        self.env = {**env, "TECHSHOP_WEB_PORT": str(self.port),
                    "TECHSHOP_DATA_DIR": str(tmp / f"data-{label}-w{index}")}
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self, cwd: Path) -> None:
        cmd = self.command()
        self.proc = start_logged(cmd, cwd, self.env, self.log_path,
                                 f"{self.label}: {' '.join(cmd)}")

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

    def stop(self, timeout: float = 15.0) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        return stop_process(proc, timeout, f"{self.label} worker {self.index}")
