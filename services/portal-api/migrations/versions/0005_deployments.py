"""The app catalog, deployments and their changes, and the tenants' assignment filters.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from tenantflow.bus.migrations import service_schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _now(name: str) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now())


def _documents(name: str) -> sa.Column[object]:
    return sa.Column(name, JSONB, nullable=False, server_default="[]")


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "catalog_apps",
        sa.Column("catalog_id", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("package_identifier", sa.Text, nullable=False, unique=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("publisher", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("run_as_account", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("updated_by_tenant_id", sa.Uuid),
        sa.Column("updated_by_object_id", sa.Uuid),
        _now("updated_at"),
        schema=schema,
    )
    op.create_table(
        "deployments",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("app", sa.Text, primary_key=True),
        sa.Column("revision", sa.Integer, nullable=False),
        _documents("desired"),
        sa.Column("removed", sa.Boolean, nullable=False),
        sa.Column("latest_change_id", sa.Uuid, nullable=False),
        sa.Column("applied", JSONB),
        sa.Column("applied_revision", sa.Integer),
        sa.Column("intune_app_id", sa.Uuid),
        _now("updated_at"),
        schema=schema,
    )
    op.create_table(
        "deployment_changes",
        sa.Column("change_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, nullable=False),
        sa.Column("app", sa.Text, nullable=False),
        sa.Column("revision", sa.Integer, nullable=False),
        sa.Column("replaces_revision", sa.Integer, nullable=False),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        _documents("desired"),
        _documents("previous"),
        sa.Column("confirmed", sa.Boolean, nullable=False),
        sa.Column("requested_by_tenant_id", sa.Uuid, nullable=False),
        sa.Column("requested_by_object_id", sa.Uuid, nullable=False),
        sa.Column("requested_by_name", sa.String),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String),
        sa.Column("detail", sa.String),
        _documents("graph_request_ids"),
        sa.Column("graph_error", JSONB),
        sa.Column("superseded_by", sa.Uuid),
        _documents("timeline"),
        _now("updated_at"),
        schema=schema,
    )
    op.create_index(
        "ix_deployment_changes_tenant_id", "deployment_changes", ["tenant_id"], schema=schema
    )
    op.create_table(
        "assignment_filters",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("filter_id", sa.Uuid, primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("platform", sa.Text, nullable=False),
        sa.Column("management_type", sa.Text, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )
    op.create_table(
        "assignment_filter_syncs",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )


def downgrade() -> None:
    schema = service_schema()
    for table in (
        "assignment_filter_syncs",
        "assignment_filters",
        "deployment_changes",
        "deployments",
        "catalog_apps",
    ):
        op.drop_table(table, schema=schema)
