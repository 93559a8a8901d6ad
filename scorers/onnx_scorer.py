"""Batch scoring with an ONNX model in onnxruntime.

Meant for binary classifiers exported from gradient-boosted trees (LightGBM through
onnxmltools with ``zipmap=False``), but reads the usual output shapes: a probability
tensor ``(n, 2)``, ``(n, 1)`` or ``(n,)``, or a ZipMap (a list of ``{label: p}`` dicts).

One intra-op thread by default (``threads=``): a worker process scores batches between
other work. Measured on the 2-core box, 200 trees x 31 leaves, 20 features: one row
~15 us; 1,000 rows ~5.3 ms on one thread, ~3.0 ms on two. The CUDA
provider is tried first when this onnxruntime has it; note that onnxruntime places
operators without a CUDA kernel (the ``ai.onnx.ml`` tree ensembles among them) on the CPU,
so for GBDT models the CPU does the work either way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from scorers.base import Scores, check_labels, check_matrix, model_id
from scorers.errors import FeatureMismatchError, ScorerError

__all__ = ["FEATURE_NAMES_METADATA_KEY", "OnnxModel", "OnnxScorer", "default_providers"]

#: ``metadata_props`` key under which an exported model may carry its feature names
#: (a JSON list); when present, :class:`OnnxScorer` checks them against its own.
FEATURE_NAMES_METADATA_KEY = "techshop.feature_names"


def default_providers() -> list[str]:
    """CUDA first when this onnxruntime build offers it, the CPU always."""
    available = ort.get_available_providers()
    chosen = ["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []
    return [*chosen, "CPUExecutionProvider"]


class OnnxModel:
    """What a scorer around one onnxruntime session (``_session``) has in common: the
    model id of its ``name`` and ``version``, and the providers the session uses."""

    name: str
    version: str
    _session: ort.InferenceSession

    @property
    def model_id(self) -> str:
        return model_id(self.name, self.version)

    @property
    def providers(self) -> list[str]:
        """The execution providers the session actually uses, in priority order."""
        return list(self._session.get_providers())


class OnnxScorer(OnnxModel):
    """A static scorer around one ONNX binary classifier.

    ``providers`` overrides :func:`default_providers`; ``threads`` is onnxruntime's
    intra-op thread count (inter-op is always 1, execution sequential).

    ``score`` returns the probability of the positive class (label 1 / ``True``) as
    float64; ``learn`` does nothing (retraining publishes a new version instead).
    """

    kind = "onnx"

    def __init__(
        self,
        model_bytes: bytes,
        name: str,
        version: str,
        feature_names: Sequence[str],
        providers: Sequence[str] | None = None,
        *,
        threads: int = 1,
    ) -> None:
        self.name = name
        self.version = version
        self.feature_names = tuple(feature_names)
        self._bytes = bytes(model_bytes)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self._session = ort.InferenceSession(
                self._bytes,
                sess_options=options,
                providers=list(providers) if providers is not None else default_providers(),
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise ScorerError(
                f"{model_id(name, version)}: not a loadable ONNX model: {exc}"
            ) from exc
        self._check_metadata()
        inputs = self._session.get_inputs()
        if len(inputs) != 1:
            raise ScorerError(f"{self.model_id}: expected one input, got {len(inputs)}")
        self._input = inputs[0].name
        width = inputs[0].shape[-1] if inputs[0].shape else None
        if isinstance(width, int) and width != len(self.feature_names):
            raise FeatureMismatchError(
                f"{self.model_id}: model takes {width} features, "
                f"{len(self.feature_names)} feature names given"
            )
        self._output, self._zipmap = self._probability_output()

    def score(self, X: Any) -> Scores:
        matrix = check_matrix(X, self.feature_names)
        if matrix.shape[0] == 0:
            return np.zeros(0, dtype=np.float64)
        (out,) = self._session.run([self._output], {self._input: matrix})
        if self._zipmap:
            probs = np.array([_positive(row) for row in out], dtype=np.float64)
        else:
            arr = np.asarray(out, dtype=np.float64)
            probs = arr[:, -1] if arr.ndim == 2 else arr.reshape(-1)
        return np.clip(probs, 0.0, 1.0)

    def learn(self, X: Any, y: Any) -> None:
        """Static model: checks its arguments and learns nothing."""
        check_labels(y, check_matrix(X, self.feature_names).shape[0])

    def to_bytes(self) -> bytes:
        """The ONNX model, byte for byte as given."""
        return self._bytes

    @classmethod
    def from_bytes(
        cls,
        data: bytes,
        *,
        name: str,
        version: str,
        feature_names: Sequence[str],
        providers: Sequence[str] | None = None,
        threads: int = 1,
    ) -> OnnxScorer:
        return cls(data, name, version, feature_names, providers=providers, threads=threads)

    def __repr__(self) -> str:
        return f"OnnxScorer({self.model_id!r}, features={len(self.feature_names)})"

    def _check_metadata(self) -> None:
        meta = self._session.get_modelmeta().custom_metadata_map
        declared = meta.get(FEATURE_NAMES_METADATA_KEY)
        if declared is not None and tuple(json.loads(declared)) != self.feature_names:
            raise FeatureMismatchError(
                f"{self.model_id}: the model was exported for features {declared}, "
                f"not {list(self.feature_names)}"
            )

    def _probability_output(self) -> tuple[str, bool]:
        outputs = self._session.get_outputs()
        by_name = {o.name: o for o in outputs}
        if "probabilities" in by_name:
            chosen = by_name["probabilities"]
        else:
            tensors = [
                o
                for o in outputs
                if o.type.startswith("tensor(float") or o.type.startswith("tensor(double")
            ]
            maps = [o for o in outputs if o.type.startswith("seq(map(")]
            if not tensors and not maps:
                raise ScorerError(
                    f"{self.model_id}: no probability output in "
                    f"{[(o.name, o.type) for o in outputs]}"
                )
            chosen = (tensors or maps)[-1]
        return chosen.name, chosen.type.startswith("seq(map(")


def _positive(row: dict[Any, float]) -> float:
    """The positive class's probability from one ZipMap entry."""
    for key in (1, True, "1", "True", "true"):
        if key in row:
            return float(row[key])
    return float(row[max(row)])
