"""Tables of consent, all in its own PostgreSQL schema ("consent").

The outbox and inbox come from tenantflow.bus; this service's own tables join ``metadata``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import DateTime
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from tenantflow.bus.tables import bus_tables

SCHEMA = "consent"
metadata = bus_tables(SCHEMA).metadata


class ConsentTable(SQLModel, registry=registry(metadata=metadata)):
    """Base of this service's tables: they live in the service's schema, beside outbox/inbox."""


class LinkedTenant(ConsentTable, table=True):
    """A tenant this service verified and keeps re-checking until it is unlinked.

    Only ids and flags: no directory data, no tokens (those live in memory, per process).
    """

    __tablename__ = "linked_tenants"

    tenant_id: UUID = Field(primary_key=True)
    link_change_id: UUID
    """The link request this row belongs to; a check started for an older link is dropped."""
    connector_consented: bool = True
    """False once consent revoked was emitted for the directory connector (until relinked)."""
    intune_writing: bool = False
    """The Intune writer was verified and is re-checked too."""
    next_check_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    last_checked_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
