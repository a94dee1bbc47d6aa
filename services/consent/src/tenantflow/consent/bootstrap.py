"""Composition root of consent: builds everything the process runs, once."""

from __future__ import annotations

from pathlib import Path

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.consent import handlers
from tenantflow.consent.models import SCHEMA
from tenantflow.consent.settings import Settings
from tenantflow.graph.client import GraphClient
from tenantflow.graph.credentials import AppCredentials

SERVICE = "consent"
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def bootstrap(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.for_service(SERVICE, SCHEMA, MIGRATIONS, settings)
    graph = GraphClient(
        settings.login_base_url,
        settings.graph_base_url,
        str(settings.ca_bundle) if settings.ca_bundle else None,
        attempts=settings.graph_attempts,
    )
    runtime.on_stop(graph.close)
    runtime.metrics.graph_client(graph)
    apps = handlers.Apps(
        directory_connector=AppCredentials.of(
            settings.directory_connector_client_id,
            settings.directory_connector_secret,
            settings.directory_connector_certificate,
            settings.directory_connector_private_key,
        ),
        intune_writer=AppCredentials.of(
            settings.intune_writer_client_id,
            settings.intune_writer_secret,
            settings.intune_writer_certificate,
            settings.intune_writer_private_key,
        ),
    )
    handlers.register(runtime, handlers.Consent(runtime, graph, apps, settings))
    return runtime
