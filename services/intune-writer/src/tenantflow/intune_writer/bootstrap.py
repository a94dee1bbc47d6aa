"""Composition root of intune-writer: builds everything the process runs, once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tenantflow.bus.reports import access_denied_reporter
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.events import EnterpriseApp
from tenantflow.graph.client import GraphClient
from tenantflow.graph.credentials import AppCredentials
from tenantflow.intune_writer import handlers
from tenantflow.intune_writer.filters import ACTOR, FilterReader
from tenantflow.intune_writer.models import SCHEMA
from tenantflow.intune_writer.settings import Settings

SERVICE = "intune-writer"
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def bootstrap(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.for_service(SERVICE, SCHEMA, MIGRATIONS, settings)

    graph = GraphClient(
        settings.login_base_url,
        settings.graph_base_url,
        str(settings.ca_bundle) if settings.ca_bundle else None,
        attempts=settings.graph_attempts,
        timeout_s=settings.graph_timeout_seconds,
        report_denied=access_denied_reporter(runtime, ACTOR, EnterpriseApp.INTUNE_WRITER),
    )
    runtime.on_stop(graph.close)
    credentials = AppCredentials.of(
        settings.intune_writer_client_id,
        settings.intune_writer_secret,
        settings.intune_writer_certificate,
        settings.intune_writer_private_key,
    )
    filters = FilterReader(
        runtime,
        graph,
        credentials,
        interval=timedelta(seconds=settings.filter_read_interval_seconds),
        retry=timedelta(seconds=settings.filter_retry_seconds),
    )
    handlers.register(runtime, filters, settings.poll_seconds)
    return runtime
