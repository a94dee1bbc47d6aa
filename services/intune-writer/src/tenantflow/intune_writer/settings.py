"""Settings of intune-writer, from TENANTFLOW_WRITER_* (and the shared KAFKA_* / DATABASE_*)."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tenantflow.bus.settings import ServiceSettings
from tenantflow.graph.settings import MicrosoftEndpoints


class Settings(ServiceSettings, MicrosoftEndpoints):
    model_config = SettingsConfigDict(env_prefix="TENANTFLOW_WRITER_", env_nested_delimiter="__")
    intune_writer_client_id: UUID = UUID("9d2a1c4b-7e3f-4a8b-b5c6-1f2e3d4c5b6a")
    intune_writer_secret: SecretStr | None = SecretStr("demo-intune-writer-secret")
    intune_writer_certificate: Path | None = None
    """PEM certificate registered on the app; with its key, used instead of the secret."""
    intune_writer_private_key: Path | None = None
    graph_timeout_seconds: float = Field(default=30.0, gt=0)
    filter_read_interval_seconds: float = Field(default=300.0, gt=0)
    """Every tenant with Intune writing enabled has its assignment filters read this often, so
    the portal validates deployments against filters that exist (5 minutes)."""
    filter_retry_seconds: float = Field(default=60.0, gt=0)
    """A read that failed (Graph down, access refused) is tried again after this."""
    poll_seconds: float = Field(default=5.0, gt=0)
    """Longest wait between looks for due reads and due deployments (an event wakes them)."""
    tenants_per_process: int = Field(default=64, ge=1)
    """Tenants one writer process serves at once; more tenants, more processes."""
    changes_per_round: int = Field(default=100, ge=1, le=1000)
    """Changes of one tenant taken together (at most the writes its budget has left)."""
    lease_seconds: float = Field(default=30.0, ge=2)
    """A tenant claimed by a process that died is taken over after this (then Intune's window
    is waited out once, as the dead process's last writes are unknown)."""
    intune_app_writes_per_window: int = Field(default=100, ge=1)
    """Intune's published limit: writes per app per tenant per window (100 per 20 s)."""
    intune_app_requests_per_window: int = Field(default=1000, ge=1)
    intune_window_seconds: float = Field(default=20.0, gt=0)
    access_denied_pause_seconds: float = Field(default=60.0, gt=0)
    """Graph refused access: the tenant's work waits this long while consent re-checks it."""
    retry_initial_seconds: float = Field(default=1.0, gt=0)
    """First wait before retrying a change after a 5xx or timeout; doubled each time."""
    retry_max_seconds: float = Field(default=300.0, gt=0)
    """Longest wait before retrying a change after a 5xx or timeout (jittered backoff)."""

    @model_validator(mode="after")
    def _no_demo_secret_for_microsoft(self) -> Settings:
        self.refuse_demo_secrets(
            intune_writer_secret=None
            if self.intune_writer_certificate
            else self.intune_writer_secret
        )
        return self
