"""Engines, sessions and migrations for a service that owns one PostgreSQL schema."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from tenantflow.bus.settings import DatabaseSettings

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_schema_name(schema: str) -> str:
    if not _IDENTIFIER.match(schema):
        raise ValueError(f"{schema!r} is not a plain lower-case PostgreSQL identifier")
    return schema


def create_engine(settings: DatabaseSettings) -> AsyncEngine:
    return create_async_engine(
        settings.url.get_secret_value(),
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_pre_ping=False,  # a dropped connection fails one attempt, which is retried
        # jsonb columns as msgspec reads them: several times faster than the json module
        json_deserializer=msgspec.json.decode,
    )


def asyncpg_dsn(settings: DatabaseSettings) -> str:
    """The same database as a plain libpq URL, for asyncpg's own connections (LISTEN)."""
    url = make_url(settings.url.get_secret_value()).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


SessionFactory = async_sessionmaker[AsyncSession]


def session_factory(engine: AsyncEngine) -> SessionFactory:
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def snapshot(sessions: SessionFactory) -> AsyncIterator[AsyncSession]:
    """A read of one moment: every statement sees the same committed state (REPEATABLE READ,
    read only), so a row and the rows read after it are never from either side of another
    transaction's commit."""
    async with sessions() as session:
        await session.connection(
            execution_options={"isolation_level": "REPEATABLE READ", "postgresql_readonly": True}
        )
        yield session


@asynccontextmanager
async def transaction(sessions: SessionFactory) -> AsyncIterator[AsyncSession]:
    """One unit of work: committed when the block ends, rolled back when it raises."""
    async with sessions() as session, session.begin():
        yield session


def _upgrade(connection: Connection, migrations: Path, schema: str, revision: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.attributes["connection"] = connection
    config.attributes["schema"] = schema
    command.upgrade(config, revision)


async def migrate(
    engine: AsyncEngine, migrations: Path, schema: str, revision: str = "head"
) -> None:
    """Bring the service's schema to ``revision``. Safe when several replicas start at once:
    a transaction-scoped advisory lock serialises them."""
    check_schema_name(schema)
    async with engine.begin() as connection:
        await connection.execute(
            text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"migrate:{schema}"}
        )
        await connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        await connection.run_sync(_upgrade, migrations, schema, revision)
