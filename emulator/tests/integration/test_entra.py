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


ADMIN = UUID("0b6a7d3e-4c2f-4f7a-9d1e-5a8b2c3d4e5f")
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"


def seed_tenant(emulator: RunningEmulator, consented: dict[str, list[str]]) -> UUID:
    tenant_id = uuid4()
    document = {
        "id": str(tenant_id),
        "display_name": "Contoso",
        "verified_domains": [f"contoso{tenant_id.hex[:6]}.onmicrosoft.com"],
        "users": [
            {
                "id": str(ADMIN),
                "display_name": "Megan Bowen",
                "user_principal_name": "megan@contoso.example",
                "directory_roles": ["Global Administrator"],
            }
        ],
        "enterprise_apps": [
            {"app_id": emulator.apps[name]["client_id"], "permissions": permissions}
            for name, permissions in consented.items()
        ],
    }
    emulator.seed(document)
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


def user_token(emulator: RunningEmulator, tenant: UUID, **extra: Any) -> str:
    with emulator.client() as client:
        response = client.post(
            "/_emulator/tokens",
            json={"tenant_id": str(tenant), "user_id": str(ADMIN), **extra},
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def portal_claims(emulator: RunningEmulator, token: str, tenant: UUID) -> dict[str, Any]:
    with emulator.client() as client:
        jwks = client.get(f"/{tenant}/discovery/v2.0/keys").json()
    kid = jwt.get_unverified_header(token)["kid"]
    [jwk] = [key for key in jwks["keys"] if key["kid"] == kid]
    return jwt.decode(
        token,
        jwt.PyJWK(jwk).key,
        algorithms=["RS256"],
        audience=emulator.apps["portal-api"]["client_id"],
        issuer=f"https://login.microsoftonline.com/{tenant}/v2.0",
    )


def test_a_minted_user_token_has_the_v2_claims(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {})
    token = user_token(emulator, tenant, roles=["Tenantflow.Admin"])
    claims = portal_claims(emulator, token, tenant)
    assert claims["tid"] == str(tenant)
    assert claims["oid"] == str(ADMIN)
    assert claims["roles"] == ["Tenantflow.Admin"]
    assert claims["wids"] == [GLOBAL_ADMINISTRATOR]
    assert claims["preferred_username"] == "megan@contoso.example"
    assert claims["scp"] == "access_as_user"
    assert claims["ver"] == "2.0"


def test_minted_tokens_can_be_expired_or_not_yet_valid(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {})
    with pytest.raises(jwt.ExpiredSignatureError):
        portal_claims(emulator, user_token(emulator, tenant, lifetime_seconds=-60), tenant)
    with pytest.raises(jwt.ImmatureSignatureError):
        portal_claims(emulator, user_token(emulator, tenant, not_before_in_seconds=600), tenant)


def test_on_behalf_of_exchanges_a_portal_token_for_a_graph_token(
    emulator: RunningEmulator,
) -> None:
    tenant = seed_tenant(emulator, {"portal-api": []})
    incoming = user_token(emulator, tenant)
    result = msal_app(emulator, "portal-api", tenant).acquire_token_on_behalf_of(
        incoming, ["https://graph.microsoft.com/User.Read"]
    )
    assert "access_token" in result, result
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == "https://graph.microsoft.com"
    assert claims["iss"] == f"https://sts.windows.net/{tenant}/"
    assert claims["oid"] == str(ADMIN)
    assert claims["scp"] == "User.Read"
    assert claims["appid"] == emulator.apps["portal-api"]["client_id"]


def test_key_rollover(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {"portal-api": []})
    before = user_token(emulator, tenant)
    old_kid = jwt.get_unverified_header(before)["kid"]
    with emulator.client() as client:
        new_kid = client.post("/_emulator/keys").json()["kid"]
        after = user_token(emulator, tenant)
        assert jwt.get_unverified_header(after)["kid"] == new_kid
        published = {
            key["kid"] for key in client.get(f"/{tenant}/discovery/v2.0/keys").json()["keys"]
        }
        assert published == {old_kid, new_kid}
        portal_claims(emulator, before, tenant)  # both still validate during the overlap

        assert client.delete(f"/_emulator/keys/{old_kid}").status_code == 204
        published = {
            key["kid"] for key in client.get(f"/{tenant}/discovery/v2.0/keys").json()["keys"]
        }
    assert published == {new_kid}
    with pytest.raises(ValueError):
        portal_claims(emulator, before, tenant)  # its key is gone from the JWKS
    result = msal_app(emulator, "portal-api", tenant).acquire_token_on_behalf_of(
        before, ["https://graph.microsoft.com/User.Read"]
    )
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [50013]


def test_a_disabled_enterprise_app_is_aadsts7000112(emulator: RunningEmulator) -> None:
    tenant = seed_tenant(emulator, {"directory-connector": ["Directory.Read.All"]})
    app = emulator.apps["directory-connector"]["client_id"]
    emulator.change_directory(
        tenant, {"op": "set_app_enabled", "app_id": app, "account_enabled": False}
    ).raise_for_status()
    with emulator.client() as control:
        state = control.get(f"/_emulator/tenants/{tenant}").json()
    result = msal_app(emulator, "directory-connector", tenant).acquire_token_for_client(
        GRAPH_DEFAULT
    )
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [7000112]
    assert result["error_description"].startswith(f"AADSTS7000112: Application '{app}'")
    assert [a["account_enabled"] for a in state["enterprise_apps"]] == [False]
    emulator.change_directory(
        tenant, {"op": "set_app_enabled", "app_id": app, "account_enabled": True}
    ).raise_for_status()
    enabled = msal_app(emulator, "directory-connector", tenant).acquire_token_for_client(
        GRAPH_DEFAULT
    )
    assert "access_token" in enabled
