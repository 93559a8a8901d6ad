"""The moderation stages (classifier, text detector, OCR) on generated images, the
shipped classifier in the registry, a user's ONNX in a stage's place, and thresholds
recalibrated from verdicts reaching the decisions through a new registry version."""

from __future__ import annotations

import io
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image
from prometheus_client import CollectorRegistry

from agents.moderation.decide import CategoryThresholds, judge
from agents.moderation.features import ModerationStages, score_batch
from agents.moderation.feedback import training_example
from agents.moderation.metrics import ModerationMetrics
from agents.moderation.models import ModerationModelHolder, image_providers
from agents.moderation.thresholds import ThresholdTrainer
from models.moderation import CLASSIFIER, load_shipped, register_shipped
from models.registry import ModelRegistry
from replay.generator.images import render
from scorers import Scorer
from scorers.image_classifier import ImageClassifierScorer
from scorers.image_text import TextDetector, TextRecognizer
from streams.settings import Settings

CPU = ["CPUExecutionProvider"]


@pytest.fixture(scope="module")
def stages() -> ModerationStages:
    shipped = load_shipped()
    return ModerationStages(
        ImageClassifierScorer(shipped.onnx, CLASSIFIER, "shipped", shipped.feature_names,
                              shipped.categories, CPU),
        TextDetector(providers=CPU), TextRecognizer(providers=CPU))


def _images(categories: list[str], seed: int = 4) -> list[np.ndarray]:
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    out = []
    for category in categories:
        img, _ = render(category, rng, np_rng, rng.randint(240, 360), rng.randint(240, 360))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=85)
        out.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    return out


CATEGORIES = ["benign", "benign", "text_contact_info", "text_banned_words", "nudity",
              "violence"]


def test_each_category_is_flagged_by_its_stage(stages: ModerationStages) -> None:
    shipped = load_shipped()
    from agents.moderation.decide import thresholds_from_flat

    thresholds = thresholds_from_flat(shipped.thresholds)
    scored, timings = score_batch(_images(CATEGORIES), stages)
    assert set(timings) == {"classifier", "detector", "ocr"}
    for category, s in zip(CATEGORIES, scored, strict=True):
        decision, _ = judge(s.scores, thresholds)
        if category == "benign":
            assert decision == "APPROVE", s
        else:
            assert decision in ("REJECT", "REVIEW"), (category, s)
            assert s.scores[category] >= thresholds[category].approve
        assert set(s.scores) == {"nudity", "violence", "text_contact_info",
                                 "text_banned_words"}
        assert len(s.features) == len(stages.classifier.feature_names)
    assert any("text_contact_info:" in r for r in scored[2].reasons)


def test_a_batch_scores_as_its_images_alone(stages: ModerationStages) -> None:
    images = _images(CATEGORIES[:4], seed=7)
    together, _ = score_batch(images, stages)
    for image, batched in zip(images, together, strict=True):
        (alone,), _ = score_batch([image], stages)
        assert alone.phash == batched.phash
        for k, v in alone.scores.items():
            assert batched.scores[k] == pytest.approx(v, abs=1e-4)


def test_classifier_meets_the_scorer_protocol(stages: ModerationStages) -> None:
    clf = stages.classifier
    assert isinstance(clf, Scorer)
    X = clf.inputs_for(_images(["benign", "nudity"]))
    unsafe = clf.score(X)
    assert unsafe[0] < 0.2 < 0.8 < unsafe[1]
    again = ImageClassifierScorer.from_bytes(clf.to_bytes(), name="x", version="1",
                                             providers=CPU)
    assert np.array_equal(again.score(X), unsafe)


