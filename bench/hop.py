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

The machinery (the sides, their workers, producers and end consumers) is in
``bench/_hop_sides.py``; this script parses the options, runs the plan and prints.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
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
from bench._hop_sides import KINDS, Side, parse_side, run_side, side_spec  # noqa: E402
from replay.generator import TrafficGenerator  # noqa: E402

__all__ = ["KINDS", "MEASURED", "main", "report"]

#: MEASURED.md, "Latency of one hop" (Faust agent, fetch wait 10 ms, producers linger 5 ms).
MEASURED = {500: (17, 27), 2000: (24, 75)}


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
    stack = embedded_stack(tmp, args.partitions)
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
        tear_down(sides, stack, tmp, args.keep_tmp, check_children=False)

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
