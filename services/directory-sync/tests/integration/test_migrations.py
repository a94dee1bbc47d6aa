"""The service's migrations build its own schema on a real PostgreSQL, idempotently."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from tenantflow.bus.db import create_engine, migrate
from tenantflow.bus.settings import DatabaseSettings
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.directory_sync.bootstrap import MIGRATIONS
from tenantflow.directory_sync.models import SCHEMA, metadata

pytestmark = pytest.mark.integration


async def test_migrations_create_every_table_in_the_service_schema(infra: RunningInfra) -> None:
    engine = create_engine(DatabaseSettings(url=infra.database_url))  # type: ignore[arg-type]
    try:
        await migrate(engine, MIGRATIONS, SCHEMA)
        await migrate(engine, MIGRATIONS, SCHEMA)  # a restart changes nothing
        async with engine.connect() as connection:
            tables = await connection.scalars(
                text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s"),
                {"s": SCHEMA},
            )
            found = set(tables)
        expected = {table.name for table in metadata.sorted_tables} | {"alembic_version"}
        assert found == expected
    finally:
        await engine.dispose()
