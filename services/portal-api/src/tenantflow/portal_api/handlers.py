"""Use cases of portal-api, as event handlers: consent's results projected onto tenant links.

Idempotent twice over: the inbox drops a redelivered event, and every update is guarded by the
state it moves from and, for verdicts, by the request's change id (correlation id). A verdict for
a request since superseded or unlinked therefore changes nothing, whenever it arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select

from tenantflow.bus.consumer import HandlerContext
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.audit import AUDIT_TOPICS, audit_fields
from tenantflow.contracts.common import EventPayload
from tenantflow.contracts.events import (
    AssignmentFiltersSynced,
    ConsentRevoked,
    DeadLettered,
    DeploymentChangeApplied,
    DeploymentChangeFailed,
    DeploymentChangeRejected,
    DeploymentChangeSuperseded,
    DeploymentChangeVerified,
    DirectoryPurged,
    DirectorySynced,
    DirectorySyncFailed,
    EnterpriseApp,
    GroupRemoved,
    GroupUpserted,
    IntuneWritingEnabled,
    IntuneWritingRejected,
    TenantLinkRejected,
    TenantLinkVerified,
    TenantVerificationDeferred,
)
from tenantflow.contracts.registry import EVENT_CLASSES
from tenantflow.contracts.topics import Topic
from tenantflow.portal_api import lifecycle
from tenantflow.portal_api.lifecycle import Step, Verdict
from tenantflow.portal_api.models import (
    AssignmentFilterRow,
    AuditEventRow,
    Deployment,
    DeploymentChange,
    DirectoryGroup,
    DirectoryState,
    FilterSyncState,
    TenantLink,
    TenantTrack,
    Track,
)

VERIFICATION_FAILED = "verification_failed"
"""The portal's own reason, beside consent's: the check itself failed and was dead-lettered."""


def _track_of(app: EnterpriseApp) -> Track:
    return Track.LINK if app is EnterpriseApp.DIRECTORY_CONNECTOR else Track.INTUNE_WRITING


def _verdict(event: TenantLinkRejected | IntuneWritingRejected | ConsentRevoked) -> Verdict:
    return Verdict(
        event.reason, event.detail, tuple(event.missing_permissions), event.admin_consent_url
    )


async def _move(
    ctx: HandlerContext,
    tenant_id: UUID,
    tracks: Sequence[Track],
    step: Callable[[TenantTrack], bool],
    change_id: UUID | None = None,
    **link_values: Any,
) -> list[TenantTrack]:
    """Apply ``step`` to the tenant's ``tracks`` (those of request ``change_id`` only, when
    given), locked; the links of the tracks it moved get ``link_values`` and a new version."""
    statement = (
        select(TenantTrack)
        .where(col(TenantTrack.tenant_id) == tenant_id, col(TenantTrack.track).in_(tracks))
        .with_for_update()
    )
    if change_id is not None:
        statement = statement.where(col(TenantTrack.change_id) == change_id)
    moved = [track for track in (await ctx.session.exec(statement)).all() if step(track)]
    if moved:
        ctx.session.add_all(moved)
        await ctx.session.exec(
            update(TenantLink)
            .where(
                tuple_(col(TenantLink.account_id), col(TenantLink.tenant_id)).in_(
                    [(track.account_id, track.tenant_id) for track in moved]
                )
            )
            .values(**link_values, version=col(TenantLink.version) + 1, updated_at=func.now())
        )
    return moved


async def _advance_change(
    ctx: HandlerContext,
    change_id: UUID,
    step: Step,
    graph_request_ids: list[str] | None = None,
    **values: Any,
) -> DeploymentChange | None:
    """Move the change ``change_id`` on ``step`` at the event's time, with ``values``; None
    when the step does not apply to it (repeated, late, or not a change of ours)."""
    change = await ctx.session.get(DeploymentChange, change_id, with_for_update=True)
    if change is None or not lifecycle.advance(
        change, step, ctx.envelope.time, values.get("detail"), graph_request_ids
    ):
        return None
    for name, value in values.items():
        setattr(change, name, value)
    change.updated_at = datetime.now(UTC)
    ctx.session.add(change)
    return change


def register(runtime: ServiceRuntime) -> None:
    """Subscribe this service's consumer groups, with their handlers, on the runtime's broker."""
    results = runtime.consumer("results", Topic.TENANTS, Topic.DEAD_LETTER)

    @results.handles(TenantLinkVerified)
    async def record_link_verified(event: TenantLinkVerified, ctx: HandlerContext) -> None:
        """The tenant is linked."""
        await _move(
            ctx,
            event.tenant_id,
            [Track.LINK],
            lambda track: lifecycle.answer(track, event.correlation_id, Step.VERIFY),
            event.correlation_id,
            display_name=event.display_name,
            default_domain=event.default_domain,
            authorized_by=event.authorized_by,
        )

    @results.handles(TenantLinkRejected)
    async def record_link_rejected(event: TenantLinkRejected, ctx: HandlerContext) -> None:
        """The link was refused; the reason says what a Global Administrator has to do."""
        await _move(
            ctx,
            event.tenant_id,
            [Track.LINK],
            lambda track: lifecycle.answer(
                track, event.correlation_id, Step.REJECT, _verdict(event)
            ),
            event.correlation_id,
        )

    @results.handles(IntuneWritingEnabled)
    async def record_intune_enabled(event: IntuneWritingEnabled, ctx: HandlerContext) -> None:
        """Intune writing is on for the tenant."""
        await _move(
            ctx,
            event.tenant_id,
            [Track.INTUNE_WRITING],
            lambda track: lifecycle.answer(track, event.correlation_id, Step.VERIFY),
            event.correlation_id,
        )

    @results.handles(IntuneWritingRejected)
    async def record_intune_rejected(event: IntuneWritingRejected, ctx: HandlerContext) -> None:
        """Intune writing stays off; the reason says what is missing."""
        await _move(
            ctx,
            event.tenant_id,
            [Track.INTUNE_WRITING],
            lambda track: lifecycle.answer(
                track, event.correlation_id, Step.REJECT, _verdict(event)
            ),
            event.correlation_id,
        )

    @results.handles(TenantVerificationDeferred)
    async def record_verification_retrying(
        event: TenantVerificationDeferred, ctx: HandlerContext
    ) -> None:
        """A pending request is retrying after a transient failure; still no verdict."""
        await _move(
            ctx,
            event.tenant_id,
            [_track_of(event.app)],
            lambda track: lifecycle.defer(track, event.correlation_id, event.detail),
            event.correlation_id,
        )

    @results.handles(ConsentRevoked)
    async def record_consent_revoked(event: ConsentRevoked, ctx: HandlerContext) -> None:
        """Consent or a permission is gone: the link (or Intune writing) shows revoked."""
        await _move(
            ctx,
            event.tenant_id,
            [_track_of(event.app)],
            lambda track: lifecycle.revoke(track, _verdict(event)),
        )

    @results.handles(DeadLettered)
    async def record_verification_failed(event: DeadLettered, ctx: HandlerContext) -> None:
        """Consent gave up on a request (it failed, and not transiently): the request ends
        rejected instead of pending for ever; the dead letter keeps it for an operator."""
        if not event.consumer.startswith("consent."):
            return
        failed = Verdict(
            VERIFICATION_FAILED,
            f"Verification failed unexpectedly ({event.error_type}) and was set aside for an "
            "operator; request it again later.",
        )
        await _move(
            ctx,
            event.tenant_id,
            list(Track),
            lambda track: lifecycle.answer(track, event.correlation_id, Step.REJECT, failed),
            event.correlation_id,
        )
        await _advance_change(
            ctx,
            event.correlation_id,
            Step.REJECT,
            reason=VERIFICATION_FAILED,
            detail=f"Verification failed unexpectedly ({event.error_type}) and was set aside "
            "for an operator; send the change again later.",
        )


async def record_state_of(
    table: type[DirectoryState] | type[FilterSyncState],
    ctx: HandlerContext,
    tenant_id: UUID,
    **values: Any,
) -> None:
    await ctx.session.exec(
        insert(table)
        .values(tenant_id=tenant_id, **values)
        .on_conflict_do_update(index_elements=["tenant_id"], set_=values)
    )


def register_directory(runtime: ServiceRuntime) -> None:
    """The directory read model: directory-sync's events projected onto groups and a status
    per tenant. Upserts and deletes by key, so a redelivery changes nothing; one tenant's events
    arrive in order (one partition), a purge after the upserts it undoes."""
    directory = runtime.consumer("directory", Topic.DIRECTORY)

    @directory.handles(GroupUpserted)
    async def record_group(event: GroupUpserted, ctx: HandlerContext) -> None:
        values = {
            "display_name": event.display_name,
            "name_key": event.display_name.casefold(),
            "security_enabled": event.security_enabled,
            "dynamic": event.dynamic,
            "direct_users": event.direct_users,
            "direct_devices": event.direct_devices,
            "transitive_users": event.transitive_users,
            "transitive_devices": event.transitive_devices,
            "updated_at": func.now(),
        }
        await ctx.session.exec(
            insert(DirectoryGroup)
            .values(tenant_id=event.tenant_id, group_id=event.group_id, **values)
            .on_conflict_do_update(index_elements=["tenant_id", "group_id"], set_=values)
        )

    @directory.handles(GroupRemoved)
    async def forget_group(event: GroupRemoved, ctx: HandlerContext) -> None:
        await ctx.session.exec(
            delete(DirectoryGroup).where(
                col(DirectoryGroup.tenant_id) == event.tenant_id,
                col(DirectoryGroup.group_id) == event.group_id,
            )
        )

    async def record_state(ctx: HandlerContext, tenant_id: UUID, **values: Any) -> None:
        await record_state_of(DirectoryState, ctx, tenant_id, **values)

    @directory.handles(AssignmentFiltersSynced)
    async def record_filters(event: AssignmentFiltersSynced, ctx: HandlerContext) -> None:
        """The tenant's assignment filters, all of them: replace what the read model held."""
        await ctx.session.exec(
            delete(AssignmentFilterRow).where(col(AssignmentFilterRow.tenant_id) == event.tenant_id)
        )
        if event.filters:
            await ctx.session.exec(
                insert(AssignmentFilterRow).values(
                    [
                        {
                            "tenant_id": event.tenant_id,
                            "filter_id": item.filter_id,
                            "display_name": item.display_name,
                            "platform": item.platform,
                            "management_type": item.management_type,
                            "updated_at": ctx.envelope.time,
                        }
                        for item in event.filters
                    ]
                )
            )
        await record_state_of(FilterSyncState, ctx, event.tenant_id, synced_at=ctx.envelope.time)

    @directory.handles(DirectorySynced)
    async def record_synced(event: DirectorySynced, ctx: HandlerContext) -> None:
        await record_state(
            ctx,
            event.tenant_id,
            last_sync_at=ctx.envelope.time,
            last_mode=event.mode,
            users=event.users,
            groups=event.groups,
            devices=event.devices,
            next_sync_at=event.next_sync_at,
        )

    @directory.handles(DirectorySyncFailed)
    async def record_sync_failed(event: DirectorySyncFailed, ctx: HandlerContext) -> None:
        await record_state(
            ctx,
            event.tenant_id,
            last_error=event.detail,
            last_error_at=ctx.envelope.time,
            next_sync_at=event.next_attempt_at,
        )

    @directory.handles(DirectoryPurged)
    async def drop_directory(event: DirectoryPurged, ctx: HandlerContext) -> None:
        tables = (DirectoryGroup, DirectoryState, AssignmentFilterRow, FilterSyncState)
        for table in tables:
            await ctx.session.exec(delete(table).where(col(table.tenant_id) == event.tenant_id))


