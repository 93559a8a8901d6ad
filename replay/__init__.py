"""TechShop Streams: replay — history through the code that decides in production.

* :mod:`replay.generator` — deterministic synthetic traffic; :mod:`replay.live` puts it
  onto a running stack.
* :mod:`replay.sources` — topic ranges and export files (JSON lines, Avro containers);
  :mod:`replay.copy` — ``techshop replay`` (a range into a prefixed namespace).
* :mod:`replay.backtest` — ``techshop backtest fraud|recommend|moderation``: the
  pipelines' pure decision functions in process, several models side by side, labels
  with their delays, consistency with the published decisions.
* :mod:`replay.report` — the backtests' JSON and self-contained HTML reports.
* :mod:`replay.fraud_backtest`, :mod:`replay.recommend_backtest` — bootstrap training and
  synthetic quality checks.
"""