def _pixel_model() -> bytes:
    """A tiny image network: mean colour → linear → softmax over benign/violence."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.array([[0.0, 10.0], [5.0, -5.0], [5.0, -5.0]],
                                         np.float32), "w")
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("MatMul", ["flat", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "pixels", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                 ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 2])], [w])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return bytes(model.SerializeToString())


def _registry(tmp_path: Path) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", b"k" * 32)


def test_shipped_classifier_is_registered_once_and_loaded(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    assert register_shipped(registry) is not None
    assert register_shipped(registry) is None
    holder = ModerationModelHolder(registry, CPU, detector_side=0)
    holder.load_latest()
    assert holder.stages is not None and holder.stages.classifier.model_id == f"{CLASSIFIER}@1"
    assert holder.stages.detector is None  # text stages off with side 0
    assert holder.thresholds["nudity"].reject == load_shipped().thresholds["nudity.reject"]
    assert holder.thresholds["text_contact_info"].approve > 0


def test_a_tampered_registry_version_falls_back_to_the_shipped_files(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    manifest = register_shipped(registry)
    artifact = registry.root / CLASSIFIER / manifest.version / "artifact.bin"
    artifact.write_bytes(artifact.read_bytes()[:-10] + b"0123456789")
    holder = ModerationModelHolder(registry, CPU, detector_side=0)
    holder.load_latest()
    assert holder.stages is not None
    assert holder.stages.classifier.model_id == f"{CLASSIFIER}@shipped"


def test_a_registered_image_network_takes_the_classifier_stage(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    holder = ModerationModelHolder(registry, CPU, detector_side=0)
    holder.load_latest()
    manifest = registry.publish(CLASSIFIER, "onnx", _pixel_model(), feature_names=[],
                                thresholds={"violence.approve": 0.2, "violence.reject": 0.6},
                                params={"categories": ["benign", "violence"]})
    holder.on_update({"model": CLASSIFIER, "version": manifest.version})
    assert holder.stages is not None and holder.stages.classifier.pixels
    red = np.zeros((50, 40, 3), np.uint8)
    red[..., 0] = 255
    grey = np.full((50, 40, 3), 200, np.uint8)
    scored, _ = score_batch([red, grey], holder.stages)
    assert scored[0].scores["violence"] > 0.9 > 0.1 > scored[1].scores["violence"]
    assert judge(scored[0].scores, holder.thresholds)[0] == "REJECT"


def test_image_providers_fall_back_to_the_cpu() -> None:
    assert image_providers("")[-1] == "CPUExecutionProvider"
    assert image_providers("NoSuchProvider,CPUExecutionProvider") == ["CPUExecutionProvider"]


class _Published:
    def __init__(self) -> None:
        self.records: list[tuple[str, dict[str, Any]]] = []

    def publish(self, topic: str, value: dict[str, Any], key: Any = None) -> None:
        self.records.append((topic, value))


class _NoRedis:
    def lrange(self, *_: Any) -> list[bytes]:
        return []


def test_verdicts_recalibrate_thresholds_into_a_new_version_every_worker_applies(
        tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    holder = ModerationModelHolder(registry, CPU, detector_side=0)
    holder.load_latest()
    app = SimpleNamespace(settings=Settings(moderation_recalibrate_every=6),
                          publisher=_Published())
    trainer = ThresholdTrainer(app, holder, ModerationMetrics.create(CollectorRegistry()),
                               _NoRedis())  # type: ignore[arg-type]
    similar = {"nudity": 0.0, "violence": 0.0, "text_contact_info": 0.6,
               "text_banned_words": 0.0}
    assert judge(similar, holder.thresholds)[0] == "REVIEW"
    examples = [training_example({"upload_id": f"u{i}", "decision": "REVIEW", "model": "m@1",
                                  "ts": 1, "scores": {**similar,
                                                      "text_contact_info": 0.56 + i / 100}},
                                 "REJECT", 2) for i in range(6)]
    trainer.learn(examples[:5])
    trainer.maybe_publish(3)
    assert registry.versions(CLASSIFIER) == ["1"]  # not due yet
    trainer.learn(examples[5:])
    trainer.maybe_publish(3)
    assert registry.versions(CLASSIFIER) == ["1", "2"]
    new = registry.manifest(CLASSIFIER, "2")
    assert new.parent_version == "1" and new.thresholds["text_contact_info.reject"] <= 0.6
    (topic, update), = app.publisher.records
    assert topic == "model-updates" and update["model"] == CLASSIFIER
    other_worker = ModerationModelHolder(registry, CPU, detector_side=0)
    other_worker.load_latest()
    holder.on_update(update)
    for h in (holder, other_worker):
        assert h.thresholds["text_contact_info"] == CategoryThresholds(
            new.thresholds["text_contact_info.approve"],
            new.thresholds["text_contact_info.reject"])
        assert judge(similar, h.thresholds)[0] == "REJECT"
