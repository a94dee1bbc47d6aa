"""Composition root of directory-sync: builds everything the process runs, once."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID, uuid4

from tenantflow.bus.db import transaction
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.events import EnterpriseApp, GraphAccessDenied
from tenantflow.directory_sync import handlers
from tenantflow.directory_sync.models import SCHEMA
from tenantflow.directory_sync.settings import Settings
from tenantflow.directory_sync.sync import ACTOR, TenantSync
from tenantflow.graph.client import GraphClient
from tenantflow.graph.credentials import AppCredentials

SERVICE = "directory-sync"
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def bootstrap(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.for_service(SERVICE, SCHEMA, MIGRATIONS, settings)

    async def report_denied(
        tenant_id: UUID, app_id: UUID, status: int | None, code: str, detail: str
    ) -> None:
        """A 401, 403 or AADSTS700016: consent re-checks the tenant's consent at once."""
        async with transaction(runtime.sessions) as session:
            await runtime.outbox.add(
                session,
                GraphAccessDenied(
                    tenant_id=tenant_id,
                    actor=ACTOR,
                    correlation_id=uuid4(),
                    app=EnterpriseApp.DIRECTORY_CONNECTOR,
                    status=status,
                    error_code=code,
                    detail=detail[:1000],
                ),
            )

    graph = GraphClient(
        settings.login_base_url,
        settings.graph_base_url,
        str(settings.ca_bundle) if settings.ca_bundle else None,
        attempts=settings.graph_attempts,
        timeout_s=settings.graph_timeout_seconds,
        report_denied=report_denied,
    )
    runtime.on_stop(graph.close)
    credentials = AppCredentials(
        settings.directory_connector_client_id,
        settings.directory_connector_secret.get_secret_value()
        if settings.directory_connector_secret
        else None,
        settings.directory_connector_certificate,
        settings.directory_connector_private_key,
    )
    handlers.register(runtime, TenantSync(runtime, graph, credentials, settings))
    return runtime