def register_deployments(runtime: ServiceRuntime) -> None:
    """Deployment changes' timelines: consent's verdicts and the writer's results. A result is
    recorded once, in the change's order of steps; a repeated or late one changes nothing."""
    changes = runtime.consumer("changes", Topic.DEPLOYMENTS)

    @changes.handles(DeploymentChangeVerified)
    async def record_change_verified(event: DeploymentChangeVerified, ctx: HandlerContext) -> None:
        await _advance_change(ctx, event.correlation_id, Step.VERIFY)

    @changes.handles(DeploymentChangeRejected)
    async def record_change_rejected(event: DeploymentChangeRejected, ctx: HandlerContext) -> None:
        await _advance_change(
            ctx, event.correlation_id, Step.REJECT, reason=event.reason, detail=event.detail
        )

    @changes.handles(DeploymentChangeApplied)
    async def record_change_applied(event: DeploymentChangeApplied, ctx: HandlerContext) -> None:
        change = await _advance_change(
            ctx, event.correlation_id, Step.APPLY, event.graph_request_ids
        )
        if change is None:
            return
        deployment = await ctx.session.get(
            Deployment, (event.tenant_id, event.app), with_for_update=True
        )
        if deployment is not None and (deployment.applied_revision or 0) < event.revision:
            deployment.applied = [
                a.model_dump(mode="json", exclude_none=True) for a in event.written_assignments
            ]
            deployment.applied_revision = event.revision
            deployment.intune_app_id = event.intune_app_id
            ctx.session.add(deployment)

    @changes.handles(DeploymentChangeFailed)
    async def record_change_failed(event: DeploymentChangeFailed, ctx: HandlerContext) -> None:
        await _advance_change(
            ctx,
            event.correlation_id,
            Step.FAIL,
            event.graph_request_ids,
            reason=event.reason,
            detail=event.detail,
            graph_error=event.graph_error.model_dump(mode="json") if event.graph_error else None,
        )

    @changes.handles(DeploymentChangeSuperseded)
    async def record_change_superseded(
        event: DeploymentChangeSuperseded, ctx: HandlerContext
    ) -> None:
        await _advance_change(
            ctx,
            event.correlation_id,
            Step.SUPERSEDE,
            superseded_by=event.superseded_by_change,
            detail=f"Revision {event.superseded_by_revision} was applied in its place.",
        )


def register_audit(runtime: ServiceRuntime) -> None:
    """The audit page's read model: every event of the audit topics, one row each (an event
    delivered again changes nothing), described as the replay describes it."""
    audit = runtime.consumer("audit", *AUDIT_TOPICS)

    async def record(event: EventPayload, ctx: HandlerContext) -> None:
        topic, partition, offset = ctx.position or ("", -1, -1)
        await ctx.session.exec(
            insert(AuditEventRow)
            .values(
                **audit_fields(ctx.envelope),
                topic=topic.removeprefix(runtime.kafka.topic_prefix),
                partition=partition,
                offset=offset,
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
        )

    for payload in EVENT_CLASSES:
        if payload.topic in AUDIT_TOPICS:
            audit.handles(payload)(record)
