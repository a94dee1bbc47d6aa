"""Alembic environment of portal-api: its own schema, its own version table."""

from tenantflow.bus.migrations import run_env
from tenantflow.portal_api.models import metadata

run_env(metadata)
