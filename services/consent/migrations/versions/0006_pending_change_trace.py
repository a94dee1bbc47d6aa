"""A waiting change keeps the trace context (W3C traceparent and tracestate) its request was
handled in, so its verdict, given later outside any consumer, continues that trace.

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
    schema = service_schema()
    for column in ("traceparent", "tracestate"):
        op.add_column("pending_changes", sa.Column(column, sa.Text, nullable=True), schema=schema)


def downgrade() -> None:
    schema = service_schema()
    for column in ("tracestate", "traceparent"):
        op.drop_column("pending_changes", column, schema=schema)
