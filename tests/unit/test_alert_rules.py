"""The alert rules (deploy/prometheus/alerts.yml) and the Grafana dashboard ask for
metrics the workers really expose, and the rules cover what the issue asks for.

With promtool installed (Debian: ``apt-get install prometheus``) the rules are also
checked and unit-tested by it (deploy/prometheus/alerts_test.yml); without it those two
tests skip and the structure tests here stand in.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from faust.sensors.prometheus import FaustMetrics
from prometheus_client import CollectorRegistry

import agents
from streams.dashboard import PANELS
from streams.metrics import StreamMetrics

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERTS_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "techshop.json"
SEVERITIES = {"critical", "warning"}
DURATION = re.compile(r"^\d+[smhd]$")
SUFFIXES = {"counter": ("_total", "_created"), "gauge": ("",), "info": ("_info",),
            "histogram": ("_bucket", "_count", "_sum", "_created"),
            "summary": ("", "_count", "_sum", "_created")}


def _sample_names(registry: CollectorRegistry) -> set[str]:
    return {family.name + suffix for family in registry.collect()
            for suffix in SUFFIXES.get(family.type, ("",))}


def exposed_names() -> set[str]:
    """Every series name a worker can expose: ours, each pipeline's, Faust's sensor's."""
    registry = CollectorRegistry()
    StreamMetrics.create(registry)
    FaustMetrics.create(registry, "techshop_faust")
    for package in pkgutil.iter_modules(agents.__path__):
        try:
            module = importlib.import_module(f"agents.{package.name}.metrics")
        except ModuleNotFoundError:
            continue
        for value in vars(module).values():
            if (isinstance(value, type) and value.__module__ == module.__name__
                    and hasattr(value, "create")):
                value.create(registry)
    return _sample_names(registry)


def declared_names() -> set[str]:
    """Names the dashboard's panels declare for pipelines (built or not yet)."""
    names = set()
    for panel in PANELS:
        names |= {panel.latency_metric + s for s in ("_bucket", "_count", "_sum")}
        names |= {panel.decisions_metric, panel.model_info_metric, panel.drift_metric}
    return names


def metric_names(expr: str) -> tuple[set[str], set[str]]:
    """(metric names, ``__name__`` regexes) a PromQL expression refers to."""
    regexes = set(re.findall(r'__name__\s*=~\s*"([^"]+)"', expr))
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    return set(re.findall(r"\b(techshop_[a-z0-9_]+|up)\b", bare)) - {"up"}, regexes


@pytest.fixture(scope="module")
def rules() -> list[dict[str, Any]]:
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in data["groups"] for rule in group["rules"]]


@pytest.fixture(scope="module")
def known() -> set[str]:
    return exposed_names() | declared_names()


def _flat(expr: str) -> str:
    return " ".join(expr.split())


def test_every_rule_is_complete(rules: list[dict[str, Any]]) -> None:
    data = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    groups = [group["name"] for group in data["groups"]]
    assert len(groups) == len(set(groups))
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), "alert names are unique"
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), rule["alert"]
        assert DURATION.match(str(rule.get("for", ""))), f"{rule['alert']}: for"
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]


def test_every_metric_in_the_rules_exists(rules: list[dict[str, Any]], known: set[str]) -> None:
    for rule in rules:
        names, regexes = metric_names(rule["expr"])
        assert names <= known, f"{rule['alert']}: unknown {sorted(names - known)}"
        for regex in regexes:
            assert any(re.fullmatch(regex, name) for name in known), (rule["alert"], regex)


def test_rules_cover_what_the_issue_asks(rules: list[dict[str, Any]]) -> None:
    exprs = {rule["alert"]: _flat(rule["expr"]) for rule in rules}
    joined = " ".join(exprs.values())
    assert 'up{job="techshop-worker"} == 0' in joined, "worker down"
    for panel in PANELS:  # latency over the service level, per pipeline
        bucket = f"rate({panel.latency_metric}_bucket[5m])"
        matching = [e for e in exprs.values() if "histogram_quantile(0.99" in e and bucket in e]
        assert matching, f"no latency alert for {panel.name}"
        threshold = float(re.findall(r">\s*([0-9.]+)\s*$", matching[0])[0])
        assert threshold == panel.slo_s, panel.name
    decline = [e for e in exprs.values() if 'outcome="DECLINE"' in e]
    assert decline and any("[6h]" in e for e in decline), "fraud decline rate spike"
    assert "rate(techshop_dead_letters_total[5m]) > 0" in joined, "dead letters"
    assert any("techshop_dead_letters_total" in e and "techshop_events_in_total" in e
               for e in exprs.values()), "dead-letter rate"
    assert any("drift_state" in e for e in exprs.values()), "drift event"
    assert any("deriv(" in e and "techshop_faust_topic_partition_end_offset" in e
               for e in exprs.values()), "consumer lag growing"


def test_grafana_dashboard_queries_known_metrics(known: set[str]) -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    used: set[str] = set()
    for panel in panels:
        for target in panel["targets"]:
            names, regexes = metric_names(target["expr"])
            assert names <= known, f"{panel['title']}: unknown {sorted(names - known)}"
            for regex in regexes:
                assert any(re.fullmatch(regex, name) for name in known), (panel["title"], regex)
            used |= names
    for panel in PANELS:
        assert {f"{panel.latency_metric}_bucket", panel.decisions_metric,
                panel.model_info_metric} <= used, panel.name
    assert "techshop_faust_consumer_commit_latency_bucket" in used


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus); "
                    "the structure tests above stand in")
    return path


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(ALERTS)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fire_the_alerts() -> None:
    result = subprocess.run([_promtool(), "test", "rules", str(ALERTS_TEST)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
