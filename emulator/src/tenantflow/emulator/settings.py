"""Emulator settings, from TENANTFLOW_EMULATOR_*: where it listens and the app registrations it
knows (the directory connector, the Intune writer, the portal API), with demo defaults."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tenantflow.emulator.throttling import Limits


class AppRegistration(BaseModel):
    name: str
    client_id: UUID
    client_secret: SecretStr
    display_name: str


class EmulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TENANTFLOW_EMULATOR_", env_nested_delimiter="__", extra="forbid"
    )

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=0, le=65535)
    public_host: str = "localhost"
    """The host name in issued URLs and in the server certificate (with 127.0.0.1)."""
    state_dir: Path = Path(".local/emulator")
    throttling: bool = True
    """Graph's published limits; switch off for benchmarks that measure tenantflow alone."""
    fractional_retry_after: bool = False
    """Retry-After as seconds with a fraction (e.g. 2.128) instead of whole seconds."""
    throttle_limits: Limits = Field(default_factory=Limits)
    """E.g. TENANTFLOW_EMULATOR_THROTTLE_LIMITS__INTUNE_APP_WRITES=10 for a quick demo."""
    """CA, server certificate and app certificates; kept across restarts."""

    directory_connector_client_id: UUID = UUID("5e3ce6c0-2b1f-4285-8d4b-75ee78787346")
    directory_connector_secret: SecretStr = SecretStr("demo-directory-connector-secret")
    intune_writer_client_id: UUID = UUID("9d2a1c4b-7e3f-4a8b-b5c6-1f2e3d4c5b6a")
    intune_writer_secret: SecretStr = SecretStr("demo-intune-writer-secret")
    portal_api_client_id: UUID = UUID("c7b1e2d3-4f5a-4b6c-8d7e-9f0a1b2c3d4e")
    portal_api_secret: SecretStr = SecretStr("demo-portal-api-secret")

    def apps(self) -> dict[UUID, AppRegistration]:
        registrations = [
            AppRegistration(
                name="directory-connector",
                client_id=self.directory_connector_client_id,
                client_secret=self.directory_connector_secret,
                display_name="tenantflow directory connector",
            ),
            AppRegistration(
                name="intune-writer",
                client_id=self.intune_writer_client_id,
                client_secret=self.intune_writer_secret,
                display_name="tenantflow Intune automation",
            ),
            AppRegistration(
                name="portal-api",
                client_id=self.portal_api_client_id,
                client_secret=self.portal_api_secret,
                display_name="tenantflow portal API",
            ),
        ]
        return {app.client_id: app for app in registrations}
