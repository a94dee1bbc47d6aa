"""Use cases of portal-api, as event handlers: consent's results projected onto tenant links.

Idempotent twice over: the inbox drops a redelivered event, and every update is guarded by the
state it moves from and, for verdicts, by the request's change id (correlation id). A verdict for
a request since superseded or unlinked therefore changes nothing, whenever it arrives.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from sqlalchemy import ColumnElement, delete, func, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col

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
from tenantflow.portal_api.models import (
    INTUNE,
    LINK,
    DirectoryGroup,
    DirectoryState,
    IntuneWritingStatus,
    LinkStatus,
    TenantLink,
    verdict_columns,
)

VERIFICATION_FAILED = "verification_failed"
"""The portal's own reason, beside consent's: the check itself failed and was dead-lettered."""


def _track_of(app: EnterpriseApp) -> str:
    return LINK if app is EnterpriseApp.DIRECTORY_CONNECTOR else INTUNE


def _in(track: str, tenant_id: UUID, status: str) -> list[ColumnElement[bool]]:
    return [
        col(TenantLink.tenant_id) == tenant_id,
        col(getattr(TenantLink, f"{track}status")) == status,
    ]


def _pending(track: str, tenant_id: UUID, change_id: UUID) -> list[ColumnElement[bool]]:
    """The track's request ``change_id``, while it waits for its verdict."""
    change = TenantLink.link_change_id if track == LINK else TenantLink.intune_change_id
    return [*_in(track, tenant_id, LinkStatus.PENDING), col(change) == change_id]


async def _update(ctx: HandlerContext, where: list[ColumnElement[bool]], **values: Any) -> None:
    await ctx.session.exec(
        update(TenantLink)
        .where(*where)
        .values(**values, version=col(TenantLink.version) + 1, updated_at=func.now())
    )


async def _reject(
    ctx: HandlerContext,
    track: str,
    event: TenantLinkRejected | IntuneWritingRejected,
) -> None:
    await _update(
        ctx,
        _pending(track, event.tenant_id, event.correlation_id),
        **{f"{track}status": LinkStatus.REJECTED},
        **verdict_columns(
            track,
            event.reason,
            event.detail,
            event.missing_permissions,
            event.admin_consent_url,
        ),
    )


def register(runtime: ServiceRuntime) -> None:
    """Subscribe this service's consumer groups, with their handlers, on the runtime's broker."""
    results = runtime.consumer("results", Topic.TENANTS, Topic.DEAD_LETTER)

    @results.handles(TenantLinkVerified)
    async def record_link_verified(event: TenantLinkVerified, ctx: HandlerContext) -> None:
        """The tenant is linked."""
        await _update(
            ctx,
            _pending(LINK, event.tenant_id, event.correlation_id),
            status=LinkStatus.LINKED,
            display_name=event.display_name,
            default_domain=event.default_domain,
            authorized_by=event.authorized_by,
            retry_detail=None,
        )

    @results.handles(TenantLinkRejected)
    async def record_link_rejected(event: TenantLinkRejected, ctx: HandlerContext) -> None:
        """The link was refused; the reason says what a Global Administrator has to do."""
        await _reject(ctx, LINK, event)

    @results.handles(IntuneWritingEnabled)
    async def record_intune_enabled(event: IntuneWritingEnabled, ctx: HandlerContext) -> None:
        """Intune writing is on for the tenant."""
        await _update(
            ctx,
            _pending(INTUNE, event.tenant_id, event.correlation_id),
            intune_status=IntuneWritingStatus.ENABLED,
            intune_retry_detail=None,
        )

    @results.handles(IntuneWritingRejected)
    async def record_intune_rejected(event: IntuneWritingRejected, ctx: HandlerContext) -> None:
        """Intune writing stays off; the reason says what is missing."""
        await _reject(ctx, INTUNE, event)

    @results.handles(TenantVerificationDeferred)
    async def record_verification_retrying(
        event: TenantVerificationDeferred, ctx: HandlerContext
    ) -> None:
        """A pending request is retrying after a transient failure; still no verdict."""
        track = _track_of(event.app)
        await _update(
            ctx,
            _pending(track, event.tenant_id, event.correlation_id),
            **{f"{track}retry_detail": event.detail},
        )

    @results.handles(ConsentRevoked)
    async def record_consent_revoked(event: ConsentRevoked, ctx: HandlerContext) -> None:
        """Consent or a permission is gone: the link (or Intune writing) shows revoked."""
        track = _track_of(event.app)
        granted = LinkStatus.LINKED if track == LINK else IntuneWritingStatus.ENABLED
        await _update(
            ctx,
            _in(track, event.tenant_id, granted),
            **{f"{track}status": LinkStatus.REVOKED},
            **verdict_columns(
                track,
                event.reason,
                event.detail,
                event.missing_permissions,
                event.admin_consent_url,
            ),
        )

    @results.handles(DeadLettered)
    async def record_verification_failed(event: DeadLettered, ctx: HandlerContext) -> None:
        """Consent gave up on a request (it failed, and not transiently): the request ends
        rejected instead of pending for ever; the dead letter keeps it for an operator."""
        if not event.consumer.startswith("consent."):
            return
        message = (
            f"Verification failed unexpectedly ({event.error_type}) and was set aside for an "
            "operator; request it again later."
        )
        for track in (LINK, INTUNE):
            await _update(
                ctx,
                _pending(track, event.tenant_id, event.correlation_id),
                **{f"{track}status": LinkStatus.REJECTED},
                **verdict_columns(track, VERIFICATION_FAILED, message),
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
