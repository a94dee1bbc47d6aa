"""Entra ID as MSAL and token validators see it, over HTTPS."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import jwt
import msal
import pytest

from tenantflow.emulator.testing import RunningEmulator

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("no_ca_bundle_override")]

GRAPH_DEFAULT = ["https://graph.microsoft.com/.default"]


def seed_tenant(emulator: RunningEmulator, consented: dict[str, list[str]]) -> UUID:
    tenant_id = uuid4()
    document = {
        "id": str(tenant_id),
        "display_name": "Contoso",
        "verified_domains": [f"contoso{tenant_id.hex[:6]}.onmicrosoft.com"],
        "enterprise_apps": [
            {"app_id": emulator.apps[name]["client_id"], "permissions": permissions}
            for name, permissions in consented.items()
        ],
    }
    with emulator.client() as client:
        response = client.post("/_emulator/tenants", json=document)
    assert response.status_code == 201, response.text
    return tenant_id


def msal_app(
    emulator: RunningEmulator, name: str, tenant: UUID | str, credential: Any = None
) -> msal.ConfidentialClientApplication:
    app = emulator.apps[name]
    return msal.ConfidentialClientApplication(
        app["client_id"],
        client_credential=credential if credential is not None else app["client_secret"],
        authority=f"{emulator.url}/{tenant}",
        instance_discovery=False,
        verify=emulator.ca,
    )


def certificate_credential(emulator: RunningEmulator, name: str) -> dict[str, str]:
    app = emulator.apps[name]
    return {
        "private_key": Path(app["private_key_path"]).read_text(),
        "thumbprint": app["certificate_thumbprint"],
    }


def validated_claims(emulator: RunningEmulator, token: str, tenant: UUID) -> dict[str, Any]:
    with emulator.client() as client:
        jwks = client.get(f"/{tenant}/discovery/v2.0/keys").json()
    kid = jwt.get_unverified_header(token)["kid"]
    [jwk] = [key for key in jwks["keys"] if key["kid"] == kid]
    key = jwt.PyJWK(jwk).key
    return jwt.decode(
        token,
        key,
        algorithms=["RS256"],
        audience="https://graph.microsoft.com",
        issuer=f"https://sts.windows.net/{tenant}/",
    )


def test_client_credentials_with_a_secret(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {"directory-connector": ["Directory.Read.All"]})
    result = msal_app(emulator, "directory-connector", tenant).acquire_token_for_client(
        GRAPH_DEFAULT
    )
    assert result["token_type"] == "Bearer"
    assert result["expires_in"] > 3000
    claims = validated_claims(emulator, result["access_token"], tenant)
    tenant_doc = emulator.client().get(f"/_emulator/tenants/{tenant}").json()
    [service_principal] = tenant_doc["enterprise_apps"]
    assert claims["tid"] == str(tenant)
    assert claims["appid"] == emulator.apps["directory-connector"]["client_id"]
    assert claims["oid"] == service_principal["service_principal_id"]
    assert claims["idtyp"] == "app"
    assert claims["roles"] == ["Directory.Read.All"]
    assert claims["appidacr"] == "1"


def test_client_credentials_with_a_certificate(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {"intune-writer": ["DeviceManagementApps.ReadWrite.All"]})
    credential = certificate_credential(emulator, "intune-writer")
    result = msal_app(emulator, "intune-writer", tenant, credential).acquire_token_for_client(
        GRAPH_DEFAULT
    )
    assert "access_token" in result, result
    claims = validated_claims(emulator, result["access_token"], tenant)
    assert claims["appidacr"] == "2"
    assert claims["roles"] == ["DeviceManagementApps.ReadWrite.All"]


def test_a_certificate_of_another_app_is_refused(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {"intune-writer": ["DeviceManagementApps.ReadWrite.All"]})
    credential = certificate_credential(emulator, "directory-connector")
    result = msal_app(emulator, "intune-writer", tenant, credential).acquire_token_for_client(
        GRAPH_DEFAULT
    )
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [700027]


def test_consent_without_permissions_gives_a_token_without_roles(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {"directory-connector": []})
    result = msal_app(emulator, "directory-connector", tenant).acquire_token_for_client(
        GRAPH_DEFAULT
    )
    assert "roles" not in validated_claims(emulator, result["access_token"], tenant)


def test_no_consent_is_aadsts700016(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {"directory-connector": ["Directory.Read.All"]})
    result = msal_app(emulator, "intune-writer", tenant).acquire_token_for_client(GRAPH_DEFAULT)
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]
    assert result["error_description"].startswith("AADSTS700016: ")
    assert {"timestamp", "trace_id", "correlation_id"} <= set(result)


def test_revoked_consent_is_aadsts700016(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {"directory-connector": ["Directory.Read.All"]})
    app_id = emulator.apps["directory-connector"]["client_id"]
    with emulator.client() as client:
        assert client.delete(f"/_emulator/tenants/{tenant}/consents/{app_id}").status_code == 204
    result = msal_app(emulator, "directory-connector", tenant).acquire_token_for_client(
        GRAPH_DEFAULT
    )
    assert result["error_codes"] == [700016]


def test_a_wrong_secret_is_aadsts7000215(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {"directory-connector": ["Directory.Read.All"]})
    result = msal_app(
        emulator, "directory-connector", tenant, credential="not-the-secret"
    ).acquire_token_for_client(GRAPH_DEFAULT)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]


def test_an_unknown_tenant_is_aadsts90002(emulator: RunningEmulator) -> None:
    with emulator.client() as client:
        response = client.post(
            f"/{uuid4()}/oauth2/v2.0/token",
            data={
                "grant_type": "client_credentials",
                "client_id": emulator.apps["directory-connector"]["client_id"],
                "client_secret": emulator.apps["directory-connector"]["client_secret"],
                "scope": GRAPH_DEFAULT[0],
            },
        )
    assert response.status_code == 400
    assert response.json()["error_codes"] == [90002]


def test_a_scope_without_default_is_invalid_scope(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {"directory-connector": ["Directory.Read.All"]})
    result = msal_app(emulator, "directory-connector", tenant).acquire_token_for_client(
        ["https://graph.microsoft.com/User.Read.All"]
    )
    assert result["error"] == "invalid_scope"


def test_tenant_domains_resolve_like_tenant_ids(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {"directory-connector": ["Directory.Read.All"]})
    domain = emulator.client().get(f"/_emulator/tenants/{tenant}").json()["verified_domains"][0]
    result = msal_app(emulator, "directory-connector", domain).acquire_token_for_client(
        GRAPH_DEFAULT
    )
    assert validated_claims(emulator, result["access_token"], tenant)["tid"] == str(tenant)


def test_openid_configuration_and_request_ids(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {})
    with emulator.client() as client:
        response = client.get(
            f"/{tenant}/v2.0/.well-known/openid-configuration",
            headers={"client-request-id": "7c1f0e2a-0000-4000-8000-000000000001"},
        )
    config = response.json()
    assert config["issuer"] == f"https://login.microsoftonline.com/{tenant}/v2.0"
    assert config["token_endpoint"] == f"{emulator.url}/{tenant}/oauth2/v2.0/token"
    assert config["jwks_uri"] == f"{emulator.url}/{tenant}/discovery/v2.0/keys"
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert response.headers["client-request-id"] == "7c1f0e2a-0000-4000-8000-000000000001"
    assert UUID(response.headers["request-id"])
