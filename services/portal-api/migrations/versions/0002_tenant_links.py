"""Accounts and their tenant links (status of the link and of Intune writing).

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from tenantflow.bus.migrations import service_schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _strings(name: str) -> sa.Column[list[str]]:
    return sa.Column(name, JSONB, nullable=False, server_default="[]")


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("home_tenant_id", sa.Uuid, nullable=False, unique=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=schema,
    )
    op.create_table(
        "tenant_links",
        sa.Column("account_id", sa.Uuid, sa.ForeignKey(f"{schema}.accounts.id"), primary_key=True),
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("display_name", sa.String),
        sa.Column("default_domain", sa.String),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.String),
        sa.Column("message", sa.String),
        _strings("missing_permissions"),
        sa.Column("admin_consent_url", sa.String),
        sa.Column("retry_detail", sa.String),
        sa.Column("authorized_by", sa.String),
        sa.Column("link_change_id", sa.Uuid, nullable=False),
        sa.Column("requested_by_tenant_id", sa.Uuid, nullable=False),
        sa.Column("requested_by_object_id", sa.Uuid, nullable=False),
        sa.Column("requested_by_name", sa.String),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("intune_status", sa.Text, nullable=False),
        sa.Column("intune_reason", sa.String),
        sa.Column("intune_message", sa.String),
        _strings("intune_missing_permissions"),
        sa.Column("intune_admin_consent_url", sa.String),
        sa.Column("intune_retry_detail", sa.String),
        sa.Column("intune_change_id", sa.Uuid),
        sa.Column("intune_requested_by_tenant_id", sa.Uuid),
        sa.Column("intune_requested_by_object_id", sa.Uuid),
        sa.Column("intune_requested_by_name", sa.String),
        sa.Column("intune_requested_at", sa.DateTime(timezone=True)),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        schema=schema,
    )
    op.create_index("ix_tenant_links_tenant_id", "tenant_links", ["tenant_id"], schema=schema)


def downgrade() -> None:
    schema = service_schema()
    op.drop_table("tenant_links", schema=schema)
    op.drop_table("accounts", schema=schema)
