"""Fixtures of portal-api's integration tests; the helpers they use are in portal_kit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from portal_kit import ADMIN, User, running_portal

from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import create_database
from tenantflow.emulator.testing import RunningEmulator
from tenantflow.portal_api.bootstrap import Portal


@pytest.fixture(scope="module")
async def database_url(infra: RunningInfra) -> str:
    return await create_database(infra.database_url)


@pytest.fixture(scope="module")
async def portal(
    infra: RunningInfra, emulator: RunningEmulator, database_url: str
) -> AsyncIterator[Portal]:
    async with running_portal(
        infra,
        emulator,
        database_url,
        user_requests_per_minute=1_000_000,
        tenant_requests_per_minute=1_000_000,
    ) as running:
        yield running


@pytest.fixture
def user(emulator: RunningEmulator) -> User:
    return User(emulator)


@pytest.fixture
def admin_token(user: User) -> str:
    return user.token(ADMIN)
