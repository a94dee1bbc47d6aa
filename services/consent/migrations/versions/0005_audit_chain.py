"""The heads of this service's audit hash chains, one per tenant.

Revision ID: 0005
Revises: 0004
"""

from tenantflow.bus.migrations import create_audit_chain, drop_audit_chain, service_schema

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_chain(service_schema())


def downgrade() -> None:
    drop_audit_chain(service_schema())
