"""Which moderation stages a worker scores with: loaded at start, swapped atomically
when ``model-updates`` announces a new version of one of them.

Registry names (any ONNX a user registers under one of them takes that stage's place):

* ``moderation_classifier`` — the unsafe-content classifier; its manifest holds the
  thresholds of every category. Registered from ``models/shipped/`` on first start when
  absent, so a fresh install works offline.
* ``moderation_text_detector`` / ``moderation_ocr`` — optional; without them the
  PP-OCRv4 models that ``rapidocr-onnxruntime`` ships are used.

Providers are chosen once at start: ``TECHSHOP_MODERATION_PROVIDERS`` or TensorRT/CUDA
when this onnxruntime has them, then the CPU.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import onnxruntime as ort

from agents.moderation.decide import CategoryThresholds, thresholds_from_flat
from agents.moderation.features import ModerationStages
from models.moderation import CLASSIFIER, TEXT_THRESHOLDS, load_shipped, register_shipped
from models.registry import ModelRegistry
from scorers.errors import ScorerError
from scorers.image_classifier import ImageClassifierScorer
from scorers.image_text import TextDetector, TextRecognizer

__all__ = ["DETECTOR", "OCR", "ModerationModelHolder", "image_providers"]

log = logging.getLogger(__name__)

DETECTOR = "moderation_text_detector"
OCR = "moderation_ocr"


def image_providers(configured: str = "") -> list[str]:
    """The providers to use: the configured list (unknown ones dropped, CPU last), or
    TensorRT and CUDA when this onnxruntime build has them, then the CPU."""
    available = ort.get_available_providers()
    wanted = [p.strip() for p in configured.split(",") if p.strip()] or [
        "TensorrtExecutionProvider", "CUDAExecutionProvider"]
    chosen = [p for p in wanted if p in available and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]


class ModerationModelHolder:
    """Holds the current :class:`ModerationStages` and thresholds; replaced, never
    mutated, so a batch scores with one consistent set."""

    def __init__(self, registry: ModelRegistry, providers: Sequence[str], *,
                 detector_side: int = 480, threads: int = 1, chunk: int = 0,
                 on_change: Callable[[ModerationModelHolder], None] | None = None) -> None:
        self.registry = registry
        self.providers = list(providers)
        self.detector_side = detector_side
        self.threads = threads
        self.chunk = chunk
        self.on_change = on_change
        self.stages: ModerationStages | None = None
        self.thresholds: dict[str, CategoryThresholds] = thresholds_from_flat(TEXT_THRESHOLDS)
        self.manifest: Any = None
        self.error: str | None = "not loaded yet"
        self._lock = threading.Lock()

    @property
    def current(self) -> tuple[ModerationStages | None, dict[str, CategoryThresholds]]:
        return self.stages, self.thresholds

    def ensure_loaded(self) -> None:
        """:meth:`load_latest` unless a load already completed (safe from any thread)."""
        self.load_latest(only_if_missing=True)

    def load_latest(self, *, only_if_missing: bool = False) -> None:
        """Register the shipped classifier if absent, then load every stage."""
        with self._lock:
            if only_if_missing and self.stages is not None:
                return
            try:
                if register_shipped(self.registry) is not None:
                    log.info("registered the shipped %s", CLASSIFIER)
            except (OSError, ScorerError) as exc:
                log.error("could not register the shipped classifier: %s", exc)
            classifier, thresholds = self._classifier("latest")
            detector = recognizer = None
            if self.detector_side > 0:
                detector = self._optional(DETECTOR, lambda data, v: TextDetector(
                    data, self.providers, side=self.detector_side, threads=self.threads,
                    version=v, chunk=self.chunk))
                recognizer = self._optional(OCR, lambda data, v: TextRecognizer(
                    data, self.providers, threads=self.threads, version=v, chunk=self.chunk))
            self.stages = ModerationStages(classifier, detector, recognizer)
            self.thresholds = thresholds
            self.error = None
        self._changed()

    def on_update(self, update: dict[str, Any]) -> None:
        """Apply a ``model-updates`` record naming one of our stages."""
        name, version = update.get("model"), str(update.get("version"))
        stages = self.stages
        if stages is None or name not in (CLASSIFIER, DETECTOR, OCR):
            return
        with self._lock:
            try:
                if name == CLASSIFIER:
                    if stages.classifier.version == version and self.manifest is not None \
                            and self.manifest.version == version:
                        return
                    classifier, thresholds = self._classifier(version)
                    self.stages, self.thresholds = replace(stages, classifier=classifier), \
                        thresholds
                elif name == DETECTOR and self.detector_side > 0:
                    _, data = self.registry.load(DETECTOR, version)
                    self.stages = replace(stages, detector=TextDetector(
                        data, self.providers, side=self.detector_side, threads=self.threads,
                        version=version, chunk=self.chunk))
                elif name == OCR and self.detector_side > 0:
                    _, data = self.registry.load(OCR, version)
                    self.stages = replace(stages, recognizer=TextRecognizer(
                        data, self.providers, threads=self.threads, version=version,
                        chunk=self.chunk))
            except (ScorerError, OSError, KeyError, ValueError) as exc:
                log.error("%s@%s refused, keeping the current one: %s", name, version, exc)
                return
        self._changed()

    def _classifier(self, version: str
                    ) -> tuple[ImageClassifierScorer, dict[str, CategoryThresholds]]:
        try:
            manifest, data = self.registry.load(CLASSIFIER, version)
            scorer = ImageClassifierScorer(
                data, CLASSIFIER, manifest.version, manifest.feature_names,
                manifest.params.get("categories"), self.providers, threads=self.threads)
            self.manifest = manifest
            flat = {**TEXT_THRESHOLDS, **manifest.thresholds}
        except (ScorerError, OSError, KeyError, ValueError) as exc:
            if self.stages is not None:
                raise
            # A refused registry version must not leave uploads undecided: the shipped
            # files (part of the installed code, not of the writable registry) stand in.
            log.error("%s@%s refused (%s): using the shipped classifier", CLASSIFIER,
                      version, exc)
            shipped = load_shipped()
            scorer = ImageClassifierScorer(shipped.onnx, CLASSIFIER, "shipped",
                                           shipped.feature_names, shipped.categories,
                                           self.providers, threads=self.threads)
            flat = dict(shipped.thresholds)
        log.info("classifier now %s on %s", scorer.model_id, scorer.providers)
        return scorer, thresholds_from_flat(flat)

    def _optional(self, name: str, build: Callable[[bytes | None, str], Any]) -> Any:
        if name in self.registry.names():
            try:
                manifest, data = self.registry.load(name)
                return build(data, manifest.version)
            except (ScorerError, OSError, KeyError, ValueError) as exc:
                log.error("%s refused, using the packaged model: %s", name, exc)
        return build(None, "ppocrv4")

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change(self)
