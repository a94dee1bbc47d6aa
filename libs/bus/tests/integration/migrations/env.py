"""Alembic environment for the bus's own tests: just the bus tables, in a per-test schema."""

from tenantflow.bus.migrations import run_env

run_env()
