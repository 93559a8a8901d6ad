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

The machinery is in ``bench/_fraud_phases.py`` (workers, end consumer, one phase) and
the printout in ``bench/_fraud_report.py``; this script parses the options, runs the
phases and the search for the maximum, and writes the result.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MEASURED_FILES = ("streams/app.py", "streams/publisher.py", "agents/fraud/agent.py",
                  "agents/fraud/decide.py", "agents/fraud/features.py", "bench/hop_worker.py")
MEASURED_DIRS = ("streams", "agents", "scorers", "models", "bench/hop_worker.py")
sys.path.insert(0, str(ROOT))

from bench._common import (  # noqa: E402,I001
    NOISE_NOTE,
    OUT_DIR,
    code_version,
    machine,
    progress,
    write_result,
)
from bench._fraud_phases import CORES_NOTE, KINDS, Phase, run_phase  # noqa: E402
from bench._fraud_report import report  # noqa: E402
from bench._harness import embedded_stack, tear_down  # noqa: E402
from replay.generator import TrafficGenerator  # noqa: E402

__all__ = ["KINDS", "MAX_FIRST_STEP", "main", "next_rate", "ratios", "report",
           "summarise_configs"]

#: With no rate sustained, the search for the maximum starts at this fraction of the rate
#: kept while overloaded.
MAX_FIRST_STEP = 0.5


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
    stack = embedded_stack(tmp, args.partitions)
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
        left = tear_down(phases, stack, tmp, args.keep_tmp)
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



if __name__ == "__main__":
    sys.exit(main())
