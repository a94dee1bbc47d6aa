"""Settings of intune-writer, from TENANTFLOW_WRITER_* (and the shared KAFKA_* / DATABASE_*)."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from tenantflow.bus.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TENANTFLOW_WRITER_", env_nested_delimiter="__")
