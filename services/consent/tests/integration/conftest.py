"""Fixtures of consent's integration tests; the helpers they use are in consent_kit."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from consent_kit import running_consent

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import create_database
from tenantflow.emulator.testing import RunningEmulator


@pytest.fixture(scope="module")
async def database_url(infra: RunningInfra) -> str:
    return await create_database(infra.database_url)


@pytest.fixture
async def consent(
    infra: RunningInfra, emulator: RunningEmulator, database_url: str
) -> AsyncIterator[ServiceRuntime]:
    async with running_consent(infra, emulator, database_url) as runtime:
        yield runtime
