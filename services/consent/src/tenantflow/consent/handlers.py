"""Use cases of consent, as event handlers: tenant-link and Intune-activation checks, and the
continuous re-verification of linked tenants.

Each verdict is emitted in the same transaction that records the request as handled (the inbox),
so a crash between verifying and publishing only repeats the verification. A Graph or Entra
failure that stays transient raises TransientError: the bus retries the message, never skipping
it, and never turns a passing outage into a verdict; the portal is told once that it is retrying.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from uuid import UUID, uuid4

from sqlalchemy import delete, update
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tenantflow.bus.consumer import HandlerContext
from tenantflow.bus.db import transaction
from tenantflow.bus.errors import is_transient
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.consent.changes import ChangeChecks, Freshness, record_allowed
from tenantflow.consent.models import AuthorizedActor, LinkedTenant
from tenantflow.consent.settings import Settings
from tenantflow.consent.verification import REVOKING, Rejected, Verified, verify
from tenantflow.contracts.common import EventPayload, ServiceActor, UserActor
from tenantflow.contracts.events import (
    ConsentRevoked,
    DeploymentChangeRequested,
    EnterpriseApp,
    GraphAccessDenied,
    IntuneWritingActivationRequested,
    IntuneWritingEnabled,
    IntuneWritingRejected,
    LinkAuthorization,
    TenantLinkRejected,
    TenantLinkRequested,
    TenantLinkVerified,
    TenantUnlinked,
    TenantVerificationDeferred,
    VerificationFailure,
)
from tenantflow.contracts.topics import Topic
from tenantflow.graph.client import GraphClient
from tenantflow.graph.credentials import AppCredentials

log = logging.getLogger(__name__)

CONNECTOR_PERMISSIONS = ["Directory.Read.All"]
WRITER_PERMISSIONS = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementConfiguration.Read.All",
    "Organization.Read.All",
]
SERVICE = ServiceActor(service="consent")
RETRY_TRANSIENT_CHECK_S = 60.0

Emit = Callable[[EventPayload], Awaitable[Any]]
DetectedBy = Literal["scheduled_check", "reported_failure"]


@dataclass(frozen=True)
class Apps:
    directory_connector: AppCredentials
    intune_writer: AppCredentials

    def of(self, app: EnterpriseApp) -> tuple[AppCredentials, list[str]]:
        if app is EnterpriseApp.DIRECTORY_CONNECTOR:
            return self.directory_connector, CONNECTOR_PERMISSIONS
        return self.intune_writer, WRITER_PERMISSIONS


def _same_change(event: EventPayload) -> dict[str, Any]:
    """A verdict belongs to the request's change: same tenant, actor and correlation id."""
    return {
        "tenant_id": event.tenant_id,
        "actor": event.actor,
        "correlation_id": event.correlation_id,
    }


def _rejection(result: Rejected) -> dict[str, Any]:
    return {
        "reason": result.reason,
        "detail": result.detail,
        "missing_permissions": result.missing_permissions,
        "admin_consent_url": result.admin_consent_url,
    }


