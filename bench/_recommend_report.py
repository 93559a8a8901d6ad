"""Service levels and the printout of bench/recommend.py: :func:`slo` (whether each
service level was met, per click rate and read target) and :func:`report` (the click
table, the per-window series and fan-out, the read tables, the verdicts, py-spy)."""

from __future__ import annotations

from typing import Any

from bench._common import NOISE_NOTE, failure_lines, fmt, fmt_ratio
from bench._harness import pct
from bench._profile import main_thread_lines, profile_head
from bench._recommend_phases import CORES_NOTE, READ_TARGETS
from bench._recommend_run import cpu_line

CLICK_SLO_MS = 100.0
READ_SLO_MS = 10.0
#: Share of a rate's actions that must have published for its service level to count.
PUBLISHED_SLO = 0.99


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
        series = ", ".join(f"{w['p50']:.0f}/{w['p99']:.0f} (w {pct(w['worker0_cpu'])}, "
                           f"o {pct(w['others_cpu'])})" for w in r["windows"])
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
            out.append(f"  {label}: {r['bottleneck']} ({cpu_line(r['cpu_offered_window'])})")
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
        out.extend(profile_head(prof, f"the worker during {label}"))
        part = prof.get("main_thread")
        if part:
            out.append("  main thread, self time by package: " + ", ".join(
                f"{name} {share:.0%}" for name, share in part["self_by_package"][:10]))
            out.extend(main_thread_lines(part))
    busy = [label for label, r in result["phases"].items()
            if r["cpu_offered_window"].get("others", 0) > 0.25]
    if busy:
        out.append("")
        out.append("WARNING: other processes used more than a quarter of a core during the "
                   "click window of: " + ", ".join(busy) + " - those figures are disturbed.")
    out.extend(failure_lines(result))
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
               f"worker at {pct(st.get('worker_cpu'))} of a core); latency in ms of each "
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

