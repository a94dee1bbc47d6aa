"""The writer reads the assignment filters of tenants with Intune writing enabled and publishes
them whole, on real Kafka, PostgreSQL and the emulated Graph; it stops when the tenant is
unlinked."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.bus.settings import KafkaSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.envelope import decode
from tenantflow.contracts.events import (
    AssignmentFiltersSynced,
    IntuneWritingEnabled,
    TenantUnlinked,
)
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import create_database, eventually, publish, read_topic
from tenantflow.emulator.testing import RunningEmulator
from tenantflow.intune_writer.bootstrap import bootstrap
from tenantflow.intune_writer.models import FilterReading
from tenantflow.intune_writer.settings import Settings

pytestmark = pytest.mark.integration

WRITER = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementConfiguration.Read.All",
    "Organization.Read.All",
]


@pytest.fixture
async def writer(infra: RunningInfra, emulator: RunningEmulator) -> AsyncIterator[ServiceRuntime]:
    kafka = KafkaSettings(
        bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"w{uuid4().hex[:10]}."
    )
    await ensure_topics(kafka)
    runtime, _ = bootstrap(
        Settings(
            kafka=kafka,
            database={"url": await create_database(infra.database_url)},  # type: ignore[arg-type]
            login_base_url=emulator.url,
            graph_base_url=emulator.url,
            ca_bundle=Path(emulator.ca),
            intune_writer_client_id=emulator.apps["intune-writer"]["client_id"],
            intune_writer_secret=emulator.apps["intune-writer"]["client_secret"],
            create_topics=False,
            filter_read_interval_seconds=0.5,
            poll_seconds=0.2,
        )
    )
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


def seeded(emulator: RunningEmulator) -> tuple[UUID, UUID, list[UUID]]:
    tenant, admin = uuid4(), uuid4()
    filters = [uuid4(), uuid4()]
    emulator.seed(
        {
            "id": str(tenant),
            "display_name": "Contoso",
            "verified_domains": [f"t{tenant.hex[:12]}.example"],
            "users": [{"id": str(admin), "display_name": "A", "user_principal_name": "a@c.ex"}],
            "enterprise_apps": [
                {"app_id": emulator.apps["intune-writer"]["client_id"], "permissions": WRITER}
            ],
            "assignment_filters": [
                {"id": str(filters[0]), "display_name": "Windows 11"},
                {
                    "id": str(filters[1]),
                    "display_name": "Managed Edge",
                    "platform": "iOS",
                    "management_type": "apps",
                },
            ],
        }
    )
    return tenant, admin, filters


async def test_filters_are_read_while_writing_is_enabled_and_no_longer_once_unlinked(
    writer: ServiceRuntime, emulator: RunningEmulator
) -> None:
    tenant, admin, filters = seeded(emulator)
    actor = UserActor(tenant_id=tenant, object_id=admin)
    await publish(
        writer.kafka,
        IntuneWritingEnabled(
            tenant_id=tenant, actor=actor, correlation_id=uuid4(), granted_permissions=WRITER
        ),
    )
    records = await read_topic(writer.kafka, Topic.DIRECTORY, count=2, within=30)
    first, second = (decode(r.headers, r.value).data for r in records[:2])
    assert isinstance(first, AssignmentFiltersSynced)
    assert first == second.model_copy(update={"correlation_id": first.correlation_id})
    by_id = {f.filter_id: f for f in first.filters}
    assert set(by_id) == set(filters)
    assert (by_id[filters[0]].platform, by_id[filters[0]].management_type) == (
        "windows10AndLater",
        "devices",
    )
    assert (by_id[filters[1]].platform, by_id[filters[1]].management_type) == ("iOS", "apps")

    await publish(
        writer.kafka, TenantUnlinked(tenant_id=tenant, actor=actor, correlation_id=uuid4())
    )

    async def stopped() -> bool:
        async with writer.sessions() as session:
            return await session.get(FilterReading, tenant) is None

    await eventually(stopped, what="filter reads stopped")
