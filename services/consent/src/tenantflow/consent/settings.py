"""Settings of consent, from TENANTFLOW_CONSENT_* (and the shared KAFKA_* / DATABASE_*)."""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tenantflow.bus.settings import ServiceSettings
from tenantflow.graph.settings import MicrosoftEndpoints


class Settings(ServiceSettings, MicrosoftEndpoints):
    model_config = SettingsConfigDict(env_prefix="TENANTFLOW_CONSENT_", env_nested_delimiter="__")
    directory_connector_client_id: UUID = UUID("5e3ce6c0-2b1f-4285-8d4b-75ee78787346")
    directory_connector_secret: SecretStr | None = SecretStr("demo-directory-connector-secret")
    directory_connector_certificate: Path | None = None
    """PEM certificate registered on the app; with its key, used instead of the secret."""
    directory_connector_private_key: Path | None = None
    intune_writer_client_id: UUID = UUID("9d2a1c4b-7e3f-4a8b-b5c6-1f2e3d4c5b6a")
    intune_writer_secret: SecretStr | None = SecretStr("demo-intune-writer-secret")
    intune_writer_certificate: Path | None = None
    intune_writer_private_key: Path | None = None
    graph_attempts: int = Field(default=4, ge=1)
    """Tries per Graph call on 429/5xx/timeouts, honouring Retry-After, before giving up."""
    recheck_interval_seconds: float = Field(default=900.0, gt=0)
    """How often every linked tenant's consent and permissions are verified again (15 min)."""
    recheck_poll_seconds: float = Field(default=5.0, gt=0)
    """How often due re-checks are looked for."""
    consent_max_age_seconds: float = Field(default=1800.0, gt=0)
    """A deployment change is verified from what consent knows when the tenant's consent was
    checked this recently (the scheduled re-checks keep it so); older, Graph is asked first."""
    actor_max_age_seconds: float = Field(default=900.0, gt=0)
    """How long a user shown allowed on a tenant (Global Administrator, or assigned to the
    directory connector) stays trusted for their deployment changes before Graph is asked
    again: how late a removed right can still be used."""
    change_check_poll_seconds: float = Field(default=2.0, gt=0)
    """How often changes waiting for a Graph check are looked for (new ones wake it at once)."""
    reported_recheck_min_seconds: float = Field(default=30.0, ge=0)
    """A reported 401/403 re-checks at once, unless the tenant was checked this recently: a
    burst of failures from many writers costs one check."""

    @model_validator(mode="after")
    def _no_demo_secret_for_microsoft(self) -> Settings:
        # a configured certificate is used instead of the secret
        self.refuse_demo_secrets(
            directory_connector_secret=None
            if self.directory_connector_certificate
            else self.directory_connector_secret,
            intune_writer_secret=None
            if self.intune_writer_certificate
            else self.intune_writer_secret,
        )
        return self
