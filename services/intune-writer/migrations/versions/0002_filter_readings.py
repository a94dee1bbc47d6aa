"""Tenants whose assignment filters the writer reads for the portal.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

from tenantflow.bus.migrations import service_schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "filter_readings",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("next_read_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_read_at", sa.DateTime(timezone=True)),
        schema=schema,
    )
    op.create_index(
        "ix_filter_readings_next_read_at", "filter_readings", ["next_read_at"], schema=schema
    )


def downgrade() -> None:
    op.drop_table("filter_readings", schema=service_schema())
