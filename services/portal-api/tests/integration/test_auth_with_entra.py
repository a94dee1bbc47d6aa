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


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_entra_retires_is_refused_within_the_maximum_age(
    emulator: RunningEmulator,
) -> None:
    tenant, user = emulator.seed_tenant_with_admin({})
    settings = Settings(client_id=emulator.apps["portal-api"]["client_id"])
    clock = FakeClock()
    old_token = emulator.user_token(tenant, user, "Tenantflow.Reader")
    async with httpx.AsyncClient(verify=ssl.create_default_context(cafile=emulator.ca)) as http:
        jwks = JwksCache(
            f"{emulator.url}/common/discovery/v2.0/keys",
            http,
            min_refresh_seconds=60,
            max_age_seconds=600,
            clock=clock,
        )
        validator = TokenValidator(jwks, settings.audiences, settings.issuer_template)
        await jwks.refresh_if_due()
        await validator.validate(old_token)
        with emulator.client() as control:  # rollover, then the old key is retired
            old_kid = next(k["kid"] for k in control.get("/_emulator/keys").json() if k["active"])
            control.post("/_emulator/keys").raise_for_status()
            assert control.delete(f"/_emulator/keys/{old_kid}").status_code == 204
        clock.now += 299
        assert await jwks.refresh_if_due() == pytest.approx(1.0)
        await validator.validate(old_token)  # the cached copy still holds it, for now
        clock.now += 1  # half the maximum age: the background refresh is due
        await jwks.refresh_if_due()
        with pytest.raises(AuthenticationError):
            await validator.validate(old_token)
        await validator.validate(emulator.user_token(tenant, user, "Tenantflow.Reader"))
