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
    graph_attempts: int = Field(default=4, ge=1)
    """Tries per Graph call on 5xx, timeouts and dropped connections (jittered backoff)."""
    graph_timeout_seconds: float = Field(default=30.0, gt=0)
    filter_read_interval_seconds: float = Field(default=300.0, gt=0)
    """Every tenant with Intune writing enabled has its assignment filters read this often, so
    the portal validates deployments against filters that exist (5 minutes)."""
    filter_retry_seconds: float = Field(default=60.0, gt=0)
    """A read that failed (Graph down, access refused) is tried again after this."""
    poll_seconds: float = Field(default=5.0, gt=0)
    """Longest wait between looks for due reads (a newly enabled tenant wakes it sooner)."""

    @model_validator(mode="after")
    def _no_demo_secret_for_microsoft(self) -> Settings:
        self.refuse_demo_secrets(
            intune_writer_secret=None
            if self.intune_writer_certificate
            else self.intune_writer_secret
        )
        return self
