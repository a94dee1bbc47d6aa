"""Connection settings and the broker factory, without a broker."""

from __future__ import annotations

import logging
from uuid import uuid4

import pytest
from aiokafka.partitioner import DefaultPartitioner
from faststream import AckPolicy
from faststream.security import SASLPlaintext, SASLScram512
from pydantic import SecretStr, ValidationError

from tenantflow.bus.broker import CONSUMER_SETTINGS, FASTSTREAM_LOGGER, make_broker, security
from tenantflow.bus.clients import KeyPartitioner, producer_kwargs
from tenantflow.bus.serve import quiet_libraries
from tenantflow.bus.settings import DatabaseSettings, KafkaSettings, ServiceSettings

pytestmark = pytest.mark.unit


def test_producer_is_safe_by_default() -> None:
    kwargs = producer_kwargs(KafkaSettings(), "client")
    assert kwargs["acks"] == "all"
    assert kwargs["enable_idempotence"] is True


def test_consumers_never_commit_on_receipt() -> None:
    assert CONSUMER_SETTINGS["ack_policy"] is not AckPolicy.ACK_FIRST
    assert CONSUMER_SETTINGS["auto_offset_reset"] == "earliest"
    broker = make_broker(KafkaSettings(), "client")
    assert broker.config.broker_config.ack_policy is not AckPolicy.ACK_FIRST  # type: ignore[attr-defined]


def test_event_hubs_style_sasl_ssl_plain() -> None:
    settings = KafkaSettings(
        bootstrap_servers="ns.servicebus.windows.net:9093",
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        sasl_username="$ConnectionString",
        sasl_password=SecretStr("Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKey=x"),
    )
    configured = security(settings)
    assert isinstance(configured, SASLPlaintext)
    assert configured.use_ssl is True
    assert configured.ssl_context is not None


def test_scram_without_ssl() -> None:
    settings = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=SecretStr("secret"),
    )
    configured = security(settings)
    assert isinstance(configured, SASLScram512)
    assert configured.use_ssl is False


def test_plaintext_has_no_security() -> None:
    assert security(KafkaSettings()) is None


def test_sasl_needs_credentials() -> None:
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_mechanism="PLAIN")


def test_sasl_mechanism_without_sasl_protocol_is_refused() -> None:
    with pytest.raises(ValidationError, match="not SASL"):
        KafkaSettings(sasl_mechanism="PLAIN")


def test_topic_prefix_is_checked() -> None:
    with pytest.raises(ValidationError):
        KafkaSettings(topic_prefix="bad prefix/")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgresql://u:p@db:5432/t", "postgresql+asyncpg://u:p@db:5432/t"),
        ("postgres://u@db/t", "postgresql+asyncpg://u@db/t"),
        ("postgresql+asyncpg://u@db/t", "postgresql+asyncpg://u@db/t"),
    ],
)
def test_database_urls_use_asyncpg(given: str, expected: str) -> None:
    assert DatabaseSettings(url=SecretStr(given)).url.get_secret_value() == expected


def test_other_databases_are_refused() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL"):
        DatabaseSettings(url=SecretStr("mysql://u@db/t"))


def test_the_key_partitioner_places_every_key_where_kafkas_default_partitioner_does() -> None:
    remembered, default = KeyPartitioner(keys=50), DefaultPartitioner()
    keys = [str(uuid4()).encode() for _ in range(200)]
    for partitions in ([0, 1, 2, 3, 4, 5], list(range(12))):
        for key in keys + keys:  # the second time from what it remembered (or forgot)
            assert remembered(key, partitions, partitions) == default(key, partitions, partitions)
    assert remembered(None, [0, 1, 2], [1]) == 1  # no key: an available partition


@pytest.mark.parametrize(
    ("log_level", "library_log_level", "expected"),
    [
        ("INFO", None, logging.WARNING),
        ("DEBUG", None, logging.DEBUG),
        ("INFO", "INFO", logging.INFO),
    ],
)
def test_libraries_are_quiet_unless_asked(
    log_level: str, library_log_level: str | None, expected: int
) -> None:
    settings = ServiceSettings.model_validate(
        {"log_level": log_level, "library_log_level": library_log_level}
    )
    quiet_libraries(settings)
    for name in ("aiokafka", "alembic", "uvicorn.access", FASTSTREAM_LOGGER):
        assert logging.getLogger(name).level == expected


def test_the_brokers_logger_drops_the_warning_about_topic_auto_creation() -> None:
    make_broker(KafkaSettings(), "test")
    logger = logging.getLogger(FASTSTREAM_LOGGER)
    chatter = logging.LogRecord(
        FASTSTREAM_LOGGER, logging.WARNING, "", 0, "Auto create topics is disabled.", (), None
    )
    useful = logging.LogRecord(FASTSTREAM_LOGGER, logging.WARNING, "", 0, "other", (), None)
    assert not logger.filter(chatter)
    assert logger.filter(useful)
