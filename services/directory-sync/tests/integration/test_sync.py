"""directory-sync on real Kafka and PostgreSQL against the emulated Graph: the cache equals the
tenant's directory after an initial sync, follows every kind of change after one incremental
sync, survives expired delta tokens and throttling, and is purged when the tenant goes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal
from uuid import UUID, uuid4

import pytest
from sqlmodel import col, select

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.bus.settings import KafkaSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.contracts.common import EventPayload, ServiceActor, UserActor
from tenantflow.contracts.envelope import decode
from tenantflow.contracts.events import (
    ConsentRevoked,
    DirectoryPurged,
    DirectorySynced,
    DirectorySyncRequested,
    EnterpriseApp,
    GroupRemoved,
    GroupUpserted,
    LinkAuthorization,
    TenantLinkVerified,
    TenantUnlinked,
    VerificationFailure,
)
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import create_database, eventually, publish, read_topic
from tenantflow.directory_sync.bootstrap import bootstrap
from tenantflow.directory_sync.models import (
    CachedDevice,
    CachedGroup,
    CachedMember,
    CachedUser,
    SyncedTenant,
)
from tenantflow.directory_sync.settings import Settings
from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

PORTAL = UserActor(tenant_id=uuid4(), object_id=uuid4())


@pytest.fixture(scope="module")
async def database_url(infra: RunningInfra) -> str:
    return await create_database(infra.database_url)


def settings_for(
    infra: RunningInfra, emulator: RunningEmulator, database_url: str, prefix: str, **overrides: Any
) -> Settings:
    return Settings(
        kafka=KafkaSettings(bootstrap_servers=infra.bootstrap_servers, topic_prefix=prefix),
        database={"url": database_url},
        login_base_url=emulator.url,
        graph_base_url=emulator.url,
        ca_bundle=Path(emulator.ca),
        directory_connector_client_id=emulator.apps["directory-connector"]["client_id"],
        directory_connector_secret=emulator.apps["directory-connector"]["client_secret"],
        create_topics=False,
        **overrides,
    )


@asynccontextmanager
async def running_sync(settings: Settings) -> AsyncIterator[ServiceRuntime]:
    runtime = bootstrap(settings)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


class Bus:
    """The topics of one test: what other services would publish, and what came out."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka

    async def publish(self, *events: EventPayload) -> list[str]:
        return await publish(self.kafka, *events)

    async def directory(self, at_least: int = 0) -> list[EventPayload]:
        records = await read_topic(self.kafka, Topic.DIRECTORY, count=at_least, within=60)
        return [decode(r.headers, r.value).data for r in records]

    async def synced(self, tenant: UUID, count: int, within: float = 60) -> list[DirectorySynced]:
        """Wait for ``count`` DirectorySynced of ``tenant``; all of them, in order."""
        found: list[DirectorySynced] = []

        async def enough() -> bool:
            nonlocal found
            found = [
                e
                for e in await self.directory()
                if isinstance(e, DirectorySynced) and e.tenant_id == tenant
            ]
            return len(found) >= count

        await eventually(enough, within=within, what=f"{count} syncs of {tenant}")
        return found


@pytest.fixture
async def bus(infra: RunningInfra) -> Bus:
    kafka = KafkaSettings(
        bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"t{uuid4().hex[:10]}."
    )
    await ensure_topics(kafka)
    return Bus(kafka)


@pytest.fixture
async def sync(
    infra: RunningInfra, emulator: RunningEmulator, database_url: str, bus: Bus
) -> AsyncIterator[ServiceRuntime]:
    settings = settings_for(infra, emulator, database_url, bus.kafka.topic_prefix)
    async with running_sync(settings) as runtime:
        yield runtime


