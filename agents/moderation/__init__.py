"""Image moderation: safe loading, a classifier → text detector → OCR pipeline of ONNX
stages run in micro-batches, per-category thresholds, and the human review loop.

``loading`` (URI → pixels or a reason), ``features`` (the stages over a batch),
``decide`` (pure decisions), ``feedback`` (verdicts → examples, verdict memory,
recalibration), ``thresholds`` (the recalibrating trainer), ``models`` (the stages a
worker holds), ``agent`` (the Faust adapter), ``metrics``. See docs/moderation.md.
"""
