"""Tenants consent verified and keeps re-checking.

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
        "linked_tenants",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("link_change_id", sa.Uuid, nullable=False),
        sa.Column("connector_consented", sa.Boolean, nullable=False),
        sa.Column("intune_writing", sa.Boolean, nullable=False),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_checked_at", sa.DateTime(timezone=True)),
        schema=schema,
    )
    op.create_index(
        "ix_linked_tenants_next_check_at", "linked_tenants", ["next_check_at"], schema=schema
    )


def downgrade() -> None:
    op.drop_table("linked_tenants", schema=service_schema())
