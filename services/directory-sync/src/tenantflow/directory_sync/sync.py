"""Syncing one tenant's directory: delta rounds for users, devices and groups, page by page.

A sync is a *run* recorded on the tenant's row, so it survives anything: each page is written
with its cursor (the next link to read) in one transaction, fenced by the replica's lease on the
tenant, so a replica killed mid-sync leaves a cache the next holder of the lease completes from
the stored cursor, and a replica that lost its lease cannot write any more. Graph I/O never runs
inside a transaction.

- Initial sync, a requested full sync, or a delta token Graph no longer honours: a *full* run
  builds the next generation of the cache beside the live one and switches to it at the end, so
  readers never see a half-built cache; what changed against the live generation is published.
- Otherwise an *incremental* run reads from the stored deltaLinks and changes the live
  generation; the groups it touched (and the groups they are nested in) get their counts
  recomputed and published at the end.
- A 429 pauses the run: the tenant is rescheduled at Retry-After and its lease released, no one
  waits in place. Other failures are recorded and retried later, the cursor kept.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

from sqlalchemy import delete, func, or_, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tenantflow.bus.db import transaction
from tenantflow.bus.errors import is_transient
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.common import EventPayload, ServiceActor
from tenantflow.contracts.events import (
    DirectorySynced,
    DirectorySyncFailed,
    GroupRemoved,
    GroupUpserted,
)
from tenantflow.directory_sync.counting import transitive_counts
from tenantflow.directory_sync.delta import PageChanges, read_page
from tenantflow.directory_sync.models import (
    CachedDevice,
    CachedGroup,
    CachedMember,
    CachedUser,
    SyncCursor,
    SyncedTenant,
)
from tenantflow.directory_sync.settings import Settings
from tenantflow.graph.client import GraphClient
from tenantflow.graph.credentials import AppCredentials
from tenantflow.graph.errors import GraphCallFailed, ResyncNeeded, Throttled, TokenRefused

log = logging.getLogger(__name__)

ACTOR = ServiceActor(service="directory-sync")
RESOURCES = ("users", "devices", "groups")
SELECT = {
    "users": "id,displayName,userPrincipalName",
    "devices": "id,displayName,operatingSystem,isManaged",
    "groups": "id,displayName,securityEnabled,mailEnabled,groupTypes,members",
}
"""Only what tenantflow uses (README, "What tenantflow stores"); members@delta comes with
$select=members (delta-query-groups.md)."""
TABLES: dict[str, Any] = {"users": CachedUser, "devices": CachedDevice, "groups": CachedGroup}
RESTARTS_PER_ROUND = 3

# Recounting (``{s}`` is the service's schema, a checked identifier).
ALL_GROUPS = "SELECT id FROM {s}.groups WHERE tenant_id = :tenant AND generation = :generation"
DIRTY_AND_ANCESTORS = """
    WITH RECURSIVE up(id) AS (
        SELECT id FROM {s}.groups WHERE tenant_id = :tenant AND generation = :generation AND dirty
      UNION
        SELECT m.group_id FROM up JOIN {s}.members m
          ON m.tenant_id = :tenant AND m.generation = :generation
         AND m.member_id = up.id AND m.member_type = 'group'
    )
    SELECT id FROM up"""
"""Groups changed since last counted, and every group they are nested in (cycles end: UNION
keeps each group once)."""
COUNTED_EDGES = """
    WITH RECURSIVE down(id) AS (
        SELECT unnest(CAST(:affected AS uuid[]))
      UNION
        SELECT m.member_id FROM down JOIN {s}.members m
          ON m.tenant_id = :tenant AND m.generation = :generation
         AND m.group_id = down.id AND m.member_type = 'group'
    )
    SELECT m.group_id, m.member_id, m.member_type
    FROM {s}.members m JOIN down ON m.group_id = down.id
    WHERE m.tenant_id = :tenant AND m.generation = :generation AND (
        m.member_type = 'group'
        OR (m.member_type = 'user' AND EXISTS (
            SELECT 1 FROM {s}.users u WHERE u.tenant_id = :tenant
            AND u.generation = :generation AND u.id = m.member_id))
        OR (m.member_type = 'device' AND EXISTS (
            SELECT 1 FROM {s}.devices d WHERE d.tenant_id = :tenant
            AND d.generation = :generation AND d.id = m.member_id))
    )"""
"""The memberships of the given groups and every group nested in them, counting only users and
devices in the cache (a soft-deleted user keeps its memberships but is not counted)."""


def start_link(resource: str) -> str:
    return f"/v1.0/{resource}/delta?$select={SELECT[resource]}"


class LeaseLost(Exception):
    """Another replica holds the tenant now, or it was unlinked: stop without writing."""


@dataclass
class Run:
    tenant_id: UUID
    run_id: UUID
    generation: int
    """The generation this run writes: the live one, or the one a full run builds."""
    live: int
    full: bool
    requested_by: str | None
    started_at: datetime
    delta_link_at: datetime | None

    @property
    def mode(self) -> Literal["full", "delta"]:
        return "full" if self.full else "delta"


def _published(group: dict[str, Any]) -> str:
    return json.dumps(group, sort_keys=True, default=str)


@dataclass
class TenantSync:
    """Syncs tenants' directories; one instance per process, shared by its concurrent syncs."""

    runtime: ServiceRuntime
    graph: GraphClient
    credentials: AppCredentials
    settings: Settings
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)

    def _in(self, seconds: float) -> datetime:
        return self.clock() + timedelta(seconds=seconds)

    # --- claiming ----------------------------------------------------------------------------

    async def claim_due(self, limit: int) -> list[SyncedTenant]:
        """Up to ``limit`` tenants due for a sync whose lease is free, leased to this replica
        (several replicas share the tenants: SKIP LOCKED)."""
        now = self.clock()
        due = (
            select(SyncedTenant.tenant_id)
            .where(
                col(SyncedTenant.next_sync_at) <= now,
                or_(
                    col(SyncedTenant.lease_until).is_(None),
                    col(SyncedTenant.lease_until) < now,
                ),
            )
            .order_by(col(SyncedTenant.next_sync_at))
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with transaction(self.runtime.sessions) as session:
            claimed = await session.exec(
                update(SyncedTenant)
                .where(col(SyncedTenant.tenant_id).in_(due.scalar_subquery()))
                .values(
                    lease_owner=self.settings.replica_id,
                    lease_until=self._in(self.settings.lease_seconds),
                    paused_until=None,
                )
                .returning(SyncedTenant)
            )
            return list(claimed.scalars())

    async def next_due_in(self) -> float | None:
        """Seconds until the earliest sync not leased to anyone is due; None when there is
        none."""
        async with self.runtime.sessions() as session:
            earliest = (
                await session.exec(
                    select(func.min(SyncedTenant.next_sync_at)).where(
                        col(SyncedTenant.lease_owner).is_(None)
                    )
                )
            ).first()
        if earliest is None:
            return None
        return max(0.0, (earliest - self.clock()).total_seconds())

    async def _fence(self, session: AsyncSession, run: Run) -> None:
        """Renew the lease, or raise ``LeaseLost`` if this replica does not hold it for this
        run any more; every write of a run starts with it."""
        held = await session.exec(
            update(SyncedTenant)
            .where(
                col(SyncedTenant.tenant_id) == run.tenant_id,
                col(SyncedTenant.lease_owner) == self.settings.replica_id,
                col(SyncedTenant.run_id) == run.run_id,
            )
            .values(lease_until=self._in(self.settings.lease_seconds))
            .returning(col(SyncedTenant.tenant_id))
        )
        if held.first() is None:
            raise LeaseLost(str(run.tenant_id))

    # --- a run ---------------------------------------------------------------------------------

    async def sync(self, claimed: SyncedTenant) -> None:
        """Sync ``claimed`` (leased to this replica) until its run finishes, pauses or fails."""
        tenant = str(claimed.tenant_id)
        run: Run | None = None
        try:
            run = await self._begin(claimed)
            token = await self.graph.token(self.credentials, tenant)
            resource_index = 0
            while resource_index < len(RESOURCES):
                try:
                    await self._round(run, RESOURCES[resource_index], token)
                    resource_index += 1
                except ResyncNeeded as resync:
                    if run.full:
                        raise
                    log.info("%s: %s; full resync beside the live cache", tenant, resync)
                    run = await self._become_full(run)
                    resource_index = 0
            await self._finish(run)
        except LeaseLost:
            log.info("%s: sync handed over (lease lost or tenant unlinked)", tenant)
        except Throttled as throttled:
            log.info("%s: throttled for %.3f s; sync paused", tenant, throttled.retry_after_s)
            await self._pause(claimed.tenant_id, run, throttled.retry_after_s)
        except Exception as exc:
            if not isinstance(exc, GraphCallFailed | TokenRefused | ResyncNeeded) and not (
                is_transient(exc)
            ):
                log.exception("%s: sync failed unexpectedly", tenant)
            else:
                log.warning("%s: sync failed: %s", tenant, exc)
            await self._fail(claimed.tenant_id, run, exc)

    async def _begin(self, claimed: SyncedTenant) -> Run:
        """Start a run, or resume the one the tenant's row records."""
        async with transaction(self.runtime.sessions) as session:
            tenant = await session.get(
                SyncedTenant, claimed.tenant_id, with_for_update=True, populate_existing=True
            )
            if tenant is None or tenant.lease_owner != self.settings.replica_id:
                raise LeaseLost(str(claimed.tenant_id))
            if tenant.run_id is None:
                await self._new_run(session, tenant)
            session.add(tenant)
            assert tenant.run_id is not None
            assert tenant.run_started_at is not None
            return Run(
                tenant_id=tenant.tenant_id,
                run_id=tenant.run_id,
                generation=tenant.building or tenant.generation,
                live=tenant.generation,
                full=tenant.building is not None,
                requested_by=tenant.run_requested_by,
                started_at=tenant.run_started_at,
                delta_link_at=tenant.run_delta_link_at,
            )

    async def _new_run(self, session: AsyncSession, tenant: SyncedTenant) -> None:
        tenant.run_id = tenant.requested_correlation or uuid4()
        tenant.run_requested_by = tenant.requested_by
        tenant.requested_by = tenant.requested_correlation = None
        tenant.run_started_at = self.clock()
        tenant.run_changes = 0
        cursors = {
            cursor.resource: cursor
            for cursor in (
                await session.exec(
                    select(SyncCursor).where(
                        SyncCursor.tenant_id == tenant.tenant_id,
                        SyncCursor.generation == tenant.generation,
                    )
                )
            ).all()
        }
        incremental = (
            tenant.generation > 0
            and not tenant.full_requested
            and all(cursors.get(r) and cursors[r].delta_link for r in RESOURCES)
        )
        tenant.full_requested = False  # served by this run; one asked for from now on is not
        if incremental:
            for cursor in cursors.values():
                cursor.next_link = cursor.delta_link
                session.add(cursor)
            stamps = [c.delta_link_at for c in cursors.values() if c.delta_link_at]
            tenant.run_delta_link_at = min(stamps) if stamps else None
            return
        tenant.run_delta_link_at = None
        await self._start_build(session, tenant)

    async def _start_build(self, session: AsyncSession, tenant: SyncedTenant) -> None:
        """A new generation, empty, with every round at its start."""
        tenant.building = tenant.generation + 1
        await self._drop_generations(session, tenant.tenant_id, keep=tenant.generation)
        for resource in RESOURCES:
            session.add(
                SyncCursor(
                    tenant_id=tenant.tenant_id,
                    generation=tenant.building,
                    resource=resource,
                    next_link=start_link(resource),
                )
            )

    async def _become_full(self, run: Run) -> Run:
        """Graph no longer honours the stored delta token: build a full generation beside."""
        async with transaction(self.runtime.sessions) as session:
            await self._fence(session, run)
            tenant = await session.get(SyncedTenant, run.tenant_id, populate_existing=True)
            assert tenant is not None
            await self._start_build(session, tenant)
            tenant.run_delta_link_at = None
            session.add(tenant)
            assert tenant.building is not None
            building = tenant.building
        return Run(**{**run.__dict__, "generation": building, "full": True, "delta_link_at": None})

    async def _drop_generations(self, session: AsyncSession, tenant_id: UUID, keep: int) -> None:
        """Delete every generation of the tenant but ``keep`` (a build left by a crash, or the
        generation a finished build replaced)."""
        for table in (CachedMember, CachedGroup, CachedUser, CachedDevice, SyncCursor):
            await session.exec(
                delete(table).where(
                    col(table.tenant_id) == tenant_id, col(table.generation) != keep
                )
            )

    async def _round(self, run: Run, resource: str, token: str) -> None:
        """Read ``resource``'s delta round from its cursor to the deltaLink, a page at a time,
        each written with the cursor that follows it."""
        restarts = 0
        while True:
            async with self.runtime.sessions() as session:
                cursor = await session.get(SyncCursor, (run.tenant_id, run.generation, resource))
            if cursor is None or cursor.next_link is None:
                return
            try:
                page = await self._page(token, cursor.next_link)
            except ResyncNeeded:
                # in a full build, an expired skiptoken: this resource's round starts over
                if not run.full or restarts >= RESTARTS_PER_ROUND:
                    raise
                restarts += 1
                await self._restart_round(run, resource)
                continue
            await self._write_page(run, resource, page)

    async def _page(self, token: str, link: str) -> dict[str, Any]:
        if link.startswith(("https://", "http://")):
            self.graph.check_link(link)  # never send the token to another host
        return await self.graph.send(token, "GET", link)

    async def _restart_round(self, run: Run, resource: str) -> None:
        async with transaction(self.runtime.sessions) as session:
            await self._fence(session, run)
            where = {"tenant_id": run.tenant_id, "generation": run.generation}
            await self._delete_rows(session, TABLES[resource], where)
            if resource == "groups":
                await self._delete_rows(session, CachedMember, where)
            await session.exec(
                update(SyncCursor)
                .where(
                    col(SyncCursor.tenant_id) == run.tenant_id,
                    col(SyncCursor.generation) == run.generation,
                    col(SyncCursor.resource) == resource,
                )
                .values(next_link=start_link(resource))
            )

    @staticmethod
    async def _delete_rows(session: AsyncSession, table: Any, where: dict[str, Any]) -> None:
        await session.exec(
            delete(table).where(*(getattr(table, name) == value for name, value in where.items()))
        )

    async def _write_page(self, run: Run, resource: str, page: dict[str, Any]) -> None:
        changes = read_page(resource, page.get("value", []))
        next_link = page.get("@odata.nextLink")
        delta_link = page.get("@odata.deltaLink")
        async with transaction(self.runtime.sessions) as session:
            await self._fence(session, run)
            if resource == "groups":
                await self._write_groups(session, run, changes)
            else:
                await self._write_objects(session, run, resource, changes)
            cursor_values: dict[str, Any] = {"next_link": next_link}
            if isinstance(delta_link, str):
                self.graph.check_link(delta_link)
                cursor_values.update(
                    next_link=None, delta_link=delta_link, delta_link_at=self.clock()
                )
            await session.exec(
                update(SyncCursor)
                .where(
                    col(SyncCursor.tenant_id) == run.tenant_id,
                    col(SyncCursor.generation) == run.generation,
                    col(SyncCursor.resource) == resource,
                )
                .values(**cursor_values)
            )
            await session.exec(
                update(SyncedTenant)
                .where(col(SyncedTenant.tenant_id) == run.tenant_id)
                .values(run_changes=SyncedTenant.run_changes + changes.count)
            )

    def _key(self, run: Run) -> dict[str, Any]:
        return {"tenant_id": run.tenant_id, "generation": run.generation}

    async def _write_objects(
        self, session: AsyncSession, run: Run, resource: str, changes: PageChanges
    ) -> None:
        table = TABLES[resource]
        key = self._key(run)
        if changes.upserts:
            rows = [{**key, "id": oid, **values} for oid, values in changes.upserts.items()]
            statement = insert(table).values(rows)
            await session.exec(
                statement.on_conflict_do_update(
                    index_elements=["tenant_id", "generation", "id"],
                    set_={name: statement.excluded[name] for name in rows[0] if name not in key},
                )
            )
        if changes.removed:
            await session.exec(
                delete(table).where(
                    col(table.tenant_id) == run.tenant_id,
                    col(table.generation) == run.generation,
                    col(table.id).in_(changes.removed),
                )
            )
        if not run.full:  # whether a user or device exists changes its groups' counts
            await self._mark_groups_of(
                session, run, set(changes.upserts) | changes.removed, dirty=True
            )

    async def _mark_groups_of(
        self, session: AsyncSession, run: Run, members: set[UUID], dirty: bool
    ) -> None:
        if not members:
            return
        await session.exec(
            update(CachedGroup)
            .where(
                col(CachedGroup.tenant_id) == run.tenant_id,
                col(CachedGroup.generation) == run.generation,
                col(CachedGroup.id).in_(
                    select(CachedMember.group_id).where(
                        CachedMember.tenant_id == run.tenant_id,
                        CachedMember.generation == run.generation,
                        col(CachedMember.member_id).in_(members),
                    )
                ),
            )
            .values(dirty=dirty)
        )

    async def _write_groups(self, session: AsyncSession, run: Run, changes: PageChanges) -> None:
        key = self._key(run)
        if changes.removed:
            await self._remove_groups(session, run, changes.removed)
        if changes.upserts:
            rows = [
                {**key, "id": oid, "dirty": True, **values}
                for oid, values in changes.upserts.items()
            ]
            statement = insert(CachedGroup).values(rows)
            await session.exec(
                statement.on_conflict_do_update(
                    index_elements=["tenant_id", "generation", "id"],
                    set_={name: statement.excluded[name] for name in rows[0] if name not in key},
                )
            )
        if changes.members_removed:
            await session.exec(
                delete(CachedMember).where(
                    col(CachedMember.tenant_id) == run.tenant_id,
                    col(CachedMember.generation) == run.generation,
                    tuple_(col(CachedMember.group_id), col(CachedMember.member_id)).in_(
                        list(changes.members_removed)
                    ),
                )
            )
        if changes.members_added:
            rows = [
                {**key, "group_id": group, "member_id": member, "member_type": kind}
                for (group, member), kind in changes.members_added.items()
            ]
            for start in range(0, len(rows), 5000):
                statement = insert(CachedMember).values(rows[start : start + 5000])
                await session.exec(
                    statement.on_conflict_do_update(
                        index_elements=["tenant_id", "generation", "group_id", "member_id"],
                        set_={"member_type": statement.excluded.member_type},
                    )
                )

    async def _remove_groups(self, session: AsyncSession, run: Run, removed: set[UUID]) -> None:
        """Deleted groups leave the cache, their memberships both ways with them; the groups
        they were nested in are recounted; the portal is told at once."""
        await self._mark_groups_of(session, run, removed, dirty=True)
        await session.exec(
            delete(CachedMember).where(
                col(CachedMember.tenant_id) == run.tenant_id,
                col(CachedMember.generation) == run.generation,
                or_(
                    col(CachedMember.group_id).in_(removed),
                    col(CachedMember.member_id).in_(removed),
                ),
            )
        )
        gone = await session.exec(
            delete(CachedGroup)
            .where(
                col(CachedGroup.tenant_id) == run.tenant_id,
                col(CachedGroup.generation) == run.generation,
                col(CachedGroup.id).in_(removed),
            )
            .returning(col(CachedGroup.id), col(CachedGroup.published))
        )
        if not run.full:
            await self.runtime.outbox.add_many(
                session,
                [self._event(run, GroupRemoved, group_id=gid) for gid, sent in gone if sent],
            )

    def _event(self, run: Run, kind: type[EventPayload], **fields: Any) -> Any:
        return kind(
            tenant_id=run.tenant_id,
            actor=ACTOR,
            correlation_id=run.run_id,
            causation_id=run.requested_by,
            **fields,
        )

    # --- the end of a run ----------------------------------------------------------------------

    async def _finish(self, run: Run) -> None:
        async with transaction(self.runtime.sessions) as session:
            await self._fence(session, run)
            events = await self._publish_groups(session, run)
            if run.full and run.live:
                events += await self._removed_since(session, run)
            totals = {}
            for resource, table in TABLES.items():
                totals[resource] = (
                    await session.exec(
                        select(func.count()).where(
                            table.tenant_id == run.tenant_id, table.generation == run.generation
                        )
                    )
                ).one()
            tenant = await session.get(SyncedTenant, run.tenant_id, populate_existing=True)
            assert tenant is not None
            now = self.clock()
            again = tenant.requested_by is not None  # asked for while this run ran
            next_sync = now if again else self._in(self.settings.sync_interval_seconds)
            events.append(
                self._event(
                    run,
                    DirectorySynced,
                    mode=run.mode,
                    users=totals["users"],
                    groups=totals["groups"],
                    devices=totals["devices"],
                    changes=tenant.run_changes,
                    duration_s=max(0.0, (now - run.started_at).total_seconds()),
                    delta_link_age_s=(now - run.delta_link_at).total_seconds()
                    if run.delta_link_at
                    else None,
                    next_sync_at=next_sync,
                )
            )
            await self.runtime.outbox.add_many(session, events)
            tenant.generation = run.generation
            tenant.building = None
            tenant.run_id = tenant.run_requested_by = None
            tenant.run_started_at = tenant.run_delta_link_at = None
            tenant.lease_owner = tenant.lease_until = None
            tenant.next_sync_at = next_sync
            tenant.last_sync_at, tenant.last_mode, tenant.last_error = now, run.mode, None
            session.add(tenant)
        if run.full and run.live:
            async with transaction(self.runtime.sessions) as session:
                await self._drop_generations(session, run.tenant_id, keep=run.generation)
        log.info(
            "%s: %s sync done: %s users, %s groups, %s devices",
            run.tenant_id,
            run.mode,
            totals["users"],
            totals["groups"],
            totals["devices"],
        )

    async def _publish_groups(self, session: AsyncSession, run: Run) -> list[EventPayload]:
        """Recount the groups the run touched and those they are nested in; an upsert event
        for each whose name, type or counts changed since last published."""
        gen = {"tenant": run.tenant_id, "generation": run.generation}
        schema = self.runtime.schema  # a checked identifier (bus.db.check_schema_name)
        affected_sql = (ALL_GROUPS if run.full else DIRTY_AND_ANCESTORS).format(s=schema)
        affected = [row[0] for row in await session.execute(text(affected_sql).bindparams(**gen))]
        if not affected:
            return []
        edges = await session.execute(
            text(COUNTED_EDGES.format(s=schema)).bindparams(affected=affected, **gen)
        )
        subgroups: dict[UUID, list[UUID]] = defaultdict(list)
        users: dict[UUID, set[UUID]] = defaultdict(set)
        devices: dict[UUID, set[UUID]] = defaultdict(set)
        for group_id, member_id, kind in edges:
            if kind == "group":
                subgroups[group_id].append(member_id)
            elif kind == "user":
                users[group_id].add(member_id)
            else:
                devices[group_id].add(member_id)
        counts = transitive_counts(affected, subgroups, users, devices)
        groups = (
            await session.exec(
                select(CachedGroup).where(
                    CachedGroup.tenant_id == run.tenant_id,
                    CachedGroup.generation == run.generation,
                    col(CachedGroup.id).in_(affected),
                )
            )
        ).all()
        before: dict[UUID, str | None] = {g.id: g.published for g in groups}
        if run.full and run.live:  # what the live generation last published
            live = await session.exec(
                select(CachedGroup.id, CachedGroup.published).where(
                    CachedGroup.tenant_id == run.tenant_id, CachedGroup.generation == run.live
                )
            )
            before = {gid: sent for gid, sent in live}
        events: list[EventPayload] = []
        updates = []
        for group in groups:
            counted = counts[group.id]
            fields = {
                "group_id": group.id,
                "display_name": group.display_name or "",
                "security_enabled": group.security_enabled,
                "dynamic": group.dynamic,
                **counted.__dict__,
            }
            published = _published(fields)
            if before.get(group.id) != published:
                events.append(self._event(run, GroupUpserted, **fields))
            updates.append(
                {
                    "tenant_id": run.tenant_id,
                    "generation": run.generation,
                    "id": group.id,
                    "dirty": False,
                    "published": published,
                    **counted.__dict__,
                }
            )
        # ORM bulk update by primary key: one executemany
        await session.execute(update(CachedGroup), updates)
        return events

    async def _removed_since(self, session: AsyncSession, run: Run) -> list[EventPayload]:
        """Groups the live generation published that the new one no longer has."""
        gone = await session.exec(
            select(CachedGroup.id).where(
                CachedGroup.tenant_id == run.tenant_id,
                CachedGroup.generation == run.live,
                col(CachedGroup.published).is_not(None),
                col(CachedGroup.id).not_in(
                    select(CachedGroup.id).where(
                        CachedGroup.tenant_id == run.tenant_id,
                        CachedGroup.generation == run.generation,
                    )
                ),
            )
        )
        return [self._event(run, GroupRemoved, group_id=gid) for gid in gone]

    # --- pauses and failures -------------------------------------------------------------------

    async def _release(
        self, tenant_id: UUID, values: dict[str, Any], event: EventPayload | None = None
    ) -> None:
        """Give the lease back with ``values`` set, unless the lease was lost meanwhile."""
        async with transaction(self.runtime.sessions) as session:
            released = await session.exec(
                update(SyncedTenant)
                .where(
                    col(SyncedTenant.tenant_id) == tenant_id,
                    col(SyncedTenant.lease_owner) == self.settings.replica_id,
                )
                .values(lease_owner=None, lease_until=None, **values)
                .returning(col(SyncedTenant.tenant_id))
            )
            if released.first() is not None and event is not None:
                await self.runtime.outbox.add(session, event)

    async def _pause(self, tenant_id: UUID, run: Run | None, retry_after_s: float) -> None:
        """Throttled: resume exactly when Graph allows, from where the run stopped."""
        resume = self._in(retry_after_s)
        await self._release(tenant_id, {"next_sync_at": resume, "paused_until": resume})

    async def _fail(self, tenant_id: UUID, run: Run | None, error: Exception) -> None:
        """Record the failure and try again later, from the stored cursors."""
        retry = self._in(self.settings.retry_failed_seconds)
        detail = str(error)[:1000] or type(error).__name__
        status = error.status if isinstance(error, GraphCallFailed) else None
        event = DirectorySyncFailed(
            tenant_id=tenant_id,
            actor=ACTOR,
            correlation_id=run.run_id if run else uuid4(),
            causation_id=run.requested_by if run else None,
            detail=detail,
            status=status,
            next_attempt_at=retry,
        )
        await self._release(tenant_id, {"next_sync_at": retry, "last_error": detail}, event)