class Directory:
    """A seeded tenant: users, devices, groups nesting groups, and a cycle."""

    def __init__(self, emulator: RunningEmulator, consented: bool = True) -> None:
        self.emulator = emulator
        self.tenant = uuid4()
        self.users = [uuid4() for _ in range(130)]
        self.devices = [uuid4() for _ in range(20)]
        self.everyone, self.sales, self.pilots, self.loop_a, self.loop_b = (
            uuid4() for _ in range(5)
        )
        u, d = [str(x) for x in self.users], [str(x) for x in self.devices]
        groups = [
            {"id": str(self.everyone), "display_name": "Everyone", "members": [str(self.sales)]},
            {
                "id": str(self.sales),
                "display_name": "Sales",
                "members": [*u[:60], *d[:5], str(self.pilots)],
            },
            {"id": str(self.pilots), "display_name": "Pilots", "members": [*u[50:70], *d[4:8]]},
            # a cycle: each nests the other
            {
                "id": str(self.loop_a),
                "display_name": "Loop A",
                "members": [u[100], str(self.loop_b)],
            },
            {
                "id": str(self.loop_b),
                "display_name": "Loop B",
                "members": [u[101], str(self.loop_a)],
            },
        ]
        emulator.seed(
            {
                "id": str(self.tenant),
                "display_name": "Litware",
                "verified_domains": [f"t{self.tenant.hex[:8]}.example"],
                "users": [
                    {
                        "id": str(user),
                        "display_name": f"User {n}",
                        "user_principal_name": f"u{n}@t{self.tenant.hex[:8]}.example",
                    }
                    for n, user in enumerate(self.users)
                ],
                "devices": [
                    {
                        "id": str(device),
                        "display_name": f"PC-{n}",
                        "operating_system": "Windows" if n % 2 else "iOS",
                        "is_managed": n % 3 != 0,
                    }
                    for n, device in enumerate(self.devices)
                ],
                "groups": groups,
                "enterprise_apps": [
                    {
                        "app_id": emulator.apps["directory-connector"]["client_id"],
                        "permissions": ["Directory.Read.All"] if consented else [],
                    }
                ],
            }
        )

    def change(self, *mutations: dict[str, Any]) -> None:
        self.emulator.change_directory(self.tenant, *mutations).raise_for_status()

    def verified(self) -> TenantLinkVerified:
        return TenantLinkVerified(
            tenant_id=self.tenant,
            actor=ServiceActor(service="consent"),
            correlation_id=uuid4(),
            display_name="Litware",
            default_domain=f"t{self.tenant.hex[:8]}.example",
            granted_permissions=["Directory.Read.All"],
            authorized_by=LinkAuthorization.GLOBAL_ADMINISTRATOR,
        )

    def requested(self, mode: Literal["full", "delta"] = "delta") -> DirectorySyncRequested:
        return DirectorySyncRequested(
            tenant_id=self.tenant,
            actor=PORTAL,
            correlation_id=uuid4(),
            mode=mode,
        )


@pytest.fixture
def directory(emulator: RunningEmulator) -> Directory:
    return Directory(emulator)


async def cache(runtime: ServiceRuntime, tenant: UUID) -> dict[str, Any]:
    """The live generation of the tenant's cache."""
    async with runtime.sessions() as session:
        row = await session.get(SyncedTenant, tenant, populate_existing=True)
        if row is None:
            return {}
        gen = row.generation

        async def rows(table: Any) -> list[Any]:
            found = await session.exec(
                select(table).where(table.tenant_id == tenant, table.generation == gen)
            )
            return list(found.all())

        return {
            "users": {u.id: u for u in await rows(CachedUser)},
            "devices": {d.id: d for d in await rows(CachedDevice)},
            "groups": {g.id: g for g in await rows(CachedGroup)},
            "members": {(m.group_id, m.member_id) for m in await rows(CachedMember)},
        }


def latest_groups(events: list[EventPayload], tenant: UUID) -> dict[UUID, GroupUpserted | None]:
    """The portal's view: each group's last upsert, or None once removed."""
    view: dict[UUID, GroupUpserted | None] = {}
    for event in events:
        if event.tenant_id != tenant:
            continue
        if isinstance(event, GroupUpserted):
            view[event.group_id] = event
        elif isinstance(event, GroupRemoved):
            view[event.group_id] = None
    return view


async def test_the_initial_sync_caches_the_directory_with_transitive_counts(
    sync: ServiceRuntime, bus: Bus, directory: Directory
) -> None:
    await bus.publish(directory.verified())
    [synced] = await bus.synced(directory.tenant, 1)
    assert (synced.mode, synced.users, synced.groups, synced.devices) == ("full", 130, 5, 20)
    assert synced.delta_link_age_s is None
    assert synced.duration_s is not None
    cached = await cache(sync, directory.tenant)
    assert set(cached["users"]) == set(directory.users)
    assert cached["users"][directory.users[7]].user_principal_name.startswith("u7@")
    assert cached["users"][directory.users[7]].display_name == "User 7"
    device = cached["devices"][directory.devices[3]]
    assert (device.display_name, device.operating_system, device.is_managed) == (
        "PC-3",
        "Windows",
        False,
    )
    assert (directory.sales, directory.pilots) in cached["members"]
    view = latest_groups(await bus.directory(), directory.tenant)
    sales, pilots, everyone = (
        view[g] for g in (directory.sales, directory.pilots, directory.everyone)
    )
    assert pilots is not None
    assert sales is not None
    assert everyone is not None
    assert (pilots.direct_users, pilots.transitive_users) == (20, 20)
    # Sales: users 0-59 directly, 50-69 through Pilots: 70 distinct
    assert (sales.direct_users, sales.transitive_users) == (60, 70)
    assert (sales.direct_devices, sales.transitive_devices) == (5, 8)
    assert (everyone.direct_users, everyone.transitive_users, everyone.transitive_devices) == (
        0,
        70,
        8,
    )
    loop_a = view[directory.loop_a]
    assert loop_a is not None
    assert (loop_a.direct_users, loop_a.transitive_users) == (1, 2)  # the cycle ends


