"""Settings come from the environment: this service's prefix and the shared KAFKA_* / DATABASE_*."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tenantflow.devinfra.service_checks import check_settings_from_environment
from tenantflow.intune_writer.settings import Settings

pytestmark = pytest.mark.unit


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    check_settings_from_environment(Settings, monkeypatch, INTUNE_WRITER_SECRET="a-real-secret")


def test_the_emulators_demo_secret_is_refused_with_microsofts_endpoints() -> None:
    with pytest.raises(ValidationError, match="intune_writer_secret"):
        Settings()  # Microsoft's endpoints by default, the emulator's secret by default
