"""Outbox and inbox tables, with the trigger that wakes the outbox relay.

Revision ID: 0001
Revises:
"""

from tenantflow.bus.migrations import create_bus_tables, drop_bus_tables, service_schema

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_bus_tables(service_schema())


def downgrade() -> None:
    drop_bus_tables(service_schema())
