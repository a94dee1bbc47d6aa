"""Settings of portal-api, from TENANTFLOW_PORTAL_* (and the shared KAFKA_* / DATABASE_*)."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from uuid import UUID

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from tenantflow.bus.settings import ServiceSettings
from tenantflow.graph.settings import EntraEndpoint


class Settings(ServiceSettings, EntraEndpoint):
    model_config = SettingsConfigDict(env_prefix="TENANTFLOW_PORTAL_", env_nested_delimiter="__")

    client_id: UUID = UUID("c7b1e2d3-4f5a-4b6c-8d7e-9f0a1b2c3d4e")
    """The portal API's multi-tenant app registration; tokens must be issued to it."""
    app_id_uri: str | None = None
    """Also accepted as audience; default api://{client_id}."""
    issuer_template: str = "https://login.microsoftonline.com/{tenantid}/v2.0"
    """The v2 issuer with the token's own tid put in; exact match required."""
    clock_skew_seconds: int = Field(default=120, ge=0, le=600)
    jwks_min_refresh_seconds: float = Field(default=60.0, ge=1.0)
    """An unknown kid refetches the keys at most this often: no refetch storm."""
    jwks_max_age_seconds: float = Field(default=900.0, ge=10.0)
    """Signing keys are refreshed in the background every half this age and not trusted once
    this old: a key Entra ID retires (after a compromise, say) is refused within it."""

    trusted_proxies: list[IPv4Network | IPv6Network] = Field(default_factory=list)
    """Peers (addresses or CIDR ranges) whose X-Forwarded-For/-Proto/-Host are believed: the API
    gateway. Empty: those headers are ignored."""
    user_requests_per_minute: int = Field(default=300, ge=1)
    """Per signed-in user (tid, oid), across every route; a burst of the same size is allowed."""
    tenant_requests_per_minute: int = Field(default=600, ge=1)
    """Per tenant acted on, whoever asks."""
    page_size_max: int = Field(default=200, ge=1)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    """A request body over this is refused with 413 before it is parsed."""

    provider_tenant_id: UUID | None = None
    """The Entra ID tenant of the provider running tenantflow. Only its users holding the
    Tenantflow.CatalogAdmin role change the app catalog: a customer's admins can grant
    themselves any role of the portal app in their own tenant, so the role alone is not enough.
    Unset, nobody changes the catalog (it stays as seeded)."""
    catalog_seed: Path = Path(__file__).with_name("catalog_seed.json")
    """The catalog shipped with tenantflow; its apps are added at start-up when missing (an
    app a catalog administrator changed keeps the change)."""
    blast_radius_max_removals: int = Field(default=20, ge=0)
    """A deployment change removing more assignments than this needs ?confirm=true."""
    assignments_max: int = Field(default=500, ge=1)
    """At most this many assignments per deployment."""

    @model_validator(mode="after")
    def _jwks_ages(self) -> Settings:
        if self.jwks_max_age_seconds < 2 * self.jwks_min_refresh_seconds:
            raise ValueError(
                "jwks_max_age_seconds must be at least twice jwks_min_refresh_seconds, or the "
                "keys could expire before a refresh is allowed"
            )
        return self

    @property
    def audiences(self) -> list[str]:
        return [str(self.client_id), self.app_id_uri or f"api://{self.client_id}"]
