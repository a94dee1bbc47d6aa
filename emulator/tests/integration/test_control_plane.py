"""The control plane: seeding, consent changes, added latency, and refused documents."""

from __future__ import annotations

import time
from uuid import uuid4

import jwt
import pytest

from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration


def token_roles(emulator: RunningEmulator, tenant: str, app: str) -> list[str] | None:
    """The roles of an app-only token; None when no token is issued (AADSTS700016)."""
    try:
        token = emulator.app_token(app, tenant)
    except AssertionError:
        return None
    roles: list[str] = jwt.decode(token, options={"verify_signature": False}).get("roles", [])
    return roles


def test_granting_and_revoking_consent(emulator: RunningEmulator) -> None:
    tenant = str(uuid4())
    writer = emulator.apps["intune-writer"]["client_id"]
    with emulator.client() as client:
        client.post(
            "/_emulator/tenants",
            json={"id": tenant, "display_name": "Adatum", "verified_domains": ["adatum.example"]},
        )
        assert token_roles(emulator, tenant, "intune-writer") is None  # AADSTS700016
        granted = client.put(
            f"/_emulator/tenants/{tenant}/consents/{writer}",
            json={"permissions": ["DeviceManagementApps.ReadWrite.All"]},
        )
        assert granted.status_code == 200
        assert token_roles(emulator, tenant, "intune-writer") == [
            "DeviceManagementApps.ReadWrite.All"
        ]
        narrowed = client.put(
            f"/_emulator/tenants/{tenant}/consents/{writer}", json={"permissions": []}
        )
        assert narrowed.json()["service_principal_id"] == granted.json()["service_principal_id"]
        assert token_roles(emulator, tenant, "intune-writer") == []  # a token, no roles
        unknown = client.put(
            f"/_emulator/tenants/{tenant}/consents/{writer}",
            json={"permissions": ["Everything.ReadWrite.All"]},
        )
        assert client.delete(f"/_emulator/tenants/{tenant}/consents/{writer}").status_code == 204
        state = client.get(f"/_emulator/tenants/{tenant}").json()
    assert unknown.status_code == 422
    assert state["enterprise_apps"] == []


def test_a_document_with_a_dangling_reference_is_refused(emulator: RunningEmulator) -> None:
    with emulator.client() as client:
        response = client.post(
            "/_emulator/tenants",
            json={
                "id": str(uuid4()),
                "display_name": "Broken",
                "verified_domains": ["broken.example"],
                "groups": [{"display_name": "G", "members": [str(uuid4())]}],
            },
        )
    assert response.status_code == 422
    assert "unknown members" in response.text


def test_added_latency(emulator: RunningEmulator) -> None:
    with emulator.client() as client:
        client.post("/_emulator/faults", json={"path": "^/_nothing_here$", "latency_ms": 300})
        try:
            started = time.monotonic()
            response = client.get("/_nothing_here")
            elapsed = time.monotonic() - started
        finally:
            client.delete("/_emulator/faults")
    assert response.status_code == 404
    assert elapsed >= 0.3
