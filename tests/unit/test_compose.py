"""The Kafka deployment profile, checked without Docker.

``docker-compose.kafka.yml``, the ``Dockerfile`` and ``deploy/`` (Prometheus, alert
rules, Grafana) are parsed and cross-checked against the code: every ``TECHSHOP_*``
variable given to our containers is a real setting with a valid value, every file
mounted from the repository exists, every alert and panel queries Prometheus.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from streams.dashboard import PANELS
from streams.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.kafka.yml"
DOCKERFILE = ROOT / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "techshop.json"

PREFIX = "TECHSHOP_"
SETTINGS_VARS = {PREFIX + name.upper() for name in Settings.model_fields}
IMAGE = "techshop-streams"
PIPELINES = ("fraud", "recommend", "moderation")


# --- helpers -------------------------------------------------------------------------
def _yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = _yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)


def _environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping (compose allows a mapping or KEY=VALUE list)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {key: "" if value is None else str(value) for key, value in env.items()}


def _is_ours(service: dict[str, Any]) -> bool:
    """Services that run our image (built from this repository)."""
    return "build" in service or str(service.get("image", "")).startswith(IMAGE)


def _our_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    ours = {name: svc for name, svc in services.items() if _is_ours(svc)}
    assert {"worker", "worker-gpu", "generator"} <= set(ours)
    return ours


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host source, container target) of each bind mount from a relative path."""
    mounts = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, dict):
            if volume.get("type") == "bind":
                mounts.append((volume["source"], volume["target"]))
            continue
        parts = volume.split(":")
        if len(parts) >= 2 and parts[0].startswith((".", "/")) and parts[0] != "/data":
            mounts.append((parts[0], parts[1]))
    return mounts


def _mount_target_of(services: dict[str, dict[str, Any]], service: str, source: str) -> str:
    for host, target in _bind_mounts(services[service]):
        if (ROOT / host).resolve() == (ROOT / source).resolve():
            return target
    raise AssertionError(f"{source} is not mounted into {service}")


def _balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for char in re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr):
        if char in "([{":
            stack.append(char)
        elif char in pairs and (not stack or stack.pop() != pairs[char]):
            return False
    return not stack


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical, current = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        logical.append(current + stripped)
        current = ""
    out = []
    for line in logical:
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def _dockerfile(instruction: str) -> list[str]:
    return [args for word, args in _dockerfile_instructions() if word == instruction]


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    flat = []
    for panel in dashboard["panels"]:
        flat.extend(panel.get("panels", []))
        if panel.get("type") != "row":
            flat.append(panel)
    return flat


# --- compose ---------------------------------------------------------------------------
def test_compose_declares_the_stack(compose: dict[str, Any]) -> None:
    assert "version" not in compose, "the compose spec has no `version:` key"
    required = {"kafka", "schema-registry", "redis", "worker", "prometheus", "grafana"}
    assert required <= set(compose["services"])


