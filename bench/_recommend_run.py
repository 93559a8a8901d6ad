"""Running one phase of bench/recommend.py: the warm-up, the click window and the reads.

* :func:`run_phase`: a phase from its worker's start to its stop;
* :func:`settle`: wait for the worker to go idle (the clicks' fan-out worked through);
* :func:`run_reads`, :func:`read_phase` and :class:`WebClient`: the read phases against
  Redis (a small fixed key as the baseline, the users' top-Ks) and the web endpoint;
* :func:`log_warnings`: the worker log's most frequent warnings;
* :func:`cpu_line`: the CPU shares of a window, as printed.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import fmt, percentiles, progress, wait_for_quiet
from bench._harness import CORES, CpuSampler, bottleneck, cpu_now, cpu_share, pct
from bench._profile import finish_profile, start_profile
from bench._recommend_phases import READ_TARGETS, Phase, click_result, worker_delta
from replay.generator import GeneratedEvent
from streams.stack import EmbeddedStack


def cpu_line(cpu: dict[str, float]) -> str:
    """The CPU shares of a window, as printed."""
    return (f"worker {cpu.get('worker0', 0):.0%}, broker {cpu.get('broker', 0):.0%}, redis "
            f"{cpu.get('redis', 0):.0%}, bench {cpu.get('bench', 0):.0%}, others "
            f"{cpu.get('others', 0):.0%}; machine {cpu.get('machine', 0):.2f}/{CORES} cores")


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
            result["profile"] = finish_profile(spy, profile_out, args.seconds,
                                               args.profile_rate, args.profile_idle)
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
                 f"{fmt(lat['in_redis']['p99'])} ms; cpu " + cpu_line(result["cpu_offered_window"]))
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
             f"{pct(share)} of a core, after {waited:.1f} s")
    return {"actions_back": back, "actions_sent": n, "worker_cpu": share, "waited_s": waited}
