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

The machinery is in ``bench/_recommend_phases.py`` (the worker, end consumer, Redis
probe, one phase), ``bench/_recommend_run.py`` (a phase from start to finish, the reads)
and ``bench/_recommend_report.py`` (service levels, the printout); this script parses
the options, generates the events, runs the phases and writes the result.
"""

from __future__ import annotations

import argparse
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MEASURED_FILES = ("agents/recommend/agent.py", "agents/recommend/decide.py",
                  "agents/recommend/candidates.py", "agents/recommend/state.py",
                  "agents/recommend/serving.py", "streams/app.py", "streams/publisher.py")
MEASURED_DIRS = ("streams", "agents", "scorers", "bench/recommend.py",
                 "bench/_recommend_phases.py", "bench/_recommend_run.py",
                 "bench/_recommend_report.py", "bench/_harness.py", "bench/_profile.py")
sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402,I001
    NOISE_NOTE,
    OUT_DIR,
    code_version,
    machine,
    progress,
    write_result,
)
from bench._harness import embedded_stack, tear_down  # noqa: E402
from bench._recommend_phases import ACTIONS, CORES_NOTE, Phase  # noqa: E402
from bench._recommend_report import (  # noqa: E402
    CLICK_SLO_MS,
    PUBLISHED_SLO,
    READ_SLO_MS,
    report,
    slo,
)
from bench._recommend_run import run_phase  # noqa: E402
from replay.generator import GeneratedEvent, TrafficGenerator  # noqa: E402

__all__ = ["main", "make_events", "report", "slo"]


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
    stack = embedded_stack(tmp, args.partitions)
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
        left = tear_down(phases, stack, tmp, args.keep_tmp)
    result["leftover_children"] = left
    result["interrupted"] = interrupted
    result["slo"] = slo(result)
    result["total_s"] = time.monotonic() - started
    path = write_result("recommend", result)
    print(report(result))
    print(f"\nresults: {path} (total {result['total_s']:.0f} s)")
    return 1 if interrupted or result.get("failed") else 0



if __name__ == "__main__":
    sys.exit(main())
