"""Tables of portal-api, all in its own PostgreSQL schema ("portal_api"), and its API models.

Ownership: an account owns linked tenants. Today every account is a home tenant's own (its users
are its members, and it links only itself); managed-service-provider accounts that own several
customer tenants add members and tenant rows to one account, with no change to these tables'
keys. A tenant link is keyed by (account, tenant), so two accounts may one day reach one tenant.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict
from pydantic import Field as ApiField
from sqlalchemy import Column, DateTime, ForeignKeyConstraint, Index, Text, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import registry
from sqlmodel import Field, SQLModel

from tenantflow.bus.tables import bus_tables

SCHEMA = "portal_api"
metadata = bus_tables(SCHEMA).metadata


class PortalTable(SQLModel, registry=registry(metadata=metadata)):
    """Base of this service's tables: they live in the service's schema, beside outbox/inbox."""


class LinkStatus(StrEnum):
    PENDING = "pending"
    LINKED = "linked"
    REJECTED = "rejected"
    REVOKED = "revoked"
    UNLINKED = "unlinked"


class IntuneWritingStatus(StrEnum):
    OFF = "off"
    PENDING = "pending"
    ENABLED = "enabled"
    REJECTED = "rejected"
    REVOKED = "revoked"


class Track(StrEnum):
    """The two requests a tenant link tracks, each with its own status and verdict."""

    LINK = "link"
    INTUNE_WRITING = "intune_writing"


class ChangeStatus(StrEnum):
    REQUESTED = "requested"
    VERIFIED = "verified"
    REJECTED = "rejected"
    APPLIED = "applied"
    FAILED = "failed"
    SUPERSEDED = "superseded"
    """A newer change of the same deployment replaced it before it was applied."""


def _timestamp(nullable: bool = False) -> Column[datetime]:
    return Column(DateTime(timezone=True), nullable=nullable, server_default=func.now())


def _strings() -> Column[list[str]]:
    return Column(JSONB, nullable=False, server_default="[]")


class Account(PortalTable, table=True):
    """Who owns linked tenants; today one per home tenant."""

    __tablename__ = "accounts"

    id: UUID = Field(primary_key=True)
    home_tenant_id: UUID = Field(unique=True)
    created_at: datetime | None = Field(default=None, sa_column=_timestamp())


class TenantLink(PortalTable, table=True):
    """One account's link to one Entra ID tenant: what Graph told us of the tenant, and the
    version (ETag) that moves on every change of the link or of one of its tracks."""

    __tablename__ = "tenant_links"

    account_id: UUID = Field(primary_key=True, foreign_key=f"{SCHEMA}.accounts.id")
    tenant_id: UUID = Field(primary_key=True, index=True)
    version: int = 1
    display_name: str | None = None
    default_domain: str | None = None
    authorized_by: str | None = None
    updated_at: datetime | None = Field(default=None, sa_column=_timestamp())


class TenantTrack(PortalTable, table=True):
    """One request a tenant link tracks (the link itself, Intune writing): where it stands,
    the verdict, and who asked. ``change_id`` is the correlation id of the current request.
    Moved only by ``lifecycle``."""

    __tablename__ = "tenant_tracks"
    __table_args__ = (
        ForeignKeyConstraint(
            ["account_id", "tenant_id"],
            [f"{SCHEMA}.tenant_links.account_id", f"{SCHEMA}.tenant_links.tenant_id"],
            ondelete="CASCADE",
        ),
    )

    account_id: UUID = Field(primary_key=True)
    tenant_id: UUID = Field(primary_key=True, index=True)
    track: Track = Field(primary_key=True, sa_type=Text)
    status: str = Field(sa_type=Text)
    reason: str | None = None
    message: str | None = None
    missing_permissions: list[str] = Field(default_factory=list, sa_column=_strings())
    admin_consent_url: str | None = None
    retry_detail: str | None = None
    change_id: UUID | None = None
    requested_by_tenant_id: UUID | None = None
    requested_by_object_id: UUID | None = None
    requested_by_name: str | None = None
    requested_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    assignments_source_of_truth: bool = False
    """Intune writing only: what the current request asked for (see IntuneActivation)."""


# --- API models --------------------------------------------------------------------------------


class TenantLinkCreate(BaseModel):
    """Link this tenant (today: your own, the tid of your token)."""

    model_config = ConfigDict(extra="forbid")

    tenant_id: UUID = ApiField(
        description="The Entra ID tenant to link.",
        examples=["6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10"],
    )


class RequesterPublic(BaseModel):
    tenant_id: UUID = ApiField(description="The requester's home tenant (tid).")
    object_id: UUID = ApiField(description="The requester's object id (oid).")
    name: str | None = ApiField(description="Display name from the token, for people to read.")

    @classmethod
    def of(cls, track: TenantTrack) -> RequesterPublic | None:
        if track.requested_by_tenant_id is None or track.requested_by_object_id is None:
            return None
        return cls(
            tenant_id=track.requested_by_tenant_id,
            object_id=track.requested_by_object_id,
            name=track.requested_by_name,
        )


class VerdictPublic(BaseModel):
    reason: str | None = ApiField(
        description="Machine-readable reason when rejected or revoked.",
        examples=["admin_consent_missing"],
    )
    message: str | None = ApiField(description="Human-readable explanation.")
    missing_permissions: list[str] = ApiField(
        description="Application permissions a Global Administrator still has to grant."
    )
    admin_consent_url: str | None = ApiField(
        description="Send a Global Administrator here to grant admin consent."
    )
    retrying: bool = ApiField(
        description="Verification met a transient Entra ID or Graph failure and is retrying."
    )
    retry_detail: str | None = ApiField(description="The transient failure, while retrying.")

    @classmethod
    def of_track(cls, track: TenantTrack) -> VerdictPublic:
        return cls(
            reason=track.reason,
            message=track.message,
            missing_permissions=track.missing_permissions,
            admin_consent_url=track.admin_consent_url,
            retrying=track.retry_detail is not None,
            retry_detail=track.retry_detail,
        )


class _IntuneWritingHead(BaseModel):
    status: IntuneWritingStatus


class IntuneWritingPublic(VerdictPublic, _IntuneWritingHead):
    # bases in this order so the status comes first in the JSON
    requested_by: RequesterPublic | None
    requested_at: datetime | None
    assignments_source_of_truth: bool = ApiField(
        description="tenantflow is the source of truth for the assignments of the apps it "
        "deploys: assignments made outside it are replaced (and reported) instead of kept."
    )


class IntuneActivation(BaseModel):
    """How tenantflow writes in this tenant; every field is optional."""

    model_config = ConfigDict(extra="forbid")
    assignments_source_of_truth: bool = ApiField(
        default=False,
        description="Make tenantflow the source of truth for the assignments of the apps it "
        "deploys: assignments made outside tenantflow (in the Intune console, by scripts) are "
        "then replaced and reported on the change, instead of kept. Asking again with another "
        "value while enabled has it verified and applied anew.",
    )


class _TenantHead(BaseModel):
    tenant_id: UUID
    status: LinkStatus
    display_name: str | None
    default_domain: str | None


class TenantPublic(VerdictPublic, _TenantHead):
    # bases in this order so the tenant and its status come first in the JSON
    authorized_by: str | None = ApiField(
        description="Why the requester may link: global_administrator, app_assignment, …"
    )
    requested_by: RequesterPublic
    requested_at: datetime
    updated_at: datetime | None
    intune_writing: IntuneWritingPublic

    @classmethod
    def of(cls, link: TenantLink, tracks: dict[Track, TenantTrack]) -> TenantPublic:
        linking, intune = tracks[Track.LINK], tracks[Track.INTUNE_WRITING]
        requester = RequesterPublic.of(linking)
        assert requester is not None, "a link has been requested"
        assert linking.requested_at is not None
        return cls(
            tenant_id=link.tenant_id,
            status=LinkStatus(linking.status),
            display_name=link.display_name,
            default_domain=link.default_domain,
            **VerdictPublic.of_track(linking).model_dump(),
            authorized_by=link.authorized_by,
            requested_by=requester,
            requested_at=linking.requested_at,
            updated_at=link.updated_at,
            intune_writing=IntuneWritingPublic(
                status=IntuneWritingStatus(intune.status),
                **VerdictPublic.of_track(intune).model_dump(),
                requested_by=RequesterPublic.of(intune),
                requested_at=intune.requested_at,
                assignments_source_of_truth=intune.assignments_source_of_truth,
            ),
        )


class TenantPage(BaseModel):
    items: list[TenantPublic]
    next_cursor: str | None = ApiField(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


# --- the directory read model, built from directory-sync's events -----------------------------


class DirectoryGroup(PortalTable, table=True):
    """A group of a linked tenant, as directory-sync last published it."""

    __tablename__ = "directory_groups"

    tenant_id: UUID = Field(primary_key=True)
    group_id: UUID = Field(primary_key=True)
    display_name: str = Field(sa_type=Text)
    name_key: str = Field(sa_type=Text)
    """The display name case-folded: prefix search and its order."""
    security_enabled: bool
    dynamic: bool
    direct_users: int
    direct_devices: int
    transitive_users: int
    transitive_devices: int
    updated_at: datetime = Field(sa_type=DateTime(timezone=True))


class DirectoryState(PortalTable, table=True):
    """Where a tenant's directory cache stands."""

    __tablename__ = "directory_states"

    tenant_id: UUID = Field(primary_key=True)
    last_sync_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_mode: str | None = Field(default=None, sa_type=Text)
    users: int | None = None
    groups: int | None = None
    devices: int | None = None
    next_sync_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    last_error: str | None = Field(default=None, sa_type=Text)
    last_error_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))
    requested_at: datetime | None = Field(default=None, sa_type=DateTime(timezone=True))


