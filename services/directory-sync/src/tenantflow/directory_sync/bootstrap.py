"""Composition root of directory-sync: builds everything the process runs, once."""

from __future__ import annotations

from pathlib import Path

from tenantflow.bus.reports import access_denied_reporter
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.events import EnterpriseApp
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

    graph = GraphClient(
        settings.login_base_url,
        settings.graph_base_url,
        str(settings.ca_bundle) if settings.ca_bundle else None,
        attempts=settings.graph_attempts,
        timeout_s=settings.graph_timeout_seconds,
        report_denied=access_denied_reporter(runtime, ACTOR, EnterpriseApp.DIRECTORY_CONNECTOR),
    )
    runtime.on_stop(graph.close)
    runtime.metrics.graph_client(graph)
    credentials = AppCredentials.of(
        settings.directory_connector_client_id,
        settings.directory_connector_secret,
        settings.directory_connector_certificate,
        settings.directory_connector_private_key,
    )
    handlers.register(runtime, TenantSync(runtime, graph, credentials, settings))
    return runtime
