"""``techshop replay``, ``techshop backtest PIPELINE`` and ``techshop export TOPIC``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from streams.errors import ConfigError
from streams.settings import load_settings

__all__ = ["add_commands"]

RANGE_HELP = ("ISO time (2026-11-25T10:00:00Z), epoch ms, -15m/-2h/-7d (before now) or @OFFSET "
              "(every partition); times select on the record timestamp")


def _range_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="start", default=None, metavar="WHEN", help=RANGE_HELP)
    p.add_argument("--to", dest="end", default=None, metavar="WHEN",
                   help="end of the range, inclusive (default: the end of the topic)")


def _repeated(p: argparse.ArgumentParser, flag: str, metavar: str, text: str) -> None:
    """An option that may be given more than once (a list, empty by default)."""
    p.add_argument(flag, action="append", default=[], metavar=metavar, help=text)


def _file(p: argparse.ArgumentParser, flag: str, text: str) -> None:
    p.add_argument(flag, type=Path, default=None, metavar="FILE", help=text)


def add_commands(sub: Any) -> None:
    r = sub.add_parser("replay", help="copy a range of topics into a prefixed namespace",
                       description="Copy records (bytes, keys, partitions and timestamps "
                       "kept) from the deployment's topics into the same topics under "
                       "another prefix, where a worker (TECHSHOP_TOPIC_PREFIX=<prefix>) can "
                       "decide them again beside live traffic.")
    r.add_argument("topics", nargs="+", metavar="TOPIC", help="logical topic names")
    r.add_argument("--to-prefix", required=True, metavar="PREFIX",
                   help="target namespace, e.g. replay1.")
    _range_args(r)
    r.add_argument("--speed", type=float, default=None, metavar="F",
                   help="pace on the record timestamps, F times real time (default: as fast "
                   "as possible)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=replay_command)

    e = sub.add_parser("export", help="a range of a topic to a file (JSON lines or Avro)",
                       description="Write the events of a topic range to FILE: JSON lines "
                       "({topic, partition, offset, key, timestamp, value} per line) or, for a "
                       "name ending in .avro, an Avro object container file with the topic's "
                       "schema. `techshop backtest --file` reads both.")
    e.add_argument("topic", metavar="TOPIC")
    e.add_argument("--out", required=True, type=Path, metavar="FILE")
    _range_args(e)
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=export_command)

    b = sub.add_parser("backtest", help="run a pipeline's decisions over history",
                       description="Decide a topic range or an export file in process with "
                       "the pipeline's own pure decision code, for one or more model versions "
                       "side by side, and write report.json and report.html.")
    bsub = b.add_subparsers(dest="pipeline", metavar="PIPELINE", required=True)
    f = bsub.add_parser("fraud", help="fraud models over transactions, labels from "
                        "fraud-labels")
    _source_args(f, "transactions")
    _repeated(f, "--model", "NAME[@V][:R,D]",
              "a registry model (e.g. fraud_gbdt@3, fraud_river@2:0.2,0.9, rules) or "
              "`routing` (what a worker loads: the stored champion/challenger routing, "
              "canary included); repeat for side by side; default: routing")
    _repeated(f, "--thresholds", "R,D",
              "also the first model at these REVIEW,DECLINE thresholds (repeat: a sweep)")
    _file(f, "--labels", "labels from this export (default: the fraud-labels topic)")
    _file(f, "--published", "published decisions to compare with (default: fraud-decisions)")
    f.add_argument("--no-compare", action="store_true",
                   help="skip the comparison with the published decisions")
    f.add_argument("--label-window", type=float, default=None, metavar="DAYS",
                   help="label window (default TECHSHOP_FRAUD_LABEL_WINDOW_MS)")
    f.add_argument("--cost-review", type=float, default=2.0, metavar="USD")
    f.add_argument("--cost-false-decline", type=float, default=25.0, metavar="USD")
    f.add_argument("--cost-chargeback-fee", type=float, default=15.0, metavar="USD")
    f.set_defaults(func=backtest_fraud_command)

    c = bsub.add_parser("recommend", help="rankers over a clickstream, against popularity")
    _source_args(c, "clickstream")
    _file(c, "--catalog", "catalog export (default: the whole catalog topic)")
    _repeated(c, "--model", "NAME[@V]",
              "recommend_ranker@N, `heuristic` (no ranker) or `live` (the latest ranker with "
              "the worker's A/B split against popularity); repeat for side by side; default: "
              "the latest ranker if any, and the heuristic")
    c.add_argument("--k", type=int, default=None, help="list length (default TECHSHOP_RECS_K)")
    c.set_defaults(func=backtest_recommend_command)

    m = bsub.add_parser("moderation", help="classifier versions' thresholds over the "
                        "published scores, against reviewers' verdicts")
    _source_args(m, "moderation-decisions")
    _repeated(m, "--model", "NAME[@V]",
              "moderation_classifier@N (repeat for side by side; default: the latest)")
    _file(m, "--reviews", "verdicts from this export (default: the moderation-reviews topic)")
    m.add_argument("--audit-rate", type=float, default=None, metavar="SHARE",
                   help="audit sample of APPROVE (default TECHSHOP_MODERATION_AUDIT_RATE)")
    m.set_defaults(func=backtest_moderation_command)


def _source_args(p: argparse.ArgumentParser, topic: str) -> None:
    _file(p, "--file", f"read {topic} from this export instead of the topic")
    _range_args(p)
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="report folder (default <data dir>/reports/<pipeline>-<time>)")
    p.add_argument("--batch-size", type=int, default=1000, metavar="N")
    p.add_argument("--model-dir", type=Path, default=None, metavar="DIR",
                   help="model registry (default TECHSHOP_MODEL_DIR)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def _where(args: argparse.Namespace, topic: str) -> Any:
    from replay.backtest.inputs import Where
    from replay.sources import parse_bound

    return Where(topic, file=args.file, start=parse_bound(args.start),
                 end=parse_bound(args.end))


def replay_command(args: argparse.Namespace) -> int:
    from replay.copy import copy_range
    from replay.progress import Bars
    from replay.sources import parse_bound

    settings = load_settings()
    start, end = parse_bound(args.start), parse_bound(args.end)
    with Bars(enabled=not args.quiet) as bars:
        tasks: dict[str, Any] = {}

        def on_progress(name: str, read: int, estimate: int) -> None:
            if name not in tasks:
                tasks[name] = bars.task(f"copying {name}")
            tasks[name](read, estimate)

        result = copy_range(settings, args.topics, args.to_prefix, start, end,
                            speed=args.speed, on_progress=on_progress)
    for topic, n in sorted(result.copied.items()):
        print(f"{topic}: {n:,} records")
    print(f"replayed {result.total:,} records into prefix {args.to_prefix!r} in "
          f"{result.seconds:.1f} s", file=sys.stderr)
    return 0


def export_command(args: argparse.Namespace) -> int:
    from replay.progress import Bars
    from replay.sources import ExportWriter, parse_bound, read_topic
    from streams.errors import EventError
    from streams.publisher import Codecs
    from streams.topics import TopicCatalog
    from streams.worker import schema_source

    settings = load_settings()
    catalog = TopicCatalog(settings.topic_prefix)
    logical = catalog.spec(args.topic).name
    codec = Codecs(schema_source(settings), catalog)[logical]
    writer = ExportWriter(args.out, logical)
    bad = 0
    try:
        with Bars(enabled=not args.quiet) as bars:
            for batch in read_topic(settings, catalog.physical(logical),
                                    parse_bound(args.start), parse_bound(args.end),
                                    on_progress=bars.task(f"exporting {logical}")):
                for msg in batch:
                    try:
                        value = codec.decode(msg.value)
                    except EventError:
                        bad += 1  # not an event of this topic: nothing to share
                        continue
                    writer.write(value, partition=msg.partition, offset=msg.offset,
                                 key=msg.key, timestamp_ms=msg.timestamp_ms, topic=msg.topic)
    finally:
        writer.close()
    print(f"exported {writer.written:,} events of {catalog.physical(logical)} to {args.out}"
          + (f"; {bad:,} undecodable records skipped" if bad else ""), file=sys.stderr)
    return 0


def _out_dir(args: argparse.Namespace, settings: Any, pipeline: str) -> Path:
    import time

    if args.out is not None:
        return Path(args.out)
    return settings.data_dir / "reports" / f"{pipeline}-{time.strftime('%Y%m%d-%H%M%S')}"


def _check_batch(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")


def backtest_fraud_command(args: argparse.Namespace) -> int:
    from replay.backtest.fraud import parse_model_spec, parse_thresholds
    from replay.backtest.inputs import Where
    from replay.backtest.jobs import FraudJob, fraud_job
    from replay.backtest.metrics import Costs
    from replay.progress import Bars
    from replay.report import write_report

    _check_batch(args)
    settings = load_settings()
    window = None if args.label_window is None else int(args.label_window * 86_400_000)
    job = FraudJob(
        transactions=_where(args, "transactions"),
        models=[parse_model_spec(m) for m in (args.model or ["routing"])],
        sweep=[parse_thresholds(t) for t in args.thresholds],
        labels=Where("fraud-labels", file=args.labels) if args.labels else None,
        published=Where("fraud-decisions", file=args.published) if args.published else None,
        compare=not args.no_compare, batch_size=args.batch_size, label_window_ms=window,
        costs=Costs(chargeback_fee=args.cost_chargeback_fee, review=args.cost_review,
                    false_decline=args.cost_false_decline),
        model_dir=args.model_dir)
    with Bars(enabled=not args.quiet) as bars:
        report = fraud_job(settings, job, bars)
    json_path, html_path = write_report(report, _out_dir(args, settings, "fraud"))
    if not report["data"]["decided"]:
        print(f"techshop: no transaction decided in {report['data']['source']} (an empty "
              "range?)", file=sys.stderr)
    for x in report["models"]:
        flagged = x["outcomes"]["REVIEW"] + x["outcomes"]["DECLINE"]
        print(f"{x['label']:28} recall {x['recall']:.4f}  FPR {x['fpr']:.4f}  precision "
              f"{x['precision']:.4f}  flagged {flagged:,}  cost {x['cost']['total']:,.0f} USD")
    c = report.get("consistency")
    if c:
        print(f"published decisions: {c['compared']:,} compared, {c['differing']:,} with "
              f"another decision, {c['score_only']:,} with another score only")
    print(f"report: {html_path} (and {json_path.name})")
    return 0


def backtest_recommend_command(args: argparse.Namespace) -> int:
    from replay.backtest.inputs import Where
    from replay.backtest.recommend import RecommendJob, recommend_job
    from replay.progress import Bars
    from replay.report import write_report

    _check_batch(args)
    settings = load_settings()
    if args.k is not None and args.k < 1:
        raise ConfigError(f"--k must be at least 1, got {args.k}")
    job = RecommendJob(clicks=_where(args, "clickstream"),
                       catalog=Where("catalog", file=args.catalog),
                       models=list(args.model), k=args.k or settings.recs_k,
                       batch_size=args.batch_size, model_dir=args.model_dir)
    with Bars(enabled=not args.quiet) as bars:
        report = recommend_job(settings, job, bars)
    json_path, html_path = write_report(report, _out_dir(args, settings, "recommend"))
    k = report["k"]
    for x in report["models"]:
        print(f"{x['label']:28} hit-rate@{k} {x['hit_rate']:.4f}  NDCG@{k} {x['ndcg']:.4f}  "
              f"coverage {x['coverage']:.3f}")
    print(f"report: {html_path} (and {json_path.name})")
    return 0


def backtest_moderation_command(args: argparse.Namespace) -> int:
    from replay.backtest.inputs import Where
    from replay.backtest.moderation import ModerationJob, moderation_job
    from replay.progress import Bars
    from replay.report import write_report

    settings = load_settings()
    if args.audit_rate is not None and not 0.0 <= args.audit_rate <= 1.0:
        raise ConfigError(f"--audit-rate must be in [0, 1], got {args.audit_rate}")
    job = ModerationJob(decisions=_where(args, "moderation-decisions"), models=list(args.model),
                        reviews=Where("moderation-reviews", file=args.reviews)
                        if args.reviews else None, audit_rate=args.audit_rate,
                        model_dir=args.model_dir)
    with Bars(enabled=not args.quiet) as bars:
        report = moderation_job(settings, job, bars)
    json_path, html_path = write_report(report, _out_dir(args, settings, "moderation"))
    for x in report["models"]:
        print(f"{x['label']:28} agreement {x['agreement']:.4f}  review volume "
              f"{x['review_volume']:,} ({x['review_share']:.1%})  wrong approvals "
              f"{x['wrong_approve']:,}")
    c = report["consistency"]
    print(f"published decisions: {c['compared']:,} compared, {c['differing']:,} differ")
    print(f"report: {html_path} (and {json_path.name})")
    return 0