def test_kafka_is_single_node_kraft_with_internal_and_host_listeners(
    services: dict[str, dict[str, Any]],
) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:3.8.0"
    env = _environment(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    advertised = env["KAFKA_ADVERTISED_LISTENERS"]
    assert "PLAINTEXT://kafka:9092" in advertised
    assert "localhost:29092" in advertised
    assert any(str(port).endswith("29092:29092") for port in kafka["ports"])
    assert "healthcheck" in kafka


def test_our_containers_use_only_real_techshop_settings(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in _our_services(services).items():
        env = _environment(service)
        assert env, f"{name} has no environment"
        foreign = sorted(key for key in env if not key.startswith(PREFIX))
        assert not foreign, f"{name}: not a TECHSHOP_* setting: {foreign}"
        unknown = sorted(set(env) - SETTINGS_VARS)
        assert not unknown, f"{name}: no such setting in streams/settings.py: {unknown}"


def test_our_containers_settings_values_are_valid(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, service in _our_services(services).items():
        for key in [k for k in os.environ if k.upper().startswith(PREFIX)]:
            monkeypatch.delenv(key)
        for key, value in _environment(service).items():
            monkeypatch.setenv(key, value)
        settings = Settings(_env_file=None)  # type: ignore[call-arg]
        assert not settings.embedded, f"{name} would start the embedded stack"
        assert settings.kafka_bootstrap_servers == "kafka:9092"
        assert settings.schema_registry_url == "http://schema-registry:8081"
        assert settings.redis_url == "redis://redis:6379/0"
        assert settings.web_host == "0.0.0.0"
        assert str(settings.data_dir) == "/data"


def test_workers_scale_out_and_wait_for_healthy_dependencies(
    services: dict[str, dict[str, Any]],
) -> None:
    worker = services["worker"]
    assert worker["command"] in (["worker"], "worker")
    assert worker["deploy"]["replicas"] >= 2
    assert "container_name" not in worker, "replicas need generated names"
    for dependency in ("kafka", "schema-registry", "redis"):
        assert worker["depends_on"][dependency]["condition"] == "service_healthy"
        assert "healthcheck" in services[dependency]
    assert any(str(v).split(":")[0] == "/data" for v in worker["volumes"])


def test_gpu_worker_and_generator_are_opt_in_profiles(
    services: dict[str, dict[str, Any]], pyproject: dict[str, Any]
) -> None:
    gpu = services["worker-gpu"]
    assert gpu["profiles"] == ["gpu"]
    assert gpu["build"]["args"]["EXTRAS"] == "gpu"
    assert "gpu" in pyproject["project"]["optional-dependencies"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)

    generator = services["generator"]
    assert generator["profiles"] == ["demo"]
    assert generator["command"][0] == "generate"
    assert "--rate" in generator["command"]
    for always_on in ("kafka", "schema-registry", "redis", "worker", "prometheus", "grafana"):
        assert "profiles" not in services[always_on]


def test_files_mounted_or_built_from_the_repo_exist(
    services: dict[str, dict[str, Any]],
) -> None:
    mounted = 0
    for name, service in services.items():
        for host, _target in _bind_mounts(service):
            assert (ROOT / host).exists(), f"{name} mounts missing {host}"
            mounted += 1
        build = service.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            assert context.is_dir()
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile")
            assert (context / (dockerfile or "Dockerfile")).is_file()
    assert mounted >= 4


# --- Dockerfile ------------------------------------------------------------------------
def test_dockerfile_runs_the_techshop_console_script(pyproject: dict[str, Any]) -> None:
    assert "techshop" in pyproject["project"]["scripts"]
    (entrypoint,) = _dockerfile("ENTRYPOINT")
    assert json.loads(entrypoint) == ["techshop"]
    (cmd,) = _dockerfile("CMD")
    assert json.loads(cmd) == ["worker"]
    bases = " ".join(_dockerfile("FROM") + _dockerfile("ARG"))
    assert "python:3.11-slim" in bases
    assert any("6066" in expose.split() for expose in _dockerfile("EXPOSE"))


def test_dockerfile_installs_with_constraints_runs_unprivileged_and_checks_health(
    pyproject: dict[str, Any],
) -> None:
    assert any(a.split("=")[0] == "EXTRAS" for a in _dockerfile("ARG"))
    runs = " ".join(_dockerfile("RUN"))
    assert "pip install -c constraints.txt" in runs
    users = _dockerfile("USER")
    assert users and users[-1] not in ("root", "0")
    (health,) = _dockerfile("HEALTHCHECK")
    assert "/health" in health and "urllib" in health and "curl" not in health
    copied = " ".join(_dockerfile("COPY"))
    for package in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        name = package.rstrip("*")
        assert re.search(rf"\b{re.escape(name)}\b", copied), f"{name}/ is not copied"


def test_dockerfile_environment_is_real_settings() -> None:
    env_names = set()
    for args in _dockerfile("ENV"):
        env_names |= set(re.findall(r"(\w+)=", args))
    ours = {name for name in env_names if name.startswith(PREFIX)}
    assert ours, "the image sets its container defaults"
    assert ours <= SETTINGS_VARS, sorted(ours - SETTINGS_VARS)


# --- Prometheus ------------------------------------------------------------------------
def test_prometheus_scrapes_every_worker_and_loads_the_rules(
    services: dict[str, dict[str, Any]],
) -> None:
    config = _yaml(PROMETHEUS)
    target = _mount_target_of(services, "prometheus", "deploy/prometheus/prometheus.yml")
    assert f"--config.file={target}" in services["prometheus"]["command"]
    rules_target = _mount_target_of(services, "prometheus", "deploy/prometheus/alerts.yml")
    assert rules_target in config["rule_files"]

    port = int(_environment(services["worker"])["TECHSHOP_WEB_PORT"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    workers = [job for job in jobs.values() if job.get("dns_sd_configs")]
    assert workers, "workers are found by Docker DNS service discovery"
    names = {n for job in workers for sd in job["dns_sd_configs"] for n in sd["names"]}
    assert {"worker", "worker-gpu"} & names or "tasks.worker" in names
    for job in workers:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        assert all(sd["port"] == port for sd in job["dns_sd_configs"])


def test_alert_rules_are_complete() -> None:
    rules = [rule for group in _yaml(ALERTS)["groups"] for rule in group["rules"]]
    assert rules
    for rule in rules:
        assert rule.get("alert"), rule
        assert isinstance(rule.get("expr"), str) and _balanced(rule["expr"]), rule["alert"]
        assert rule.get("labels", {}).get("severity"), rule["alert"]
        assert rule.get("annotations", {}).get("summary"), rule["alert"]
    exprs = " ".join(" ".join(rule["expr"].split()) for rule in rules)
    assert "rate(techshop_dead_letters_total[5m]) > 0" in exprs
    assert "techshop_fraud_decision_latency_seconds_bucket" in exprs and "0.3" in exprs
    assert 'up{job="techshop-worker"}' in exprs
    assert "offset" in exprs, "a consumer-lag alert"


# --- Grafana ---------------------------------------------------------------------------
def test_grafana_provisions_the_datasource_and_the_dashboards(
    services: dict[str, dict[str, Any]],
) -> None:
    provisioning = _mount_target_of(services, "grafana", "deploy/grafana/provisioning")
    assert provisioning == "/etc/grafana/provisioning"
    (source,) = _yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"

    dashboards_dir = _mount_target_of(services, "grafana", "deploy/grafana/dashboards")
    (provider,) = _yaml(GRAFANA / "provisioning" / "dashboards" / "dashboards.yml")["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == dashboards_dir


def test_dashboard_queries_prometheus_for_every_figure() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    uid = _yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")["datasources"][0][
        "uid"
    ]
    assert dashboard["uid"] and dashboard["title"]
    panels = _panels(dashboard)
    assert len(panels) >= 5
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exprs = []
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            datasource = target.get("datasource") or panel.get("datasource")
            assert datasource == {"type": "prometheus", "uid": uid}, panel["title"]
            assert _balanced(target["expr"]), target["expr"]
            exprs.append(" ".join(target["expr"].split()))
    joined = " ".join(exprs)
    assert "sum by (topic) (rate(techshop_events_in_total[1m]))" in joined
    assert "sum by (reason) (rate(techshop_dead_letters_total" in joined
    # One row per pipeline of the live dashboard's panels (streams/dashboard.py).
    assert [panel.name for panel in PANELS] == list(PIPELINES)
    for panel in PANELS:
        bucket = f"{panel.latency_metric}_bucket"
        quantiles = {e.split(",")[0] for e in exprs if bucket in e}
        assert quantiles == {"histogram_quantile(0.5", "histogram_quantile(0.99"}, panel.name
        by_outcome = f"sum by ({panel.outcome_label}) (rate({panel.decisions_metric}[1m]))"
        assert by_outcome in joined, panel.name
        assert panel.model_info_metric in joined, panel.name
