"""Events a service reports about its own Graph calls, through its outbox."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from uuid import UUID, uuid4

from tenantflow.bus.db import transaction
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.common import ServiceActor
from tenantflow.contracts.events import EnterpriseApp, GraphAccessDenied

ReportDenied = Callable[[UUID, UUID, int | None, str, str], Awaitable[None]]


def access_denied_reporter(
    runtime: ServiceRuntime, actor: ServiceActor, app: EnterpriseApp
) -> ReportDenied:
    """The Graph client's hook for a 401, a 403 or AADSTS700016: GraphAccessDenied, so that
    consent re-checks the tenant's consent at once."""

    async def report(
        tenant_id: UUID, app_id: UUID, status: int | None, code: str, detail: str
    ) -> None:
        async with transaction(runtime.sessions) as session:
            await runtime.outbox.add(
                session,
                GraphAccessDenied(
                    tenant_id=tenant_id,
                    actor=actor,
                    correlation_id=uuid4(),
                    app=app,
                    status=status,
                    error_code=code,
                    detail=detail[:1000],
                ),
            )

    return report
