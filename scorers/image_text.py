"""Text in images: a region detector stage and an OCR stage, both ONNX in onnxruntime
sessions on the providers we choose, batched; and the marketplace text policy.

The default models are the PP-OCRv4 detector (DB) and recogniser (CTC) that the
``rapidocr-onnxruntime`` package ships (Apache-2.0): read from the installed package,
never downloaded. We run them in our own sessions rather than through RapidOCR's
classes so that (a) the providers are ours (CUDA/TensorRT when present, CPU otherwise),
and (b) a micro-batch is one detector run (images letterboxed onto one square canvas)
and one recogniser run for its crops, not one run per image. ``chunk`` bounds the
images (crops) per run: the whole batch on a GPU, one on the CPU, where batching was
measured slower per image (see :func:`default_chunk`). Only
RapidOCR's pure post-processing (``DBPostProcess``, ``CTCLabelDecode``) is reused.

Any ONNX model with the same input/output layout (DB-style probability map; CTC
logits with a ``character`` list in its metadata, or given) can take either place.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from scorers.errors import ScorerError
from scorers.image_classifier import session_for

__all__ = ["BANNED_TERMS", "TEXT_CATEGORIES", "TextDetector", "TextLine", "TextPolicy",
           "TextRecognizer", "crop", "default_chunk", "rapidocr_model_path"]

TEXT_CATEGORIES = ("text_contact_info", "text_banned_words")
Box = npt.NDArray[np.float32]  # (4, 2) corners, clockwise from top-left
RgbArray = npt.NDArray[np.uint8]


def default_chunk(providers: Sequence[str]) -> int:
    """Images (or crops) per inference: a whole micro-batch on a GPU; one on the CPU,
    where batching these convolutional models was measured slower per image (padding,
    cache): 46 ms/image at 1, 69 ms at 16 for the detector on the 2-core box."""
    gpu = {"CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider"}
    return 32 if gpu & set(providers) else 1


def rapidocr_model_path(which: str) -> Path:
    """The ONNX file ``rapidocr-onnxruntime`` ships for ``"det"`` or ``"rec"``."""
    import rapidocr_onnxruntime

    folder = Path(rapidocr_onnxruntime.__file__).parent / "models"
    found = sorted(folder.glob(f"*_{which}_infer.onnx"))
    if not found:
        raise ScorerError(f"rapidocr-onnxruntime ships no {which} model in {folder}")
    return found[-1]


class TextDetector:
    """Text regions of a batch of images in one inference.

    Each image is scaled so that its longer side is ``side`` (a multiple of 32) and
    placed at the top-left of a ``side`` x ``side`` canvas; boxes come back in the
    image's own pixel coordinates."""

    name = "text_detector"

    def __init__(self, model: bytes | str | Path | None = None,
                 providers: Sequence[str] | None = None, *, side: int = 480,
                 threads: int = 1, version: str = "ppocrv4", chunk: int = 0) -> None:
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess

        if side % 32:
            raise ScorerError(f"detector side {side} is not a multiple of 32")
        source = model if model is not None else rapidocr_model_path("det")
        self.version = version
        self._session = session_for(source if isinstance(source, bytes) else str(source),
                                    providers, threads)
        self._input = self._session.get_inputs()[0].name
        self.side = side
        self.chunk = chunk or default_chunk(self.providers)
        self._post = DBPostProcess(thresh=0.3, box_thresh=0.5, max_candidates=100,
                                   unclip_ratio=1.6, use_dilation=True, score_mode="fast")

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def detect(self, images: Sequence[RgbArray]) -> list[list[Box]]:
        """Boxes per image; one inference per :attr:`chunk` images."""
        out: list[list[Box]] = []
        for start in range(0, len(images), self.chunk):
            out.extend(self._detect(images[start:start + self.chunk]))
        return out

    def _detect(self, images: Sequence[RgbArray]) -> list[list[Box]]:
        import cv2

        if not images:
            return []
        s = self.side
        canvas = np.zeros((len(images), 3, s, s), dtype=np.float32)
        scaled = []
        for i, im in enumerate(images):
            h, w = im.shape[:2]
            ratio = s / max(h, w)
            nh, nw = max(1, min(s, round(h * ratio))), max(1, min(s, round(w * ratio)))
            bgr = cv2.resize(np.ascontiguousarray(im[..., ::-1]), (nw, nh))
            canvas[i, :, :nh, :nw] = (bgr.astype(np.float32).transpose(2, 0, 1) / 255.0
                                      - 0.5) / 0.5
            scaled.append((nh, nw, h, w))
        (pred,) = self._session.run(None, {self._input: canvas})[:1]
        out: list[list[Box]] = []
        for i, (nh, nw, h, w) in enumerate(scaled):
            boxes, _ = self._post(pred[i:i + 1, :, :nh, :nw], (h, w))
            kept = []
            for box in boxes:
                box = _order(np.asarray(box, dtype=np.float32))
                box[:, 0] = np.clip(box[:, 0], 0, w - 1)
                box[:, 1] = np.clip(box[:, 1], 0, h - 1)
                if np.linalg.norm(box[0] - box[1]) > 3 and np.linalg.norm(box[0] - box[3]) > 3:
                    kept.append(box)
            out.append(sorted(kept, key=lambda b: (float(b[0, 1]), float(b[0, 0]))))
        return out


