"""Composition root of intune-writer: builds everything the process runs, once."""

from __future__ import annotations

from pathlib import Path

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.intune_writer import handlers
from tenantflow.intune_writer.models import SCHEMA
from tenantflow.intune_writer.settings import Settings

SERVICE = "intune-writer"
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def bootstrap(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.for_service(SERVICE, SCHEMA, MIGRATIONS, settings)
    handlers.register(runtime)
    return runtime
