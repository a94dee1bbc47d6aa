"""Settings come from the environment, with this service's prefix and the shared KAFKA_*."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tenantflow.directory_sync.settings import Settings

pytestmark = pytest.mark.unit


def test_prefixed_and_shared_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTFLOW_DIRSYNC_PORT", "9123")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db:5432/tenantflow")
    settings = Settings()
    assert settings.port == 9123
    assert settings.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.database.url.get_secret_value().startswith("postgresql+asyncpg://")


def test_invalid_values_fail_fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTFLOW_DIRSYNC_PORT", "not-a-port")
    with pytest.raises(ValidationError):
        Settings()