async def test_changes_show_after_one_incremental_sync(
    sync: ServiceRuntime, bus: Bus, directory: Directory
) -> None:
    await bus.publish(directory.verified())
    await bus.synced(directory.tenant, 1)
    newcomer = uuid4()
    directory.change(
        {
            "op": "add_user",
            "user": {
                "id": str(newcomer),
                "display_name": "New",
                "user_principal_name": f"new@t{directory.tenant.hex[:8]}.example",
            },
        },
        {"op": "add_member", "group_id": str(directory.pilots), "member_id": str(newcomer)},
        {
            "op": "remove_member",
            "group_id": str(directory.sales),
            "member_id": str(directory.users[0]),
        },
        {"op": "rename_group", "group_id": str(directory.loop_a), "display_name": "Loop Alpha"},
        {"op": "delete_group", "group_id": str(directory.loop_b), "permanent": True},
        {"op": "delete_user", "user_id": str(directory.users[1])},  # soft
        {"op": "delete_user", "user_id": str(directory.users[2]), "permanent": True},
        {
            "op": "change_device",
            "device_id": str(directory.devices[4]),
            "operating_system": "Linux",
        },
    )
    await bus.publish(directory.requested())
    [_, synced] = await bus.synced(directory.tenant, 2)
    assert synced.mode == "delta"
    assert synced.delta_link_age_s is not None
    assert (synced.users, synced.groups) == (129, 4)  # +1 new, -2 deleted; Loop B gone
    cached = await cache(sync, directory.tenant)
    assert newcomer in cached["users"]
    assert directory.users[1] not in cached["users"]
    assert (directory.sales, directory.users[1]) in cached["members"]  # soft: membership kept
    assert (directory.sales, directory.users[2]) not in cached["members"]  # permanent: gone
    assert cached["devices"][directory.devices[4]].operating_system == "Linux"
    view = latest_groups(await bus.directory(), directory.tenant)
    assert view[directory.loop_b] is None
    loop_a, sales, pilots, everyone = (
        view[g] for g in (directory.loop_a, directory.sales, directory.pilots, directory.everyone)
    )
    assert loop_a is not None
    assert (loop_a.display_name, loop_a.transitive_users) == ("Loop Alpha", 1)
    assert pilots is not None
    assert pilots.transitive_users == 21
    assert sales is not None
    # users 0 (removed), 1 (soft-deleted, not counted) and 2 (deleted) leave; the newcomer joins
    assert (sales.direct_users, sales.transitive_users) == (57, 68)
    assert everyone is not None
    assert everyone.transitive_users == 68  # recounted through the nesting
    # the counts the incremental sync moved are the ones a full count finds
    before = len(await bus.directory())
    await bus.publish(directory.requested(mode="full"))
    [*_, full] = await bus.synced(directory.tenant, 3)
    assert full.mode == "full"
    again = (await bus.directory())[before:]
    assert [e for e in again if isinstance(e, GroupUpserted | GroupRemoved)] == []


