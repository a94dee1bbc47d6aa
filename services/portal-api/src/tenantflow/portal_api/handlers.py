"""Use cases of portal-api, as event handlers: consent's results projected onto tenant links.

Idempotent twice over: the inbox drops a redelivered event, and every update is guarded by the
state it moves from and, for verdicts, by the request's change id (correlation id). A verdict for
a request since superseded or unlinked therefore changes nothing, whenever it arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import delete, func, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select

from tenantflow.bus.consumer import Handler, HandlerContext
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
            .values(
                **link_values, version=col(TenantLink.version) + 1, updated_at=ctx.envelope.time
            )
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
    change.updated_at = ctx.envelope.time
    ctx.session.add(change)
    return change


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


async def record_link_rejected(event: TenantLinkRejected, ctx: HandlerContext) -> None:
    """The link was refused; the reason says what a Global Administrator has to do."""
    await _move(
        ctx,
        event.tenant_id,
        [Track.LINK],
        lambda track: lifecycle.answer(track, event.correlation_id, Step.REJECT, _verdict(event)),
        event.correlation_id,
    )


async def record_intune_enabled(event: IntuneWritingEnabled, ctx: HandlerContext) -> None:
    """Intune writing is on for the tenant."""
    await _move(
        ctx,
        event.tenant_id,
        [Track.INTUNE_WRITING],
        lambda track: lifecycle.answer(track, event.correlation_id, Step.VERIFY),
        event.correlation_id,
    )


async def record_intune_rejected(event: IntuneWritingRejected, ctx: HandlerContext) -> None:
    """Intune writing stays off; the reason says what is missing."""
    await _move(
        ctx,
        event.tenant_id,
        [Track.INTUNE_WRITING],
        lambda track: lifecycle.answer(track, event.correlation_id, Step.REJECT, _verdict(event)),
        event.correlation_id,
    )


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


async def record_consent_revoked(event: ConsentRevoked, ctx: HandlerContext) -> None:
    """Consent or a permission is gone: the link (or Intune writing) shows revoked."""
    await _move(
        ctx,
        event.tenant_id,
        [_track_of(event.app)],
        lambda track: lifecycle.revoke(track, _verdict(event)),
    )


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


async def forget_group(event: GroupRemoved, ctx: HandlerContext) -> None:
    await ctx.session.exec(
        delete(DirectoryGroup).where(
            col(DirectoryGroup.tenant_id) == event.tenant_id,
            col(DirectoryGroup.group_id) == event.group_id,
        )
    )


async def record_state(ctx: HandlerContext, tenant_id: UUID, **values: Any) -> None:
    await record_state_of(DirectoryState, ctx, tenant_id, **values)


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


async def record_sync_failed(event: DirectorySyncFailed, ctx: HandlerContext) -> None:
    await record_state(
        ctx,
        event.tenant_id,
        last_error=event.detail,
        last_error_at=ctx.envelope.time,
        next_sync_at=event.next_attempt_at,
    )


async def drop_directory(event: DirectoryPurged, ctx: HandlerContext) -> None:
    tables = (DirectoryGroup, DirectoryState, AssignmentFilterRow, FilterSyncState)
    for table in tables:
        await ctx.session.exec(delete(table).where(col(table.tenant_id) == event.tenant_id))


async def record_change_verified(event: DeploymentChangeVerified, ctx: HandlerContext) -> None:
    await _advance_change(ctx, event.correlation_id, Step.VERIFY)


async def record_change_rejected(event: DeploymentChangeRejected, ctx: HandlerContext) -> None:
    await _advance_change(
        ctx, event.correlation_id, Step.REJECT, reason=event.reason, detail=event.detail
    )


async def record_change_applied(event: DeploymentChangeApplied, ctx: HandlerContext) -> None:
    change = await _advance_change(ctx, event.correlation_id, Step.APPLY, event.graph_request_ids)
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


async def record_change_superseded(event: DeploymentChangeSuperseded, ctx: HandlerContext) -> None:
    await _advance_change(
        ctx,
        event.correlation_id,
        Step.SUPERSEDE,
        superseded_by=event.superseded_by_change,
        detail=f"Revision {event.superseded_by_revision} was applied in its place.",
    )


def audit_recorder(topic_prefix: str) -> Handler:
    """The audit page's read model: every event of the audit topics, one row each (an event
    delivered again changes nothing), described as the replay describes it."""

    async def record_audit_event(event: EventPayload, ctx: HandlerContext) -> None:
        topic, partition, offset = ctx.position or ("", -1, -1)
        await ctx.session.exec(
            insert(AuditEventRow)
            .values(
                **audit_fields(ctx.envelope),
                topic=topic.removeprefix(topic_prefix),
                partition=partition,
                offset=offset,
            )
            .on_conflict_do_nothing(index_elements=["event_id"])
        )

    return record_audit_event


Projection = dict[type[EventPayload], Handler]
"""A consumer group's handlers by event; the group reads the topics its events are on."""

RESULTS: Projection = {
    TenantLinkVerified: record_link_verified,
    TenantLinkRejected: record_link_rejected,
    IntuneWritingEnabled: record_intune_enabled,
    IntuneWritingRejected: record_intune_rejected,
    TenantVerificationDeferred: record_verification_retrying,
    ConsentRevoked: record_consent_revoked,
    DeadLettered: record_verification_failed,
}
"""Consent's results projected onto tenant links (and a dead-lettered verification's change)."""

DIRECTORY: Projection = {
    GroupUpserted: record_group,
    GroupRemoved: forget_group,
    AssignmentFiltersSynced: record_filters,
    DirectorySynced: record_synced,
    DirectorySyncFailed: record_sync_failed,
    DirectoryPurged: drop_directory,
}
"""The directory read model: directory-sync's events projected onto groups and a status per
tenant. Upserts and deletes by key, so a redelivery changes nothing; one tenant's events
arrive in order (one partition), a purge after the upserts it undoes."""

CHANGES: Projection = {
    DeploymentChangeVerified: record_change_verified,
    DeploymentChangeRejected: record_change_rejected,
    DeploymentChangeApplied: record_change_applied,
    DeploymentChangeFailed: record_change_failed,
    DeploymentChangeSuperseded: record_change_superseded,
}
"""Deployment changes' timelines: consent's verdicts and the writer's results. A result is
recorded once, in the change's order of steps; a repeated or late one changes nothing."""


def audit_projection(topic_prefix: str) -> Projection:
    recorder = audit_recorder(topic_prefix)
    return {payload: recorder for payload in EVENT_CLASSES if payload.topic in AUDIT_TOPICS}


def consumer_groups(topic_prefix: str) -> dict[str, Projection]:
    """Every consumer group of portal-api, by name, with its handlers."""
    return {
        "results": RESULTS,
        "directory": DIRECTORY,
        "changes": CHANGES,
        "audit": audit_projection(topic_prefix),
    }


def register(runtime: ServiceRuntime) -> None:
    """Subscribe this service's consumer groups, with their handlers, on the runtime's broker."""
    for group, projection in consumer_groups(runtime.kafka.topic_prefix).items():
        topics = sorted({payload.topic for payload in projection})
        consumer = runtime.consumer(group, *topics)
        for payload, handler in projection.items():
            consumer.handles(payload)(handler)
