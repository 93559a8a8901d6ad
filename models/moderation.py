"""The moderation classifier: trained here on synthetic images, exported to ONNX,
shipped in ``models/shipped/`` and registered on a worker's first start.

The classifier judges the picture categories (``nudity``, ``violence``; ``benign`` is
the rest, product shots with or without text); text categories are the OCR stage's.
Features are :data:`scorers.image_features.FEATURE_NAMES`; the model is a LightGBM
multi-class GBDT converted with onnxmltools (no ZipMap: a ``probabilities`` tensor).

Thresholds per category (``<category>.approve`` / ``<category>.reject``) are chosen on a
held-out split and stored in the shipped manifest, then in the registry version: a
score below ``approve`` approves, at or above ``reject`` rejects, between is REVIEW.

Retrain (seconds, on CPU)::

    python -m models.moderation --out models/shipped            # synthetic only
    python -m models.moderation --examples reviews.jsonl        # + reviewed uploads

``--examples`` takes ``training-examples`` records of the ``moderation`` family (JSON
lines, e.g. from ``techshop consume training-examples --from-beginning``): each carries
the classifier features at decision time and the reviewer's verdict.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from scorers.image_classifier import CATEGORIES_METADATA_KEY, ImageClassifierScorer
from scorers.image_features import FEATURE_NAMES, image_features
from scorers.onnx_scorer import FEATURE_NAMES_METADATA_KEY

__all__ = ["CLASSIFIER", "CLASSES", "SHIPPED_DIR", "TEXT_THRESHOLDS", "ShippedModel",
           "choose_category_thresholds", "load_shipped", "register_shipped",
           "synthetic_dataset", "train_classifier"]

#: The registry name of the classifier stage (a registered ONNX under it replaces it).
CLASSIFIER = "moderation_classifier"
CLASSES = ("benign", "nudity", "violence")
SHIPPED_DIR = Path(__file__).resolve().parent / "shipped"
#: Defaults for the OCR stage's categories (its scores are match strength x confidence).
TEXT_THRESHOLDS = {"text_contact_info.approve": 0.3, "text_contact_info.reject": 0.75,
                   "text_banned_words.approve": 0.3, "text_banned_words.reject": 0.75}
PARAMS: Mapping[str, Any] = {
    "objective": "multiclass", "num_class": len(CLASSES), "num_leaves": 15,
    "learning_rate": 0.1, "min_child_samples": 10, "num_threads": 2, "deterministic": True,
    "force_row_wise": True, "verbose": -1,
}
ROUNDS = 60


def synthetic_dataset(n: int, seed: int = 0) -> tuple[npt.NDArray[np.float32],
                                                       npt.NDArray[np.int32]]:
    """``n`` generated pictures (half benign, half of them with text; a quarter each
    nudity and violence), JPEG round-tripped like uploads, as features and class ids."""
    import io

    from PIL import Image

    from replay.generator.images import render

    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    mix = ("benign", "benign", "text_contact_info", "text_banned_words",
           "nudity", "nudity", "violence", "violence")
    rows, labels = [], []
    for _ in range(n):
        category = rng.choice(mix)
        w, h = rng.randint(128, 400), rng.randint(128, 400)
        img, _ = render(category, rng, np_rng, w, h)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=rng.randint(60, 95))
        decoded = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        rows.append(image_features(decoded))
        labels.append(CLASSES.index(category) if category in CLASSES else 0)
    return np.stack(rows), np.asarray(labels, dtype=np.int32)


def choose_category_thresholds(probs: npt.NDArray[np.float64], y: npt.NDArray[np.int32],
                               *, max_miss: float = 0.005, min_precision: float = 0.99
                               ) -> dict[str, float]:
    """Per category: ``approve`` so that at most ``max_miss`` of its positives score
    below it, ``reject`` the lowest score whose precision is >= ``min_precision``."""
    out: dict[str, float] = {}
    for k, category in enumerate(CLASSES):
        if category == "benign":
            continue
        scores, positive = probs[:, k], y == k
        pos = np.sort(scores[positive])
        approve = float(pos[int(max_miss * len(pos))]) if len(pos) else 0.5
        approve = float(np.clip(approve, 0.05, 0.4))
        reject = 0.9
        for t in np.unique(np.round(scores, 4)):
            flagged = scores >= t
            if flagged.sum() and positive[flagged].mean() >= min_precision and t > approve:
                reject = float(t)
                break
        out[f"{category}.approve"] = approve
        out[f"{category}.reject"] = float(np.clip(reject, approve + 0.1, 0.9))
    return out


def train_classifier(X: npt.NDArray[np.float32], y: npt.NDArray[np.int32], seed: int = 0
                     ) -> bytes:
    """A LightGBM multi-class model over ``FEATURE_NAMES`` as ONNX bytes (checked
    against LightGBM on the training rows)."""
    import lightgbm as lgb
    from onnxmltools import convert_lightgbm
    from onnxmltools.convert.common.data_types import FloatTensorType

    booster = lgb.train({**PARAMS, "seed": seed},
                        lgb.Dataset(X, label=y, feature_name=list(FEATURE_NAMES)),
                        num_boost_round=ROUNDS)
    onnx_model = convert_lightgbm(
        booster, initial_types=[("input", FloatTensorType([None, len(FEATURE_NAMES)]))],
        zipmap=False)
    onnx_model.graph.name = "techshop_moderation_classifier"
    for output in onnx_model.graph.output:
        dims = output.type.tensor_type.shape.dim
        if dims:
            dims[0].dim_param = "N"
    for key, value in ((FEATURE_NAMES_METADATA_KEY, list(FEATURE_NAMES)),
                       (CATEGORIES_METADATA_KEY, list(CLASSES))):
        meta = onnx_model.metadata_props.add()
        meta.key, meta.value = key, json.dumps(value)
    data = onnx_model.SerializeToString()
    scorer = ImageClassifierScorer(data, "check", "0", providers=["CPUExecutionProvider"])
    diff = float(np.max(np.abs(scorer.probabilities(X[:2000]) - booster.predict(X[:2000]))))
    if diff > 1e-4:
        from scorers.errors import ModelExportError

        raise ModelExportError(f"ONNX export disagrees with LightGBM by {diff:.2e}")
    return data


class ShippedModel:
    """The classifier files in ``models/shipped/``: ONNX bytes and its manifest data."""

    def __init__(self, folder: Path = SHIPPED_DIR) -> None:
        self.onnx = (folder / f"{CLASSIFIER}.onnx").read_bytes()
        meta = json.loads((folder / f"{CLASSIFIER}.json").read_text())
        self.categories: list[str] = meta["categories"]
        self.feature_names: list[str] = meta["feature_names"]
        self.thresholds: dict[str, float] = meta["thresholds"]
        self.metrics: dict[str, Any] = meta["metrics"]


def load_shipped(folder: Path = SHIPPED_DIR) -> ShippedModel:
    return ShippedModel(folder)


def register_shipped(registry: Any, folder: Path = SHIPPED_DIR) -> Any:
    """Publish the shipped classifier as the first version of :data:`CLASSIFIER` when the
    registry has none (a fresh install works offline); the manifest, else ``None``."""
    if CLASSIFIER in registry.names():
        return None
    shipped = load_shipped(folder)
    return registry.publish(CLASSIFIER, "onnx", shipped.onnx,
                            feature_names=shipped.feature_names,
                            thresholds=shipped.thresholds, metrics=shipped.metrics,
                            params={"categories": shipped.categories, "source": "shipped"})


def _examples(path: Path) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int32]]:
    """Reviewed uploads as extra rows: a REJECT verdict on a picture category keeps the
    category the classifier leaned to; an APPROVE is benign."""
    rows, labels = [], []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        ex = json.loads(line)
        ex = ex.get("value", ex)
        if ex.get("model") != "moderation":
            continue
        feats = ex["features"]
        if not all(n in feats for n in FEATURE_NAMES):
            continue
        rows.append([float(feats[n]) for n in FEATURE_NAMES])
        if ex["label"] < 0.5:
            labels.append(0)
        else:
            picture = {c: float(feats.get(f"score.{c}", 0.0)) for c in CLASSES[1:]}
            best = max(picture, key=lambda c: picture[c])
            labels.append(CLASSES.index(best) if picture[best] >= 0.2 else 0)
    if not rows:
        return np.zeros((0, len(FEATURE_NAMES)), np.float32), np.zeros(0, np.int32)
    return np.asarray(rows, np.float32), np.asarray(labels, np.int32)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m models.moderation",
                                     description="Train and ship the moderation classifier")
    parser.add_argument("--out", type=Path, default=SHIPPED_DIR)
    parser.add_argument("--n", type=int, default=4000, help="synthetic images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--examples", type=Path, help="training-examples JSON lines")
    args = parser.parse_args(argv)
    if args.n < 100:
        print("error: --n must be at least 100", file=sys.stderr)
        return 2
    print(f"rendering {args.n} synthetic images...", file=sys.stderr)
    X, y = synthetic_dataset(args.n, args.seed)
    if args.examples:
        if not args.examples.is_file():
            print(f"error: no such file {args.examples}", file=sys.stderr)
            return 2
        Xe, ye = _examples(args.examples)
        print(f"+ {len(ye)} reviewed examples", file=sys.stderr)
        X, y = np.concatenate([X, Xe]), np.concatenate([y, ye])
    order = np.random.default_rng(args.seed).permutation(len(y))
    X, y = X[order], y[order]
    cut = int(len(y) * 0.75)
    data = train_classifier(X[:cut], y[:cut], args.seed)
    scorer = ImageClassifierScorer(data, CLASSIFIER, "0", providers=["CPUExecutionProvider"])
    probs = scorer.probabilities(X[cut:])
    thresholds = choose_category_thresholds(probs, y[cut:])
    accuracy = float((probs.argmax(axis=1) == y[cut:]).mean())
    data = train_classifier(X, y, args.seed)  # the shipped model sees every row
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{CLASSIFIER}.onnx").write_bytes(data)
    meta: dict[str, Any] = {"categories": list(CLASSES), "feature_names": list(FEATURE_NAMES),
            "thresholds": {**thresholds, **TEXT_THRESHOLDS},
            "metrics": {"valid_accuracy": round(accuracy, 4), "n_train": int(len(y)),
                        "seed": args.seed}}
    (args.out / f"{CLASSIFIER}.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({"bytes": len(data), **meta["metrics"], "thresholds": thresholds}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
