"""Settings come from the environment: this service's prefix and the shared KAFKA_* / DATABASE_*."""

from __future__ import annotations

import pytest

from tenantflow.devinfra.service_checks import check_settings_from_environment
from tenantflow.portal_api.settings import Settings

pytestmark = pytest.mark.unit


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    check_settings_from_environment(Settings, monkeypatch)


def test_signing_keys_cannot_expire_before_a_refresh_is_allowed() -> None:
    with pytest.raises(ValueError, match="twice"):
        Settings(jwks_min_refresh_seconds=60, jwks_max_age_seconds=100)
    assert Settings(jwks_min_refresh_seconds=60, jwks_max_age_seconds=120).jwks_max_age_seconds
