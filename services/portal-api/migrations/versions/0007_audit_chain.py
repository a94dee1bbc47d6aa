"""The heads of this service's audit hash chains, one per tenant.

Revision ID: 0007
Revises: 0006
"""

from tenantflow.bus.migrations import create_audit_chain, drop_audit_chain, service_schema

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_chain(service_schema())


def downgrade() -> None:
    drop_audit_chain(service_schema())
