"""Settings come from the environment: this service's prefix and the shared KAFKA_* / DATABASE_*."""

from __future__ import annotations

import pytest

from tenantflow.consent.settings import Settings
from tenantflow.devinfra.service_checks import check_settings_from_environment

pytestmark = pytest.mark.unit


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    check_settings_from_environment(Settings, monkeypatch)
