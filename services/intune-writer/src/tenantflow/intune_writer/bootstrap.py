"""Composition root of intune-writer: builds everything the process runs, once."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from tenantflow.bus.metrics import WAIT_BUCKETS
from tenantflow.bus.reports import access_denied_reporter
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.events import EnterpriseApp
from tenantflow.graph.client import GraphClient
from tenantflow.graph.credentials import AppCredentials
from tenantflow.intune_writer import handlers
from tenantflow.intune_writer.filters import ACTOR, FilterReader
from tenantflow.intune_writer.models import SCHEMA
from tenantflow.intune_writer.scheduler import Scheduler, SchedulerSettings
from tenantflow.intune_writer.settings import Settings
from tenantflow.intune_writer.throttle import Limits

SERVICE = "intune-writer"
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def scheduler_settings(settings: Settings) -> SchedulerSettings:
    return SchedulerSettings(
        tenants_per_process=settings.tenants_per_process,
        changes_per_round=settings.changes_per_round,
        lease_s=settings.lease_seconds,
        poll_s=settings.poll_seconds,
        access_denied_pause_s=settings.access_denied_pause_seconds,
        backoff_initial_s=settings.retry_initial_seconds,
        backoff_max_s=settings.retry_max_seconds,
        limits=Limits(
            writes=settings.intune_app_writes_per_window,
            requests=settings.intune_app_requests_per_window,
            window_s=settings.intune_window_seconds,
        ),
    )


def bootstrap(settings: Settings) -> tuple[ServiceRuntime, Scheduler]:
    runtime = ServiceRuntime.for_service(SERVICE, SCHEMA, MIGRATIONS, settings)

    graph = GraphClient(
        settings.login_base_url,
        settings.graph_base_url,
        str(settings.ca_bundle) if settings.ca_bundle else None,
        # the scheduler retries 5xx and timeouts itself, later and within the tenant's budget,
        # never by waiting in place
        attempts=1,
        timeout_s=settings.graph_timeout_seconds,
        report_denied=access_denied_reporter(runtime, ACTOR, EnterpriseApp.INTUNE_WRITER),
    )
    runtime.on_stop(graph.close)
    runtime.metrics.graph_client(graph)
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
    scheduler = Scheduler(runtime, graph, credentials, scheduler_settings(settings))
    runtime.metrics.count(
        "tenantflow_changes_ended",
        "Deployment changes the writer ended, by state (applied, failed, superseded).",
        ("state",),
        scheduler.ended,
    )
    took = runtime.metrics.histogram(
        "tenantflow_change_seconds",
        "Time from a change verified to its end in the writer, by state.",
        ("state",),
    )
    scheduler.took = lambda state, seconds: took.labels(SERVICE, state).observe(seconds)
    waits = runtime.metrics.histogram(
        "tenantflow_throttle_wait_seconds",
        "Waits the writer gave a tenant before its next Graph call, by reason: quota (the "
        "window's writes spent), retry_after (a 429), access_denied, backoff.",
        ("reason",),
        buckets=WAIT_BUCKETS,
    )
    scheduler.waited = lambda reason, seconds: waits.labels(SERVICE, reason).observe(seconds)
    handlers.register(runtime, filters, scheduler, settings.poll_seconds)
    return runtime, scheduler
