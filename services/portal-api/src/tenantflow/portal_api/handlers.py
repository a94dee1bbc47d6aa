"""Use cases of portal-api, as event handlers: consent's results projected onto tenant links.

Idempotent twice over: the inbox drops a redelivered event, and every update is guarded by the
state it moves from and, for verdicts, by the request's change id (correlation id). A verdict for
a request since superseded or unlinked therefore changes nothing, whenever it arrives.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, update
from sqlmodel import col

from tenantflow.bus.consumer import HandlerContext
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.events import (
    ConsentRevoked,
    DeadLettered,
    EnterpriseApp,
    IntuneWritingEnabled,
    IntuneWritingRejected,
    TenantLinkRejected,
    TenantLinkVerified,
    TenantVerificationDeferred,
)
from tenantflow.contracts.topics import Topic
from tenantflow.portal_api.models import IntuneWritingStatus, LinkStatus, TenantLink

VERIFICATION_FAILED = "verification_failed"
"""The portal's own reason, beside consent's: the check itself failed and was dead-lettered."""


async def _update(ctx: HandlerContext, *where: ColumnElement[bool], **values: Any) -> None:
    await ctx.session.exec(
        update(TenantLink)
        .where(*where)
        .values(**values, version=col(TenantLink.version) + 1, updated_at=func.now())
    )


def _pending_link(event: TenantLinkVerified | TenantLinkRejected) -> list[ColumnElement[bool]]:
    return [
        col(TenantLink.tenant_id) == event.tenant_id,
        col(TenantLink.link_change_id) == event.correlation_id,
        col(TenantLink.status) == LinkStatus.PENDING,
    ]


def _pending_intune(
    event: IntuneWritingEnabled | IntuneWritingRejected,
) -> list[ColumnElement[bool]]:
    return [
        col(TenantLink.tenant_id) == event.tenant_id,
        col(TenantLink.intune_change_id) == event.correlation_id,
        col(TenantLink.intune_status) == IntuneWritingStatus.PENDING,
    ]


def register(runtime: ServiceRuntime) -> None:
    """Subscribe this service's consumer groups, with their handlers, on the runtime's broker."""
    results = runtime.consumer("results", Topic.TENANTS, Topic.DEAD_LETTER)

    @results.handles(TenantLinkVerified)
    async def record_link_verified(event: TenantLinkVerified, ctx: HandlerContext) -> None:
        """The tenant is linked."""
        await _update(
            ctx,
            *_pending_link(event),
            status=LinkStatus.LINKED,
            display_name=event.display_name,
            default_domain=event.default_domain,
            authorized_by=event.authorized_by,
            retry_detail=None,
        )

    @results.handles(TenantLinkRejected)
    async def record_link_rejected(event: TenantLinkRejected, ctx: HandlerContext) -> None:
        """The link was refused; the reason says what a Global Administrator has to do."""
        await _update(
            ctx,
            *_pending_link(event),
            status=LinkStatus.REJECTED,
            reason=event.reason,
            message=event.detail,
            missing_permissions=event.missing_permissions,
            admin_consent_url=event.admin_consent_url,
            retry_detail=None,
        )

    @results.handles(IntuneWritingEnabled)
    async def record_intune_enabled(event: IntuneWritingEnabled, ctx: HandlerContext) -> None:
        """Intune writing is on for the tenant."""
        await _update(
            ctx,
            *_pending_intune(event),
            intune_status=IntuneWritingStatus.ENABLED,
            intune_retry_detail=None,
        )

    @results.handles(IntuneWritingRejected)
    async def record_intune_rejected(event: IntuneWritingRejected, ctx: HandlerContext) -> None:
        """Intune writing stays off; the reason says what is missing."""
        await _update(
            ctx,
            *_pending_intune(event),
            intune_status=IntuneWritingStatus.REJECTED,
            intune_reason=event.reason,
            intune_message=event.detail,
            intune_missing_permissions=event.missing_permissions,
            intune_admin_consent_url=event.admin_consent_url,
            intune_retry_detail=None,
        )

    @results.handles(TenantVerificationDeferred)
    async def record_verification_retrying(
        event: TenantVerificationDeferred, ctx: HandlerContext
    ) -> None:
        """A pending request is retrying after a transient failure; still no verdict."""
        if event.app is EnterpriseApp.DIRECTORY_CONNECTOR:
            await _update(
                ctx,
                col(TenantLink.tenant_id) == event.tenant_id,
                col(TenantLink.link_change_id) == event.correlation_id,
                col(TenantLink.status) == LinkStatus.PENDING,
                retry_detail=event.detail,
            )
        else:
            await _update(
                ctx,
                col(TenantLink.tenant_id) == event.tenant_id,
                col(TenantLink.intune_change_id) == event.correlation_id,
                col(TenantLink.intune_status) == IntuneWritingStatus.PENDING,
                intune_retry_detail=event.detail,
            )

    @results.handles(ConsentRevoked)
    async def record_consent_revoked(event: ConsentRevoked, ctx: HandlerContext) -> None:
        """Consent or a permission is gone: the link (or Intune writing) shows revoked."""
        if event.app is EnterpriseApp.DIRECTORY_CONNECTOR:
            await _update(
                ctx,
                col(TenantLink.tenant_id) == event.tenant_id,
                col(TenantLink.status) == LinkStatus.LINKED,
                status=LinkStatus.REVOKED,
                reason=event.reason,
                message=event.detail,
                missing_permissions=event.missing_permissions,
                admin_consent_url=event.admin_consent_url,
            )
        else:
            await _update(
                ctx,
                col(TenantLink.tenant_id) == event.tenant_id,
                col(TenantLink.intune_status) == IntuneWritingStatus.ENABLED,
                intune_status=IntuneWritingStatus.REVOKED,
                intune_reason=event.reason,
                intune_message=event.detail,
                intune_missing_permissions=event.missing_permissions,
                intune_admin_consent_url=event.admin_consent_url,
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
        await _update(
            ctx,
            col(TenantLink.tenant_id) == event.tenant_id,
            col(TenantLink.link_change_id) == event.correlation_id,
            col(TenantLink.status) == LinkStatus.PENDING,
            status=LinkStatus.REJECTED,
            reason=VERIFICATION_FAILED,
            message=message,
            retry_detail=None,
        )
        await _update(
            ctx,
            col(TenantLink.tenant_id) == event.tenant_id,
            col(TenantLink.intune_change_id) == event.correlation_id,
            col(TenantLink.intune_status) == IntuneWritingStatus.PENDING,
            intune_status=IntuneWritingStatus.REJECTED,
            intune_reason=VERIFICATION_FAILED,
            intune_message=message,
            intune_retry_detail=None,
        )
