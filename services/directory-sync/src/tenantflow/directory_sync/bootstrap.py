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
    runtime = ServiceRuntime(
        service=SERVICE,
        schema=SCHEMA,
        migrations=MIGRATIONS,
        kafka=settings.kafka,
        database=settings.database,
        create_topics=settings.create_topics,
    )
    handlers.register(runtime)
    return runtime