async def test_counts_moved_by_many_incremental_syncs_match_a_full_count(
    sync: ServiceRuntime, bus: Bus, directory: Directory
) -> None:
    await bus.publish(directory.verified())
    await bus.synced(directory.tenant, 1)
    u, d = directory.users, directory.devices
    rounds = [
        # a member already reached another way; a device; a user soft-deleted
        [
            {"op": "add_member", "group_id": str(directory.sales), "member_id": str(u[55])},
            {"op": "add_member", "group_id": str(directory.pilots), "member_id": str(d[10])},
            {"op": "delete_user", "user_id": str(u[60])},
        ],
        # restored; one path of two left; nesting changed
        [
            {"op": "restore_user", "user_id": str(u[60])},
            {"op": "remove_member", "group_id": str(directory.pilots), "member_id": str(u[55])},
            {
                "op": "add_member",
                "group_id": str(directory.loop_b),
                "member_id": str(directory.pilots),
            },
        ],
        # a device removed for good, a member added and removed again in one sync
        [
            {"op": "delete_device", "device_id": str(d[5])},
            {"op": "add_member", "group_id": str(directory.loop_a), "member_id": str(u[1])},
            {"op": "remove_member", "group_id": str(directory.loop_a), "member_id": str(u[1])},
        ],
    ]
    for n, mutations in enumerate(rounds, start=2):
        directory.change(*mutations)
        await bus.publish(directory.requested())
        await bus.synced(directory.tenant, n)
    incremental = latest_groups(await bus.directory(), directory.tenant)
    before = len(await bus.directory())
    await bus.publish(directory.requested(mode="full"))
    *_, last_incremental, full = await bus.synced(directory.tenant, len(rounds) + 2)
    # the totals kept through the incremental syncs are the ones a full count finds
    assert (last_incremental.users, last_incremental.devices, last_incremental.groups) == (
        full.users,
        full.devices,
        full.groups,
    )
    assert (full.users, full.devices) == (130, 19)
    again = (await bus.directory())[before:]
    assert [e for e in again if isinstance(e, GroupUpserted | GroupRemoved)] == []
    loop_b = incremental[directory.loop_b]
    assert loop_b is not None
    assert loop_b.transitive_users == 1 + 1 + 19  # u101, u100 by Loop A, Pilots less u55


async def test_an_expired_delta_token_resyncs_beside_the_live_cache(
    sync: ServiceRuntime, bus: Bus, directory: Directory, emulator: RunningEmulator
) -> None:
    await bus.publish(directory.verified())
    await bus.synced(directory.tenant, 1)
    before = len(await bus.directory())
    with emulator.client() as control:
        control.post(f"/_emulator/tenants/{directory.tenant}/delta/invalidate").raise_for_status()
    directory.change(
        {"op": "rename_group", "group_id": str(directory.pilots), "display_name": "Pilots 2"}
    )
    await bus.publish(directory.requested())
    [_, synced] = await bus.synced(directory.tenant, 2)
    assert synced.mode == "full"
    assert (synced.users, synced.groups, synced.devices) == (130, 5, 20)
    after = (await bus.directory())[before:]
    upserted = [e for e in after if isinstance(e, GroupUpserted)]
    # only what changed is published again; nothing is removed
    assert [e.display_name for e in upserted] == ["Pilots 2"]
    assert not [e for e in after if isinstance(e, GroupRemoved)]
    async with sync.sessions() as session:
        generations = await session.exec(
            select(CachedUser.generation).where(CachedUser.tenant_id == directory.tenant).distinct()
        )
        assert list(generations.all()) == [2]  # the old generation is gone


async def test_unlink_and_revocation_purge_and_a_non_linked_tenant_is_never_read(
    sync: ServiceRuntime, bus: Bus, directory: Directory, emulator: RunningEmulator
) -> None:
    other = Directory(emulator)
    stranger = Directory(emulator)
    await bus.publish(directory.verified(), other.verified())
    await bus.synced(directory.tenant, 1)
    await bus.synced(other.tenant, 1)
    await bus.publish(
        TenantUnlinked(tenant_id=directory.tenant, actor=PORTAL, correlation_id=uuid4()),
        ConsentRevoked(
            tenant_id=other.tenant,
            actor=ServiceActor(service="consent"),
            correlation_id=uuid4(),
            app=EnterpriseApp.DIRECTORY_CONNECTOR,
            reason=VerificationFailure.ADMIN_CONSENT_MISSING,
            detail="gone",
            detected_by="scheduled_check",
        ),
        stranger.requested(),
    )

    async def purged() -> bool:
        events = await bus.directory()
        return {e.tenant_id for e in events if isinstance(e, DirectoryPurged)} == {
            directory.tenant,
            other.tenant,
        }

    await eventually(purged, within=30, what="both purged")
    assert await cache(sync, directory.tenant) == {}
    assert await cache(sync, other.tenant) == {}
    async with sync.sessions() as session:
        for table in (CachedUser, CachedGroup, CachedMember, CachedDevice):
            left = await session.exec(
                select(table).where(
                    col(table.tenant_id).in_([directory.tenant, other.tenant, stranger.tenant])
                )
            )
            assert left.all() == []
    with emulator.client() as control:
        calls = control.get("/_emulator/requests", params={"tenant": str(stranger.tenant)}).json()
    assert calls == []  # never read
