"""Helpers of portal-api's integration tests: a portal on the session's Kafka and PostgreSQL,
an HTTP client for it, users of fresh emulated tenants, and the other services' events.

On the test path (pytest's ``pythonpath``), so every test module of the service imports them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import httpx
from sqlalchemy import func, select

from tenantflow.bus.db import create_engine
from tenantflow.bus.reader import PartitionReader
from tenantflow.bus.settings import DatabaseSettings, KafkaSettings
from tenantflow.bus.tables import bus_tables
from tenantflow.bus.topics import ensure_topics
from tenantflow.contracts.audit import AUDIT_TOPICS
from tenantflow.contracts.common import EventPayload, ServiceActor
from tenantflow.contracts.envelope import Envelope, decode
from tenantflow.contracts.events import (
    AssignmentFilter,
    AssignmentFiltersSynced,
    DirectorySynced,
    GroupUpserted,
    IntuneWritingActivationRequested,
    IntuneWritingEnabled,
    LinkAuthorization,
    TenantLinkRequested,
    TenantLinkVerified,
)
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import create_database, eventually
from tenantflow.devinfra.testing import publish as publish_events
from tenantflow.emulator.testing import RunningEmulator
from tenantflow.portal_api.api import create_app
from tenantflow.portal_api.bootstrap import Portal, bootstrap
from tenantflow.portal_api.models import SCHEMA, FilterSyncState
from tenantflow.portal_api.rebuild import Difference, Rebuild, compare
from tenantflow.portal_api.settings import Settings

P = TypeVar("P", bound=EventPayload)

ADMIN, READER = "Tenantflow.Admin", "Tenantflow.Reader"
GATEWAY = "10.0.0.7"


@asynccontextmanager
async def running_portal(
    infra: RunningInfra, emulator: RunningEmulator, database_url: str, **settings: Any
) -> AsyncIterator[Portal]:
    kafka = KafkaSettings(
        bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"p{uuid4().hex[:8]}."
    )
    await ensure_topics(kafka)
    portal = bootstrap(
        Settings(
            kafka=kafka,
            database={"url": database_url},  # type: ignore[arg-type]
            login_base_url=emulator.url,
            ca_bundle=Path(emulator.ca),
            client_id=emulator.apps["portal-api"]["client_id"],
            create_topics=False,
            trusted_proxies=[f"{GATEWAY}/32"],
            **settings,
        )
    )
    await portal.start()
    try:
        yield portal
    finally:
        await portal.runtime.stop()


def api(portal: Portal, token: str | None = None, peer: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(portal), client=(peer, 50000)),
        base_url="http://portal.internal",
        headers={"authorization": f"Bearer {token}"} if token else {},
    )


class User:
    """A signed-in user of a fresh tenant, which has a colleague too."""

    def __init__(self, emulator: RunningEmulator) -> None:
        self.tenant, self.id, self.colleague = uuid4(), uuid4(), uuid4()
        emulator.seed(
            {
                "id": str(self.tenant),
                "display_name": "Contoso",
                "verified_domains": [f"t{self.tenant.hex[:8]}.example"],
                "users": [
                    {"id": str(self.id), "display_name": "Ada", "user_principal_name": "a@c.ex"},
                    {
                        "id": str(self.colleague),
                        "display_name": "Bo",
                        "user_principal_name": "b@c.ex",
                    },
                ],
            }
        )
        self._emulator = emulator

    def token(self, *roles: str, colleague: bool = False) -> str:
        who = self.colleague if colleague else self.id
        return self._emulator.user_token(self.tenant, who, *roles)


async def published(portal: Portal) -> None:
    """Until every event the portal stored is on the log."""
    outbox = bus_tables(SCHEMA).outbox

    async def relayed() -> bool:
        async with portal.runtime.sessions() as session:
            waiting = select(func.count()).where(outbox.c.published_at.is_(None))
            return (await session.exec(waiting)).scalar_one() == 0

    await eventually(relayed, what="the portal's outbox published")


async def publish(portal: Portal, event: EventPayload) -> None:
    """What another service's relay would put on the bus; after what the portal published,
    as another service answers a request only once it has read it."""
    await published(portal)
    await publish_events(portal.runtime.kafka, event, source="/tenantflow/consent")


async def rebuilt_differences(portal: Portal, database_url: str) -> list[Difference]:
    """The portal's read models rebuilt from its log into a new database on the server of
    ``database_url``, compared with the portal's own: the rows that differ (none, once the
    portal has consumed what is on the log, if the rebuild is right)."""
    into = create_engine(DatabaseSettings(url=await create_database(database_url, "rebuild")))
    try:
        target = Rebuild(into, portal.runtime.kafka.topic_prefix)
        await target.prepare()
        reader = PartitionReader(portal.runtime.kafka, AUDIT_TOPICS)
        async for run in reader.in_time_order():
            assert await target.feed(run) == []
        compared, differences = await compare(portal.runtime.engine, into)
        assert compared > 0
        return differences
    finally:
        await into.dispose()


async def rebuilt_equal(portal: Portal, database_url: str) -> None:
    """The rebuild equals the portal's database row for row, once the portal has caught up
    with the log (each try rebuilds anew)."""
    await published(portal)
    differences: list[Difference] = []

    async def equal() -> bool:
        nonlocal differences
        differences = await rebuilt_differences(portal, database_url)
        return not differences

    try:
        await eventually(equal, within=30, what="the rebuild equal to the portal's database")
    except AssertionError:
        raise AssertionError([str(d) for d in differences]) from None


async def link_requests(portal: Portal, tenant: UUID) -> list[Envelope[EventPayload]]:
    """The TenantLinkRequested events the portal stored for ``tenant`` (its outbox)."""
    return [
        e for e in await outbox_events(portal, tenant) if isinstance(e.data, TenantLinkRequested)
    ]


async def request_link(
    portal: Portal, client: httpx.AsyncClient, user: User
) -> Envelope[EventPayload]:
    """POST the user's tenant; the TenantLinkRequested it stored for consent."""
    assert (await client.post("/v1/tenants", json={"tenant_id": str(user.tenant)})).is_success
    [requested] = await link_requests(portal, user.tenant)
    return requested


