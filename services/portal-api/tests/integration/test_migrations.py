"""The service's migrations build its own schema on a real PostgreSQL, idempotently."""

from __future__ import annotations

from uuid import uuid4

import pytest
from pydantic import SecretStr
from sqlalchemy import text

from tenantflow.bus.db import create_engine, migrate
from tenantflow.bus.settings import DatabaseSettings
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.service_checks import check_migrations
from tenantflow.devinfra.testing import create_database
from tenantflow.portal_api.bootstrap import MIGRATIONS
from tenantflow.portal_api.models import SCHEMA, metadata

pytestmark = pytest.mark.integration


async def test_migrations_build_the_service_schema(infra: RunningInfra) -> None:
    await check_migrations(infra.database_url, MIGRATIONS, SCHEMA, metadata)


async def test_existing_links_keep_both_tracks_when_they_become_rows(infra: RunningInfra) -> None:
    """0004 moves each link's twin column sets into tenant_tracks rows, values intact."""
    url = await create_database(infra.database_url)
    engine = create_engine(DatabaseSettings(url=SecretStr(url)))
    account, tenant, link_change, intune_change, user = (uuid4() for _ in range(5))
    try:
        await migrate(engine, MIGRATIONS, SCHEMA, revision="0003")
        async with engine.begin() as connection:
            await connection.execute(
                text(f"INSERT INTO {SCHEMA}.accounts (id, home_tenant_id) VALUES (:a, :t)"),
                {"a": account, "t": tenant},
            )
            await connection.execute(
                text(
                    f"INSERT INTO {SCHEMA}.tenant_links (account_id, tenant_id, version, status, "
                    "reason, missing_permissions, link_change_id, requested_by_tenant_id, "
                    "requested_by_object_id, requested_by_name, requested_at, intune_status, "
                    "intune_reason, intune_missing_permissions, intune_change_id) VALUES "
                    "(:a, :t, 3, 'linked', NULL, '[]', :lc, :t, :u, 'Ada', now(), 'revoked', "
                    "'permission_missing', '[\"Organization.Read.All\"]', :ic)"
                ),
                {"a": account, "t": tenant, "lc": link_change, "ic": intune_change, "u": user},
            )
        await migrate(engine, MIGRATIONS, SCHEMA)
        async with engine.connect() as connection:
            rows = (
                await connection.execute(
                    text(
                        f"SELECT track, status, reason, missing_permissions, change_id, "
                        f"requested_by_object_id FROM {SCHEMA}.tenant_tracks ORDER BY track"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert [tuple(row) for row in rows] == [
        (
            "intune_writing",
            "revoked",
            "permission_missing",
            ["Organization.Read.All"],
            intune_change,
            None,
        ),
        ("link", "linked", None, [], link_change, user),
    ]
