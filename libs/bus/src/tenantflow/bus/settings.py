"""Connection settings every service shares: one Kafka cluster, one PostgreSQL database.

Read from ``KAFKA_*`` and ``DATABASE_*`` environment variables, so a deployment sets them once.
A service's own ``Settings`` nests them and may override them with its prefix, for example
``TENANTFLOW_CONSENT_DATABASE__URL`` for a service-specific database role.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class KafkaSettings(BaseSettings):
    """Kafka connection. Azure Event Hubs: SASL_SSL, PLAIN, username ``$ConnectionString``,
    password the namespace connection string, port 9093. Confluent Cloud: SASL_SSL, PLAIN,
    API key and secret."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", extra="forbid")

    bootstrap_servers: str = Field(default="127.0.0.1:9092", min_length=1)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_ca_file: Path | None = None
    """A CA bundle for SSL/SASL_SSL; the system's trust store when unset."""
    topic_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9._-]*$")
    """Prepended to every topic name, for environments that share one cluster."""
    enable_idempotence: bool = True
    """Keep on: with acks=all it gives in-order, duplicate-free writes per partition."""

    @model_validator(mode="after")
    def _sasl_is_complete(self) -> KafkaSettings:
        uses_sasl = self.security_protocol.startswith("SASL_")
        if uses_sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(
                f"{self.security_protocol} needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME "
                "and KAFKA_SASL_PASSWORD"
            )
        if not uses_sasl and self.sasl_mechanism:
            raise ValueError(
                "KAFKA_SASL_MECHANISM is set but KAFKA_SECURITY_PROTOCOL is not SASL_*"
            )
        if self.ssl_ca_file and not self.ssl_ca_file.is_file():
            raise ValueError(f"KAFKA_SSL_CA_FILE {self.ssl_ca_file} does not exist")
        return self


class DatabaseSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATABASE_", extra="forbid")

    url: SecretStr = SecretStr("postgresql+asyncpg://postgres@127.0.0.1:5432/tenantflow")
    """An SQLAlchemy URL with the asyncpg driver; plain postgresql:// is accepted too."""
    pool_size: int = Field(default=10, ge=1)
    """Connections kept open; a service's database work queues for them beyond that."""
    max_overflow: int = Field(default=0, ge=0)
    """Extra connections under a burst, each closed on return: every one costs a connect (TLS
    negotiation, authentication) and loses its prepared statements, so the default is none."""

    @model_validator(mode="after")
    def _asyncpg_url(self) -> DatabaseSettings:
        url = self.url.get_secret_value()
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                self.url = SecretStr("postgresql+asyncpg://" + url.removeprefix(prefix))
                return self
        if not url.startswith("postgresql+asyncpg://"):
            raise ValueError("DATABASE_URL must be a postgresql:// or postgresql+asyncpg:// URL")
        return self


class ServiceSettings(BaseSettings):
    """Base of each service's ``Settings``; the subclass sets its ``env_prefix``."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    """json: one JSON object a line, with the service and the tenant, change and trace being
    worked on (bus.logs)."""
    library_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] | None = None
    """The libraries' loggers (aiokafka's consumer-group joins, Alembic's migrations, uvicorn's
    start-up and access lines, FastStream): WARNING unless set here, DEBUG with LOG_LEVEL DEBUG."""
    create_topics: bool = True
    """Create missing topics from the contracts at start-up (off where an operator owns them)."""
    shutdown_grace_seconds: float = Field(default=20.0, ge=2.0, le=600.0)
    """On SIGTERM the process exits within this, whatever Kafka or PostgreSQL do: requests in
    flight get a quarter of it, stopping the service half, and a watchdog ends the process when
    it is over."""
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)

    @property
    def http_drain_seconds(self) -> float:
        return self.shutdown_grace_seconds / 4

    @property
    def stop_timeout_seconds(self) -> float:
        return self.shutdown_grace_seconds / 2
