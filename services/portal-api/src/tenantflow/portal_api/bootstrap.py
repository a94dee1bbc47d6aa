"""Composition root of portal-api: builds everything the process runs, once."""

from __future__ import annotations

from pathlib import Path

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.portal_api import handlers
from tenantflow.portal_api.models import SCHEMA
from tenantflow.portal_api.settings import Settings

SERVICE = "portal-api"
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def bootstrap(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.for_service(SERVICE, SCHEMA, MIGRATIONS, settings)
    handlers.register(runtime)
    return runtime
