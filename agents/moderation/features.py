"""The model pipeline over one micro-batch of decoded images, and image hashes.

:func:`score_batch` runs each stage once for the whole batch — (1) the unsafe-content
classifier, (2) the text-region detector, (3) OCR on every detected region — and returns
per image the category probabilities, the classifier's input features (kept for the
training examples) and why (the OCR's matched text). Per-stage wall times are returned
for the metrics and the benchmark.

:func:`dhash` is a 256-bit difference hash of an image: near-duplicates (re-encoded,
resized) differ in a few bits, which is how a reviewer's verdict reaches the next
similar upload (:mod:`agents.moderation.feedback`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from scorers.image_classifier import ImageClassifierScorer
from scorers.image_text import TextDetector, TextLine, TextPolicy, TextRecognizer, crop

__all__ = ["HASH_BITS", "ModerationStages", "ScoredImage", "dhash", "hamming", "score_batch"]

HASH_BITS = 256
_HASH_W, _HASH_H = 17, 16  # 16 x 16 horizontal differences
_FLAT = 2.0  # grey levels: a smaller difference is flat (JPEG noise must not flip bits)
MAX_REGIONS = 8  # text regions read per image (largest first)


@dataclass
class ModerationStages:
    """The stages a worker scores with; replaced as a whole when a model changes."""

    classifier: ImageClassifierScorer
    detector: TextDetector | None
    recognizer: TextRecognizer | None
    policy: TextPolicy = field(default_factory=TextPolicy)

    @property
    def model_ids(self) -> dict[str, str]:
        ids = {"classifier": self.classifier.model_id}
        if self.detector is not None:
            ids["detector"] = f"{self.detector.name}@{self.detector.version}"
        if self.recognizer is not None:
            ids["ocr"] = f"{self.recognizer.name}@{self.recognizer.version}"
        return ids


@dataclass
class ScoredImage:
    scores: dict[str, float]
    features: dict[str, float]
    reasons: list[str]
    text: list[str]
    phash: int


def dhash(image: npt.NDArray[np.uint8]) -> int:
    """A 256-bit difference hash (bit set where a cell is clearly brighter than its
    right-hand neighbour)."""
    grey = Image.fromarray(image).convert("L").resize((_HASH_W, _HASH_H),
                                                      Image.Resampling.BOX)
    px = np.asarray(grey, dtype=np.float32)
    bits = (px[:, 1:] - px[:, :-1]) > _FLAT
    return int("".join("1" if b else "0" for b in bits.ravel()), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def score_batch(images: Sequence[npt.NDArray[np.uint8]], stages: ModerationStages
                ) -> tuple[list[ScoredImage], dict[str, float]]:
    """Every stage once over ``images``; per image its scores, and seconds per stage."""
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    inputs = stages.classifier.inputs_for(images)
    probs = stages.classifier.probabilities(inputs)
    picture = stages.classifier.category_scores(probs)
    timings["classifier"] = time.perf_counter() - t0
    lines: list[list[TextLine]] = [[] for _ in images]
    if stages.detector is not None and stages.recognizer is not None and images:
        t1 = time.perf_counter()
        boxes = stages.detector.detect(images)
        timings["detector"] = time.perf_counter() - t1
        t2 = time.perf_counter()
        crops: list[Any] = []
        owners: list[int] = []
        for i, (image, found) in enumerate(zip(images, boxes, strict=True)):
            largest = sorted(found, key=lambda b: -float(np.linalg.norm(b[0] - b[2])))
            for box in largest[:MAX_REGIONS]:
                crops.append(crop(image, box))
                owners.append(i)
        for owner, line in zip(owners, stages.recognizer.recognise(crops), strict=True):
            lines[owner].append(line)
        timings["ocr"] = time.perf_counter() - t2
    names = (stages.classifier.feature_names if not stages.classifier.pixels else ())
    out = []
    for i, image in enumerate(images):
        text_scores, reasons = stages.policy.judge(lines[i])
        scores = {**picture[i], **text_scores}
        features = ({n: float(v) for n, v in zip(names, inputs[i], strict=True)}
                    if names else {})
        out.append(ScoredImage(scores, features, reasons,
                               [ln.text for ln in lines[i] if ln.text], dhash(image)))
    return out, timings
