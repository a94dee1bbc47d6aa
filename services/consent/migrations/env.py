"""Alembic environment of consent: its own schema, its own version table."""

from tenantflow.bus.migrations import run_env
from tenantflow.consent.models import metadata

run_env(metadata)
