"""A tenant link's two requests (the link, Intune writing) become rows of one shape.

Before, they were twin column sets of tenant_links told apart by a column prefix. Each is now a
tenant_tracks row (account, tenant, track) with the same columns, moved by portal_api.lifecycle.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from tenantflow.bus.migrations import service_schema

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TRACK_COLUMNS = (
    "status",
    "reason",
    "message",
    "missing_permissions",
    "admin_consent_url",
    "retry_detail",
    "change_id",
    "requested_by_tenant_id",
    "requested_by_object_id",
    "requested_by_name",
    "requested_at",
)
PREFIXES = {"link": "", "intune_writing": "intune_"}
"""Where each track's columns were in tenant_links (the link's change id was link_change_id)."""


def _old_column(track: str, column: str) -> str:
    if track == "link" and column == "change_id":
        return "link_change_id"
    return PREFIXES[track] + column


def upgrade() -> None:
    schema = service_schema()
    op.create_table(
        "tenant_tracks",
        sa.Column("account_id", sa.Uuid, primary_key=True),
        sa.Column("tenant_id", sa.Uuid, primary_key=True),
        sa.Column("track", sa.Text, primary_key=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.String),
        sa.Column("message", sa.String),
        sa.Column("missing_permissions", JSONB, nullable=False, server_default="[]"),
        sa.Column("admin_consent_url", sa.String),
        sa.Column("retry_detail", sa.String),
        sa.Column("change_id", sa.Uuid),
        sa.Column("requested_by_tenant_id", sa.Uuid),
        sa.Column("requested_by_object_id", sa.Uuid),
        sa.Column("requested_by_name", sa.String),
        sa.Column("requested_at", sa.DateTime(timezone=True)),
        sa.ForeignKeyConstraint(
            ["account_id", "tenant_id"],
            [f"{schema}.tenant_links.account_id", f"{schema}.tenant_links.tenant_id"],
            ondelete="CASCADE",
        ),
        schema=schema,
    )
    op.create_index("ix_tenant_tracks_tenant_id", "tenant_tracks", ["tenant_id"], schema=schema)
    for track in PREFIXES:
        old = ", ".join(_old_column(track, column) for column in TRACK_COLUMNS)
        op.execute(
            f"INSERT INTO {schema}.tenant_tracks (account_id, tenant_id, track, "  # noqa: S608
            f"{', '.join(TRACK_COLUMNS)}) SELECT account_id, tenant_id, '{track}', {old} "
            f"FROM {schema}.tenant_links"
        )
    for track in PREFIXES:
        for column in TRACK_COLUMNS:
            op.drop_column("tenant_links", _old_column(track, column), schema=schema)


def downgrade() -> None:
    schema = service_schema()
    types = {
        "status": sa.Text,
        "missing_permissions": JSONB,
        "change_id": sa.Uuid,
        "requested_by_tenant_id": sa.Uuid,
        "requested_by_object_id": sa.Uuid,
        "requested_at": sa.DateTime(timezone=True),
    }
    for track in PREFIXES:
        for column in TRACK_COLUMNS:
            op.add_column(
                "tenant_links",
                sa.Column(_old_column(track, column), types.get(column, sa.String)),
                schema=schema,
            )
        sets = ", ".join(f"{_old_column(track, c)} = t.{c}" for c in TRACK_COLUMNS)
        op.execute(
            f"UPDATE {schema}.tenant_links l SET {sets} FROM {schema}.tenant_tracks t "  # noqa: S608
            f"WHERE t.account_id = l.account_id AND t.tenant_id = l.tenant_id "
            f"AND t.track = '{track}'"
        )
    op.drop_table("tenant_tracks", schema=schema)
