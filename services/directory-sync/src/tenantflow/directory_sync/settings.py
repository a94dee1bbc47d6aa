"""Settings of directory-sync, from TENANTFLOW_DIRSYNC_* (and the shared KAFKA_* / DATABASE_*)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from uuid import UUID, uuid4

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from tenantflow.bus.settings import ServiceSettings
from tenantflow.graph.settings import MicrosoftEndpoints


def _replica() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid4().hex[:6]}"


class Settings(ServiceSettings, MicrosoftEndpoints):
    model_config = SettingsConfigDict(env_prefix="TENANTFLOW_DIRSYNC_", env_nested_delimiter="__")
    directory_connector_client_id: UUID = UUID("5e3ce6c0-2b1f-4285-8d4b-75ee78787346")
    directory_connector_secret: SecretStr | None = SecretStr("demo-directory-connector-secret")
    directory_connector_certificate: Path | None = None
    """PEM certificate registered on the app; with its key, used instead of the secret."""
    directory_connector_private_key: Path | None = None
    graph_attempts: int = Field(default=4, ge=1)
    """Tries per Graph call on 5xx, timeouts and dropped connections (jittered backoff)."""
    hold_throttled_seconds: float = Field(default=5.0, ge=0)
    """A tenant Graph throttles (429) for at most this long in all: its page fetches wait for
    Retry-After in place, its fetched pages still written. Throttled longer: its sync pauses,
    the tenant is released and rescheduled at Retry-After. 0: always pause. At most a third
    of ``lease_seconds``."""
    graph_timeout_seconds: float = Field(default=30.0, gt=0)
    sync_interval_seconds: float = Field(default=300.0, gt=0)
    """Incremental sync of every linked tenant this often (5 minutes)."""
    retry_failed_seconds: float = Field(default=60.0, gt=0)
    """A sync that failed (Graph down, access refused) is tried again after this."""
    concurrency: int = Field(default=8, ge=1, le=256)
    """Tenants synced at once by this process."""
    pages_in_flight: int = Field(default=3, ge=1, le=256)
    """Graph pages fetched or written at once by this process, across its tenants, taken in
    turn: a small tenant's few pages never queue behind a large tenant's thousands."""
    lease_seconds: float = Field(default=60.0, ge=1)
    """A replica holds a tenant's sync this long past its last write; then another may take
    it over (a replica killed mid-sync)."""
    poll_seconds: float = Field(default=5.0, gt=0)
    """Longest wait between looks for due syncs (a request or a due time wakes it sooner)."""
    replica_id: str = Field(default_factory=_replica)
    """Names this process in leases; unique per process."""

    @model_validator(mode="after")
    def _hold_within_lease(self) -> Settings:
        if self.hold_throttled_seconds > self.lease_seconds / 3:
            raise ValueError("HOLD_THROTTLED_SECONDS must be at most a third of LEASE_SECONDS")
        return self

    @model_validator(mode="after")
    def _no_demo_secret_for_microsoft(self) -> Settings:
        self.refuse_demo_secrets(
            directory_connector_secret=None
            if self.directory_connector_certificate
            else self.directory_connector_secret,
        )
        return self
