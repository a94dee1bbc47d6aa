"""aiokafka clients outside FastStream (the relay's producer, admin, the partition reader):
how they reach the cluster and how producers partition. Kept apart from ``broker`` so a tool
that only reads the log does not import FastStream."""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka.partitioner import DefaultPartitioner, murmur2

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
