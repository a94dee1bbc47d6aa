"""The emulator fixture itself comes from tenantflow.devinfra.pytest_plugin."""

from __future__ import annotations

import pytest


@pytest.fixture
def no_ca_bundle_override(monkeypatch: pytest.MonkeyPatch) -> None:
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a Session's own `verify`, which
    is how MSAL passes the emulator's CA; a machine that sets them would hide the CA."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
