"""The one way services build their FastStream KafkaBroker."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from tenantflow.bus.clients import PRODUCER_SETTINGS
from tenantflow.bus.settings import KafkaSettings

# Commit only after the handler and its database transaction succeeded (FastStream's default
# for Kafka, ACK_FIRST, commits on receipt: at-most-once). Subscribers pass this explicitly too.
AT_LEAST_ONCE = AckPolicy.NACK_ON_ERROR


def security(settings: KafkaSettings) -> BaseSecurity | None:
    if settings.security_protocol == "PLAINTEXT":
        return None
    context = ssl.create_default_context(
        cafile=str(settings.ssl_ca_file) if settings.ssl_ca_file else None
    )
    if settings.security_protocol == "SSL":
        return BaseSecurity(ssl_context=context, use_ssl=True)
    use_ssl = settings.security_protocol == "SASL_SSL"
    username = settings.sasl_username or ""
    password = settings.sasl_password.get_secret_value() if settings.sasl_password else ""
    mechanism = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }[settings.sasl_mechanism or "PLAIN"]
    return mechanism(username, password, ssl_context=context if use_ssl else None, use_ssl=use_ssl)


FASTSTREAM_LOGGER = "tenantflow.bus.faststream"


def _not_about_auto_creation(record: logging.LogRecord) -> bool:
    """FastStream warns at each subscriber that auto-creation of topics is off: by design, the
    services create their topics from the contracts at start-up (or an operator does)."""
    return "Auto create topics is disabled" not in record.getMessage()


logging.getLogger(FASTSTREAM_LOGGER).addFilter(_not_about_auto_creation)


def make_broker(settings: KafkaSettings, client_id: str, **overrides: Any) -> KafkaBroker:
    """A broker with safe producer settings and at-least-once consumption by default."""
    options: dict[str, Any] = {
        **PRODUCER_SETTINGS,
        "enable_idempotence": settings.enable_idempotence,
        "client_id": client_id,
        "security": security(settings),
        "ack_policy": AT_LEAST_ONCE,
        "allow_auto_create_topics": False,
        # handlers take the whole message and decode it themselves: no argument injection
        "apply_types": False,
        "request_timeout_ms": 30_000,
        "graceful_timeout": 15.0,
        "log_level": logging.DEBUG,  # per-message logs only when asked for
        # FastStream's own logger has a handler and level of its own; this one goes through
        # the service's logging like every other library's (serve.LIBRARIES)
        "logger": logging.getLogger(FASTSTREAM_LOGGER),
    }
    options.update(overrides)
    return KafkaBroker(settings.bootstrap_servers, **options)


# Consumers wait at most 10 ms for more data instead of aiokafka's 500 ms: events are small and
# latency matters more than fetch batching here.
CONSUMER_SETTINGS: dict[str, Any] = {
    "auto_offset_reset": "earliest",
    "fetch_max_wait_ms": 500,
    "max_poll_records": 100,
    "session_timeout_ms": 10_000,
    "heartbeat_interval_ms": 3_000,
    "max_poll_interval_ms": 300_000,
    "ack_policy": AT_LEAST_ONCE,
}
