"""Tables of directory-sync, all in its own PostgreSQL schema ("directory_sync").

The directory cache holds only what tenantflow uses: ids and display names, a user's principal
name, a device's name, operating system and whether it is managed, a group's name, type and
direct memberships. Every cached row carries the tenant and a *generation*: a full sync builds
the next generation beside the live one and switches to it at the end, so a reader never sees a
half-built cache; an incremental sync changes the live generation page by page.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlalchemy import DateTime, Index, Text
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from tenantflow.bus.tables import bus_tables

SCHEMA = "directory_sync"
metadata = bus_tables(SCHEMA).metadata


class DirectoryTable(SQLModel, registry=registry(metadata=metadata)):
    """Base of this service's tables: they live in the service's schema, beside outbox/inbox."""


class SyncedTenant(DirectoryTable, table=True):
    """A linked tenant whose directory is cached, and the state of its sync.

    A row exists only while the tenant is linked with the directory connector consented: it is
    created when a link is verified and deleted, with the whole cache, on unlink or revocation.
    """

    __tablename__ = "tenants"

    tenant_id: UUID = Field(primary_key=True)
    link_change_id: UUID
    generation: int = 0
    """The live cache's generation; 0 until the first full sync finishes."""
    building: int | None = None
    """The generation a full sync is building, while it runs."""
    next_sync_at: datetime = Field(sa_type=DateTime(timezone=True), index=True)
    full_requested: bool = False
    lease_owner: str | None = Field(default=None, sa_type=Text)
    lease_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    requested_by: str | None = Field(default=None, sa_type=Text)
    """ce_id of a sync request not yet served by a run."""
    requested_correlation: UUID | None = None
    run_id: UUID | None = None
    """The sync in progress (its correlation id); null between syncs."""
    run_requested_by: str | None = Field(default=None, sa_type=Text)
    """ce_id of the sync request that started the run, if one did."""
    run_started_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    run_delta_link_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    paused_until: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    """Graph throttled the sync: it resumes then, where it stopped."""
    last_sync_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_mode: str | None = Field(default=None, sa_type=Text)
    last_error: str | None = Field(default=None, sa_type=Text)
    users: int = 0
    """Users in the live generation (kept, so an incremental sync needs no count)."""
    devices: int = 0


class SyncCursor(DirectoryTable, table=True):
    """Where a resource's delta round stands, per generation: the next page to read (a nextLink
    or the round's start) while a round runs, and the deltaLink of the last finished round."""

    __tablename__ = "cursors"

    tenant_id: UUID = Field(primary_key=True)
    generation: int = Field(primary_key=True)
    resource: str = Field(primary_key=True, sa_type=Text)
    next_link: str | None = Field(default=None, sa_type=Text)
    delta_link: str | None = Field(default=None, sa_type=Text)
    delta_link_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    changes: int = 0
    """Objects and memberships this round changed so far (the run's figure)."""


class CachedUser(DirectoryTable, table=True):
    __tablename__ = "users"

    tenant_id: UUID = Field(primary_key=True)
    generation: int = Field(primary_key=True)
    id: UUID = Field(primary_key=True)
    display_name: str | None = Field(default=None, sa_type=Text)
    user_principal_name: str | None = Field(default=None, sa_type=Text)


class CachedDevice(DirectoryTable, table=True):
    __tablename__ = "devices"

    tenant_id: UUID = Field(primary_key=True)
    generation: int = Field(primary_key=True)
    id: UUID = Field(primary_key=True)
    display_name: str | None = Field(default=None, sa_type=Text)
    operating_system: str | None = Field(default=None, sa_type=Text)
    is_managed: bool | None = None


class CachedGroup(DirectoryTable, table=True):
    __tablename__ = "groups"

    tenant_id: UUID = Field(primary_key=True)
    generation: int = Field(primary_key=True)
    id: UUID = Field(primary_key=True)
    display_name: str | None = Field(default=None, sa_type=Text)
    security_enabled: bool = False
    mail_enabled: bool = False
    dynamic: bool = False
    dirty: bool = True
    """Changed since last published."""
    recount: bool = True
    """Its nesting changed: it and the groups above it are counted again in full."""
    direct_users: int = 0
    direct_devices: int = 0
    transitive_users: int = 0
    transitive_devices: int = 0
    published: str | None = Field(default=None, sa_type=Text)
    """The last GroupUpserted sent for it (its fields, as JSON): unchanged groups send none."""


class CachedMember(DirectoryTable, table=True):
    """A direct membership: ``member_id`` (a user, device or group) is in ``group_id``."""

    __tablename__ = "members"
    __table_args__ = (Index("members_by_member", "tenant_id", "generation", "member_id"),)

    tenant_id: UUID = Field(primary_key=True)
    generation: int = Field(primary_key=True)
    group_id: UUID = Field(primary_key=True)
    member_id: UUID = Field(primary_key=True)
    member_type: str = Field(sa_type=Text)
    """user, device or group."""


class RunMember(DirectoryTable, table=True):
    """A membership an incremental run changed, and whether it existed before the run (its
    first change in the run says): the counts move by what changed."""

    __tablename__ = "run_members"

    tenant_id: UUID = Field(primary_key=True)
    generation: int = Field(primary_key=True)
    group_id: UUID = Field(primary_key=True)
    member_id: UUID = Field(primary_key=True)
    member_type: str = Field(sa_type=Text)
    existed: bool


class RunPresence(DirectoryTable, table=True):
    """A user or device an incremental run added, changed or removed, and whether it existed
    before the run."""

    __tablename__ = "run_presence"

    tenant_id: UUID = Field(primary_key=True)
    generation: int = Field(primary_key=True)
    member_id: UUID = Field(primary_key=True)
    member_type: str = Field(sa_type=Text)
    existed: bool


CACHE_TABLES = (CachedUser, CachedDevice, CachedGroup, CachedMember, RunMember, RunPresence)
