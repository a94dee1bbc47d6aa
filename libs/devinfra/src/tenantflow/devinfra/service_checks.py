"""Checks every service runs against itself, so each service's tests stay a few lines long."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from sqlalchemy import MetaData, text

from tenantflow.bus.db import create_engine, migrate
from tenantflow.bus.settings import DatabaseSettings, ServiceSettings


def check_settings_from_environment(
    settings_class: type[ServiceSettings], monkeypatch: pytest.MonkeyPatch, **own: str
) -> None:
    """The service's prefix and the shared KAFKA_* / DATABASE_* variables are read; bad values
    fail at start-up. ``own`` are further settings of the service, without its prefix."""
    prefix = settings_class.model_config.get("env_prefix", "")
    assert prefix.startswith("TENANTFLOW_"), prefix
    for name, value in own.items():
        monkeypatch.setenv(f"{prefix}{name}", value)
    monkeypatch.setenv(f"{prefix}PORT", "9123")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app@db:5432/tenantflow")
    settings = settings_class()
    assert settings.port == 9123
    assert settings.kafka.bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.database.url.get_secret_value().startswith("postgresql+asyncpg://")
    monkeypatch.setenv(f"{prefix}PORT", "not-a-port")
    with pytest.raises(ValidationError):
        settings_class()


async def check_migrations(
    database_url: str, migrations: Path, schema: str, metadata: MetaData
) -> None:
    """The migrations build exactly the service's tables in its own schema, and running them
    again (a restart, a second replica) changes nothing."""
    engine = create_engine(DatabaseSettings(url=SecretStr(database_url)))
    try:
        await migrate(engine, migrations, schema)
        await migrate(engine, migrations, schema)
        async with engine.connect() as connection:
            tables = await connection.scalars(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": schema},
            )
            found = set(tables)
    finally:
        await engine.dispose()
    assert found == {table.name for table in metadata.sorted_tables} | {"alembic_version"}
