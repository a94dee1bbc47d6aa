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

from tenantflow.bus.consumer import HandlerContext
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.events import (
    ConsentRevoked,
    DeadLettered,
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
from tenantflow.contracts.topics import Topic
from tenantflow.portal_api import lifecycle
from tenantflow.portal_api.lifecycle import Step, Verdict
from tenantflow.portal_api.models import (
    DirectoryGroup,
    DirectoryState,
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
        await ctx.session.exec(
            insert(DirectoryState)
            .values(tenant_id=tenant_id, **values)
            .on_conflict_do_update(index_elements=["tenant_id"], set_=values)
        )

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
        for table in (DirectoryGroup, DirectoryState):
            await ctx.session.exec(delete(table).where(col(table.tenant_id) == event.tenant_id))
