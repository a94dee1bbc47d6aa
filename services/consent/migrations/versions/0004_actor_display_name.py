"""A waiting change keeps its user's display name, so the verdict names them as they were.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

from tenantflow.bus.migrations import service_schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "pending_changes",
        sa.Column("actor_display_name", sa.String, nullable=True),
        schema=service_schema(),
    )


def downgrade() -> None:
    op.drop_column("pending_changes", "actor_display_name", schema=service_schema())
