"""Deployment change verification: users known to be allowed, and changes waiting for a check.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

from tenantflow.bus.migrations import service_schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = service_schema()
    op.add_column(
        "linked_tenants", sa.Column("verified_at", sa.DateTime(timezone=True)), schema=schema
    )
    op.create_table(
        "authorized_actors",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("object_id", sa.Uuid, primary_key=True),
        sa.Column("authorized_by", sa.String, nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )
    op.create_table(
        "pending_changes",
        sa.Column("change_id", sa.Uuid, primary_key=True),
        sa.Column("seq", sa.BigInteger, sa.Identity(), nullable=False),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("request_event_id", sa.String, nullable=False),
        sa.Column("actor_tenant_id", sa.Uuid, nullable=False),
        sa.Column("actor_object_id", sa.Uuid, nullable=False),
        sa.Column("app", sa.String, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        schema=schema,
    )
    op.create_index("ix_pending_changes_tenant_id", "pending_changes", ["tenant_id"], schema=schema)
    op.create_index(
        "ix_pending_changes_next_attempt_at", "pending_changes", ["next_attempt_at"], schema=schema
    )


def downgrade() -> None:
    schema = service_schema()
    op.drop_table("pending_changes", schema=schema)
    op.drop_table("authorized_actors", schema=schema)
    op.drop_column("linked_tenants", "verified_at", schema=schema)
