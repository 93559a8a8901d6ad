"""The printout of bench/fraud.py: :func:`report` turns the result (``fraud.json``)
into the table of phases, the fraud/bare ratios, the maximum sustained rates, what
saturated and the py-spy summaries."""

from __future__ import annotations

from typing import Any

from bench._common import NOISE_NOTE, failure_lines, fmt, fmt_ratio
from bench._fraud_phases import CORES_NOTE, cpu_line
from bench._profile import main_thread_lines, profile_head


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
            out.append(f"  {label}: {r['bottleneck']} ({cpu_line(r['cpu_offered_window'])})")
    for label, r in result["phases"].items():
        prof = r.get("profile")
        if not prof or not prof.get("samples"):
            continue
        out.append("")
        out.extend(profile_head(prof, f"worker 0 of {label}"))
        for key, title in (("all_threads", "all threads"), ("main_thread", "main thread "
                                                                          "(event loop)")):
            part = prof.get(key)
            if not part:
                continue
            out.append(f"  {title}, {part['samples']} samples; self time by package: "
                       + ", ".join(f"{name} {share:.0%}"
                                   for name, share in part["self_by_package"][:10]))
            if key == "main_thread":
                out.extend(main_thread_lines(part))
    busy = [label for label, r in result["phases"].items()
            if r["cpu_offered_window"].get("others", 0) > 0.25]
    if busy:
        out.append("")
        out.append("WARNING: other processes used more than a quarter of a core during: "
                   + ", ".join(busy) + " - those figures are disturbed.")
    out.extend(failure_lines(result))
    return "\n".join(out)
