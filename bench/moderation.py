"""Moderation latency and throughput: per stage, end to end, micro-batching vs one by one.

Generates ``--n`` product-image uploads as ~2 MB JPEGs (the synthetic pictures of
``replay.generator.images.render`` at ``--side`` px with sensor-like noise, so that the
files weigh what photos do; 60 % benign, 30 % with policy-breaking text, 10 % nudity
or violence proxies), then, in process, with the worker's own code:

1. **Per stage, one upload at a time** (batch size 1): p50/p95 of load (read + decode in
   draft mode + EXIF), classifier, text detector, OCR, decide, and end to end (URI →
   decision).
2. **Throughput**, the same uploads processed three ways in the same run: batch size 1;
   micro-batches of ``--batch`` (decoding in a ``--threads`` pool, stages chunked as the
   worker chooses for these providers); micro-batches with one inference per stage for
   the whole batch (chunk = batch). Reported: uploads/s, the ratios, and uploads/hour
   against the 1,000/hour seed target.
3. Unless ``--quick``, **through the broker**: an embedded stack and a real
   ``techshop worker --pipelines moderation``; uploads offered at ``--rate``/s for
   ``--seconds``, then a burst of ``--burst`` at once; produce → decision latency
   p50/p95/max against the 5 s budget.

``--providers`` picks onnxruntime providers (default: CUDA/TensorRT when present, CPU).

Run: ``python bench/moderation.py`` (``--quick``: 24 uploads, no broker phase);
results in ``bench/out/moderation.json``.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from agents.moderation.decide import decide, thresholds_from_flat  # noqa: E402
from agents.moderation.features import ModerationStages, score_batch  # noqa: E402
from agents.moderation.loading import LoadPolicy, load_image  # noqa: E402
from agents.moderation.models import image_providers  # noqa: E402
from bench._common import (  # noqa: E402
    NOISE_NOTE,
    code_version,
    fmt,
    fmt_ratio,
    machine,
    percentiles,
    progress,
    write_result,
)
from models.moderation import load_shipped  # noqa: E402
from replay.generator.images import render  # noqa: E402
from scorers.image_classifier import ImageClassifierScorer  # noqa: E402
from scorers.image_text import TextDetector, TextRecognizer  # noqa: E402

MEASURED_FILES = ("agents/moderation/loading.py", "agents/moderation/features.py",
                  "agents/moderation/decide.py", "agents/moderation/agent.py",
                  "scorers/image_text.py", "scorers/image_classifier.py",
                  "scorers/image_features.py")
MIX = ["benign"] * 6 + ["text_contact_info", "text_banned_words", "text_contact_info",
                        "nudity" if random.Random(0).random() < 0.5 else "violence"]
SEED_TARGET_PER_HOUR = 1000


def make_uploads(folder: Path, n: int, side: int, seed: int = 0) -> list[dict[str, Any]]:
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    uploads = []
    for i in range(n):
        category = MIX[i % len(MIX)] if i % 20 != 19 else "violence"
        w, h = side, int(side * rng.uniform(0.7, 0.8))
        img, _ = render(category, rng, np_rng, w, h)
        px = np.asarray(img, dtype=np.int16)
        px = px + np_rng.normal(0, 16, px.shape).astype(np.int16)  # sensor noise: real weight
        buf = io.BytesIO()
        Image.fromarray(np.clip(px, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=95)
        path = folder / f"u{i:04d}.jpg"
        path.write_bytes(buf.getvalue())
        uploads.append({"upload_id": f"u{i:04d}", "uri": path.as_uri(), "ts": 0,
                        "category": category, "bytes": len(buf.getvalue())})
    return uploads


def build_stages(providers: list[str], side: int, chunk: int, threads: int = 1
                 ) -> ModerationStages:
    shipped = load_shipped()
    return ModerationStages(
        ImageClassifierScorer(shipped.onnx, "moderation_classifier", "shipped",
                              shipped.feature_names, shipped.categories, providers),
        TextDetector(providers=providers, side=side, chunk=chunk, threads=threads),
        TextRecognizer(providers=providers, chunk=chunk, threads=threads))


def per_stage(uploads: list[dict[str, Any]], stages: ModerationStages, policy: LoadPolicy,
              thresholds: Any) -> dict[str, Any]:
    times: dict[str, list[float]] = {k: [] for k in ("load", "classifier", "detector", "ocr",
                                                     "decide", "end_to_end")}
    for u in uploads:
        t0 = time.perf_counter()
        outcome = load_image(u["uri"], policy)
        t1 = time.perf_counter()
        assert outcome.image is not None, outcome.reason
        scored, timings = score_batch([outcome.image], stages)
        t2 = time.perf_counter()
        decide([u], {}, {0: scored[0]}, thresholds, "m@1", 0)
        t3 = time.perf_counter()
        times["load"].append(t1 - t0)
        for stage in ("classifier", "detector", "ocr"):
            times[stage].append(timings.get(stage, 0.0))
        times["decide"].append(t3 - t2)
        times["end_to_end"].append(t3 - t0)
    return {k: {q: (v * 1000 if isinstance(v, float) else v)
                for q, v in percentiles(vals).items()} for k, vals in times.items()}


def throughput(uploads: list[dict[str, Any]], stages: ModerationStages, policy: LoadPolicy,
               thresholds: Any, batch: int, threads: int) -> dict[str, Any]:
    """Uploads per second over every upload, in batches of ``batch``."""
    outcomes: list[str] = []
    with ThreadPoolExecutor(threads) as pool:
        start = time.perf_counter()
        for k in range(0, len(uploads), batch):
            chunk = uploads[k:k + batch]
            loads = list(pool.map(lambda u: load_image(u["uri"], policy), chunk))
            images = [o.image for o in loads if o.image is not None]
            scored, _ = score_batch(images, stages)
            decided = decide(chunk, {}, dict(enumerate(scored)), thresholds, "m@1", 0)
            outcomes.extend(d.decision["decision"] for d in decided)
        seconds = time.perf_counter() - start
    rate = len(uploads) / seconds
    return {"batch": batch, "uploads": len(uploads), "seconds": round(seconds, 3),
            "per_s": round(rate, 3), "per_hour": round(rate * 3600),
            "outcomes": {o: outcomes.count(o) for o in sorted(set(outcomes))}}


def broker_phase(args: argparse.Namespace, folder: Path, uploads: list[dict[str, Any]],
                 tmp: Path) -> dict[str, Any]:
    """A real worker on an embedded stack: produce → decision latency."""
    import subprocess

    from prometheus_client import CollectorRegistry

    from streams.admin import ensure_subjects, ensure_topics
    from streams.embedded import free_port
    from streams.metrics import StreamMetrics
    from streams.publisher import Codecs, Publisher
    from streams.settings import Settings
    from streams.stack import EmbeddedStack
    from streams.topics import TopicCatalog
    from streams.worker import schema_source
    from tests.helpers import read_topic, stop_process, wait_for

    stack_settings = Settings(data_dir=tmp / "stack", broker_port=free_port(),
                              registry_port=free_port(), embedded_redis_port=free_port())
    with EmbeddedStack(stack_settings) as stack:
        assert stack.info is not None
        env = {**os.environ, **stack.info.env(), "TECHSHOP_TOPIC_PREFIX": "bm.",
               "TECHSHOP_BROKER_COMPAT": "tansu", "TECHSHOP_DATA_DIR": str(tmp / "w"),
               "TECHSHOP_IMAGE_ROOTS": str(folder), "TECHSHOP_WEB_PORT": str(free_port()),
               "TECHSHOP_MODERATION_MAX_BATCH": str(args.batch), "PYTHONPATH": str(ROOT),
               "TECHSHOP_MODERATION_INTRA_OP_THREADS": str(args.intra_op)}
        if args.providers:
            env["TECHSHOP_MODERATION_PROVIDERS"] = args.providers
        client = Settings(**{"kafka_bootstrap_servers": stack.info.bootstrap_servers,
                             "schema_registry_url": stack.info.schema_registry_url,
                             "topic_prefix": "bm."})
        catalog = TopicCatalog("bm.")
        ensure_topics(client, catalog)
        ensure_subjects(schema_source(client), catalog)
        log = (ROOT / "bench/out/moderation_worker.log").open("wb")
        worker = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker",
                                   "--pipelines", "moderation"], env=env, stdout=log,
                                  stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            port = int(env["TECHSHOP_WEB_PORT"])
            t0 = time.monotonic()
            wait_for(port, "/ready", lambda status, _: status == 200, 120, proc=worker)
            progress(f"worker ready in {time.monotonic() - t0:.1f} s")
            pub = Publisher(client.kafka_client_config(), Codecs(schema_source(client), catalog),
                            StreamMetrics.create(CollectorRegistry()))
            sent: dict[str, float] = {}

            def send(i: int, tag: str) -> None:
                u = uploads[i % len(uploads)]
                upload_id = f"{tag}-{i}"
                now = time.time()
                pub.publish("image-uploads", {"upload_id": upload_id, "product_id": "p",
                                              "seller_id": "s", "uri": u["uri"],
                                              "ts": int(now * 1000)}, key=upload_id.encode())
                pub.flush_sync()
                sent[upload_id] = now

            steady = int(args.rate * args.seconds)
            progress(f"steady: {steady} uploads at {args.rate}/s, then a burst of {args.burst}")
            start = time.monotonic()
            for i in range(steady):
                time.sleep(max(0.0, start + i / args.rate - time.monotonic()))
                send(i, "steady")
            for i in range(args.burst):
                send(i, "burst")
            total = steady + args.burst
            messages = read_topic(client, catalog.physical("moderation-decisions"),
                                  until=lambda m: len(m) >= total, timeout=120)
            # The record timestamp is the broker's append time of the decision.
            codec = Codecs(schema_source(client), catalog)["moderation-decisions"]
            latency: dict[str, list[float]] = {"steady": [], "burst": []}
            for m in messages:
                d = codec.decode(m.value())
                appended = m.timestamp()[1] / 1000.0
                latency[d["upload_id"].split("-")[0]].append(appended - sent[d["upload_id"]])
        finally:
            stop_process(worker)
            log.close()
    return {"rate_per_s": args.rate, "seconds": args.seconds, "burst": args.burst,
            "decided": len(messages), "offered": total,
            "latency_ms": {k: {q: (v * 1000 if isinstance(v, float) else v)
                               for q, v in percentiles(vals).items()}
                           for k, vals in latency.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=96, help="uploads")
    parser.add_argument("--side", type=int, default=2100, help="image width in px")
    parser.add_argument("--batch", type=int, default=16, help="micro-batch size")
    parser.add_argument("--threads", type=int, default=2, help="decode threads")
    parser.add_argument("--detector-side", type=int, default=480)
    parser.add_argument("--intra-op", type=int, default=2,
                        help="onnxruntime intra-op threads of the text stages (as "
                             "TECHSHOP_MODERATION_INTRA_OP_THREADS)")
    parser.add_argument("--providers", default="", help="onnxruntime providers, comma-separated")
    parser.add_argument("--rate", type=float, default=2.0, help="broker phase: uploads/s")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--burst", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="24 uploads, no broker phase")
    args = parser.parse_args()
    if args.quick:
        args.n = min(args.n, 24)
    if min(args.n, args.batch, args.threads, args.intra_op) < 1:
        parser.error("--n, --batch, --threads and --intra-op must be at least 1")
    tmp = Path(tempfile.mkdtemp(prefix="techshop-moderation-"))
    folder = tmp / "uploads"
    folder.mkdir()
    try:
        progress(f"writing {args.n} JPEGs of {args.side} px")
        uploads = make_uploads(folder, args.n, args.side)
        sizes = [u["bytes"] for u in uploads]
        providers = image_providers(args.providers)
        progress(f"providers {providers}")
        policy = LoadPolicy(roots=(folder,), work_side=max(640, args.detector_side))
        thresholds = thresholds_from_flat(load_shipped().thresholds)
        auto = build_stages(providers, args.detector_side, 0, args.intra_op)
        whole = build_stages(providers, args.detector_side, args.batch, args.intra_op)
        score_batch([np.zeros((64, 64, 3), np.uint8)] * 2, auto)  # warm the sessions
        score_batch([np.zeros((64, 64, 3), np.uint8)] * 2, whole)
        progress("per stage, batch size 1")
        stages = per_stage(uploads, auto, policy, thresholds)
        progress("throughput: batch size 1")
        one = throughput(uploads, auto, policy, thresholds, 1, 1)
        progress(f"throughput: micro-batches of {args.batch}")
        micro = throughput(uploads, auto, policy, thresholds, args.batch, args.threads)
        progress(f"throughput: micro-batches of {args.batch}, one inference per stage")
        single_run = throughput(uploads, whole, policy, thresholds, args.batch, args.threads)
        result: dict[str, Any] = {
            "machine": machine(), "code": code_version(MEASURED_FILES, ["agents", "scorers"]),
            "note": NOISE_NOTE, "providers": providers, "args": vars(args),
            "image_bytes": {"mean": int(np.mean(sizes)), "min": min(sizes), "max": max(sizes)},
            "per_stage_ms": stages, "batch_1": one, "micro_batch": micro,
            "micro_batch_one_inference": single_run,
            "ratio_micro_vs_1": round(micro["per_s"] / one["per_s"], 3),
            "ratio_one_inference_vs_1": round(single_run["per_s"] / one["per_s"], 3),
            "vs_seed_target": round(micro["per_hour"] / SEED_TARGET_PER_HOUR, 1),
        }
        if not args.quick:
            progress("broker phase")
            result["broker"] = broker_phase(args, folder, uploads, tmp)
        path = write_result("moderation", result)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\nmoderation on {', '.join(providers)}: {args.n} JPEGs, mean "
          f"{np.mean(sizes) / 1e6:.2f} MB ({args.side} px)")
    print(f"{'stage':12} {'p50 ms':>8} {'p95 ms':>8}")
    for stage, q in stages.items():
        print(f"{stage:12} {fmt(q['p50'], '.1f'):>8} {fmt(q['p95'], '.1f'):>8}")
    for label, r in (("batch 1", one), (f"batch {args.batch}", micro),
                     (f"batch {args.batch}, 1 run/stage", single_run)):
        print(f"{label:28} {r['per_s']:7.2f} uploads/s  {r['per_hour']:>8,} /hour")
    print(f"micro-batching vs 1: {fmt_ratio(result['ratio_micro_vs_1'])}; one inference per "
          f"stage vs 1: {fmt_ratio(result['ratio_one_inference_vs_1'])}; "
          f"{result['vs_seed_target']}x the 1,000 uploads/hour target")
    if "broker" in result:
        b = result["broker"]
        for k, q in b["latency_ms"].items():
            print(f"through the broker, {k:6}: p50 {fmt(q['p50'])} ms, p95 {fmt(q['p95'])} ms, "
                  f"max {fmt(q['max'])} ms (budget 5,000 ms)")
        print(f"decided {b['decided']} of {b['offered']}")
    print(f"\n{NOISE_NOTE}\nresults: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
