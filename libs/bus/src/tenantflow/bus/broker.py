"""The one way services build their FastStream KafkaBroker."""

from __future__ import annotations

import logging
import ssl
from typing import Any

from aiokafka.partitioner import DefaultPartitioner, murmur2
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from tenantflow.bus.settings import KafkaSettings


# aiokafka's producer defaults are acks=1 without idempotence: an acknowledged write can be lost
# on a leader change and a retry can duplicate or reorder. acks=all + idempotence fixes both.
class KeyPartitioner:
    """Kafka's default partitioner (murmur2 of the key, as every Kafka client computes it),
    with each key's hash remembered: events are keyed by tenant id, so the same keys come
    back on every event, and aiokafka computes murmur2 in Python."""

    def __init__(self, keys: int = 100_000) -> None:
        self._keys = keys
        self._hashes: dict[bytes, int] = {}
        self._default = DefaultPartitioner()

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            partition: int = self._default(key, all_partitions, available)
            return partition
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._keys:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


PRODUCER_SETTINGS: dict[str, Any] = {
    "acks": "all",
    "linger_ms": 0,
    "compression_type": None,
    "partitioner": KeyPartitioner(),
}

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


def connection_kwargs(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    """What aiokafka clients outside FastStream (admin, tests) need to reach the same cluster."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": client_id,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = ssl.create_default_context(
            cafile=str(settings.ssl_ca_file) if settings.ssl_ca_file else None
        )
    if settings.security_protocol.startswith("SASL_"):
        kwargs["sasl_mechanism"] = settings.sasl_mechanism
        kwargs["sasl_plain_username"] = settings.sasl_username
        kwargs["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return kwargs


def producer_kwargs(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    """An aiokafka producer with the same safe settings the broker's producer gets."""
    return {
        **connection_kwargs(settings, client_id),
        **PRODUCER_SETTINGS,
        "enable_idempotence": settings.enable_idempotence,
    }


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