def _order(pts: Box) -> Box:
    xs = pts[np.argsort(pts[:, 0])]
    left, right = xs[:2][np.argsort(xs[:2, 1])], xs[2:][np.argsort(xs[2:, 1])]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def crop(image: RgbArray, box: Box) -> RgbArray:
    """The (perspective-corrected) crop of one detected box, BGR for the recogniser."""
    import cv2

    w = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    h = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    target = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(box.astype(np.float32), target)
    out = cv2.warpPerspective(np.ascontiguousarray(image[..., ::-1]), matrix, (max(w, 1),
                              max(h, 1)), borderMode=cv2.BORDER_REPLICATE,
                              flags=cv2.INTER_CUBIC)
    if out.shape[0] >= 1.5 * out.shape[1]:
        out = np.rot90(out)
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class TextLine:
    text: str
    confidence: float


class TextRecognizer:
    """Text of a batch of crops: crops sorted by aspect ratio, padded to the widest of
    each chunk of ``chunk`` crops (height 48), one inference per chunk."""

    name = "ocr"

    def __init__(self, model: bytes | str | Path | None = None,
                 providers: Sequence[str] | None = None, *, chunk: int = 0,
                 threads: int = 1, characters: Sequence[str] | None = None,
                 version: str = "ppocrv4") -> None:
        from rapidocr_onnxruntime.ch_ppocr_rec.utils import CTCLabelDecode

        source = model if model is not None else rapidocr_model_path("rec")
        self.version = version
        self._session = session_for(source if isinstance(source, bytes) else str(source),
                                    providers, threads)
        self._input = self._session.get_inputs()[0].name
        meta = self._session.get_modelmeta().custom_metadata_map
        chars = list(characters) if characters else (
            meta["character"].splitlines() if "character" in meta else None)
        if not chars:
            raise ScorerError("the OCR model carries no character list: give characters=")
        self._decode = CTCLabelDecode(character=chars)
        self.chunk = chunk or default_chunk(self.providers)

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    def recognise(self, crops: Sequence[RgbArray]) -> list[TextLine]:
        import cv2

        out = [TextLine("", 0.0)] * len(crops)
        order = np.argsort([c.shape[1] / max(1, c.shape[0]) for c in crops])
        for start in range(0, len(crops), self.chunk):
            idx = order[start:start + self.chunk]
            ratio = max(320 / 48, *(crops[i].shape[1] / max(1, crops[i].shape[0]) for i in idx))
            width = min(int(48 * ratio), 48 * 40)
            batch = np.zeros((len(idx), 3, 48, width), dtype=np.float32)
            for j, i in enumerate(idx):
                c = crops[i]
                rw = min(width, max(1, int(np.ceil(48 * c.shape[1] / max(1, c.shape[0])))))
                resized = cv2.resize(c, (rw, 48)).astype(np.float32)
                batch[j, :, :, :rw] = (resized.transpose(2, 0, 1) / 255.0 - 0.5) / 0.5
            (preds,) = self._session.run(None, {self._input: batch})[:1]
            for j, (text, conf) in enumerate(self._decode(preds)):
                out[int(idx[j])] = TextLine(str(text), float(conf))
        return out


