"""Tokens the emulated Entra ID mints for a signed-in user pass; its keys come from the JWKS."""

from __future__ import annotations

import ssl
from uuid import uuid4

import httpx
import pytest

from tenantflow.emulator.testing import RunningEmulator
from tenantflow.portal_api.auth import AuthenticationError, JwksCache, PortalRole, TokenValidator
from tenantflow.portal_api.settings import Settings

pytestmark = pytest.mark.integration


async def test_a_user_token_from_entra_is_accepted_and_another_apps_refused(
    emulator: RunningEmulator,
) -> None:
    tenant, user = str(uuid4()), str(uuid4())
    emulator.seed(
        {
            "id": tenant,
            "display_name": "Contoso",
            "verified_domains": ["contoso.example"],
            "users": [
                {
                    "id": user,
                    "display_name": "Megan Bowen",
                    "user_principal_name": "megan@contoso.example",
                }
            ],
        }
    )
    settings = Settings(client_id=emulator.apps["portal-api"]["client_id"])
    with emulator.client() as client:
        token = client.post(
            "/_emulator/tokens",
            json={"tenant_id": tenant, "user_id": user, "roles": ["Tenantflow.Operator"]},
        ).json()
        foreign = client.post(
            "/_emulator/tokens",
            json={
                "tenant_id": tenant,
                "user_id": user,
                "audience": emulator.apps["intune-writer"]["client_id"],
            },
        ).json()
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=emulator.ca)) as http:
        jwks = JwksCache(f"{emulator.url}/common/discovery/v2.0/keys", http)
        validator = TokenValidator(jwks, settings.audiences, settings.issuer_template)
        principal = await validator.validate(token["access_token"])
        with pytest.raises(AuthenticationError):
            await validator.validate(foreign["access_token"])
    assert str(principal.tenant_id) == tenant
    assert str(principal.object_id) == user
    assert principal.roles == {PortalRole.OPERATOR}
