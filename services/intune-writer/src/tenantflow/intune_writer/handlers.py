"""Use cases of intune-writer, as event handlers: ingest, never Graph.

- tenants: which tenants may be written to (Intune writing enabled; parked on revocation;
  dropped on unlink), and whose assignment filters are read;
- deployments: a requested change's desired set is stored; once verified, it becomes its
  deployment's desired state and the deployment is due for the scheduler (``scheduler.py``),
  which does the Graph I/O outside any consumer transaction. The offset is committed as soon as
  the desired state is stored, so a throttled tenant never holds up its partition.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select

from tenantflow.bus import tracing
from tenantflow.bus.consumer import HandlerContext
from tenantflow.bus.errors import PermanentError
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.events import (
    ConsentRevoked,
    DeploymentChangeFailed,
    DeploymentChangeRejected,
    DeploymentChangeRequested,
    DeploymentChangeVerified,
    EnterpriseApp,
    IntuneWritingEnabled,
    TenantLinkVerified,
    TenantUnlinked,
)
from tenantflow.contracts.topics import Topic
from tenantflow.intune_writer.filters import ACTOR, FilterReader
from tenantflow.intune_writer.models import (
    Change,
    ChangeState,
    Deployment,
    FilterReading,
    TenantState,
    WriterTenant,
)
from tenantflow.intune_writer.scheduler import Scheduler

CONNECTOR_REVOKED = "directory_connector_revoked"

# the hot path as plain statements (the schema is models.SCHEMA, a constant): a backlog of
# thousands of changes is ingested at the bus's pace, not at the ORM's
STORE_REQUEST = text("""
    INSERT INTO intune_writer.changes
        (change_id, tenant_id, app, revision, state, requested, updated_at)
    VALUES (:change, :tenant, :app, :revision, 'requested', CAST(:requested AS jsonb), :at)
    ON CONFLICT (change_id) DO NOTHING""")
VERIFY = text("""
    WITH verified AS (
        UPDATE intune_writer.changes c
        SET state = 'verified', verified_event = :event, updated_at = :at,
            traceparent = :traceparent, tracestate = :tracestate
        WHERE c.change_id = :change AND c.state = 'requested'
          AND NOT EXISTS (SELECT 1 FROM intune_writer.writer_tenants t
                          WHERE t.tenant_id = c.tenant_id AND t.state = 'unlinked'
                            AND t.updated_at >= c.updated_at)
        RETURNING c.tenant_id, c.app, c.revision, c.change_id, c.requested,
                  (SELECT t.state FROM intune_writer.writer_tenants t
                   WHERE t.tenant_id = c.tenant_id) AS tenant_state
    ), desired AS (
        INSERT INTO intune_writer.deployments AS d
            (tenant_id, app, catalog_app, desired, desired_revision, desired_change,
             remove_app, due_at, attempts)
        SELECT tenant_id, app, requested -> 'catalog_app', requested -> 'desired_assignments',
               revision, change_id, COALESCE((requested ->> 'remove_app')::boolean, false),
               :at, 0
        FROM verified
        ON CONFLICT (tenant_id, app) DO UPDATE
        SET catalog_app = excluded.catalog_app, desired = excluded.desired,
            desired_revision = excluded.desired_revision,
            desired_change = excluded.desired_change, remove_app = excluded.remove_app,
            due_at = excluded.due_at, attempts = 0
        WHERE d.desired_revision < excluded.desired_revision
    )
    SELECT tenant_state FROM verified""")


def register(
    runtime: ServiceRuntime, filters: FilterReader, scheduler: Scheduler, poll_seconds: float
) -> None:
    """Subscribe this service's consumer groups, with their handlers, on the runtime's broker."""
    tenants = runtime.consumer("tenants", Topic.TENANTS)
    deployments = runtime.consumer("deployments", Topic.DEPLOYMENTS)
    runtime.in_background("filter-reads", lambda: filters.run(poll_seconds))
    runtime.in_background("scheduler", scheduler.run)

    # --- tenants ---------------------------------------------------------------------------

    async def set_state(
        ctx: HandlerContext, tenant_id: UUID, state: TenantState, reason: str | None, **more: Any
    ) -> None:
        values = {"state": state, "state_reason": reason, "updated_at": ctx.envelope.time, **more}
        await ctx.session.exec(
            insert(WriterTenant)
            .values(tenant_id=tenant_id, **values)
            .on_conflict_do_update(index_elements=["tenant_id"], set_=values)
        )

    async def stop_reading(tenant_id: object, ctx: HandlerContext) -> None:
        await ctx.session.exec(
            delete(FilterReading).where(col(FilterReading.tenant_id) == tenant_id)
        )

    @tenants.handles(IntuneWritingEnabled)
    async def start_writing(event: IntuneWritingEnabled, ctx: HandlerContext) -> None:
        """Intune writing is on: waiting changes are scheduled again, the assignment filters
        are read now, then periodically."""
        await set_state(
            ctx,
            event.tenant_id,
            TenantState.ACTIVE,
            None,
            source_of_truth=event.assignments_source_of_truth,
        )
        await ctx.session.exec(
            insert(FilterReading)
            .values(tenant_id=event.tenant_id, next_read_at=ctx.envelope.time)
            .on_conflict_do_update(
                index_elements=["tenant_id"], set_={"next_read_at": ctx.envelope.time}
            )
        )
        ctx.after_commit(filters.wake.set)
        ctx.after_commit(scheduler.wake.set)

    @tenants.handles(TenantLinkVerified)
    async def resume_after_relink(event: TenantLinkVerified, ctx: HandlerContext) -> None:
        """The directory connector is consented again: a tenant parked only for its revocation
        is written to again (Intune writing itself was never revoked)."""
        await ctx.session.exec(
            update(WriterTenant)
            .where(col(WriterTenant.tenant_id) == event.tenant_id)
            .where(col(WriterTenant.state_reason) == CONNECTOR_REVOKED)
            .values(state=TenantState.ACTIVE, state_reason=None, updated_at=ctx.envelope.time)
        )
        ctx.after_commit(scheduler.wake.set)

    @tenants.handles(ConsentRevoked)
    async def park_on_revocation(event: ConsentRevoked, ctx: HandlerContext) -> None:
        """An app lost consent or a permission: no further write for the tenant; its changes
        wait for re-verification (IntuneWritingEnabled, or the connector's relink)."""
        tenant = await ctx.session.get(WriterTenant, event.tenant_id, with_for_update=True)
        if tenant is None or tenant.state == TenantState.UNLINKED:
            return
        if event.app is EnterpriseApp.INTUNE_WRITER:
            await stop_reading(event.tenant_id, ctx)
            reason = f"intune_writer_{event.reason.value}"
        elif tenant.state == TenantState.PARKED:
            return  # parked for the writer itself already: that takes re-activation
        else:
            reason = CONNECTOR_REVOKED
        await set_state(ctx, event.tenant_id, TenantState.PARKED, reason)

    @tenants.handles(TenantUnlinked)
    async def drop_on_unlink(event: TenantUnlinked, ctx: HandlerContext) -> None:
        """The tenant was unlinked: its waiting changes are dropped and failed as such, its
        state forgotten; a change verified later is failed the same way."""
        await stop_reading(event.tenant_id, ctx)
        await set_state(ctx, event.tenant_id, TenantState.UNLINKED, "unlinked", budget=None)
        waiting = await ctx.session.exec(
            select(Change)
            .where(col(Change.tenant_id) == event.tenant_id)
            .where(col(Change.state) == ChangeState.VERIFIED)
            .order_by(col(Change.revision))
        )
        for change in waiting.all():
            await fail_unlinked(ctx, change)
        await ctx.session.exec(
            delete(Deployment).where(col(Deployment.tenant_id) == event.tenant_id)
        )
        # a change still waiting for consent's verdict stays: a verification crossing the
        # unlink fails it as dropped, a rejection closes it
        await ctx.session.exec(
            delete(Change)
            .where(col(Change.tenant_id) == event.tenant_id)
            .where(col(Change.state) != ChangeState.REQUESTED)
        )

    # --- deployments -----------------------------------------------------------------------

    @deployments.handles(DeploymentChangeRequested)
    async def store_request(event: DeploymentChangeRequested, ctx: HandlerContext) -> None:
        """Keep the change's desired set until consent's verdict on it."""
        connection = await ctx.session.connection()
        await connection.execute(
            STORE_REQUEST,
            {
                "change": event.correlation_id,
                "tenant": event.tenant_id,
                "app": event.app,
                "revision": event.revision,
                "requested": event.model_dump_json(),
                "at": ctx.envelope.time,
            },
        )

    @deployments.handles(DeploymentChangeRejected)
    async def forget_rejected(event: DeploymentChangeRejected, ctx: HandlerContext) -> None:
        await ctx.session.exec(
            update(Change)
            .where(col(Change.change_id) == event.correlation_id)
            .where(col(Change.state) == ChangeState.REQUESTED)
            .values(state=ChangeState.REJECTED, updated_at=ctx.envelope.time)
        )

    @deployments.handles(DeploymentChangeVerified)
    async def schedule_verified(event: DeploymentChangeVerified, ctx: HandlerContext) -> None:
        """The change may be written: its desired set becomes the deployment's desired state
        (unless a newer revision is there already) and the deployment is due now. One
        statement when nothing is unusual (the path every change takes); the unusual cases
        (never requested, already handled, an unlinked tenant) are told apart after it."""
        connection = await ctx.session.connection()
        traceparent, tracestate = tracing.current()
        verified = await connection.execute(
            VERIFY,
            {
                "change": event.correlation_id,
                "event": ctx.event_id,
                "at": ctx.envelope.time,
                "traceparent": traceparent,
                "tracestate": tracestate,
            },
        )
        row = verified.first()
        if row is not None:
            if row.tenant_state in (None, TenantState.UNLINKED):
                # the tenants topic is behind (a first activation, or a relink after the
                # unlink this change was requested after): consent verified writing is on
                await set_state(ctx, event.tenant_id, TenantState.ACTIVE, None)
            ctx.after_commit(scheduler.wake.set)
            return
        change = await ctx.session.get(Change, event.correlation_id, with_for_update=True)
        if change is None:
            raise PermanentError(
                f"change {event.correlation_id} was verified but its request was never seen"
            )
        if change.state != ChangeState.REQUESTED:
            return
        tenant = await ctx.session.get(WriterTenant, event.tenant_id)
        if tenant is None or (
            tenant.state == TenantState.UNLINKED and change.updated_at > tenant.updated_at
        ):
            # the tenants topic is behind (a first activation, or a relink after the unlink
            # this change was requested after): consent verified that writing is enabled
            await set_state(ctx, event.tenant_id, TenantState.ACTIVE, None)
        elif tenant.state == TenantState.UNLINKED:
            await fail_unlinked(ctx, change)
            return
        change.state, change.verified_event = ChangeState.VERIFIED, ctx.event_id
        change.traceparent, change.tracestate = traceparent, tracestate
        change.updated_at = ctx.envelope.time
        ctx.session.add(change)
        await desire(ctx, DeploymentChangeRequested.model_validate(change.requested))
        ctx.after_commit(scheduler.wake.set)

    async def desire(ctx: HandlerContext, request: DeploymentChangeRequested) -> None:
        values = {
            "catalog_app": request.catalog_app.model_dump(mode="json"),
            "desired": [a.model_dump(mode="json") for a in request.desired_assignments],
            "desired_revision": request.revision,
            "desired_change": request.correlation_id,
            "remove_app": request.remove_app,
            "due_at": ctx.envelope.time,
            "attempts": 0,
        }
        await ctx.session.exec(
            insert(Deployment)
            .values(tenant_id=request.tenant_id, app=request.app, **values)
            .on_conflict_do_update(
                index_elements=["tenant_id", "app"],
                set_=values,
                where=col(Deployment.desired_revision) < request.revision,
            )
        )

    async def fail_unlinked(ctx: HandlerContext, change: Change) -> None:
        change.state, change.updated_at = ChangeState.DROPPED, _now(ctx)
        ctx.session.add(change)
        await ctx.emit(
            DeploymentChangeFailed(
                tenant_id=change.tenant_id,
                actor=ACTOR,
                correlation_id=change.change_id,
                app=change.app,
                revision=change.revision,
                reason="unlinked",
                detail="The tenant was unlinked before the change was written; it was dropped.",
                retryable=False,
            )
        )


def _now(ctx: HandlerContext) -> datetime:
    return ctx.envelope.time
