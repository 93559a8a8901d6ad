"""The recommendations pipeline: every clickstream event -> a fresh top-K for its user.

Pure, Faust-free modules: :mod:`.state` (per-user, per-item and per-category state, and
the item-keyed signals a batch of events contributes), :mod:`.candidates` (the catalog
index, candidate generation and the ranker's features), :mod:`.decide` (the batch
function the agent and :mod:`replay.recommend_backtest` both call).
"""
