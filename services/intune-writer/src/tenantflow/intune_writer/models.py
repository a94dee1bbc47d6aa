"""Tables of intune-writer, all in its own PostgreSQL schema ("intune_writer").

The outbox and inbox come from tenantflow.bus; this service's own tables join ``metadata``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import DateTime
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from tenantflow.bus.tables import bus_tables

SCHEMA = "intune_writer"
metadata = bus_tables(SCHEMA).metadata


class WriterTable(SQLModel, registry=registry(metadata=metadata)):
    """Base of this service's tables: they live in the service's schema, beside outbox/inbox."""


class FilterReading(WriterTable, table=True):
    """A tenant with Intune writing enabled, whose assignment filters are read periodically."""

    __tablename__ = "filter_readings"

    tenant_id: UUID = Field(primary_key=True)
    next_read_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    last_read_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
