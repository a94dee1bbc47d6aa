"""The directory read model: groups of linked tenants and each tenant's sync status.

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
    op.create_table(
        "directory_groups",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("group_id", sa.Uuid, primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("name_key", sa.Text, nullable=False),
        sa.Column("security_enabled", sa.Boolean, nullable=False),
        sa.Column("dynamic", sa.Boolean, nullable=False),
        sa.Column("direct_users", sa.Integer, nullable=False),
        sa.Column("direct_devices", sa.Integer, nullable=False),
        sa.Column("transitive_users", sa.Integer, nullable=False),
        sa.Column("transitive_devices", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        schema=schema,
    )
    # prefix search in name order: text_pattern_ops makes LIKE 'prefix%' use the index
    op.execute(
        f"CREATE INDEX directory_groups_by_name ON {schema}.directory_groups "
        "(tenant_id, name_key text_pattern_ops, group_id)"
    )
    op.create_table(
        "directory_states",
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("last_sync_at", sa.DateTime(timezone=True)),
        sa.Column("last_mode", sa.Text),
        sa.Column("users", sa.Integer),
        sa.Column("groups", sa.Integer),
        sa.Column("devices", sa.Integer),
        sa.Column("next_sync_at", sa.DateTime(timezone=True)),
        sa.Column("last_error", sa.Text),
        sa.Column("last_error_at", sa.DateTime(timezone=True)),
        sa.Column("requested_at", sa.DateTime(timezone=True)),
        schema=schema,
    )


def downgrade() -> None:
    schema = service_schema()
    op.drop_table("directory_states", schema=schema)
    op.drop_table("directory_groups", schema=schema)
