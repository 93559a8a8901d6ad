"""Settings: defaults, TECHSHOP_* variables, frozen, secrets, client configs, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest

from streams.errors import ConfigError
from streams.settings import Settings, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No TECHSHOP_* variable of the calling shell leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("TECHSHOP_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = Settings()
    assert s.embedded is True
    assert (s.web_host, s.web_port) == ("127.0.0.1", 6066)
    assert s.data_dir == Path(".techshop")
    assert s.topic_prefix == ""
    assert s.bootstrap_servers == "127.0.0.1:9092"
    assert s.registry_url == "http://127.0.0.1:8081"
    assert s.serving_redis_url == "redis://127.0.0.1:6379/0"
    assert (s.max_record_bytes, s.max_future_ms) == (256 * 1024, 3_600_000)
    assert s.dedup_ttl_ms == 24 * 3_600_000
    assert s.fraud_label_window_ms == 7 * 24 * 3_600_000
    assert (s.recs_view_refresh_ms, s.recs_k) == (1_000, 10)
    assert s.image_max_bytes == 20 * 1024 * 1024
    assert s.upload_roots == ((Path(".techshop") / "uploads").resolve(),)
    assert s.app_id == "techshop-streams"


def test_environment_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TECHSHOP_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("TECHSHOP_SCHEMA_REGISTRY_URL", "http://sr:8081")
    monkeypatch.setenv("TECHSHOP_REDIS_URL", "redis://cache:6379/2")
    monkeypatch.setenv("TECHSHOP_TOPIC_PREFIX", "p.")
    monkeypatch.setenv("TECHSHOP_WEB_HOST", "0.0.0.0")
    monkeypatch.setenv("TECHSHOP_WEB_PORT", "7000")
    monkeypatch.setenv("TECHSHOP_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("techshop_recs_k", "25")  # names are case-insensitive
    s = Settings()
    assert s.embedded is False
    assert s.bootstrap_servers == "k1:9092,k2:9092"
    assert s.registry_url == "http://sr:8081"
    assert s.serving_redis_url == "redis://cache:6379/2"
    assert s.topic_prefix == "p."
    assert s.app_id == "p.techshop-streams"
    assert (s.web_host, s.web_port) == ("0.0.0.0", 7000)
    assert s.data_dir == tmp_path
    assert s.recs_k == 25


def test_blank_location_means_embedded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TECHSHOP_KAFKA_BOOTSTRAP_SERVERS", "  ")
    monkeypatch.setenv("TECHSHOP_SCHEMA_REGISTRY_URL", "")
    s = Settings()
    assert s.embedded is True and s.kafka_bootstrap_servers is None
    assert s.schema_registry_url is None


def test_frozen() -> None:
    s = Settings()
    with pytest.raises(pydantic.ValidationError):
        s.web_port = 1  # type: ignore[misc]
    assert s.web_port == 6066


def test_secrets_do_not_leak(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TECHSHOP_KAFKA_SASL_PASSWORD", "hunter2-kafka")
    monkeypatch.setenv("TECHSHOP_SCHEMA_REGISTRY_PASSWORD", "hunter2-registry")
    s = Settings()
    for text in (repr(s), str(s), repr(s.model_dump()), s.model_dump_json()):
        assert "hunter2" not in text
    assert s.kafka_sasl_password is not None
    assert s.kafka_sasl_password.get_secret_value() == "hunter2-kafka"


def test_kafka_client_config_plain() -> None:
    assert Settings().kafka_client_config() == {
        "bootstrap.servers": "127.0.0.1:9092",
        "security.protocol": "plaintext",
    }


def test_kafka_client_config_sasl_ssl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "broker:9093",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "svc",
        "KAFKA_SASL_PASSWORD": "s3cret",
        "KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem"),
        "KAFKA_SSL_CERTFILE": str(tmp_path / "cert.pem"),
        "KAFKA_SSL_KEYFILE": str(tmp_path / "key.pem"),
    }
    for name, value in env.items():
        monkeypatch.setenv(f"TECHSHOP_{name}", value)
    assert Settings().kafka_client_config() == {
        "bootstrap.servers": "broker:9093",
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "svc",
        "sasl.password": "s3cret",
        "ssl.ca.location": str(tmp_path / "ca.pem"),
        "ssl.certificate.location": str(tmp_path / "cert.pem"),
        "ssl.key.location": str(tmp_path / "key.pem"),
    }


def test_registry_client_config(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().registry_client_config() == {"url": "http://127.0.0.1:8081"}
    monkeypatch.setenv("TECHSHOP_SCHEMA_REGISTRY_URL", "https://sr.example:443")
    monkeypatch.setenv("TECHSHOP_SCHEMA_REGISTRY_USERNAME", "key")
    assert Settings().registry_client_config() == {"url": "https://sr.example:443"}
    monkeypatch.setenv("TECHSHOP_SCHEMA_REGISTRY_PASSWORD", "secret")
    assert Settings().registry_client_config() == {
        "url": "https://sr.example:443",
        "basic.auth.user.info": "key:secret",
    }


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TECHSHOP_WEB_PORT", "abc"),
        ("TECHSHOP_WEB_PORT", "70000"),
        ("TECHSHOP_TOPIC_PREFIX", "bad prefix!"),
        ("TECHSHOP_KAFKA_SECURITY_PROTOCOL", "carrier-pigeon"),
        ("TECHSHOP_MAX_RECORD_BYTES", "10"),
    ],
)
def test_bad_value_is_one_line_config_error(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{name}:")
    assert repr(value) in message
    assert caught.value.__cause__ is None  # `from None`: no pydantic dump below it


def test_load_settings_overrides() -> None:
    s = load_settings(broker_port=19092)
    assert s.bootstrap_servers == "127.0.0.1:19092"
    with pytest.raises(ConfigError, match="^TECHSHOP_REGISTRY_PORT:"):
        load_settings(registry_port=0)


def test_fetch_wait_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings()
    assert (s.fetch_wait_ms(tansu=True), s.fetch_wait_ms(tansu=False)) == (10, 500)
    monkeypatch.setenv("TECHSHOP_CONSUMER_FETCH_WAIT_MS", "0")
    s = Settings()
    assert (s.fetch_wait_ms(tansu=True), s.fetch_wait_ms(tansu=False)) == (0, 0)


def test_image_roots(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TECHSHOP_IMAGE_ROOTS", f"{tmp_path / 'a'}, {tmp_path / 'b'}")
    assert Settings().upload_roots == ((tmp_path / "a").resolve(), (tmp_path / "b").resolve())
    # a blank entry (stray comma or space) is not the current directory
    monkeypatch.setenv("TECHSHOP_IMAGE_ROOTS", f"{tmp_path / 'a'}, ,")
    assert Settings().upload_roots == ((tmp_path / "a").resolve(),)
