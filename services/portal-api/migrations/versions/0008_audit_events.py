"""The audit page's read model: one row per audit event of a tenant.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

from tenantflow.bus.migrations import service_schema

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("tenant_id", UUID(as_uuid=True), nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        sa.Column("actor_object_id", UUID(as_uuid=True)),
        sa.Column("actor_name", sa.Text),
        sa.Column("change_id", UUID(as_uuid=True), nullable=False),
        sa.Column("causation_id", sa.Text),
        sa.Column("app", sa.Text),
        sa.Column("revision", sa.Integer),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("topic", sa.Text, nullable=False),
        sa.Column("partition", sa.Integer, nullable=False),
        sa.Column("offset", sa.BigInteger, nullable=False),
        schema=service_schema(),
    )
    op.create_index(
        "audit_events_by_tenant_time",
        "audit_events",
        ["tenant_id", "time", "event_id"],
        schema=service_schema(),
    )


def downgrade() -> None:
    op.drop_table("audit_events", schema=service_schema())
