"""The unsafe-content classifier stage: an ONNX multi-class model over images.

Two kinds of model fit the stage, told apart by their input's rank:

* a 2-D input ``(N, F)``: the shipped LightGBM model, over
  :data:`scorers.image_features.FEATURE_NAMES` (colour/texture statistics);
* a 4-D input ``(N, 3, H, W)``: any image network a user registers (pixels scaled to
  [0, 1], RGB, resized to the input's H x W or 224 x 224 when dynamic).

The output is a probability tensor ``(N, K)`` whose columns are ``categories``; a
column named ``benign`` (or ``safe``/``neutral``) is not a policy category. Batched:
one ``session.run`` per call, whatever the number of images.

Also a :class:`~scorers.base.Scorer` on feature matrices: ``score(X)`` is the
probability that a row is unsafe (1 - P(benign)).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from PIL import Image

from scorers.base import Scores, check_labels, check_matrix
from scorers.errors import FeatureMismatchError, ScorerError
from scorers.image_features import FEATURE_NAMES, feature_matrix
from scorers.onnx_scorer import OnnxModel, default_providers

__all__ = ["CATEGORIES_METADATA_KEY", "NEUTRAL", "ImageClassifierScorer", "session_for"]

CATEGORIES_METADATA_KEY = "techshop.categories"
NEUTRAL = frozenset({"benign", "safe", "neutral", "other"})


def session_for(model: bytes | str, providers: Sequence[str] | None, threads: int = 1
                ) -> ort.InferenceSession:
    """An onnxruntime session on ``providers`` (default: CUDA when present, then CPU)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(model, sess_options=options,
                                    providers=list(providers or default_providers()))
    except Exception as exc:  # onnxruntime raises its own untyped errors
        raise ScorerError(f"not a loadable ONNX model: {exc}") from exc


class ImageClassifierScorer(OnnxModel):
    """Per-category probabilities for a batch of RGB images (see the module doc)."""

    kind = "onnx"

    def __init__(self, model_bytes: bytes, name: str, version: str,
                 feature_names: Sequence[str] = FEATURE_NAMES,
                 categories: Sequence[str] | None = None,
                 providers: Sequence[str] | None = None, *, threads: int = 1) -> None:
        self.name, self.version = name, version
        self._bytes = bytes(model_bytes)
        self._session = session_for(self._bytes, providers, threads)
        meta = self._session.get_modelmeta().custom_metadata_map
        if categories is None and CATEGORIES_METADATA_KEY in meta:
            categories = json.loads(meta[CATEGORIES_METADATA_KEY])
        self.categories = tuple(categories or ("benign", "nudity", "violence"))
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ScorerError(f"{self.model_id}: expected one input, got {len(inputs)}")
        self._input = inputs[0]
        self.pixels = len(self._input.shape) == 4
        self.feature_names = () if self.pixels else tuple(feature_names)
        if self.pixels:
            h, w = self._input.shape[2], self._input.shape[3]
            self._hw = (h if isinstance(h, int) else 224, w if isinstance(w, int) else 224)
        else:
            width = self._input.shape[-1]
            if isinstance(width, int) and width != len(self.feature_names):
                raise FeatureMismatchError(f"{self.model_id}: model takes {width} features, "
                                           f"{len(self.feature_names)} names given")
        self._output = self._probability_output()

    @property
    def policy_categories(self) -> tuple[str, ...]:
        return tuple(c for c in self.categories if c not in NEUTRAL)

    def inputs_for(self, images: Sequence[npt.NDArray[np.uint8]]) -> npt.NDArray[np.float32]:
        """The model's input tensor for ``images`` (features, or NCHW pixels)."""
        if not self.pixels:
            return feature_matrix(images)
        h, w = self._hw
        batch = np.stack([np.asarray(Image.fromarray(im).resize((w, h)), np.float32)
                          for im in images]) if images else np.zeros((0, h, w, 3), np.float32)
        return np.ascontiguousarray(batch.transpose(0, 3, 1, 2) / 255.0, dtype=np.float32)

    def probabilities(self, inputs: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
        """``(N, K)`` probabilities of :attr:`categories` for a ready input tensor."""
        if inputs.shape[0] == 0:
            return np.zeros((0, len(self.categories)))
        (out,) = self._session.run([self._output], {self._input.name: inputs})
        probs = np.asarray(out, dtype=np.float64).reshape(inputs.shape[0], -1)
        if probs.shape[1] != len(self.categories):
            raise ScorerError(f"{self.model_id}: {probs.shape[1]} outputs for categories "
                              f"{self.categories}")
        return np.clip(probs, 0.0, 1.0)

    def score_images(self, images: Sequence[npt.NDArray[np.uint8]]
                     ) -> list[dict[str, float]]:
        """Per image, ``{category: probability}`` of the policy categories."""
        return self.category_scores(self.probabilities(self.inputs_for(images)))

    def category_scores(self, probs: npt.NDArray[np.float64]) -> list[dict[str, float]]:
        keep = [(i, c) for i, c in enumerate(self.categories) if c not in NEUTRAL]
        return [{c: float(row[i]) for i, c in keep} for row in probs]

    # -- the Scorer protocol (feature matrices) -----------------------------------------
    def score(self, X: Any) -> Scores:
        if self.pixels:
            raise ScorerError(f"{self.model_id} takes pixels: use score_images")
        probs = self.probabilities(check_matrix(X, self.feature_names))
        neutral = [i for i, c in enumerate(self.categories) if c in NEUTRAL]
        safe = probs[:, neutral].sum(axis=1) if neutral else np.zeros(probs.shape[0])
        return np.asarray(np.clip(1.0 - safe, 0.0, 1.0), dtype=np.float64)

    def learn(self, X: Any, y: Any) -> None:
        """Static model: checks its arguments and learns nothing (retrain offline)."""
        check_labels(y, check_matrix(X, self.feature_names).shape[0])

    def to_bytes(self) -> bytes:
        return self._bytes

    @classmethod
    def from_bytes(cls, data: bytes, *, name: str, version: str,
                   feature_names: Sequence[str] = FEATURE_NAMES,
                   categories: Sequence[str] | None = None,
                   providers: Sequence[str] | None = None,
                   threads: int = 1) -> ImageClassifierScorer:
        return cls(data, name, version, feature_names or FEATURE_NAMES, categories,
                   providers, threads=threads)

    def __repr__(self) -> str:
        return f"ImageClassifierScorer({self.model_id!r}, categories={self.categories})"

    def _probability_output(self) -> str:
        outputs = self._session.get_outputs()
        names = [o.name for o in outputs]
        if "probabilities" in names:
            return "probabilities"
        tensors = [o.name for o in outputs if o.type.startswith("tensor(float")
                   or o.type.startswith("tensor(double")]
        if not tensors:
            raise ScorerError(f"{self.model_id}: no probability tensor in {names}")
        return tensors[-1]
