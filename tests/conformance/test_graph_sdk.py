"""The emulator, driven by a client no one here wrote: Microsoft's own Python Graph SDK.

Paging with its PageIterator, delta with its request builders (and $select honoured), lookups by
the documented alternate key, errors parsed as its ODataError, and its retry handler on the
emulator's throttling: if the SDK can use the emulator as shipped, so can any client."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import httpx
import pytest
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.users.delta.delta_request_builder import DeltaRequestBuilder
from msgraph.generated.users.users_request_builder import UsersRequestBuilder
from msgraph_core import GraphClientFactory
from msgraph_core.tasks.page_iterator import PageIterator

from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

USERS = 150


class EmulatorTokens(AccessTokenProvider):
    """The app token the emulated Entra ID issued, for the emulator's host only."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] | None = None
    ) -> str:
        return self.token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return AllowedHostsValidator(["localhost", "127.0.0.1"])


class Tenant:
    def __init__(self, emulator: RunningEmulator) -> None:
        self.id = uuid4()
        self.upn = f"u7@t{self.id.hex[:8]}.example"
        emulator.seed(
            {
                "id": str(self.id),
                "display_name": "Contoso",
                "verified_domains": [f"t{self.id.hex[:8]}.example"],
                "users": [
                    {
                        "display_name": f"User {n}",
                        "user_principal_name": f"u{n}@t{self.id.hex[:8]}.example",
                    }
                    for n in range(USERS)
                ],
                "enterprise_apps": [
                    {
                        "app_id": emulator.apps["directory-connector"]["client_id"],
                        "permissions": ["Directory.Read.All"],
                    }
                ],
            }
        )
        token = emulator.app_token("directory-connector", str(self.id))
        http = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=emulator.ca))
        )
        self.adapter = GraphRequestAdapter(
            BaseBearerTokenAuthenticationProvider(EmulatorTokens(token)), client=http
        )
        self.adapter.base_url = f"{emulator.url}/v1.0"
        self.graph = GraphServiceClient(request_adapter=self.adapter)


@pytest.fixture
def tenant(emulator: RunningEmulator) -> Tenant:
    return Tenant(emulator)


async def test_pages_with_the_sdks_page_iterator(tenant: Tenant) -> None:
    first = await tenant.graph.users.get()
    assert first is not None
    seen: list[str] = []

    def keep(user: Any) -> bool:
        seen.append(user.id)
        return True

    await PageIterator(first, tenant.adapter).iterate(keep)
    assert len(set(seen)) == USERS


async def test_delta_with_the_sdks_request_builders_and_select(tenant: Tenant) -> None:
    query = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters(select=["id", "displayName"])
    page = await tenant.graph.users.delta.get(RequestConfiguration(query_parameters=query))
    users: list[Any] = []
    while page is not None:
        users += page.value or []
        if page.odata_delta_link:
            break
        assert page.odata_next_link
        page = await tenant.graph.users.delta.with_url(page.odata_next_link).get()
    assert page is not None
    assert len(users) == USERS
    assert all(user.display_name for user in users)
    assert all(user.user_principal_name is None for user in users)  # not selected, not sent
    changes = await tenant.graph.users.delta.with_url(page.odata_delta_link).get()
    assert changes is not None
    assert changes.value == []


async def test_a_user_by_its_principal_name(tenant: Tenant) -> None:
    user = await tenant.graph.users.by_user_id(tenant.upn.upper()).get()
    assert user is not None
    assert user.display_name == "User 7"


@pytest.mark.parametrize(
    ("call", "status", "code"),
    [
        (lambda g: g.users.by_user_id(str(uuid4())).get(), 404, "Request_ResourceNotFound"),
        (lambda g: g.identity_governance.get(), 400, "BadRequest"),  # not emulated
    ],
)
async def test_errors_parse_as_odata_errors(
    tenant: Tenant, call: Any, status: int, code: str
) -> None:
    with pytest.raises(ODataError) as caught:
        await call(tenant.graph)
    assert caught.value.response_status_code == status
    assert caught.value.error is not None
    assert caught.value.error.code == code


@pytest.fixture
def tight_throttling(emulator: RunningEmulator) -> Iterator[None]:
    """10 resource units per 10 s whatever the tenant's size, then 429s."""
    tight = {f"directory_units_{size}": 10 for size in ("small", "medium", "large")}
    with emulator.client() as control:
        control.put(
            "/_emulator/throttling", json={"enabled": True, "limits": tight}
        ).raise_for_status()
    yield
    with emulator.client() as control:
        control.put("/_emulator/throttling", json={"enabled": True}).raise_for_status()


@pytest.mark.usefixtures("tight_throttling")
async def test_the_sdks_retry_handler_honours_the_emulators_429s(
    emulator: RunningEmulator, tenant: Tenant
) -> None:
    # one unit each ($select), and small to parse: the bucket empties faster than it refills
    query = UsersRequestBuilder.UsersRequestBuilderGetQueryParameters(select=["id"], top=1)
    for _ in range(14):
        assert await tenant.graph.users.get(RequestConfiguration(query_parameters=query))
    with emulator.client() as control:
        throttled = control.get(
            "/_emulator/requests", params={"tenant": str(tenant.id), "status": "429"}
        ).json()
    assert throttled  # it was throttled, and retried through it
