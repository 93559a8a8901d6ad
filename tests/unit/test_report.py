"""Backtest reports: JSON and a self-contained HTML page whose figures are the JSON's."""

from __future__ import annotations

import doctest
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

import replay.progress
import replay.report.svg
import replay.sources
from agents.fraud.decide import Thresholds
from replay.backtest.fraud import (
    Variant,
    collect_labels,
    compare_published,
    ground_truth,
    run_fraud,
)
from replay.backtest.recommend import RecVariant, run_recommend
from replay.fraud_backtest import labelled_transactions
from replay.report import render, write_report
from replay.report.fraud import fraud_report
from replay.report.recommend import recommend_report
from tests.helpers import clickstream


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.plots: dict[str, int] = {}
        self.figures: dict[str, str] = {}
        self.tags: set[str] = set()
        self._plot: str | None = None
        self._figure: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "svg" and a.get("data-plot"):
            self._plot = a["data-plot"]
            self.plots[self._plot or ""] = 0
        if self._plot and (tag, a.get("class")) in (("path", "series"), ("rect", "bar")):
            self.plots[self._plot] += 1
        if a.get("data-figure"):
            self._figure = a["data-figure"]
            if a.get("data-value") is not None:
                self.figures[self._figure or ""] = a["data-value"] or ""
                self._figure = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "svg":
            self._plot = None

    def handle_data(self, data: str) -> None:
        if self._figure is not None:
            self.figures[self._figure] = data.strip()
            self._figure = None


def test_doctests() -> None:
    for module in (replay.report.svg, replay.sources, replay.progress):
        failed, tried = doctest.testmod(module)
        assert tried and not failed, module.__name__


def _fraud_report() -> dict:
    txns, y, _ = labelled_transactions(4, 4000, start_ts_ms=1_765_000_000_000)
    variants = [Variant("rules@1", "rules@1", None, Thresholds(0.5, 0.8), "rules default"),
                Variant("rules 0.3/0.8", "rules@1", None, Thresholds(0.3, 0.8), "argument")]
    run = run_fraud(txns, variants)
    labels = collect_labels({"txn_id": t["txn_id"], "is_fraud": True, "ts": t["ts"] + 5000}
                            for t, f in zip(txns, y, strict=True) if f)
    published = [{"txn_id": t, "decision": d, "score": s, "model": "rules@1"}
                 for t, d, s in zip(run.txn_ids, run.decisions["rules@1"],
                                    run.scores["rules@1"], strict=True)]
    published[3] = {**published[3], "decision": "DECLINE"}
    return fraud_report(run, ground_truth(run, labels, 7 * 86_400_000), labels,
                        data={"source": "synthetic <seed 4>"},
                        consistency=compare_published(run, published))


def test_fraud_report_page_has_every_plot_per_model_and_the_json_figures(
        tmp_path: Path) -> None:
    report = _fraud_report()
    json_path, html_path = write_report(report, tmp_path / "r")
    loaded = json.loads(json_path.read_text())
    assert [m["label"] for m in loaded["models"]] == ["rules@1", "rules 0.3/0.8"]
    text = html_path.read_text()
    page = Page()
    page.feed(text)
    for label in ("rules@1", "rules 0.3/0.8"):
        assert page.plots[f"thresholds:{label}"] == 3  # recall, FPR, precision
        assert page.plots[f"histogram:{label}"] == 2  # fraud, legitimate
    assert page.plots["pr"] == 2 and page.plots["cost"] == 2
    for m in loaded["models"]:
        label = m["label"]
        assert page.figures[f"fraud.{label}.recall"] == f"{100 * m['recall']:.2f} %"
        assert page.figures[f"fraud.{label}.outcome.REVIEW"] == f"{m['outcomes']['REVIEW']:,}"
        for who in ("fraud", "legit"):
            for o, n in m["confusion"][who].items():
                assert page.figures[f"fraud.{label}.confusion.{who}.{o}"] == f"{n:,}"
    assert page.figures["consistency.differing"] == "1"
    assert 'class="difference"' in text and report["consistency"]["differences"][0][
        "txn_id"] in text
    # self-contained: no script, no stylesheet link, no address but the SVG namespace
    assert not {"script", "link", "img", "iframe"} & page.tags
    assert set(re.findall(r"https?://[^\s\"'<>]+", text)) <= {"http://www.w3.org/2000/svg"}
    assert "synthetic &lt;seed 4&gt;" in text  # escaped


def test_recommend_report_page(tmp_path: Path) -> None:
    catalog, clicks = clickstream(2, 2000, n_items=300, n_users=300)
    run = run_recommend(clicks, catalog, RecVariant("heuristic", None), k=5)
    report = recommend_report([run], n_catalog=len(catalog),
                              data={"source": "synthetic", "accepted": len(clicks)})
    _, html_path = write_report(report, tmp_path)
    page = Page()
    page.feed(html_path.read_text())
    assert page.plots["hit_rate_at_k"] == 2 and page.plots["ndcg_at_k"] == 2
    assert page.plots["coverage"] == 2
    assert page.figures["recommend.heuristic.hit_rate"] == f"{report['models'][0]['hit_rate']:.4f}"
    assert "recommend.popularity baseline.ndcg" in page.figures


def test_unknown_pipeline_has_no_page() -> None:
    with pytest.raises(ValueError, match="moderationx"):
        render({"pipeline": "moderationx", "models": [], "data": {}})
