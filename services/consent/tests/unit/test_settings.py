"""Settings come from the environment: this service's prefix and the shared KAFKA_* / DATABASE_*."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from tenantflow.consent.settings import Settings
from tenantflow.devinfra.service_checks import check_settings_from_environment

pytestmark = pytest.mark.unit


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    check_settings_from_environment(
        Settings,
        monkeypatch,
        DIRECTORY_CONNECTOR_SECRET="a-real-secret",
        INTUNE_WRITER_SECRET="another-real-secret",
    )


def test_the_emulators_demo_secrets_are_refused_with_microsofts_endpoints(
    tmp_path: Path,
) -> None:
    with pytest.raises(ValidationError, match="directory_connector_secret, intune_writer_secret"):
        Settings()  # Microsoft's endpoints by default, the emulator's secrets by default
    emulator = "https://localhost:8443"
    assert Settings(login_base_url=emulator, graph_base_url=emulator).graph_base_url == emulator
    with pytest.raises(ValidationError, match="intune_writer_secret: the emulator's demo secret"):
        # the connector's certificate is used, not its secret; the writer's secret still is
        Settings(
            directory_connector_certificate=tmp_path / "cert.pem",
            directory_connector_private_key=tmp_path / "key.pem",
        )
    Settings(
        directory_connector_secret=SecretStr("real"), intune_writer_secret=SecretStr("real too")
    )
