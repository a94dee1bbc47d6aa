"""Tables of intune-writer, all in its own PostgreSQL schema ("intune_writer").

The outbox and inbox come from tenantflow.bus; this service's own tables join ``metadata``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from sqlalchemy import DateTime, Text
from sqlalchemy.dialects.postgresql import JSONB
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


class TenantState(StrEnum):
    ACTIVE = "active"
    """Intune writing is enabled and consented: its work is scheduled."""
    PARKED = "parked"
    """Consent or Intune writing was revoked, or Graph refused access: work waits."""
    UNLINKED = "unlinked"
    """The tenant was unlinked: its work was dropped; a late change is failed at once."""


class WriterTenant(WriterTable, table=True):
    """A tenant the writer writes to: whether it may, who holds its Intune budget, the budget."""

    __tablename__ = "writer_tenants"

    tenant_id: UUID = Field(primary_key=True)
    state: TenantState = Field(sa_type=Text)
    state_reason: str | None = None
    source_of_truth: bool = False
    """tenantflow is the source of truth: assignments made outside it are replaced (reported)."""
    not_before: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    """No Graph call before this: a Retry-After, or Intune's window after a takeover."""
    lease_owner: str | None = None
    """The writer process spending this tenant's budget now; NULL once released cleanly."""
    lease_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    budget: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    """``throttle.Budget.state()``: the window of recent calls and the learned limit."""
    updated_at: datetime = Field(sa_type=DateTime(timezone=True))


class Deployment(WriterTable, table=True):
    """One catalog app in one tenant: its newest verified desired state, what was applied, and
    when the scheduler should work on it (``due_at``; NULL when Intune holds it)."""

    __tablename__ = "deployments"

    tenant_id: UUID = Field(primary_key=True)
    app: str = Field(primary_key=True)
    catalog_app: dict[str, Any] = Field(sa_type=JSONB)
    desired: list[dict[str, Any]] = Field(sa_type=JSONB)
    desired_revision: int
    desired_change: UUID
    remove_app: bool = False
    applied_revision: int = 0
    intune_app_id: UUID | None = None
    managed_keys: list[str] = Field(default_factory=list, sa_type=JSONB)
    """Targets whose assignments are tenantflow's: those it wrote, or may have written."""
    creating_since: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    """A create was sent and its id not yet recorded: look the marker up before creating."""
    due_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    attempts: int = 0
    last_error: str | None = None


class ChangeState(StrEnum):
    REQUESTED = "requested"
    VERIFIED = "verified"
    REJECTED = "rejected"
    APPLIED = "applied"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    DROPPED = "dropped"


class Change(WriterTable, table=True):
    """A deployment change as the writer saw it: its desired set, until it reached an end."""

    __tablename__ = "changes"

    change_id: UUID = Field(primary_key=True)
    tenant_id: UUID = Field(index=True)
    app: str
    revision: int
    state: ChangeState = Field(sa_type=Text)
    requested: dict[str, Any] = Field(sa_type=JSONB)
    """The DeploymentChangeRequested payload."""
    verified_event: str | None = None
    """The id of the event that verified it: the causation of its outcome."""
    traceparent: str | None = None
    """The trace context its verification was handled in, which its outcome continues."""
    tracestate: str | None = None
    updated_at: datetime = Field(sa_type=DateTime(timezone=True))