async def until(
    client: httpx.AsyncClient, user: User, wanted: str, intune: bool = False
) -> dict[str, Any]:
    """The user's tenant once its status (or Intune writing's) is ``wanted``."""
    body: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal body
        body = (await client.get(f"/v1/tenants/{user.tenant}")).json()
        return bool((body["intune_writing"] if intune else body)["status"] == wanted)

    await eventually(reached, what=f"{'intune writing' if intune else 'link'} {wanted}")
    return body


async def outbox_events(portal: Portal, tenant: UUID) -> list[Envelope[EventPayload]]:
    """Every event the portal stored for ``tenant`` in its outbox, oldest first."""
    outbox = bus_tables(SCHEMA).outbox
    async with portal.runtime.sessions() as session:
        rows = await session.exec(
            select(outbox.c.headers, outbox.c.value)
            .where(outbox.c.key == str(tenant).encode())
            .order_by(outbox.c.id)
        )
        return [
            decode([(name, value.encode()) for name, value in headers], value)
            for headers, value in rows
        ]


CONSENT = ServiceActor(service="consent")
WINDOWS = "windows10AndLater"


async def outbox_of(portal: Portal, tenant: UUID, kind: type[P]) -> list[P]:
    """The ``kind`` events the portal stored for ``tenant``, oldest first."""
    return [e.data for e in await outbox_events(portal, tenant) if isinstance(e.data, kind)]


async def ready_tenant(
    portal: Portal,
    client: httpx.AsyncClient,
    user: User,
    groups: int = 3,
    filters: Sequence[AssignmentFilter] = (),
    sync: bool = True,
) -> list[UUID]:
    """Link the user's tenant and enable Intune writing (playing consent), then sync a
    directory of ``groups`` security groups and the tenant's assignment filters (playing
    directory-sync and the writer) unless not ``sync``; the groups' ids."""
    requested = await request_link(portal, client, user)
    await publish(
        portal,
        TenantLinkVerified(
            tenant_id=user.tenant,
            actor=requested.data.actor,
            correlation_id=requested.data.correlation_id,
            display_name="Contoso",
            default_domain=None,
            granted_permissions=["Directory.Read.All"],
            authorized_by=LinkAuthorization.GLOBAL_ADMINISTRATOR,
        ),
    )
    await until(client, user, "linked")
    assert (await client.post(f"/v1/tenants/{user.tenant}/intune")).status_code == 202
    [activation] = await outbox_of(portal, user.tenant, IntuneWritingActivationRequested)
    await publish(
        portal,
        IntuneWritingEnabled(
            tenant_id=user.tenant,
            actor=activation.actor,
            correlation_id=activation.correlation_id,
            granted_permissions=["DeviceManagementApps.ReadWrite.All"],
        ),
    )
    await until(client, user, "enabled", intune=True)
    if not sync:
        return []
    group_ids = [uuid4() for _ in range(groups)]
    for number, group_id in enumerate(group_ids):
        await publish(
            portal,
            GroupUpserted(
                tenant_id=user.tenant,
                actor=ServiceActor(service="directory-sync"),
                correlation_id=uuid4(),
                group_id=group_id,
                display_name=f"Group {number:03}",
                security_enabled=True,
            ),
        )
    directory = ServiceActor(service="directory-sync")
    await publish(
        portal,
        DirectorySynced(
            tenant_id=user.tenant,
            actor=directory,
            correlation_id=uuid4(),
            mode="full",
            users=2,
            groups=groups,
            devices=0,
            changes=groups,
        ),
    )
    await publish(
        portal,
        AssignmentFiltersSynced(
            tenant_id=user.tenant,
            actor=ServiceActor(service="intune-writer"),
            correlation_id=uuid4(),
            filters=list(filters),
        ),
    )

    async def synced() -> bool:
        body = (await client.get(f"/v1/tenants/{user.tenant}/directory")).json()
        return bool(body["status"] == "synced" and body["groups"] == groups)

    await eventually(synced, what="the directory read model")
    # the filters event follows the directory's on the same partition: wait for it too
    async with portal.runtime.sessions() as session:

        async def filters_read() -> bool:
            return (
                await session.get(FilterSyncState, user.tenant, populate_existing=True) is not None
            )

        await eventually(filters_read, what="the filters read model")
    return group_ids
