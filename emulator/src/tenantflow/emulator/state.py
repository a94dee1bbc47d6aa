"""The emulated tenants: seeded through the control plane, read and changed through Graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID, uuid4, uuid5

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tenantflow.emulator.graph_permissions import APP_ROLES, DIRECTORY_ROLE_TEMPLATES


class _Seed(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SeedUser(_Seed):
    id: UUID = Field(default_factory=uuid4)
    display_name: str
    user_principal_name: str
    directory_roles: list[str] = Field(
        default_factory=list,
        description="Directory role names (e.g. 'Global Administrator') or role template ids.",
    )

    @field_validator("directory_roles")
    @classmethod
    def _known_roles(cls, roles: list[str]) -> list[str]:
        known = set(DIRECTORY_ROLE_TEMPLATES) | {str(t) for t in DIRECTORY_ROLE_TEMPLATES.values()}
        unknown = [role for role in roles if role not in known]
        if unknown:
            raise ValueError(f"unknown directory roles {unknown}; known: {sorted(known)}")
        return roles

    def role_templates(self) -> set[UUID]:
        return {DIRECTORY_ROLE_TEMPLATES.get(role) or UUID(role) for role in self.directory_roles}


class SeedEnterpriseApp(_Seed):
    """A multi-tenant app consented in this tenant: its service principal and its grants."""

    app_id: UUID
    service_principal_id: UUID | None = None
    display_name: str | None = None
    permissions: list[str] = Field(default_factory=list)
    assigned_principals: list[UUID] = Field(
        default_factory=list, description="Users and groups assigned to the enterprise app."
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
    enterprise_apps: list[SeedEnterpriseApp] = Field(default_factory=list)


@dataclass
class ServicePrincipal:
    id: UUID
    app_id: UUID
    display_name: str
    permissions: list[str]
    assigned_principals: list[UUID]


@dataclass
class Tenant:
    id: UUID
    display_name: str
    verified_domains: list[str]
    users: dict[UUID, SeedUser]
    service_principals: dict[UUID, ServicePrincipal] = field(default_factory=dict)
    """By app id."""

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
    ) -> ServicePrincipal:
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
        )
        for app in seed.enterprise_apps:
            tenant.consent(
                app.app_id,
                app.display_name or str(app.app_id),
                app.permissions,
                app.assigned_principals,
                app.service_principal_id,
            )
        return tenant


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
