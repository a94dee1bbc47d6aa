"""Use cases of directory-sync: follow the tenant lifecycle, take sync requests, and run the
syncs that are due, a bounded number at a time, sharing the tenants with other replicas.

A tenant is synced only while it is linked with the directory connector consented: its row is
created when a link is verified and deleted, with its whole cache, on unlink or revocation (the
portal is told to drop its copy). A sync in flight for a purged tenant stops at its next write:
its lease went with the row.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from dataclasses import dataclass, field
from typing import Literal
from uuid import UUID

from sqlalchemy import delete, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col

from tenantflow.bus.consumer import HandlerContext
from tenantflow.bus.db import transaction
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.events import (
    ConsentRevoked,
    DirectoryPurged,
    DirectorySyncRequested,
    EnterpriseApp,
    TenantLinkVerified,
    TenantUnlinked,
)
from tenantflow.contracts.topics import Topic
from tenantflow.directory_sync.models import CACHE_TABLES, SyncCursor, SyncedTenant
from tenantflow.directory_sync.sync import ACTOR, TenantSync

log = logging.getLogger(__name__)


@dataclass
class Scheduler:
    """Starts due syncs while fewer than ``concurrency`` run in this process; wakes when one
    is requested, one ends, or the earliest due time comes."""

    sync: TenantSync
    concurrency: int
    poll_seconds: float
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _running: dict[UUID, asyncio.Task[None]] = field(default_factory=dict)

    def wake(self) -> None:
        self._wake.set()

    def _done(self, tenant_id: UUID, _: asyncio.Task[None]) -> None:
        self._running.pop(tenant_id, None)
        self.wake()

    async def run(self) -> None:
        try:
            while True:
                self._wake.clear()
                free = self.concurrency - len(self._running)
                if free > 0:
                    for tenant in await self.sync.claim_due(free):
                        task = asyncio.create_task(
                            self.sync.sync(tenant), name=f"sync {tenant.tenant_id}"
                        )
                        task.add_done_callback(functools.partial(self._done, tenant.tenant_id))
                        self._running[tenant.tenant_id] = task
                wait = self.poll_seconds
                due = await self.sync.next_due_in()
                if due is not None and len(self._running) < self.concurrency:
                    wait = min(wait, due)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=wait)
        finally:
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            await self._release_leases()

    async def _release_leases(self) -> None:
        """Stopping: hand this replica's tenants back at once, not when their leases expire
        (their runs resume from the stored cursors wherever they are claimed next)."""
        try:
            async with transaction(self.sync.runtime.sessions) as session:
                await session.exec(
                    update(SyncedTenant)
                    .where(col(SyncedTenant.lease_owner) == self.sync.settings.replica_id)
                    .values(lease_owner=None, lease_until=None)
                )
        except Exception:
            log.warning("leases not released; they expire on their own", exc_info=True)


async def purge(ctx: HandlerContext, tenant_id: UUID) -> bool:
    """Delete the tenant's sync state and whole cache; True if there was any."""
    for table in (*CACHE_TABLES, SyncCursor):
        await ctx.session.exec(delete(table).where(col(table.tenant_id) == tenant_id))
    gone = await ctx.session.exec(
        delete(SyncedTenant)
        .where(col(SyncedTenant.tenant_id) == tenant_id)
        .returning(col(SyncedTenant.tenant_id))
    )
    return gone.first() is not None


def register(runtime: ServiceRuntime, sync: TenantSync | None = None) -> None:
    """Subscribe this service's consumer groups, with their handlers, on the runtime's broker."""
    if sync is None:
        return
    scheduler = Scheduler(sync, sync.settings.concurrency, sync.settings.poll_seconds)
    runtime.in_background("syncs", scheduler.run)
    # apart: a link or an unlink is never held up by the directory topic's traffic
    lifecycle = runtime.consumer("lifecycle", Topic.TENANTS)
    requests = runtime.consumer("requests", Topic.DIRECTORY)

    @lifecycle.handles(TenantLinkVerified)
    async def start_syncing(event: TenantLinkVerified, ctx: HandlerContext) -> None:
        """A verified link: sync the tenant now (a full sync the first time)."""
        now = sync.clock()
        await ctx.session.exec(
            insert(SyncedTenant)
            .values(
                tenant_id=event.tenant_id,
                link_change_id=event.correlation_id,
                generation=0,
                next_sync_at=now,
                full_requested=False,
            )
            .on_conflict_do_update(
                index_elements=["tenant_id"],
                set_={"link_change_id": event.correlation_id, "next_sync_at": now},
            )
        )
        ctx.after_commit(scheduler.wake)

    @requests.handles(DirectorySyncRequested)
    async def request_sync(event: DirectorySyncRequested, ctx: HandlerContext) -> None:
        """Sync now (after a throttling pause, if one runs); a full sync if asked. A tenant
        that is not linked is never read."""
        requested = await ctx.session.exec(
            update(SyncedTenant)
            .where(col(SyncedTenant.tenant_id) == event.tenant_id)
            .values(
                requested_by=ctx.event_id,
                requested_correlation=event.correlation_id,
                full_requested=SyncedTenant.full_requested | (event.mode == "full"),
                next_sync_at=func.greatest(
                    sync.clock(), func.coalesce(SyncedTenant.paused_until, sync.clock())
                ),
            )
            .returning(col(SyncedTenant.tenant_id))
        )
        if requested.first() is None:
            log.info("sync of %s not done: the tenant is not linked", event.tenant_id)
            return
        ctx.after_commit(scheduler.wake)

    async def stop_and_purge(
        ctx: HandlerContext,
        tenant_id: UUID,
        reason: Literal["tenant_unlinked", "consent_revoked"],
        correlation_id: UUID,
    ) -> None:
        if await purge(ctx, tenant_id):
            await ctx.emit(
                DirectoryPurged(
                    tenant_id=tenant_id,
                    actor=ACTOR,
                    correlation_id=correlation_id,
                    reason=reason,
                )
            )
        sync.graph.forget_tokens(str(tenant_id))

    @lifecycle.handles(TenantUnlinked)
    async def purge_unlinked(event: TenantUnlinked, ctx: HandlerContext) -> None:
        await stop_and_purge(ctx, event.tenant_id, "tenant_unlinked", event.correlation_id)

    @lifecycle.handles(ConsentRevoked)
    async def purge_revoked(event: ConsentRevoked, ctx: HandlerContext) -> None:
        """Only the directory connector's consent matters here; a new verified link resumes."""
        if event.app is EnterpriseApp.DIRECTORY_CONNECTOR:
            await stop_and_purge(ctx, event.tenant_id, "consent_revoked", event.correlation_id)
