"""The directory cache (users, devices, groups, memberships) and each tenant's sync state.

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

CACHE_KEY = (
    sa.Column("tenant_id", sa.Uuid, primary_key=True),
    sa.Column("generation", sa.Integer, primary_key=True),
)


def _key() -> list[sa.Column[object]]:
    return [column.copy() for column in CACHE_KEY]


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "tenants",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("link_change_id", sa.Uuid, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("building", sa.Integer),
        sa.Column("next_sync_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("full_requested", sa.Boolean, nullable=False),
        sa.Column("lease_owner", sa.Text),
        sa.Column("lease_until", sa.DateTime(timezone=True)),
        sa.Column("requested_by", sa.Text),
        sa.Column("requested_correlation", sa.Uuid),
        sa.Column("run_id", sa.Uuid),
        sa.Column("run_requested_by", sa.Text),
        sa.Column("run_started_at", sa.DateTime(timezone=True)),
        sa.Column("run_delta_link_at", sa.DateTime(timezone=True)),
        sa.Column("paused_until", sa.DateTime(timezone=True)),
        sa.Column("last_sync_at", sa.DateTime(timezone=True)),
        sa.Column("last_mode", sa.Text),
        sa.Column("last_error", sa.Text),
        sa.Column("users", sa.Integer, nullable=False, server_default="0"),
        sa.Column("devices", sa.Integer, nullable=False, server_default="0"),
        schema=schema,
    )
    op.create_index("ix_tenants_next_sync_at", "tenants", ["next_sync_at"], schema=schema)
    op.create_table(
        "cursors",
        *_key(),
        sa.Column("resource", sa.Text, primary_key=True),
        sa.Column("next_link", sa.Text),
        sa.Column("delta_link", sa.Text),
        sa.Column("delta_link_at", sa.DateTime(timezone=True)),
        sa.Column("changes", sa.Integer, nullable=False, server_default="0"),
        schema=schema,
    )
    op.create_table(
        "users",
        *_key(),
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("display_name", sa.Text),
        sa.Column("user_principal_name", sa.Text),
        schema=schema,
    )
    op.create_table(
        "devices",
        *_key(),
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("display_name", sa.Text),
        sa.Column("operating_system", sa.Text),
        sa.Column("is_managed", sa.Boolean),
        schema=schema,
    )
    op.create_table(
        "groups",
        *_key(),
        sa.Column("id", sa.Uuid, primary_key=True),
        sa.Column("display_name", sa.Text),
        sa.Column("security_enabled", sa.Boolean, nullable=False),
        sa.Column("mail_enabled", sa.Boolean, nullable=False),
        sa.Column("dynamic", sa.Boolean, nullable=False),
        sa.Column("dirty", sa.Boolean, nullable=False),
        sa.Column("recount", sa.Boolean, nullable=False, server_default=sa.true()),
        sa.Column("direct_users", sa.Integer, nullable=False),
        sa.Column("direct_devices", sa.Integer, nullable=False),
        sa.Column("transitive_users", sa.Integer, nullable=False),
        sa.Column("transitive_devices", sa.Integer, nullable=False),
        sa.Column("published", sa.Text),
        schema=schema,
    )
    op.create_table(
        "members",
        *_key(),
        sa.Column("group_id", sa.Uuid, primary_key=True),
        sa.Column("member_id", sa.Uuid, primary_key=True),
        sa.Column("member_type", sa.Text, nullable=False),
        schema=schema,
    )
    for name in ("run_members", "run_presence"):
        op.create_table(
            name,
            *_key(),
            *([sa.Column("group_id", sa.Uuid, primary_key=True)] if name == "run_members" else []),
            sa.Column("member_id", sa.Uuid, primary_key=True),
            sa.Column("member_type", sa.Text, nullable=False),
            sa.Column("existed", sa.Boolean, nullable=False),
            schema=schema,
        )
    op.create_index(
        "members_by_member", "members", ["tenant_id", "generation", "member_id"], schema=schema
    )


def downgrade() -> None:
    schema = service_schema()
    for table in (
        "run_presence",
        "run_members",
        "members",
        "groups",
        "devices",
        "users",
        "cursors",
        "tenants",
    ):
        op.drop_table(table, schema=schema)
