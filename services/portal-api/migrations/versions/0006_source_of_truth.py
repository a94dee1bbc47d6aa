"""Intune writing's source-of-truth mode, as the current activation request asked for it.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

from tenantflow.bus.migrations import service_schema

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tenant_tracks",
        sa.Column(
            "assignments_source_of_truth", sa.Boolean, nullable=False, server_default=sa.false()
        ),
        schema=service_schema(),
    )


def downgrade() -> None:
    op.drop_column("tenant_tracks", "assignments_source_of_truth", schema=service_schema())
