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
- A 429: the run's fetches wait for Retry-After, never less, while the tenant has been
  throttled for a few seconds only (``hold_throttled_seconds``; its fetched pages are still
  written meanwhile). Throttled for longer, the run pauses: the tenant is rescheduled at
  Retry-After and its lease released. Other failures are recorded and retried later, the cursor
  kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

from sqlalchemy import delete, func, or_, text, update
from sqlalchemy import select as select_columns  # sqlmodel's select takes at most four
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tenantflow.bus.db import transaction
from tenantflow.bus.errors import is_transient
from tenantflow.bus.logs import event_context
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.common import EventPayload, ServiceActor
from tenantflow.contracts.events import (
    DirectorySynced,
    DirectorySyncFailed,
    GroupRemoved,
    GroupUpserted,
)
from tenantflow.directory_sync.counting import Counts, MemberChange, count_changes
from tenantflow.directory_sync.delta import PageChanges, read_page
from tenantflow.directory_sync.models import (
    CACHE_TABLES,
    CachedDevice,
    CachedGroup,
    CachedMember,
    CachedUser,
    RunMember,
    RunPresence,
    SyncCursor,
    SyncedTenant,
)
from tenantflow.directory_sync.settings import Settings
from tenantflow.directory_sync.turns import FairTurns
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

# Page writes: one statement each, values as arrays (``{s}`` is the service's schema, a checked
# identifier; the values are bound parameters).
COLUMNS: dict[str, dict[str, str]] = {
    "users": {"display_name": "text", "user_principal_name": "text"},
    "devices": {"display_name": "text", "operating_system": "text", "is_managed": "boolean"},
    "groups": {
        "display_name": "text",
        "security_enabled": "boolean",
        "mail_enabled": "boolean",
        "dynamic": "boolean",
    },
}


UPSERT_OBJECTS = """
    INSERT INTO {{s}}.{table} (tenant_id, generation, id, {names})
    SELECT :tenant, :generation, v.* FROM unnest(CAST(:id AS uuid[]), {arrays}) AS v
    ON CONFLICT (tenant_id, generation, id) DO UPDATE SET {updates}"""
UPSERT_GROUPS = """
    INSERT INTO {{s}}.groups (tenant_id, generation, id, {names}, dirty, recount,
        direct_users, direct_devices, transitive_users, transitive_devices)
    SELECT :tenant, :generation, v.*, true, false, 0, 0, 0, 0
    FROM unnest(CAST(:id AS uuid[]), {arrays}) AS v
    ON CONFLICT (tenant_id, generation, id) DO UPDATE SET {updates}, dirty = true"""
"""A new or changed group is published again at the end of the run (dirty); a new one starts
at zero, its members' changes count it up."""


def _upsert_sql(resource: str) -> str:
    columns = COLUMNS[resource]
    template = UPSERT_GROUPS if resource == "groups" else UPSERT_OBJECTS
    return template.format(
        table=resource,
        names=", ".join(columns),
        arrays=", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in columns.items()),
        updates=", ".join(f"{name} = EXCLUDED.{name}" for name in columns),
    )


UPSERT = {resource: _upsert_sql(resource) for resource in COLUMNS}
ADD_MEMBERS = """
    INSERT INTO {s}.members (tenant_id, generation, group_id, member_id, member_type)
    SELECT :tenant, :generation, v.*
    FROM unnest(CAST(:group_id AS uuid[]), CAST(:member_id AS uuid[]),
                CAST(:member_type AS text[])) AS v
    ON CONFLICT (tenant_id, generation, group_id, member_id)
    DO UPDATE SET member_type = EXCLUDED.member_type"""
REMOVE_MEMBERS = """
    DELETE FROM {s}.members m
    USING unnest(CAST(:group_id AS uuid[]), CAST(:member_id AS uuid[])) AS r(group_id, member_id)
    WHERE m.tenant_id = :tenant AND m.generation = :generation
      AND m.group_id = r.group_id AND m.member_id = r.member_id"""
