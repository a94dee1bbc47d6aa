"""The service's migrations build its own schema on a real PostgreSQL, idempotently."""

from __future__ import annotations

import pytest

from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.service_checks import check_migrations
from tenantflow.portal_api.bootstrap import MIGRATIONS
from tenantflow.portal_api.models import SCHEMA, metadata

pytestmark = pytest.mark.integration


async def test_migrations_build_the_service_schema(infra: RunningInfra) -> None:
    await check_migrations(infra.database_url, MIGRATIONS, SCHEMA, metadata)
