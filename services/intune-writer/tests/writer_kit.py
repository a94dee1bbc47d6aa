"""What the writer's tests share: a writer on real Kafka, PostgreSQL and the emulator, tenants
seeded in the emulator, deployment changes as portal-api and consent publish them, and what the
emulator's Intune holds."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.bus.settings import KafkaSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.contracts.common import EventPayload, UserActor
from tenantflow.contracts.envelope import decode
from tenantflow.contracts.events import (
    AssignmentTarget,
    CatalogApp,
    ConsentRevoked,
    DeploymentChangeRequested,
    DeploymentChangeVerified,
    DesiredAssignment,
    EnterpriseApp,
    IntuneWritingEnabled,
    VerificationFailure,
)
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.testing import create_database, eventually, publish, read_topic
from tenantflow.emulator.testing import RunningEmulator
from tenantflow.intune_writer.bootstrap import bootstrap
from tenantflow.intune_writer.models import TenantState, WriterTenant
from tenantflow.intune_writer.scheduler import Scheduler
from tenantflow.intune_writer.settings import Settings

WRITER = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementConfiguration.Read.All",
    "Organization.Read.All",
]


def writer_settings(
    emulator: RunningEmulator, kafka: KafkaSettings, database_url: str, **more: Any
) -> Settings:
    return Settings(
        kafka=kafka,
        database={"url": database_url},  # type: ignore[arg-type]
        login_base_url=emulator.url,
        graph_base_url=emulator.url,
        ca_bundle=Path(emulator.ca),
        intune_writer_client_id=emulator.apps["intune-writer"]["client_id"],
        intune_writer_secret=emulator.apps["intune-writer"]["client_secret"],
        create_topics=False,
        poll_seconds=0.2,
        **more,
    )


async def fresh_bus(bootstrap_servers: str, database_url: str) -> tuple[KafkaSettings, str]:
    kafka = KafkaSettings(bootstrap_servers=bootstrap_servers, topic_prefix=f"w{uuid4().hex[:10]}.")
    await ensure_topics(kafka)
    return kafka, await create_database(database_url)


@asynccontextmanager
async def running_writer(settings: Settings) -> AsyncIterator[tuple[ServiceRuntime, Scheduler]]:
    runtime, scheduler = bootstrap(settings)
    await runtime.start()
    try:
        yield runtime, scheduler
    finally:
        await runtime.stop()


def seed_tenant(
    emulator: RunningEmulator, apps: Sequence[dict[str, Any]] = (), tenant: UUID | None = None
) -> tuple[UUID, UUID]:
    """A tenant whose Intune writer app is consented, with ``apps`` in its Intune; its id and
    its admin's."""
    tenant, admin = tenant or uuid4(), uuid4()
    emulator.seed(
        {
            "id": str(tenant),
            "display_name": "Contoso",
            "verified_domains": [f"t{tenant.hex[:12]}.example"],
            "users": [{"id": str(admin), "display_name": "A", "user_principal_name": "a@c.ex"}],
            "enterprise_apps": [
                {"app_id": emulator.apps["intune-writer"]["client_id"], "permissions": WRITER}
            ],
            "intune_apps": list(apps),
        }
    )
    return tenant, admin


def revoked(tenant: UUID, admin: UUID) -> ConsentRevoked:
    """The writer app's consent revoked, as consent reports it."""
    return ConsentRevoked(
        tenant_id=tenant,
        actor=UserActor(tenant_id=tenant, object_id=admin),
        correlation_id=uuid4(),
        app=EnterpriseApp.INTUNE_WRITER,
        reason=VerificationFailure.ADMIN_CONSENT_MISSING,
        detail="revoked by an administrator",
        detected_by="scheduled_check",
    )


async def park(runtime: ServiceRuntime, tenant: UUID, admin: UUID) -> None:
    """Enable the tenant and revoke its consent, and wait until the writer parked it: changes
    published now wait, all due together once it is enabled again."""
    await publish(runtime.kafka, enabled(tenant, admin), revoked(tenant, admin))

    async def parked() -> bool:
        async with runtime.sessions() as session:
            row = await session.get(WriterTenant, tenant)
            return row is not None and row.state == TenantState.PARKED

    await eventually(parked, what="the tenant parked")


def catalog_app(app: str = "7zip") -> CatalogApp:
    return CatalogApp(
        catalog_id=app,
        package_identifier=f"{app}.{app}",
        display_name=app.title(),
        publisher="Publisher",
        run_as_account="system",
    )


def group(group_id: UUID, intent: str = "required") -> DesiredAssignment:
    return DesiredAssignment(
        target=AssignmentTarget(kind="group", group_id=group_id),
        intent=intent,  # type: ignore[arg-type]
    )


def enabled(tenant: UUID, admin: UUID, source_of_truth: bool = False) -> IntuneWritingEnabled:
    return IntuneWritingEnabled(
        tenant_id=tenant,
        actor=UserActor(tenant_id=tenant, object_id=admin),
        correlation_id=uuid4(),
        granted_permissions=WRITER,
        assignments_source_of_truth=source_of_truth,
    )


def change(
    tenant: UUID,
    admin: UUID,
    revision: int,
    desired: Sequence[DesiredAssignment],
    app: str = "7zip",
    remove_app: bool = False,
) -> tuple[DeploymentChangeRequested, DeploymentChangeVerified]:
    """A change as portal-api requests it and consent verifies it."""
    common = {
        "tenant_id": tenant,
        "correlation_id": uuid4(),
        "app": app,
        "revision": revision,
    }
    requested = DeploymentChangeRequested(
        **common,
        actor=UserActor(tenant_id=tenant, object_id=admin),
        catalog_app=catalog_app(app),
        replaces_revision=revision - 1,
        operation="remove" if remove_app else "replace",
        desired_assignments=list(desired),
        remove_app=remove_app,
    )
    verified = DeploymentChangeVerified(
        **common, actor=UserActor(tenant_id=tenant, object_id=admin)
    )
    return requested, verified


async def outcomes(
    kafka: KafkaSettings, changes: Sequence[EventPayload], within: float = 30.0
) -> dict[UUID, EventPayload]:
    """The writer's outcome (applied, failed or superseded) of each of ``changes``, by change
    id, once every one has one."""
    wanted = {c.correlation_id for c in changes}
    found: dict[UUID, EventPayload] = {}

    async def all_there() -> bool:
        records = await read_topic(kafka, Topic.DEPLOYMENTS, count=0, within=within)
        for record in records:
            event = decode(record.headers, record.value).data
            if event.correlation_id in wanted and event.event_type.endswith(
                ("applied", "failed", "superseded")
            ):
                found[event.correlation_id] = event
        return set(found) == wanted

    await eventually(all_there, within=within, what="an outcome for every change")
    return found


def intune_apps(emulator: RunningEmulator, tenant: UUID) -> list[dict[str, Any]]:
    """The tenant's mobileApps as the emulator holds them, each with its assignments."""
    with emulator.client() as client:
        document = client.get(f"/_emulator/tenants/{tenant}").json()
    apps: list[dict[str, Any]] = document["intune_apps"]
    return apps


def targets(app: dict[str, Any]) -> dict[str, str]:
    """An app's assignments as {group id or target kind: intent}."""
    return {
        str(a["target"].get("groupId") or a["target"]["@odata.type"]): a["intent"]
        for a in app["assignments"]
    }