COUNT_COLUMNS = (
    "id",
    "published",
    "direct_users",
    "direct_devices",
    "transitive_users",
    "transitive_devices",
)
SET_COUNTS = """
    UPDATE {s}.groups g SET dirty = false, recount = false, published = v.published,
        direct_users = v.direct_users, direct_devices = v.direct_devices,
        transitive_users = v.transitive_users, transitive_devices = v.transitive_devices
    FROM unnest(CAST(:id AS uuid[]), CAST(:published AS text[]), CAST(:direct_users AS int[]),
                CAST(:direct_devices AS int[]), CAST(:transitive_users AS int[]),
                CAST(:transitive_devices AS int[]))
         AS v(id, published, direct_users, direct_devices, transitive_users, transitive_devices)
    WHERE g.tenant_id = :tenant AND g.generation = :generation AND g.id = v.id"""

FENCE = """
    SELECT set_config('synchronous_commit', :sync_commit, true) FROM {s}.tenants
    WHERE tenant_id = :tenant AND lease_owner = :owner AND run_id = :run
    FOR SHARE"""

# Recounting (``{s}`` is the service's schema, a checked identifier).
ALL_GROUPS = "SELECT id FROM {s}.groups WHERE tenant_id = :tenant AND generation = :generation"
RECORD_PRESENCE = """
    INSERT INTO {s}.run_presence (tenant_id, generation, member_id, member_type, existed)
    SELECT :tenant, :generation, v.id, :member_type, EXISTS (
        SELECT 1 FROM {s}.{table} o
        WHERE o.tenant_id = :tenant AND o.generation = :generation AND o.id = v.id)
    FROM unnest(CAST(:member_id AS uuid[])) AS v(id)
    ON CONFLICT DO NOTHING"""
"""Before a page changes users or devices: whether each existed (its first change in the run
keeps the answer)."""
NET_PRESENCE = """
    SELECT count(*) FILTER (WHERE o.id IS NOT NULL AND NOT p.existed)
         - count(*) FILTER (WHERE o.id IS NULL AND p.existed)
    FROM {s}.run_presence p LEFT JOIN {s}.{table} o
      ON o.tenant_id = p.tenant_id AND o.generation = p.generation AND o.id = p.member_id
    WHERE p.tenant_id = :tenant AND p.generation = :generation
      AND p.member_type = :member_type"""
"""Users (or devices) an incremental run added, less those it removed."""
RECORD_MEMBERS = """
    INSERT INTO {s}.run_members (tenant_id, generation, group_id, member_id, member_type, existed)
    SELECT :tenant, :generation, v.group_id, v.member_id, v.member_type, EXISTS (
        SELECT 1 FROM {s}.members m
        WHERE m.tenant_id = :tenant AND m.generation = :generation
          AND m.group_id = v.group_id AND m.member_id = v.member_id)
    FROM unnest(CAST(:group_id AS uuid[]), CAST(:member_id AS uuid[]),
                CAST(:member_type AS text[])) AS v(group_id, member_id, member_type)
    ON CONFLICT DO NOTHING"""
ANCESTORS = """
    WITH RECURSIVE up(start, id) AS (
        SELECT g, g FROM unnest(CAST(:groups AS uuid[])) AS g
      UNION
        SELECT up.start, m.group_id FROM up JOIN {s}.members m
          ON m.tenant_id = :tenant AND m.generation = :generation
         AND m.member_id = up.id AND m.member_type = 'group'
    )
    SELECT start, id FROM up"""
"""Each given group with itself and every group it is nested in."""
RECOUNT_AND_ANCESTORS = """
    WITH RECURSIVE up(id) AS (
        SELECT id FROM {s}.groups WHERE tenant_id = :tenant AND generation = :generation AND recount
      UNION
        SELECT m.group_id FROM up JOIN {s}.members m
          ON m.tenant_id = :tenant AND m.generation = :generation
         AND m.member_id = up.id AND m.member_type = 'group'
    )
    SELECT id FROM up"""
