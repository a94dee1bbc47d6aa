"""Alembic environment of intune-writer: its own schema, its own version table."""

from tenantflow.bus.migrations import run_env
from tenantflow.intune_writer.models import metadata

run_env(metadata)
