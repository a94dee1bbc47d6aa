"""Composition root of directory-sync: builds everything the process runs, once."""

from __future__ import annotations

from pathlib import Path

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.directory_sync import handlers
from tenantflow.directory_sync.models import SCHEMA
from tenantflow.directory_sync.settings import Settings

SERVICE = "directory-sync"
MIGRATIONS = Path(__file__).resolve().parents[3] / "migrations"


def bootstrap(settings: Settings) -> ServiceRuntime:
    runtime = ServiceRuntime.for_service(SERVICE, SCHEMA, MIGRATIONS, settings)
    handlers.register(runtime)
    return runtime