"""Groups whose nesting changed, and every group they are nested in (cycles end: UNION keeps
each group once)."""
COUNTS = """
    WITH RECURSIVE closure(root, node) AS (
        SELECT id, id FROM unnest(CAST(:affected AS uuid[])) AS id
      UNION
        SELECT c.root, m.member_id FROM closure c JOIN {s}.members m
          ON m.tenant_id = :tenant AND m.generation = :generation
         AND m.group_id = c.node AND m.member_type = 'group'
    ),
    reached AS (
        SELECT c.root, c.root = c.node AS direct, m.member_id, m.member_type
        FROM closure c JOIN {s}.members m
          ON m.tenant_id = :tenant AND m.generation = :generation AND m.group_id = c.node
        WHERE (m.member_type = 'user' AND EXISTS (
                  SELECT 1 FROM {s}.users u WHERE u.tenant_id = :tenant
                  AND u.generation = :generation AND u.id = m.member_id))
           OR (m.member_type = 'device' AND EXISTS (
                  SELECT 1 FROM {s}.devices d WHERE d.tenant_id = :tenant
                  AND d.generation = :generation AND d.id = m.member_id))
    )
    ,
    distinct_members AS (  -- each member once per root (hashed, not sorted)
        SELECT root, member_id, member_type, bool_or(direct) AS direct
        FROM reached GROUP BY root, member_id, member_type
    )
    SELECT root,
        count(*) FILTER (WHERE direct AND member_type = 'user'),
        count(*) FILTER (WHERE direct AND member_type = 'device'),
        count(*) FILTER (WHERE member_type = 'user'),
        count(*) FILTER (WHERE member_type = 'device')
    FROM distinct_members GROUP BY root"""
"""Each given group's users and devices, direct and through nested groups, each once: the
closure pairs every group with the groups nested in it, however deep (UNION keeps each pair
once, so a cycle ends). Only users and devices in the cache count: a soft-deleted user keeps
its memberships (Entra ID keeps them until it is deleted for good) but reaches no one."""

STALE_TABLES = """
    SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
    WHERE s.schemaname = :schema AND s.relname = ANY(:tables)
      AND s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0)"""
