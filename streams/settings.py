"""One frozen settings object, read from ``TECHSHOP_*`` environment variables.

The embedded profile is the default; setting ``TECHSHOP_KAFKA_BOOTSTRAP_SERVERS``
selects an outside Kafka (or Kafka-compatible) cluster. Secrets are ``SecretStr`` and
are passed through to the Kafka clients, never logged.

>>> s = Settings(_env_file=None)
>>> s.embedded, s.web_host, s.web_port
(True, '127.0.0.1', 6066)
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.errors import ConfigError

__all__ = ["Settings", "load_settings"]

EMBEDDED_HOST = "127.0.0.1"


class Settings(BaseSettings):
    """Everything configurable; each field is ``TECHSHOP_<FIELD NAME>``."""

    model_config = SettingsConfigDict(
        env_prefix="TECHSHOP_", frozen=True, extra="ignore", case_sensitive=False
    )

    # --- where things are ----------------------------------------------------
    kafka_bootstrap_servers: str | None = None
    schema_registry_url: str | None = None
    schema_registry_username: str | None = None
    schema_registry_password: SecretStr | None = None
    redis_url: str | None = None
    topic_prefix: str = ""
    data_dir: Path = Path(".techshop")
    web_host: str = "127.0.0.1"
    web_port: int = Field(6066, ge=1, le=65535)

    # --- the embedded stack --------------------------------------------------
    broker_port: int = Field(9092, ge=1, le=65535)
    registry_port: int = Field(8081, ge=1, le=65535)
    embedded_redis_port: int = Field(6379, ge=1, le=65535)

    # --- Kafka client security (passed through) ------------------------------
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None

    # --- topics and transport tuning -----------------------------------------
    partitions: int = Field(4, ge=1, le=1024)
    replication_factor: int = Field(1, ge=1)
    #: "exactly_once" needs Kafka transactions (real Kafka only; Tansu has none): outputs
    #: then go through Faust's transactional producer instead of the batched one.
    processing_guarantee: Literal["at_least_once", "exactly_once"] = "at_least_once"
    #: Which broker we talk to: "auto" asks the cluster (Tansu names its cluster
    #: "tansu_cluster"); Tansu needs a short fetch wait and end-offset checks.
    broker_compat: Literal["auto", "kafka", "tansu"] = "auto"
    #: Consumer fetch wait. Tansu answers a waiting fetch only when it runs out
    #: (MEASURED.md), so the embedded default is short; real Kafka answers on arrival.
    consumer_fetch_wait_ms: int | None = Field(None, ge=0, le=10_000)
    #: Producer linger: batches produces (Tansu's CPU climbs with unbatched sends).
    producer_linger_ms: int = Field(5, ge=0, le=10_000)
    session_timeout_s: float = Field(10.0, ge=1.0)
    stream_buffer_maxsize: int = Field(16384, ge=1)
    max_poll_records: int = Field(2000, ge=1)

    # --- validation and semantics (CONTRACTS.md) -----------------------------
    max_record_bytes: int = Field(256 * 1024, ge=1024)
    max_future_ms: int = Field(3_600_000, ge=0)
    dedup_ttl_ms: int = Field(24 * 3_600_000, ge=0)
    fraud_label_window_ms: int = Field(7 * 24 * 3_600_000, ge=0)
    recs_view_refresh_ms: int = Field(1_000, ge=0)
    recs_k: int = Field(10, ge=1, le=1000)
    image_roots: str | None = None
    image_hosts: str = ""
    image_max_bytes: int = Field(20 * 1024 * 1024, ge=1)

    # --- models and learning ----------------------------------------------------
    #: The model registry (shared by every worker of a deployment); default <data dir>/models.
    model_dir: Path | None = None
    #: HMAC key for model manifests; unset: a key file created in the model dir.
    model_signing_key: SecretStr | None = None
    #: A model slower than this per batch is skipped for the rules fallback.
    fraud_model_budget_ms: float = Field(50.0, gt=0)
    #: Late events beyond this (behind the card's newest event time) are dead-lettered.
    fraud_grace_ms: int = Field(60_000, ge=0)
    #: The online trainer publishes a new version every N examples or T seconds.
    trainer_every_examples: int = Field(500, ge=1)
    trainer_every_s: float = Field(60.0, gt=0)

    # --- moderation (issue 6; docs/moderation.md) ------------------------------------
    #: Micro-batches: at most this many uploads, gathered for at most this long.
    moderation_max_batch: int = Field(16, ge=1, le=256)
    moderation_batch_wait_ms: int = Field(250, ge=0, le=4_000)
    #: Threads that read and decode images (and run the models) off the event loop.
    moderation_threads: int = Field(2, ge=1, le=64)
    #: onnxruntime intra-op threads per model session (bursts clear faster with 2).
    moderation_intra_op_threads: int = Field(2, ge=1, le=64)
    #: Decompression-bomb cap (pixels, from the header) and accepted formats.
    moderation_max_pixels: int = Field(50_000_000, ge=1)
    moderation_formats: str = "JPEG,PNG,WEBP"
    #: Text detector canvas side (px, multiple of 32); 0 turns the text stages off.
    moderation_detector_side: int = Field(480, ge=0, le=2048)
    #: Images (crops) per detector (OCR) inference; 0: the whole batch on a GPU, 1 on CPU.
    moderation_inference_chunk: int = Field(0, ge=0, le=256)
    #: Share of auto-approved uploads also sent to review (audit), by upload-id hash.
    moderation_audit_rate: float = Field(0.02, ge=0, le=1)
    #: Threshold recalibration: the review band may take this share of uploads,
    #: REJECT must keep this precision on verdicts; recalibrate every N verdicts.
    moderation_review_capacity: float = Field(0.1, gt=0, le=1)
    moderation_min_precision: float = Field(0.95, gt=0, le=1)
    moderation_recalibrate_every: int = Field(50, ge=1)
    #: A verdict for an unknown upload_id waits this long (wall clock), then is
    #: dead-lettered label.unmatched.
    moderation_label_window_ms: int = Field(7 * 24 * 3_600_000, ge=0)
    #: ONNX providers, comma-separated, in order; empty: CUDA/TensorRT when present, CPU.
    moderation_providers: str = ""

    # --- model lifecycle (issue 7: routing, drift, maturity, promotion policy) -----
    #: Label maturity per label type (family), ms of event time: a "nothing happened"
    #: label (0) is trained on only once its event is this old. JSON in the env.
    label_maturity_ms: dict[str, int] = Field(default_factory=lambda: {
        "fraud": 0, "recommend": 30 * 60_000, "moderation": 0})
    #: Prequential window (examples) and the FPR at which fraud recall is measured.
    prequential_window: int = Field(20_000, ge=100)
    fraud_fpr_target: float = Field(0.01, gt=0, lt=1)
    #: Promote the challenger automatically when the policy says so.
    model_auto_promote: bool = False
    promote_min_examples: int = Field(2_000, ge=1)
    promote_min_positives: int = Field(20, ge=0)
    promote_margin: float = Field(0.02, ge=0)
    #: Drift: observations per PSI window / detector hold, ADWIN sensitivity.
    drift_window: int = Field(2_000, ge=100)
    drift_adwin_delta: float = Field(0.001, gt=0, lt=1)

    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @field_validator("topic_prefix")
    @classmethod
    def _prefix_is_a_topic_name(cls, value: str) -> str:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
        if not set(value) <= allowed:
            raise ValueError("may only hold letters, digits, '.', '_' and '-'")
        return value

    @field_validator("kafka_bootstrap_servers", "schema_registry_url", "redis_url")
    @classmethod
    def _blank_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    # --- derived values ------------------------------------------------------
    @property
    def embedded(self) -> bool:
        """True when no outside Kafka is configured: use the embedded stack."""
        return self.kafka_bootstrap_servers is None

    @property
    def bootstrap_servers(self) -> str:
        return self.kafka_bootstrap_servers or f"{EMBEDDED_HOST}:{self.broker_port}"

    @property
    def registry_url(self) -> str:
        return self.schema_registry_url or f"http://{EMBEDDED_HOST}:{self.registry_port}"

    @property
    def serving_redis_url(self) -> str:
        return self.redis_url or f"redis://{EMBEDDED_HOST}:{self.embedded_redis_port}/0"

    def fetch_wait_ms(self, tansu: bool) -> int:
        """The consumer fetch wait: configured, else 10 ms on Tansu, 500 ms on Kafka."""
        if self.consumer_fetch_wait_ms is not None:
            return self.consumer_fetch_wait_ms
        return 10 if tansu else 500

    @property
    def upload_roots(self) -> tuple[Path, ...]:
        if self.image_roots:
            roots = (p.strip() for p in self.image_roots.split(","))
            return tuple(Path(p).resolve() for p in roots if p)
        return ((self.data_dir / "uploads").resolve(),)

    @property
    def models_path(self) -> Path:
        return (self.model_dir or self.data_dir / "models").resolve()

    @cached_property
    def app_id(self) -> str:
        """The Faust application id (consumer group), namespaced by the prefix."""
        return f"{self.topic_prefix}techshop-streams"

    def kafka_client_config(self) -> dict[str, Any]:
        """librdkafka (confluent-kafka) settings: bootstrap and security."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.kafka_security_protocol.lower(),
        }
        if self.kafka_sasl_mechanism:
            conf["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username:
            conf["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password:
            conf["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_cafile:
            conf["ssl.ca.location"] = str(self.kafka_ssl_cafile)
        if self.kafka_ssl_certfile:
            conf["ssl.certificate.location"] = str(self.kafka_ssl_certfile)
        if self.kafka_ssl_keyfile:
            conf["ssl.key.location"] = str(self.kafka_ssl_keyfile)
        return conf

    def registry_client_config(self) -> dict[str, Any]:
        """confluent-kafka ``SchemaRegistryClient`` settings."""
        conf: dict[str, Any] = {"url": self.registry_url}
        if self.schema_registry_username and self.schema_registry_password:
            secret = self.schema_registry_password.get_secret_value()
            conf["basic.auth.user.info"] = f"{self.schema_registry_username}:{secret}"
        return conf


def load_settings(**overrides: Any) -> Settings:
    """Read the settings; a bad value raises :class:`ConfigError` with one readable line."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        raise ConfigError(
            f"TECHSHOP_{field.upper()}: {first['msg']} (got {first.get('input')!r})"
        ) from None
