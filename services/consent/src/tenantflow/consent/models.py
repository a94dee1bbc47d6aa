"""Tables of consent, all in its own PostgreSQL schema ("consent").

The outbox and inbox come from tenantflow.bus; this service's own tables join ``metadata``.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import BigInteger, Column, DateTime, Identity
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
    """The last re-check's time."""
    verified_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    """The last request verification's time (the link, Intune writing's activation)."""

    @property
    def consent_seen_at(self) -> datetime | None:
        """When Graph last showed this tenant's consent, by a re-check or a verification."""
        seen = [t for t in (self.last_checked_at, self.verified_at) if t is not None]
        return max(seen) if seen else None


class AuthorizedActor(ConsentTable, table=True):
    """A user Graph last showed allowed to act on the tenant (an active Global Administrator,
    or assigned to the directory connector), and when: a change by them is verified without a
    Graph call while this is fresh."""

    __tablename__ = "authorized_actors"

    tenant_id: UUID = Field(primary_key=True)
    object_id: UUID = Field(primary_key=True)
    authorized_by: str
    checked_at: datetime = Field(sa_type=DateTime(timezone=True))


class PendingChange(ConsentTable, table=True):
    """A deployment change whose verdict waits for a Graph check (its tenant's consent or its
    actor is in doubt), or for an earlier change of the same tenant that waits: verdicts keep
    the order of requests. Checked outside any consumer transaction."""

    __tablename__ = "pending_changes"

    change_id: UUID = Field(primary_key=True)
    seq: int | None = Field(default=None, sa_column=Column(BigInteger, Identity(), nullable=False))
    tenant_id: UUID = Field(index=True)
    request_event_id: str
    """ce_id of the DeploymentChangeRequested: the verdict's causation id."""
    actor_tenant_id: UUID
    actor_object_id: UUID
    actor_display_name: str | None = None
    app: str
    revision: int
    queued_at: datetime = Field(sa_type=DateTime(timezone=True))
    next_attempt_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    attempts: int = 0
    traceparent: str | None = None
    """The trace context its request was handled in, which its verdict continues."""
    tracestate: str | None = None
