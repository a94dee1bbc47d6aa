"""The heads of the audit hash chains, one per tenant.

Revision ID: 0002
Revises: 0001
"""

from tenantflow.bus.migrations import create_audit_chain, drop_audit_chain, service_schema

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_chain(service_schema())


def downgrade() -> None:
    drop_audit_chain(service_schema())
