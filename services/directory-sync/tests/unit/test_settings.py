"""Settings come from the environment: this service's prefix and the shared KAFKA_* / DATABASE_*."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tenantflow.devinfra.service_checks import check_settings_from_environment
from tenantflow.directory_sync.settings import Settings

pytestmark = pytest.mark.unit


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    check_settings_from_environment(
        Settings, monkeypatch, DIRECTORY_CONNECTOR_SECRET="a-real-secret"
    )


def test_the_emulators_demo_secret_is_refused_with_microsofts_endpoints() -> None:
    with pytest.raises(ValidationError, match="directory_connector_secret"):
        Settings()  # Microsoft's endpoints by default, the emulator's secret by default


def test_each_process_names_itself_differently_in_leases() -> None:
    emulator = {
        "graph_base_url": "https://localhost:8443",
        "login_base_url": "https://localhost:8443",
    }
    assert Settings(**emulator).replica_id != Settings(**emulator).replica_id


def test_holding_a_throttled_tenant_fits_well_within_its_lease() -> None:
    emulator = {
        "graph_base_url": "https://localhost:8443",
        "login_base_url": "https://localhost:8443",
    }
    Settings(**emulator, lease_seconds=30, hold_throttled_seconds=10)
    with pytest.raises(ValidationError, match="HOLD_THROTTLED_SECONDS"):
        Settings(**emulator, lease_seconds=3, hold_throttled_seconds=5)
