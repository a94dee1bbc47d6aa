"""The emulated tenants: seeded through the control plane, read and changed through Graph."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID, uuid4, uuid5

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tenantflow.emulator.graph_permissions import APP_ROLES, DIRECTORY_ROLE_TEMPLATES

if TYPE_CHECKING:  # delta imports this module
    from tenantflow.emulator.delta import RoundEntries


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedUser(_Seed):
    id: UUID = Field(default_factory=uuid4)
    display_name: str
    user_principal_name: str
    directory_roles: list[str] = Field(
        default_factory=list,
        description="Active directory roles: names (e.g. 'Global Administrator') or role "
        "template ids. Graph lists them as role assignments.",
    )
    eligible_roles: list[str] = Field(
        default_factory=list,
        description="Roles the user is only eligible for (Privileged Identity Management), "
        "until activated: Graph lists them as role eligibility schedules, not assignments.",
    )

    @field_validator("directory_roles", "eligible_roles")
    @classmethod
    def _known_roles(cls, roles: list[str]) -> list[str]:
        if not roles:  # most users: a large seed validates quickly
            return roles
        known = set(DIRECTORY_ROLE_TEMPLATES) | {str(t) for t in DIRECTORY_ROLE_TEMPLATES.values()}
        unknown = [role for role in roles if role not in known]
        if unknown:
            raise ValueError(f"unknown directory roles {unknown}; known: {sorted(known)}")
        return roles

    def role_templates(self) -> set[UUID]:
        """The roles the user holds actively."""
        return {DIRECTORY_ROLE_TEMPLATES.get(role) or UUID(role) for role in self.directory_roles}

    def eligible_role_templates(self) -> set[UUID]:
        return {DIRECTORY_ROLE_TEMPLATES.get(role) or UUID(role) for role in self.eligible_roles}


class SeedGroup(_Seed):
    id: UUID = Field(default_factory=uuid4)
    display_name: str
    description: str | None = None
    security_enabled: bool = True
    mail_enabled: bool = False
    group_types: list[str] = Field(
        default_factory=list,
        description="Graph's groupTypes: 'Unified' (Microsoft 365 group), 'DynamicMembership'.",
    )
    members: list[UUID] = Field(
        default_factory=list, description="Ids of member users, devices or groups (nesting)."
    )


class SeedDevice(_Seed):
    id: UUID = Field(default_factory=uuid4)
    device_id: UUID = Field(default_factory=uuid4)
    display_name: str
    operating_system: str = "Windows"
    operating_system_version: str = "10.0.22631.4460"
    is_managed: bool = True
    """Managed by an MDM such as Intune (Graph's device.isManaged)."""


class SeedAssignment(_Seed):
    intent: Literal["required", "available", "uninstall", "availableWithoutEnrollment"]
    target: dict[str, Any] = Field(
        description="A Graph assignment target, e.g. {'@odata.type': "
        "'#microsoft.graph.groupAssignmentTarget', 'groupId': '…'}."
    )
    settings: dict[str, Any] | None = None


class SeedIntuneApp(_Seed):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    id: UUID = Field(default_factory=uuid4)
    odata_type: str = Field(default="#microsoft.graph.winGetApp", alias="@odata.type")
    display_name: str
    publisher: str | None = None
    properties: dict[str, Any] = Field(
        default_factory=dict, description="Further Graph properties, as Graph names them."
    )
    assignments: list[SeedAssignment] = Field(default_factory=list)


class SeedAssignmentFilter(_Seed):
    id: UUID = Field(default_factory=uuid4)
    display_name: str
    platform: str = "windows10AndLater"
    rule: str = '(device.osVersion -startsWith "10.0.22")'
    management_type: Literal["devices", "apps"] = "devices"
    """Graph's assignmentFilterManagementType: managed devices, or managed apps."""


class SeedEnterpriseApp(_Seed):
    """A multi-tenant app consented in this tenant: its service principal and its grants."""

    app_id: UUID
    service_principal_id: UUID | None = None
    display_name: str | None = None
    permissions: list[str] = Field(default_factory=list)
    assigned_principals: list[UUID] = Field(
        default_factory=list, description="Users and groups assigned to the enterprise app."
    )
    account_enabled: bool = Field(
        default=True,
        description="false: a tenant admin disabled the enterprise app; Entra ID then refuses "
        "it tokens (AADSTS7000112).",
    )

    @field_validator("permissions")
    @classmethod
    def _known_permissions(cls, permissions: list[str]) -> list[str]:
        unknown = sorted(set(permissions) - set(APP_ROLES))
        if unknown:
            raise ValueError(f"unknown Graph application permissions {unknown}")
        return permissions


class SeedTenant(_Seed):
    id: UUID
    display_name: str
    verified_domains: list[str] = Field(min_length=1)
    users: list[SeedUser] = Field(default_factory=list)
    groups: list[SeedGroup] = Field(default_factory=list)
    devices: list[SeedDevice] = Field(default_factory=list)
    enterprise_apps: list[SeedEnterpriseApp] = Field(default_factory=list)
    intune_apps: list[SeedIntuneApp] = Field(default_factory=list)
    assignment_filters: list[SeedAssignmentFilter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references_resolve(self) -> SeedTenant:
        objects = (
            {u.id for u in self.users} | {g.id for g in self.groups} | {d.id for d in self.devices}
        )
        for group in self.groups:
            missing = [str(m) for m in group.members if m not in objects]
            if missing:
                raise ValueError(f"group {group.id} has unknown members {missing}")
        principals = {u.id for u in self.users} | {g.id for g in self.groups}
        for app in self.enterprise_apps:
            missing = [str(p) for p in app.assigned_principals if p not in principals]
            if missing:
                raise ValueError(f"app {app.app_id} is assigned to unknown principals {missing}")
        return self


@dataclass(frozen=True)
class Change:
    seq: int
    resource: Literal["users", "groups", "devices"]
    object_id: UUID
    removed: Literal["changed", "deleted"] | None = None
    member: UUID | None = None
    """For a membership change of a group: the member added, or removed (``member_removed``)."""
    member_removed: bool = False
    member_type: str | None = None
    """The member's own @odata.type, kept: a removed member may not exist any more."""


@dataclass
class ServicePrincipal:
    id: UUID
    app_id: UUID
    display_name: str
    permissions: list[str]
    assigned_principals: list[UUID]
    account_enabled: bool = True


@dataclass
class Tenant:
    id: UUID
    display_name: str
    verified_domains: list[str]
    users: dict[UUID, SeedUser]
    groups: dict[UUID, SeedGroup] = field(default_factory=dict)
    devices: dict[UUID, SeedDevice] = field(default_factory=dict)
    service_principals: dict[UUID, ServicePrincipal] = field(default_factory=dict)
    """By app id."""
    deleted_users: dict[UUID, SeedUser] = field(default_factory=dict)
    """Soft-deleted users (restorable): gone from /users, their group memberships kept
    (delta-query-groups.md @b7c6490: only permanently deleted users leave their groups)."""
    journal: list[Change] = field(default_factory=list)
    """Every directory change in order; delta queries read it."""
    delta_epoch: int = 0
    """Bumped to invalidate every delta token issued before (the control plane's resync)."""
    delta_rounds: dict[tuple[Any, ...], RoundEntries] = field(default_factory=dict)
    """Recent delta rounds' entries, each produced as its pages are read: a few recent rounds,
    oldest dropped first."""
    mobile_apps: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    """Graph representations of Intune apps, by id."""
    app_assignments: dict[UUID, list[dict[str, Any]]] = field(default_factory=dict)
    assignment_filters: dict[UUID, dict[str, Any]] = field(default_factory=dict)

    def record(
        self, resource: Literal["users", "groups", "devices"], object_id: UUID, **details: Any
    ) -> None:
        self.journal.append(Change(len(self.journal) + 1, resource, object_id, **details))

    def exists(self, object_id: UUID) -> bool:
        """A live user, group or device (not a soft-deleted one)."""
        return object_id in self.users or object_id in self.groups or object_id in self.devices

    def type_of(self, object_id: UUID) -> str:
        """The @odata.type of a user (soft-deleted too), group or device of this tenant."""
        if object_id in self.users or object_id in self.deleted_users:
            return "#microsoft.graph.user"
        if object_id in self.groups:
            return "#microsoft.graph.group"
        if object_id in self.devices:
            return "#microsoft.graph.device"
        return "#microsoft.graph.directoryObject"

    def user_by_principal_name(self, reference: str) -> SeedUser | None:
        """GET /users/{userPrincipalName}: Graph takes the UPN in place of the id (any case)."""
        if "@" not in reference:
            return None
        wanted = reference.lower()
        return next(
            (u for u in self.users.values() if u.user_principal_name.lower() == wanted), None
        )

    @property
    def graph_service_principal_id(self) -> UUID:
        return uuid5(self.id, "sp:microsoft-graph")

    def member_groups(self, principal: UUID) -> set[UUID]:
        """Every group ``principal`` belongs to, directly or through nested groups."""
        found: set[UUID] = set()
        frontier = {principal}
        while frontier:
            direct = {
                group.id
                for group in self.groups.values()
                if frontier & set(group.members) and group.id not in found
            }
            found |= direct
            frontier = direct
        return found

    def transitive_members(self, group_id: UUID) -> list[UUID]:
        seen: list[UUID] = []
        pending = list(self.groups[group_id].members)
        while pending:
            member = pending.pop(0)
            if member in seen:
                continue
            seen.append(member)
            if member in self.groups:
                pending.extend(self.groups[member].members)
        return seen

    @property
    def default_domain(self) -> str:
        return self.verified_domains[0]

    def consent(
        self,
        app_id: UUID,
        display_name: str,
        permissions: list[str],
        assigned: list[UUID] | None = None,
        sp_id: UUID | None = None,
        account_enabled: bool | None = None,
    ) -> ServicePrincipal:
        """Grant (or re-grant) ``app_id`` its permissions; what is not given is kept."""
        existing = self.service_principals.get(app_id)
        principal = ServicePrincipal(
            id=sp_id or (existing.id if existing else uuid5(self.id, f"sp:{app_id}")),
            app_id=app_id,
            display_name=display_name,
            permissions=list(permissions),
            assigned_principals=list(
                assigned
                if assigned is not None
                else (existing.assigned_principals if existing else [])
            ),
            account_enabled=(
                account_enabled
                if account_enabled is not None
                else (existing.account_enabled if existing else True)
            ),
        )
        self.service_principals[app_id] = principal
        return principal

    def revoke(self, app_id: UUID) -> bool:
        return self.service_principals.pop(app_id, None) is not None

    @classmethod
    def from_seed(cls, seed: SeedTenant) -> Tenant:
        tenant = cls(
            id=seed.id,
            display_name=seed.display_name,
            verified_domains=list(seed.verified_domains),
            users={user.id: user for user in seed.users},
            groups={group.id: group for group in seed.groups},
            devices={device.id: device for device in seed.devices},
        )
        for intune_app in seed.intune_apps:
            tenant.mobile_apps[intune_app.id] = new_mobile_app(
                intune_app.id,
                intune_app.odata_type,
                {
                    "displayName": intune_app.display_name,
                    "publisher": intune_app.publisher,
                    **intune_app.properties,
                },
            )
            tenant.app_assignments[intune_app.id] = [
                assignment_json(intune_app.id, a.model_dump(by_alias=True))
                for a in intune_app.assignments
            ]
            tenant.mobile_apps[intune_app.id]["isAssigned"] = bool(intune_app.assignments)
        for seed_filter in seed.assignment_filters:
            tenant.assignment_filters[seed_filter.id] = {
                "@odata.type": "#microsoft.graph.deviceAndAppManagementAssignmentFilter",
                "id": str(seed_filter.id),
                "displayName": seed_filter.display_name,
                "description": "",
                "platform": seed_filter.platform,
                "rule": seed_filter.rule,
                "assignmentFilterManagementType": seed_filter.management_type,
                "createdDateTime": EPOCH,
                "lastModifiedDateTime": EPOCH,
                "roleScopeTags": ["0"],
            }
        for user_id in tenant.users:
            tenant.record("users", user_id)
        for group in tenant.groups.values():
            tenant.record("groups", group.id)
        for device_id in tenant.devices:
            tenant.record("devices", device_id)
        for app in seed.enterprise_apps:
            tenant.consent(
                app.app_id,
                app.display_name or str(app.app_id),
                app.permissions,
                app.assigned_principals,
                app.service_principal_id,
                app.account_enabled,
            )
        return tenant


EPOCH = "2026-01-15T09:30:00Z"
TARGET_TYPES = {
    "microsoft.graph.groupAssignmentTarget",
    "microsoft.graph.exclusionGroupAssignmentTarget",
    "microsoft.graph.allLicensedUsersAssignmentTarget",
    "microsoft.graph.allDevicesAssignmentTarget",
}
INTENTS = ("available", "required", "uninstall", "availableWithoutEnrollment")


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


READ_ONLY_APP_FIELDS = frozenset(
    {
        "@odata.type",
        "id",
        "createdDateTime",
        "lastModifiedDateTime",
        "isAssigned",
        "publishingState",
        "uploadState",
        "dependentAppCount",
        "supersedingAppCount",
        "supersededAppCount",
    }
)
"""mobileApp properties Graph documents as read-only: a client's values are ignored (GD beta
resources/intune-shared-mobileapp.md; whether Graph refuses or ignores them is not documented,
ignoring is our choice)."""


def new_mobile_app(app_id: UUID, odata_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    created = now_iso()
    return {
        "@odata.type": "#" + odata_type.lstrip("#"),
        "id": str(app_id),
        "displayName": fields.get("displayName"),
        "description": fields.get("description", ""),
        "publisher": fields.get("publisher"),
        "largeIcon": None,
        "createdDateTime": created,
        "lastModifiedDateTime": created,
        "isFeatured": False,
        "privacyInformationUrl": None,
        "informationUrl": None,
        "owner": "",
        "developer": "",
        "notes": "",
        "publishingState": "published",
        "isAssigned": False,
        **{k: v for k, v in fields.items() if k not in READ_ONLY_APP_FIELDS},
    }


def normalise_target(target: dict[str, Any]) -> dict[str, Any]:
    """Graph accepts nested @odata.type with or without '#'; it answers with it."""
    kind = str(target.get("@odata.type", "")).lstrip("#")
    if kind not in TARGET_TYPES:
        raise ValueError(f"unsupported assignment target type {kind!r}")
    normalised = {
        "@odata.type": f"#{kind}",
        "deviceAndAppManagementAssignmentFilterId": target.get(
            "deviceAndAppManagementAssignmentFilterId"
        ),
        "deviceAndAppManagementAssignmentFilterType": target.get(
            "deviceAndAppManagementAssignmentFilterType", "none"
        ),
    }
    if kind in (
        "microsoft.graph.groupAssignmentTarget",
        "microsoft.graph.exclusionGroupAssignmentTarget",
    ):
        group_id = target.get("groupId")
        try:
            normalised["groupId"] = str(UUID(str(group_id)))
        except ValueError as exc:
            raise ValueError(f"groupId {group_id!r} is not a GUID") from exc
    if normalised["deviceAndAppManagementAssignmentFilterType"] not in (
        "none",
        "include",
        "exclude",
    ):
        raise ValueError(
            "deviceAndAppManagementAssignmentFilterType must be none, include or exclude"
        )
    return normalised


def assignment_json(app_id: UUID, assignment: dict[str, Any]) -> dict[str, Any]:
    intent = assignment.get("intent")
    if intent not in INTENTS:
        raise ValueError(f"intent must be one of {INTENTS}")
    target = normalise_target(dict(assignment.get("target") or {}))
    subject = target.get("groupId") or target["@odata.type"].rsplit(".", 1)[-1]
    return {
        "@odata.type": "#microsoft.graph.mobileAppAssignment",
        "id": f"{subject}_{INTENTS.index(intent)}_{uuid5(app_id, str(subject)).hex[:8]}",
        "intent": intent,
        "target": target,
        "settings": assignment.get("settings"),
    }


@dataclass
class Directory:
    tenants: dict[UUID, Tenant] = field(default_factory=dict)

    def find(self, tenant: str) -> Tenant | None:
        """By tenant id or by one of its verified domains, as Entra resolves them."""
        try:
            return self.tenants.get(UUID(tenant))
        except ValueError:
            pass
        lowered = tenant.lower()
        for candidate in self.tenants.values():
            if lowered in (domain.lower() for domain in candidate.verified_domains):
                return candidate
        return None
