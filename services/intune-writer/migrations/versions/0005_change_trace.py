"""A change's trace context (W3C traceparent and tracestate) as its verification was handled:
the change's outcome event continues that trace.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from tenantflow.bus.migrations import service_schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    schema = service_schema()
    op.add_column("changes", sa.Column("traceparent", sa.Text(), nullable=True), schema=schema)
    op.add_column("changes", sa.Column("tracestate", sa.Text(), nullable=True), schema=schema)


def downgrade() -> None:
    schema = service_schema()
    op.drop_column("changes", "tracestate", schema=schema)
    op.drop_column("changes", "traceparent", schema=schema)