class DirectoryStatus(StrEnum):
    NOT_SYNCED = "not_synced"
    """No sync finished yet (the first one starts when the link is verified)."""
    SYNC_REQUESTED = "sync_requested"
    SYNCED = "synced"
    FAILED = "failed"
    """The last attempt failed; the cache keeps what it held and the sync is retried."""


class GroupPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID = ApiField(validation_alias="group_id")
    display_name: str
    security_enabled: bool
    dynamic: bool = ApiField(description="Membership computed by a rule.")
    direct_users: int
    direct_devices: int
    transitive_users: int = ApiField(
        description="Distinct users reached, through nested groups too: what a deployment to "
        "this group targets."
    )
    transitive_devices: int


class GroupPage(BaseModel):
    items: list[GroupPublic]
    next_cursor: str | None = ApiField(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


class DirectoryPublic(BaseModel):
    status: DirectoryStatus
    last_sync_at: datetime | None
    last_mode: str | None = ApiField(description="full or delta (incremental).")
    users: int | None
    groups: int | None
    devices: int | None
    last_error: str | None
    next_sync_at: datetime | None = ApiField(description="When the next scheduled sync is due.")
    requested_at: datetime | None

    @classmethod
    def of(cls, state: DirectoryState | None) -> DirectoryPublic:
        if state is None:
            state = DirectoryState(tenant_id=UUID(int=0))
        status = DirectoryStatus.NOT_SYNCED
        last = state.last_sync_at
        if last:
            status = DirectoryStatus.SYNCED
        if state.last_error_at and (last is None or state.last_error_at > last):
            status = DirectoryStatus.FAILED
        if state.requested_at and (last is None or state.requested_at > last):
            status = DirectoryStatus.SYNC_REQUESTED
        return cls(
            status=status,
            **state.model_dump(exclude={"tenant_id", "last_error_at"}),
        )


# --- the app catalog ---------------------------------------------------------------------------


class CatalogAppRow(PortalTable, table=True):
    """An app of the provider's catalog: what tenantflow creates in a tenant to deploy it."""

    __tablename__ = "catalog_apps"

    catalog_id: str = Field(primary_key=True, sa_type=Text)
    kind: str = Field(default="winGetApp", sa_type=Text)
    package_identifier: str = Field(sa_type=Text, unique=True)
    display_name: str = Field(sa_type=Text)
    publisher: str = Field(sa_type=Text)
    description: str = Field(default="", sa_type=Text)
    run_as_account: str = Field(sa_type=Text)
    version: int = 1
    source: str = Field(default="seed", sa_type=Text)
    """seed (the shipped file) or admin (a catalog administrator added or changed it)."""
    updated_by_tenant_id: UUID | None = None
    updated_by_object_id: UUID | None = None
    updated_at: datetime | None = Field(default=None, sa_column=_timestamp())


# --- deployments and their changes -------------------------------------------------------------


def _documents() -> Column[list[dict[str, Any]]]:
    return Column(JSONB, nullable=False, server_default="[]")


class Deployment(PortalTable, table=True):
    """The desired state of one catalog app in one tenant: the single source of truth the
    writer applies. ``revision`` (the ETag) moves on with every change."""

    __tablename__ = "deployments"

    tenant_id: UUID = Field(primary_key=True)
    app: str = Field(primary_key=True, sa_type=Text)
    revision: int
    desired: list[dict[str, Any]] = Field(default_factory=list, sa_column=_documents())
    removed: bool = False
    """DELETE took every assignment away; a create (If-None-Match: *) may start it again."""
    latest_change_id: UUID
    applied: list[dict[str, Any]] | None = Field(default=None, sa_type=JSONB)
    """What Intune held after the last applied change; null until one was applied."""
    applied_revision: int | None = None
    intune_app_id: UUID | None = None
    updated_at: datetime | None = Field(default=None, sa_column=_timestamp())


class DeploymentChange(PortalTable, table=True):
    """One requested change of a deployment and its way to Intune. Moved only by
    ``lifecycle.CHANGE``; ``timeline`` keeps every step with its time."""

    __tablename__ = "deployment_changes"

    change_id: UUID = Field(primary_key=True)
    tenant_id: UUID = Field(index=True)
    app: str = Field(sa_type=Text)
    revision: int
    replaces_revision: int
    operation: str = Field(sa_type=Text)
    status: str = Field(sa_type=Text)
    desired: list[dict[str, Any]] = Field(default_factory=list, sa_column=_documents())
    previous: list[dict[str, Any]] = Field(default_factory=list, sa_column=_documents())
    confirmed: bool = False
    requested_by_tenant_id: UUID
    requested_by_object_id: UUID
    requested_by_name: str | None = None
    requested_at: datetime = Field(sa_type=DateTime(timezone=True))
    reason: str | None = None
    detail: str | None = None
    graph_request_ids: list[str] = Field(default_factory=list, sa_column=_strings())
    graph_error: dict[str, Any] | None = Field(default=None, sa_type=JSONB)
    superseded_by: UUID | None = None
    timeline: list[dict[str, Any]] = Field(default_factory=list, sa_column=_documents())
    updated_at: datetime | None = Field(default=None, sa_column=_timestamp())


class AssignmentFilterRow(PortalTable, table=True):
    """An Intune assignment filter of a tenant, as the writer last read it."""

    __tablename__ = "assignment_filters"

    tenant_id: UUID = Field(primary_key=True)
    filter_id: UUID = Field(primary_key=True)
    display_name: str = Field(sa_type=Text)
    platform: str = Field(sa_type=Text)
    management_type: str = Field(sa_type=Text)
    updated_at: datetime = Field(sa_type=DateTime(timezone=True))


class FilterSyncState(PortalTable, table=True):
    """When a tenant's assignment filters were last read: none yet means not synced."""

    __tablename__ = "assignment_filter_syncs"

    tenant_id: UUID = Field(primary_key=True)
    synced_at: datetime = Field(sa_type=DateTime(timezone=True))


CATALOG_ID = r"^[a-z0-9][a-z0-9.-]{0,63}$"
PACKAGE_IDENTIFIER = (
    r"^([A-Z0-9]{12,14}"  # a Microsoft Store product id
    r"|[^.\s\\/:*?\"<>|\x00-\x1f]{1,32}(\.[^.\s\\/:*?\"<>|\x00-\x1f]{1,32}){1,7})$"  # WinGet's
)
"""What the WinGet manifest schema allows as PackageIdentifier, or a Microsoft Store product
id (the msstore source Intune's "Microsoft Store app (new)" uses)."""


class CatalogAppPut(BaseModel):
    """A catalog app as a catalog administrator describes it."""

    model_config = ConfigDict(extra="forbid")

    package_identifier: str = ApiField(
        pattern=PACKAGE_IDENTIFIER,
        description="The WinGet package identifier or Microsoft Store product id; fixed once "
        "the app exists.",
        examples=["9WZDNCRFJ3PZ"],
    )
    display_name: str = ApiField(min_length=1, max_length=256, examples=["Company Portal"])
    publisher: str = ApiField(min_length=1, max_length=256, examples=["Microsoft Corporation"])
    description: str = ApiField(default="", max_length=10_000)
    run_as_account: Literal["system", "user"] = ApiField(
        description="Install as the system or as the signed-in user; fixed once the app exists."
    )


class CatalogAppPublic(CatalogAppPut):
    model_config = ConfigDict(extra="ignore")

    id: str = ApiField(description="The app's catalog id: the {app} of deployment URLs.")
    kind: Literal["winGetApp"] = ApiField(description="The Intune app type tenantflow creates.")
    source: Literal["seed", "admin"] = ApiField(
        description="Shipped with tenantflow, or added or changed by a catalog administrator."
    )
    updated_at: datetime | None

    @classmethod
    def of(cls, row: CatalogAppRow) -> CatalogAppPublic:
        return cls.model_validate(
            {**row.model_dump(exclude={"catalog_id", "version"}), "id": row.catalog_id}
        )


class CatalogPage(BaseModel):
    items: list[CatalogAppPublic]
    next_cursor: str | None = ApiField(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


class AuditEventRow(PortalTable, table=True):
    """One audit event of a tenant (tenants and deployments topics), as the portal's audit
    page shows it: built by the ``audit`` consumer from the same events the replay reads."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("audit_events_by_tenant_time", "tenant_id", "time", "event_id"),)

    event_id: str = Field(primary_key=True, sa_type=Text)
    tenant_id: UUID
    time: datetime = Field(sa_type=DateTime(timezone=True))
    event_type: str = Field(sa_type=Text)
    actor: str = Field(sa_type=Text)
    actor_object_id: UUID | None = None
    actor_name: str | None = Field(default=None, sa_type=Text)
    change_id: UUID
    causation_id: str | None = Field(default=None, sa_type=Text)
    app: str | None = Field(default=None, sa_type=Text)
    revision: int | None = None
    summary: str = Field(sa_type=Text)
    topic: str = Field(sa_type=Text)
    partition: int
    offset: int
