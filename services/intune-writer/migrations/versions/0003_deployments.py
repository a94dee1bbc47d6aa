"""Deployment changes, each deployment's desired and applied state, and the tenants written to
with their Intune budget and its lease.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from tenantflow.bus.migrations import service_schema

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = service_schema()
    timestamp = sa.DateTime(timezone=True)
    op.create_table(
        "writer_tenants",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("state_reason", sa.Text),
        sa.Column("source_of_truth", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("not_before", timestamp),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_until", timestamp),
        sa.Column("budget", JSONB),
        sa.Column("updated_at", timestamp, nullable=False),
        schema=schema,
    )
    op.create_table(
        "deployments",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("app", sa.Text, primary_key=True),
        sa.Column("catalog_app", JSONB, nullable=False),
        sa.Column("desired", JSONB, nullable=False),
        sa.Column("desired_revision", sa.Integer, nullable=False),
        sa.Column("desired_change", sa.Uuid, nullable=False),
        sa.Column("remove_app", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("applied_revision", sa.Integer, nullable=False, server_default="0"),
        sa.Column("intune_app_id", sa.Uuid),
        sa.Column("managed_keys", JSONB, nullable=False, server_default="[]"),
        sa.Column("creating_since", timestamp),
        sa.Column("due_at", timestamp),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        schema=schema,
    )
    op.create_index(
        "deployments_due",
        "deployments",
        ["tenant_id", "due_at"],
        schema=schema,
        postgresql_where=sa.text("due_at IS NOT NULL"),
    )
    op.create_table(
        "changes",
        sa.Column("change_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("app", sa.Text, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("requested", JSONB, nullable=False),
        sa.Column("verified_event", sa.Text),
        sa.Column("updated_at", timestamp, nullable=False),
        schema=schema,
    )
    op.create_index("ix_changes_tenant_id", "changes", ["tenant_id"], schema=schema)
    op.create_index(
        "changes_waiting",
        "changes",
        ["tenant_id", "app", "revision"],
        schema=schema,
        postgresql_where=sa.text("state IN ('requested', 'verified')"),
    )


def downgrade() -> None:
    schema = service_schema()
    for table in ("changes", "deployments", "writer_tenants"):
        op.drop_table(table, schema=schema)
