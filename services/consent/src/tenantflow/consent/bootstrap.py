"""Composition root of consent: builds everything the process runs, once."""

from __future__ import annotations

from pathlib import Path

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.consent import handlers
from tenantflow.consent.models import SCHEMA
from tenantflow.consent.settings import Settings

SERVICE = "consent"
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def bootstrap(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.for_service(SERVICE, SCHEMA, MIGRATIONS, settings)
    handlers.register(runtime)
    return runtime
