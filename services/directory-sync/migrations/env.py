"""Alembic environment of directory-sync: its own schema, its own version table."""

from tenantflow.bus.migrations import run_env
from tenantflow.directory_sync.models import metadata

run_env(metadata)
