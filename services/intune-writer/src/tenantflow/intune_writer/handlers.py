"""Use cases of intune-writer, as event handlers.

Today: which tenants' assignment filters are read (those with Intune writing enabled). Applying
deployment changes arrives with its own consumer group; until then no group reads the
deployments topic, on purpose: a group without handlers would commit offsets past events it is
meant to handle once its handlers exist.
"""

from __future__ import annotations

from sqlalchemy import delete
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col

from tenantflow.bus.consumer import HandlerContext
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.events import (
    ConsentRevoked,
    EnterpriseApp,
    IntuneWritingEnabled,
    TenantUnlinked,
)
from tenantflow.contracts.topics import Topic
from tenantflow.intune_writer.filters import FilterReader
from tenantflow.intune_writer.models import FilterReading


def register(runtime: ServiceRuntime, filters: FilterReader, poll_seconds: float) -> None:
    """Subscribe this service's consumer groups, with their handlers, on the runtime's broker."""
    tenants = runtime.consumer("tenants", Topic.TENANTS)
    runtime.in_background("filter-reads", lambda: filters.run(poll_seconds))

    async def stop_reading(tenant_id: object, ctx: HandlerContext) -> None:
        await ctx.session.exec(
            delete(FilterReading).where(col(FilterReading.tenant_id) == tenant_id)
        )

    @tenants.handles(IntuneWritingEnabled)
    async def start_reading_filters(event: IntuneWritingEnabled, ctx: HandlerContext) -> None:
        """Intune writing is on: read the tenant's assignment filters now, then periodically."""
        await ctx.session.exec(
            insert(FilterReading)
            .values(tenant_id=event.tenant_id, next_read_at=ctx.envelope.time)
            .on_conflict_do_update(
                index_elements=["tenant_id"], set_={"next_read_at": ctx.envelope.time}
            )
        )
        ctx.after_commit(filters.wake.set)

    @tenants.handles(ConsentRevoked)
    async def stop_on_revocation(event: ConsentRevoked, ctx: HandlerContext) -> None:
        """The writer app lost consent or a permission: stop reading until enabled again."""
        if event.app is EnterpriseApp.INTUNE_WRITER:
            await stop_reading(event.tenant_id, ctx)

    @tenants.handles(TenantUnlinked)
    async def stop_on_unlink(event: TenantUnlinked, ctx: HandlerContext) -> None:
        await stop_reading(event.tenant_id, ctx)