"""Cache tables autovacuum would analyze (autovacuum_analyze_threshold and _scale_factor at
their defaults)."""
CACHE_NAMES = tuple(t.__tablename__ for t in (CachedUser, CachedDevice, CachedGroup, CachedMember))


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
    renewed_at: datetime | None = None
    """When this replica last extended the lease (the rounds share it)."""
    turns: int = 0
    """Page fetches and writes this process has done for the run (``FairTurns``)."""
    throttled_since: datetime | None = None
    """When Graph began answering the run's fetches with 429 (None since one succeeded)."""
    resume_at: datetime | None = None
    """No fetch before this (Graph's last Retry-After)."""

    @property
    def rows(self) -> dict[str, Any]:
        """Which cache rows the run writes: the columns that select them."""
        return {"tenant_id": self.tenant_id, "generation": self.generation}

    @property
    def params(self) -> dict[str, Any]:
        """The same, as the bound parameters of this module's SQL."""
        return {"tenant": self.tenant_id, "generation": self.generation}

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

    def __post_init__(self) -> None:
        self._turns = FairTurns(self.settings.pages_in_flight)

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

    async def _fence(self, session: AsyncSession, run: Run, durable: bool = True) -> None:
        """Raise ``LeaseLost`` unless this replica holds the tenant for this run, and keep the
        row share-locked until the transaction ends: a purge or a takeover waits for the write
        to finish, then the next write finds the lease gone. The lease is extended when a third
        of it has passed. ``durable`` False: the commit does not wait for the disk (a cache
        page is lost with its cursor in a database crash, and read again)."""
        # before this transaction share-locks the row: the renewal must not wait on it
        await self._renew_if_due(run)
        held = await session.execute(
            text(FENCE.format(s=self.runtime.schema)),
            {
                "tenant": run.tenant_id,
                "owner": self.settings.replica_id,
                "run": run.run_id,
                "sync_commit": "on" if durable else "off",
            },
        )
        if held.first() is None:
            raise LeaseLost(str(run.tenant_id))

    async def _renew_if_due(self, run: Run) -> None:
        """Extend the lease when a third of it has passed since this replica last did."""
        now = self.clock()
        if run.renewed_at is None or now - run.renewed_at >= timedelta(
            seconds=self.settings.lease_seconds / 3
        ):
            run.renewed_at = now
            await self._renew(run)

    async def _renew(self, run: Run) -> None:
        """Extend the lease in a transaction of its own (the rounds hold share locks)."""
        async with transaction(self.runtime.sessions) as session:
            await session.exec(
                update(SyncedTenant)
                .where(
                    col(SyncedTenant.tenant_id) == run.tenant_id,
                    col(SyncedTenant.lease_owner) == self.settings.replica_id,
                    col(SyncedTenant.run_id) == run.run_id,
                )
                .values(lease_until=self._in(self.settings.lease_seconds))
            )

    # --- a run ---------------------------------------------------------------------------------

    async def sync(self, claimed: SyncedTenant) -> None:
        """Sync ``claimed`` (leased to this replica) until its run finishes, pauses or fails."""
        with event_context(claimed.tenant_id, None, None):  # its tenant on every log line
            await self._sync(claimed)

    async def _sync(self, claimed: SyncedTenant) -> None:
        tenant = str(claimed.tenant_id)
        run: Run | None = None
        try:
            run = await self._begin(claimed)
            token = await self.graph.token(self.credentials, tenant)
            while True:
                try:
                    await self._rounds(run, token)
                    break
                except ResyncNeeded as resync:
                    if run.full:
                        raise
                    log.info("%s: %s; full resync beside the live cache", tenant, resync)
                    run = await self._become_full(run)
            await self._finish(run)
        except LeaseLost:
            log.info("%s: sync handed over (lease lost or tenant unlinked)", tenant)
        except Throttled as throttled:
            log.info("%s: throttled for %.3f s; sync paused", tenant, throttled.retry_after_s)
            await self._pause(claimed.tenant_id, throttled.retry_after_s)
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
        for table in (RunMember, RunPresence):  # what a run before it may have left
            await self._delete_rows(session, table, {"tenant_id": tenant.tenant_id})
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
                cursor.changes = 0
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
        for table in (*CACHE_TABLES, SyncCursor):
            await session.exec(
                delete(table).where(
                    col(table.tenant_id) == tenant_id, col(table.generation) != keep
                )
            )

    async def _rounds(self, run: Run, token: str) -> None:
        """The three resources' rounds at once (they write different tables); the first
        failure stops the others, and the run resumes from every round's cursor later."""
        rounds = [asyncio.create_task(self._round(run, r, token)) for r in RESOURCES]
        try:
            await asyncio.wait(rounds, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in rounds:
                task.cancel()
            await asyncio.gather(*rounds, return_exceptions=True)
        failures = [t.exception() for t in rounds if not t.cancelled() and t.exception()]
        for failure in failures:
            if isinstance(failure, LeaseLost):
                raise failure
        if failures:
            raise failures[0]  # type: ignore[misc]

    async def _round(self, run: Run, resource: str, token: str) -> None:
        """Read ``resource``'s delta round from its cursor to the deltaLink, a page at a time,
        each written with the cursor that follows it; the next page is fetched while this one
        is written."""
        restarts = 0
        async with self.runtime.sessions() as session:
            cursor = await session.get(SyncCursor, (run.tenant_id, run.generation, resource))
        link = cursor.next_link if cursor else None
        fetching = asyncio.ensure_future(self._page(run, token, link)) if link else None
        try:
            while fetching is not None:
                try:
                    page = await fetching
                except ResyncNeeded:
                    # in a full build, an expired skiptoken: this resource's round starts over
                    if not run.full or restarts >= RESTARTS_PER_ROUND:
                        raise
                    restarts += 1
                    await self._restart_round(run, resource)
                    fetching = asyncio.ensure_future(self._page(run, token, start_link(resource)))
                    continue
                following = page.get("@odata.nextLink")
                fetching = (
                    asyncio.ensure_future(self._page(run, token, following))
                    if isinstance(following, str)
                    else None
                )
                await self._write_page(run, resource, page)
        finally:
            if fetching is not None and not fetching.done():
                fetching.cancel()
                with contextlib.suppress(BaseException):
                    await fetching

    async def _page(self, run: Run, token: str, link: str) -> dict[str, Any]:
        if link.startswith(("https://", "http://")):
            self.graph.check_link(link)  # never send the token to another host
        while True:
            await self._resume_when_allowed(run)
            async with self._turns.turn(run.turns):
                run.turns += 1
                try:
                    page = await self.graph.send(token, "GET", link)
                except Throttled as throttled:
                    self._hold(run, throttled)
                    continue
            run.throttled_since = None
            return page

    def _hold(self, run: Run, throttled: Throttled) -> None:
        """Graph answered 429. While the tenant has been throttled for no longer than
        ``hold_throttled_seconds`` in all, its fetches wait for Retry-After in place (pages
        already fetched are still written; nothing is fetched before Retry-After), so a
        tenant read at Graph's limit loses no time; longer, ``throttled`` goes up and the run
        pauses, releasing the tenant."""
        now = self.clock()
        since = run.throttled_since or now
        resume = now + timedelta(seconds=throttled.retry_after_s)
        if (resume - since).total_seconds() > self.settings.hold_throttled_seconds:
            raise throttled
        log.debug("%s: throttled; fetches resume in %.3f s", run.tenant_id, throttled.retry_after_s)
        run.throttled_since = since
        run.resume_at = max(run.resume_at or resume, resume)

    async def _resume_when_allowed(self, run: Run) -> None:
        """Wait until Graph's last Retry-After for the run has passed (the lease kept)."""
        while run.resume_at is not None:
            wait = (run.resume_at - self.clock()).total_seconds()
            if wait <= 0:
                return
            await asyncio.sleep(wait)
            await self._renew_if_due(run)

    async def _restart_round(self, run: Run, resource: str) -> None:
        async with transaction(self.runtime.sessions) as session:
            await self._fence(session, run)
            where = run.rows
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
        # a round's last page first: it ends the round, and a small tenant's rounds are all last
        # pages (its sync is not held behind large tenants that began at the same time)
        served = -1 if "@odata.nextLink" not in page else run.turns
        async with self._turns.turn(served):
            run.turns += 1
            await self._write_changes(run, resource, page)

    async def _write_changes(self, run: Run, resource: str, page: dict[str, Any]) -> None:
        changes = read_page(resource, page.get("value", []))
        next_link = page.get("@odata.nextLink")
        delta_link = page.get("@odata.deltaLink")
        async with transaction(self.runtime.sessions) as session:
            await self._fence(session, run, durable=False)
            if resource == "groups":
                await self._write_groups(session, run, changes)
            else:
                await self._write_objects(session, run, resource, changes)
            cursor_values: dict[str, Any] = {
                "next_link": next_link,
                "changes": SyncCursor.changes + changes.count,
            }
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

    async def _write_objects(
        self, session: AsyncSession, run: Run, resource: str, changes: PageChanges
    ) -> None:
        if not run.full:  # whether a user or device exists moves its groups' counts
            touched = [*changes.upserts, *changes.removed]
            if touched:
                await session.execute(
                    text(RECORD_PRESENCE.format(s=self.runtime.schema, table=resource)),
                    {
                        **run.params,
                        "member_id": touched,
                        "member_type": "user" if resource == "users" else "device",
                    },
                )
        if changes.upserts:
            await self._upsert(session, run, resource, changes.upserts)
        if changes.removed:
            table = TABLES[resource]
            await session.exec(
                delete(table).where(
                    col(table.tenant_id) == run.tenant_id,
                    col(table.generation) == run.generation,
                    col(table.id).in_(changes.removed),
                )
            )

    async def _upsert(
        self,
        session: AsyncSession,
        run: Run,
        resource: str,
        upserts: dict[UUID, dict[str, Any]],
    ) -> None:
        """Insert or update a page's objects with one statement: the values travel as arrays
        (unnest), so nothing is compiled per row."""
        columns = COLUMNS[resource]
        values: dict[str, list[Any]] = {"id": list(upserts)}
        for name in columns:
            values[name] = [attributes[name] for attributes in upserts.values()]
        sql = UPSERT[resource].format(s=self.runtime.schema)
        await session.execute(text(sql), {**run.params, **values})

    async def _recount_groups_of(self, session: AsyncSession, run: Run, members: set[UUID]) -> None:
        """The groups ``members`` are in lose or gain a nested group: count them in full."""
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
            .values(recount=True, dirty=True)
        )

    async def _write_groups(self, session: AsyncSession, run: Run, changes: PageChanges) -> None:
        if changes.removed:
            await self._remove_groups(session, run, changes.removed)
        if changes.upserts:
            await self._upsert(session, run, "groups", changes.upserts)
        key = run.params
        schema = self.runtime.schema
        touched = {**changes.members_removed, **changes.members_added}
        if touched and not run.full:
            pairs = list(touched.items())
            await session.execute(
                text(RECORD_MEMBERS.format(s=schema)),
                {
                    **key,
                    "group_id": [g for (g, _), _ in pairs],
                    "member_id": [m for (_, m), _ in pairs],
                    "member_type": [kind for _, kind in pairs],
                },
            )
            nesting = {group for (group, _), kind in pairs if kind == "group"}
            if nesting:
                await session.exec(
                    update(CachedGroup)
                    .where(
                        col(CachedGroup.tenant_id) == run.tenant_id,
                        col(CachedGroup.generation) == run.generation,
                        col(CachedGroup.id).in_(nesting),
                    )
                    .values(recount=True)
                )
        if changes.members_removed:
            removed_pairs = list(changes.members_removed)
            await session.execute(
                text(REMOVE_MEMBERS.format(s=schema)),
                {
                    **key,
                    "group_id": [g for g, _ in removed_pairs],
                    "member_id": [m for _, m in removed_pairs],
                },
            )
        if changes.members_added:
            added = list(changes.members_added.items())
            await session.execute(
                text(ADD_MEMBERS.format(s=schema)),
                {
                    **key,
                    "group_id": [g for (g, _), _ in added],
                    "member_id": [m for (_, m), _ in added],
                    "member_type": [kind for _, kind in added],
                },
            )

    async def _remove_groups(self, session: AsyncSession, run: Run, removed: set[UUID]) -> None:
        """Deleted groups leave the cache, their memberships both ways with them; the groups
        they were nested in are recounted; the portal is told at once."""
        await self._recount_groups_of(session, run, removed)
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
            totals = await self._totals(session, run)
            events = await self._publish_groups(session, run)
            if run.full and run.live:
                events += await self._removed_since(session, run)
            changed = (
                await session.exec(
                    select(func.coalesce(func.sum(SyncCursor.changes), 0)).where(
                        SyncCursor.tenant_id == run.tenant_id,
                        SyncCursor.generation == run.generation,
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
                    changes=int(changed),
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
            tenant.users, tenant.devices = totals["users"], totals["devices"]
            tenant.run_id = tenant.run_requested_by = None
            tenant.run_started_at = tenant.run_delta_link_at = None
            tenant.lease_owner = tenant.lease_until = None
            tenant.next_sync_at = next_sync
            tenant.last_sync_at, tenant.last_mode, tenant.last_error = now, run.mode, None
            session.add(tenant)
        if run.full:
            async with transaction(self.runtime.sessions) as session:
                await self._drop_generations(session, run.tenant_id, keep=run.generation)
            await self._analyze_if_stale()
        log.info(
            "%s: %s sync done: %s users, %s groups, %s devices",
            run.tenant_id,
            run.mode,
            totals["users"],
            totals["groups"],
            totals["devices"],
        )

    async def _analyze_if_stale(self) -> None:
        """A large generation is written in bulk: refresh the planner's statistics of the tables
        it changed much now, for the incremental syncs that follow, instead of when autovacuum
        next wakes. The test is autovacuum's own (rows changed since the last ANALYZE over 50
        plus a tenth of the table), so a small tenant's build analyzes nothing."""
        async with self.runtime.engine.begin() as connection:
            stale = await connection.execute(
                text(STALE_TABLES), {"schema": self.runtime.schema, "tables": list(CACHE_NAMES)}
            )
            for (table,) in stale.all():
                await connection.execute(text(f"ANALYZE {self.runtime.schema}.{table}"))

    async def _totals(self, session: AsyncSession, run: Run) -> dict[str, int]:
        """Users, groups and devices in the cache after the run: counted after a full build;
        after an incremental one, the kept totals moved by the users and devices it added or
        removed (counting 100,000 rows again would cost more than the sync)."""

        def count(table: Any) -> Any:
            return select(func.count()).where(
                table.tenant_id == run.tenant_id, table.generation == run.generation
            )

        totals = {"groups": (await session.exec(count(CachedGroup))).one()}
        if run.full:
            for resource in ("users", "devices"):
                totals[resource] = (await session.exec(count(TABLES[resource]))).one()
            return totals
        tenant = await session.get(SyncedTenant, run.tenant_id)
        assert tenant is not None
        for resource, kind, kept in (
            ("users", "user", tenant.users),
            ("devices", "device", tenant.devices),
        ):
            moved = await session.execute(
                text(NET_PRESENCE.format(s=self.runtime.schema, table=resource)),
                {**run.params, "member_type": kind},
            )
            totals[resource] = kept + int(moved.scalar_one() or 0)
        return totals

    async def _publish_groups(self, session: AsyncSession, run: Run) -> list[EventPayload]:
        """The groups' counts after the run, and an upsert event for each group whose name,
        type or counts changed since last published. A full run counts every group; an
        incremental one counts in full only the groups above a nesting change, and moves the
        others' counts by the memberships and members it changed."""
        gen = run.params
        schema = self.runtime.schema  # a checked identifier (bus.db.check_schema_name)
        recount_sql = (ALL_GROUPS if run.full else RECOUNT_AND_ANCESTORS).format(s=schema)
        recounted = {row[0] for row in await session.execute(text(recount_sql).bindparams(**gen))}
        counts: dict[UUID, Counts] = {}
        if recounted:
            # a large tenant's top groups reach every membership: let it hash in memory
            await session.execute(text("SET LOCAL work_mem = '64MB'"))
            counted = await session.execute(
                text(COUNTS.format(s=schema)).bindparams(affected=list(recounted), **gen)
            )
            counts = {row[0]: Counts(*row[1:]) for row in counted}
        moved = {} if run.full else await self._moved_counts(session, run)
        touched = recounted | set(moved)
        groups = (
            await session.execute(
                select_columns(
                    col(CachedGroup.id),
                    col(CachedGroup.display_name),
                    col(CachedGroup.security_enabled),
                    col(CachedGroup.dynamic),
                    col(CachedGroup.published),
                    col(CachedGroup.direct_users),
                    col(CachedGroup.direct_devices),
                    col(CachedGroup.transitive_users),
                    col(CachedGroup.transitive_devices),
                ).where(
                    col(CachedGroup.tenant_id) == run.tenant_id,
                    col(CachedGroup.generation) == run.generation,
                    or_(col(CachedGroup.dirty), col(CachedGroup.id).in_(touched)),
                )
            )
        ).all()  # rows, not ORM objects: a full run reads every group
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
            if group.id in recounted:
                now_counted = counts.get(group.id, Counts())
            else:
                stored = Counts(
                    group.direct_users,
                    group.direct_devices,
                    group.transitive_users,
                    group.transitive_devices,
                )
                now_counted = stored + moved.get(group.id, Counts())
            fields = {
                "group_id": group.id,
                "display_name": group.display_name or "",
                "security_enabled": group.security_enabled,
                "dynamic": group.dynamic,
                **now_counted.__dict__,
            }
            published = _published(fields)
            if before.get(group.id) != published:
                events.append(self._event(run, GroupUpserted, **fields))
            updates.append({"id": group.id, "published": published, **now_counted.__dict__})
        if updates:
            await session.execute(
                text(SET_COUNTS.format(s=schema)),
                {**gen, **{name: [u[name] for u in updates] for name in COUNT_COLUMNS}},
            )
        for table in (RunMember, RunPresence):
            await self._delete_rows(session, table, run.rows)
        return events

    async def _moved_counts(self, session: AsyncSession, run: Run) -> dict[UUID, Counts]:
        """How the run's changed memberships and members move the groups' counts (the groups
        counted in full anyway are left out by the caller)."""
        changed_members = (
            await session.exec(
                select(RunMember).where(
                    RunMember.tenant_id == run.tenant_id,
                    RunMember.generation == run.generation,
                    col(RunMember.member_type) != "group",
                )
            )
        ).all()
        presence = (
            await session.exec(
                select(RunPresence).where(
                    RunPresence.tenant_id == run.tenant_id,
                    RunPresence.generation == run.generation,
                )
            )
        ).all()
        kinds = {row.member_id: row.member_type for row in changed_members}
        kinds.update({row.member_id: row.member_type for row in presence})
        if not kinds:
            return {}
        members = list(kinds)
        after: dict[UUID, set[UUID]] = defaultdict(set)
        for group_id, member_id in await session.execute(
            select(CachedMember.group_id, CachedMember.member_id).where(
                CachedMember.tenant_id == run.tenant_id,
                CachedMember.generation == run.generation,
                col(CachedMember.member_id).in_(members),
            )
        ):
            after[member_id].add(group_id)
        before = {member: set(groups) for member, groups in after.items()}
        for row in changed_members:
            groups = before.setdefault(row.member_id, set())
            if row.existed:
                groups.add(row.group_id)
            else:
                groups.discard(row.group_id)
        exists_now: set[UUID] = set()
        for table in (CachedUser, CachedDevice):
            found = await session.exec(
                select(table.id).where(
                    table.tenant_id == run.tenant_id,
                    table.generation == run.generation,
                    col(table.id).in_(members),
                )
            )
            exists_now.update(found.all())
        existed = {row.member_id: row.existed for row in presence}
        starts = {g for groups in [*after.values(), *before.values()] for g in groups}
        ancestors: dict[UUID, set[UUID]] = defaultdict(set)
        if starts:
            for start, group in await session.execute(
                text(ANCESTORS.format(s=self.runtime.schema)).bindparams(
                    groups=list(starts), **run.params
                )
            ):
                ancestors[start].add(group)
        return count_changes(
            (
                MemberChange(
                    kinds[member],
                    frozenset(before.get(member, ())),
                    frozenset(after.get(member, ())),
                    existed_before=existed.get(member, member in exists_now),
                    exists_after=member in exists_now,
                )
                for member in members
            ),
            ancestors,
        )

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

    async def _pause(self, tenant_id: UUID, retry_after_s: float) -> None:
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