@dataclass
class Consent:
    """Verifies requests and keeps verifying linked tenants."""

    runtime: ServiceRuntime
    graph: GraphClient
    apps: Apps
    settings: Settings
    _deferred: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.changes = ChangeChecks(
            self.runtime,
            Freshness(
                timedelta(seconds=self.settings.consent_max_age_seconds),
                timedelta(seconds=self.settings.actor_max_age_seconds),
            ),
            verify_user=lambda tenant, user: self._verify(
                tenant, EnterpriseApp.DIRECTORY_CONNECTOR, user
            ),
            recheck=self._recheck_now,
            clock=self._now,
        )

    def _now(self) -> datetime:
        return datetime.now(UTC)

    def _next_check(self) -> datetime:
        return self._now() + timedelta(seconds=self.settings.recheck_interval_seconds)

    # --- requests ----------------------------------------------------------------------------

    async def verify_request(
        self, event: EventPayload, app: EnterpriseApp, ctx: HandlerContext
    ) -> Verified | Rejected:
        """Verify for ``event``'s user; on a transient failure tell the portal, once per
        request, that it is retrying, then let the bus retry."""
        user = event.actor.object_id if isinstance(event.actor, UserActor) else None
        try:
            result = await self._verify(event.tenant_id, app, user)
        except Exception as exc:
            if is_transient(exc) and ctx.event_id not in self._deferred:
                await self._tell_retrying(event, app, ctx, exc)
            raise
        self._deferred.discard(ctx.event_id)
        return result

    async def _verify(
        self, tenant_id: UUID, app: EnterpriseApp, user: UUID | None
    ) -> Verified | Rejected:
        credentials, permissions = self.apps.of(app)
        connector = self.apps.directory_connector
        reader = None if credentials is connector else connector
        return await verify(
            self.graph, credentials, tenant_id, permissions, user, directory_reader=reader
        )

    async def _tell_retrying(
        self, event: EventPayload, app: EnterpriseApp, ctx: HandlerContext, error: Exception
    ) -> None:
        notice = TenantVerificationDeferred(
            **_same_change(event),
            causation_id=ctx.event_id,
            app=app,
            detail=f"Entra ID or Microsoft Graph failed transiently, retrying: {error}"[:1000],
        )
        async with transaction(self.runtime.sessions) as session:  # survives the retry
            await self.runtime.outbox.add(session, notice)
        self._deferred.add(ctx.event_id)

    async def record_linked(
        self, session: AsyncSession, event: TenantLinkRequested, result: Verified
    ) -> None:
        """The link is verified: the tenant is checked from now on, and its user is known to
        be allowed."""
        next_check, now = self._next_check(), self._now()
        await session.exec(
            insert(LinkedTenant)
            .values(
                tenant_id=event.tenant_id,
                link_change_id=event.correlation_id,
                connector_consented=True,
                intune_writing=False,
                next_check_at=next_check,
                verified_at=now,
            )
            .on_conflict_do_update(
                index_elements=["tenant_id"],
                set_={
                    "link_change_id": event.correlation_id,
                    "connector_consented": True,
                    "next_check_at": next_check,
                    "verified_at": now,
                },
            )
        )
        await self.record_user(session, event, result)

    async def record_user(
        self, session: AsyncSession, event: EventPayload, result: Verified | Rejected
    ) -> None:
        """What a request's verification showed of its user's right on the tenant."""
        if not isinstance(event.actor, UserActor):
            return
        if isinstance(result, Rejected) and result.reason is not (
            VerificationFailure.USER_NOT_AUTHORIZED
        ):
            return  # the user was not checked
        authorized = result.authorized_by if isinstance(result, Verified) else None
        await record_allowed(
            session, event.tenant_id, event.actor.object_id, authorized, self._now()
        )

    # --- continuous verification -------------------------------------------------------------

    async def recheck(self, tenant: LinkedTenant, detected_by: DetectedBy) -> list[ConsentRevoked]:
        """What a fresh check finds gone: one ConsentRevoked per app that lost consent or a
        permission. Raises TransientError while Graph cannot tell."""
        self.graph.forget_tokens(str(tenant.tenant_id))  # a cached token outlives revocation
        watched = [EnterpriseApp.DIRECTORY_CONNECTOR] if tenant.connector_consented else []
        if tenant.intune_writing:
            watched.append(EnterpriseApp.INTUNE_WRITER)
        found = []
        for app in watched:
            result = await self._verify(tenant.tenant_id, app, None)
            if isinstance(result, Rejected) and result.reason in REVOKING:
                found.append(
                    ConsentRevoked(
                        tenant_id=tenant.tenant_id,
                        actor=SERVICE,
                        correlation_id=uuid4(),
                        app=app,
                        reason=result.reason,
                        detail=result.detail,
                        missing_permissions=result.missing_permissions,
                        admin_consent_url=result.admin_consent_url,
                        detected_by=detected_by,
                    )
                )
            elif isinstance(result, Rejected):
                log.warning("re-check of %s: %s", tenant.tenant_id, result.detail)
        return found

    async def apply(
        self,
        session: AsyncSession,
        checked: LinkedTenant,
        revocations: list[ConsentRevoked],
        emit: Emit,
    ) -> None:
        """Record a re-check's findings, unless the tenant was unlinked or relinked meanwhile."""
        current = await session.get(
            LinkedTenant, checked.tenant_id, with_for_update=True, populate_existing=True
        )
        if current is None or current.link_change_id != checked.link_change_id:
            return
        current.last_checked_at = self._now()
        for revoked in revocations:
            if revoked.app is EnterpriseApp.DIRECTORY_CONNECTOR and current.connector_consented:
                current.connector_consented = False
                await emit(revoked)
            elif revoked.app is EnterpriseApp.INTUNE_WRITER and current.intune_writing:
                current.intune_writing = False
                await emit(revoked)
        session.add(current)

    async def _recheck_now(self, tenant: LinkedTenant) -> None:
        """Re-check ``tenant`` with Graph (no transaction open meanwhile) and record it."""
        await self._record_recheck(tenant, await self.recheck(tenant, "scheduled_check"))

    async def _record_recheck(
        self, tenant: LinkedTenant, revocations: list[ConsentRevoked]
    ) -> None:
        async with transaction(self.runtime.sessions) as session:

            async def emit(event: EventPayload) -> Any:
                return await self.runtime.outbox.add(session, event)

            await self.apply(session, tenant, revocations, emit)

    async def recheck_reported(self, event: GraphAccessDenied, ctx: HandlerContext) -> None:
        """Check the reported tenant now, or, if it was checked moments ago, as soon as the
        minimum spacing allows: a burst of reports costs one check, and none is dropped."""
        tenant = await ctx.session.get(LinkedTenant, event.tenant_id, with_for_update=True)
        if tenant is None:
            return
        spacing = timedelta(seconds=self.settings.reported_recheck_min_seconds)
        if tenant.last_checked_at and self._now() - tenant.last_checked_at < spacing:
            tenant.next_check_at = min(tenant.next_check_at, tenant.last_checked_at + spacing)
            ctx.session.add(tenant)
            return
        revocations = [
            revoked.model_copy(update={"correlation_id": event.correlation_id})
            for revoked in await self.recheck(tenant, "reported_failure")
        ]
        await self.apply(ctx.session, tenant, revocations, ctx.emit)

    async def _claim_due(self) -> list[LinkedTenant]:
        """Due tenants, each claimed by moving its next check forward (several replicas share
        the work: SKIP LOCKED)."""
        now = self._now()
        due = (
            select(LinkedTenant.tenant_id)
            .where(
                col(LinkedTenant.next_check_at) <= now,
                col(LinkedTenant.connector_consented) | col(LinkedTenant.intune_writing),
            )
            .order_by(col(LinkedTenant.next_check_at))
            .limit(20)
            .with_for_update(skip_locked=True)
        )
        async with transaction(self.runtime.sessions) as session:
            claimed = await session.exec(
                update(LinkedTenant)
                .where(col(LinkedTenant.tenant_id).in_(due.scalar_subquery()))
                .values(next_check_at=self._next_check())
                .returning(LinkedTenant)
            )
            return list(claimed.scalars())

    async def _check_again_soon(self, tenant: LinkedTenant) -> None:
        """Graph could not tell: try again in a minute, not a whole interval later."""
        soon = self._now() + timedelta(
            seconds=min(RETRY_TRANSIENT_CHECK_S, self.settings.recheck_interval_seconds)
        )
        async with transaction(self.runtime.sessions) as session:
            await session.exec(
                update(LinkedTenant)
                .where(col(LinkedTenant.tenant_id) == tenant.tenant_id)
                .values(next_check_at=soon)
            )

    async def run_scheduled_checks(self) -> None:
        """Re-check every linked tenant every ``recheck_interval_seconds``, until cancelled."""
        while True:
            for tenant in await self._claim_due():
                try:
                    revocations = await self.recheck(tenant, "scheduled_check")
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    log.warning("re-check of %s postponed: %r", tenant.tenant_id, exc)
                    await self._check_again_soon(tenant)
                    continue
                await self._record_recheck(tenant, revocations)
            await asyncio.sleep(self.settings.recheck_poll_seconds)


