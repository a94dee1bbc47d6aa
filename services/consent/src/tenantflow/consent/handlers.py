"""Use cases of consent, as event handlers: tenant-link and Intune-activation checks.

Each verdict is emitted in the same transaction that records the request as handled (the inbox),
so a crash between verifying and publishing only repeats the verification. A Graph or Entra
failure that stays transient raises TransientError: the bus retries the message, never skipping
it, and never turns a passing outage into a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tenantflow.bus.consumer import HandlerContext
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.consent.graph import AppCredentials, GraphClient
from tenantflow.consent.verification import Rejected, verify
from tenantflow.contracts.common import EventPayload, UserActor
from tenantflow.contracts.events import (
    IntuneWritingActivationRequested,
    IntuneWritingEnabled,
    IntuneWritingRejected,
    LinkAuthorization,
    TenantLinkRejected,
    TenantLinkRequested,
    TenantLinkVerified,
)
from tenantflow.contracts.topics import Topic

CONNECTOR_PERMISSIONS = ["Directory.Read.All"]
WRITER_PERMISSIONS = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "Organization.Read.All",
]


@dataclass(frozen=True)
class Apps:
    directory_connector: AppCredentials
    intune_writer: AppCredentials


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


def register(
    runtime: ServiceRuntime, graph: GraphClient | None = None, apps: Apps | None = None
) -> None:
    """Subscribe this service's consumer groups, with their handlers, on the runtime's broker."""
    if graph is None or apps is None:
        return
    requests = runtime.consumer("requests", Topic.TENANTS)

    @requests.handles(TenantLinkRequested)
    async def verify_tenant_link(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        """Is the directory connector consented, and may this user link the tenant?"""
        user = event.actor.object_id if isinstance(event.actor, UserActor) else None
        result = await verify(
            graph, apps.directory_connector, event.tenant_id, CONNECTOR_PERMISSIONS, user
        )
        common = _same_change(event)
        if isinstance(result, Rejected):
            await ctx.emit(TenantLinkRejected(**common, **_rejection(result)))
            return
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
        """Is the Intune writer consented with every write permission?"""
        result = await verify(graph, apps.intune_writer, event.tenant_id, WRITER_PERMISSIONS, None)
        common = _same_change(event)
        if isinstance(result, Rejected):
            await ctx.emit(IntuneWritingRejected(**common, **_rejection(result)))
            return
        await ctx.emit(
            IntuneWritingEnabled(**common, granted_permissions=result.granted_permissions)
        )