# -- the policy ------------------------------------------------------------------------

#: Banned terms (lower case; matched on normalised text, tolerant of OCR slips).
BANNED_TERMS = ("replica", "fake", "counterfeit", "no prescription", "prescription needed",
                "cracked software", "fake id", "buy followers", "stolen goods",
                "guns for sale")
_PHONE = re.compile(r"(?:\+?\d[\d\s().-]{6,}\d)")
_URL = re.compile(r"(?:https?://|www\.)\S+|\b[\w-]+\.(?:com|net|org|biz|info|shop|io|co)\b",
                  re.I)
_EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.]+\b")
_HANDLE = re.compile(r"(?:^|\s)@\w{3,}")
_LOOKALIKE = str.maketrans("015384", "oiseba")
_APPS = ("whatsapp", "telegram", "wechat", "signal", "call now", "text me", "dm ")


class TextPolicy:
    """Recognised lines → ``{text_contact_info, text_banned_words}`` in [0, 1] (the
    strength of the best match times the line's OCR confidence) and the reasons.

    >>> policy = TextPolicy()
    >>> scores, reasons = policy.judge([TextLine("Call 555-0142", 0.95)])
    >>> round(scores["text_contact_info"], 2), reasons
    (0.95, ['text_contact_info:phone'])
    >>> policy.judge([TextLine("Free shipping", 0.99)])[0]["text_banned_words"]
    0.0
    """

    def __init__(self, banned: Sequence[str] = BANNED_TERMS, fuzzy: float = 0.8) -> None:
        self.banned = tuple(b.lower() for b in banned)
        self.fuzzy = fuzzy

    def judge(self, lines: Sequence[TextLine]) -> tuple[dict[str, float], list[str]]:
        contact, banned = 0.0, 0.0
        reasons: list[str] = []
        for line in lines:
            text = unicodedata.normalize("NFKC", line.text).strip()
            if not text:
                continue
            strength, kind = self._contact(text)
            if strength * line.confidence > contact:
                contact = strength * line.confidence
                reasons = [r for r in reasons if not r.startswith("text_contact_info")]
                reasons.append(f"text_contact_info:{kind}")
            strength, term = self._banned(text)
            if strength * line.confidence > banned:
                banned = strength * line.confidence
                reasons = [r for r in reasons if not r.startswith("text_banned_words")]
                reasons.append(f"text_banned_words:{term}")
        return {"text_contact_info": round(contact, 4), "text_banned_words": round(banned, 4)}, \
            reasons

    @staticmethod
    def _contact(text: str) -> tuple[float, str]:
        lower = text.lower()
        if _EMAIL.search(text):
            return 1.0, "email"
        for match in _PHONE.finditer(text):
            if sum(ch.isdigit() for ch in match.group()) >= 7:
                return 1.0, "phone"
        if _URL.search(text):
            return 1.0, "url"
        if _HANDLE.search(text):
            return 0.9, "handle"
        if any(app in lower + " " for app in _APPS):
            return 0.6, "messaging"
        digits = sum(ch.isdigit() for ch in text)
        return (0.4, "digits") if digits >= 6 else (0.0, "")

    def _banned(self, text: str) -> tuple[float, str]:
        # OCR drops spaces and confuses digits with letters: compare without spaces,
        # as read and with look-alike digits mapped to letters.
        squeezed = re.sub(r"[^a-z0-9%]+", "", text.lower())
        variants = (squeezed, squeezed.translate(_LOOKALIKE))
        best, which = 0.0, ""
        for term in self.banned:
            target = term.replace(" ", "")
            for seen in variants:
                if target in seen:
                    return 1.0, term
                n = len(target)
                for k in range(max(1, len(seen) - n + 1)):
                    ratio = difflib.SequenceMatcher(None, seen[k:k + n], target).ratio()
                    if ratio > best:
                        best, which = ratio, term
        return (best, which) if best >= self.fuzzy else (0.0, "")

def text_stage_meta(detector: Any, recognizer: Any) -> dict[str, str]:
    """Model ids of the text stages, for decisions and metrics."""
    return {"detector": f"{detector.name}@{detector.version}",
            "ocr": f"{recognizer.name}@{recognizer.version}"}