def register(runtime: ServiceRuntime, consent: Consent | None = None) -> None:
    """Subscribe this service's consumer groups, with their handlers, on the runtime's broker."""
    if consent is None:
        return
    requests = runtime.consumer("requests", Topic.TENANTS)
    changes = runtime.consumer("changes", Topic.DEPLOYMENTS)
    runtime.in_background("scheduled-checks", consent.run_scheduled_checks)
    runtime.in_background(
        "change-checks",
        lambda: consent.changes.run(consent.settings.change_check_poll_seconds),
    )

    @requests.handles(TenantLinkRequested)
    async def verify_tenant_link(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        """Is the directory connector consented, and may this user link the tenant?"""
        result = await consent.verify_request(event, EnterpriseApp.DIRECTORY_CONNECTOR, ctx)
        common = _same_change(event)
        if isinstance(result, Rejected):
            await consent.record_user(ctx.session, event, result)
            await ctx.emit(TenantLinkRejected(**common, **_rejection(result)))
            return
        await consent.record_linked(ctx.session, event, result)
        await ctx.emit(
            TenantLinkVerified(
                **common,
                display_name=result.display_name,
                default_domain=result.default_domain,
                granted_permissions=result.granted_permissions,
                authorized_by=result.authorized_by or LinkAuthorization.GLOBAL_ADMINISTRATOR,
            )
        )

    @requests.handles(IntuneWritingActivationRequested)
    async def verify_intune_activation(
        event: IntuneWritingActivationRequested, ctx: HandlerContext
    ) -> None:
        """Is the Intune writer consented with every write permission, and may this user
        activate it?"""
        result = await consent.verify_request(event, EnterpriseApp.INTUNE_WRITER, ctx)
        common = _same_change(event)
        await consent.record_user(ctx.session, event, result)
        if isinstance(result, Rejected):
            await ctx.emit(IntuneWritingRejected(**common, **_rejection(result)))
            return
        await ctx.session.exec(
            update(LinkedTenant)
            .where(col(LinkedTenant.tenant_id) == event.tenant_id)
            .values(intune_writing=True, verified_at=consent._now())
        )
        await ctx.emit(
            IntuneWritingEnabled(
                **common,
                granted_permissions=result.granted_permissions,
                assignments_source_of_truth=event.assignments_source_of_truth,
            )
        )

    @changes.handles(DeploymentChangeRequested)
    async def verify_deployment_change(
        event: DeploymentChangeRequested, ctx: HandlerContext
    ) -> None:
        """Is the tenant linked with Intune writing enabled and consented, and is the actor
        still allowed? From what consent knows, unless something is in doubt."""
        await consent.changes.on_requested(event, ctx)

    @requests.handles(GraphAccessDenied)
    async def recheck_reported_tenant(event: GraphAccessDenied, ctx: HandlerContext) -> None:
        """Another service was refused by Graph or Entra ID for this tenant: check it now."""
        await consent.recheck_reported(event, ctx)

    @requests.handles(TenantUnlinked)
    async def forget_tenant(event: TenantUnlinked, ctx: HandlerContext) -> None:
        """The tenant was unlinked: stop checking it, forget its users and drop its tokens.
        Changes still waiting for a check are rejected by it (the tenant is not linked)."""
        for table in (LinkedTenant, AuthorizedActor):
            await ctx.session.exec(delete(table).where(col(table.tenant_id) == event.tenant_id))
        consent.graph.forget_tokens(str(event.tenant_id))
