"""The emulator, driven by clients no one here wrote: Microsoft's own Python Graph SDKs
(msgraph-sdk for v1.0, msgraph-beta-sdk for beta), including the Intune routes the writer uses
(a winGetApp created, assigned with a filter and winGet settings, read back expanded, listed
with $select and $expand; Intune's refusal parsed).

Paging with its PageIterator, delta with its request builders (and $select honoured), lookups by
the documented alternate key, errors parsed as its ODataError, its retry handler on the
emulator's throttling, members@delta typed as the members themselves, and soft deletion keeping
memberships: if the SDKs can use the emulator as shipped, so can any client."""

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
from msgraph_beta import GraphRequestAdapter as BetaRequestAdapter
from msgraph_beta import GraphServiceClient as BetaServiceClient
from msgraph_beta.generated.groups.delta.delta_request_builder import (
    DeltaRequestBuilder as BetaGroupsDelta,
)
from msgraph_core import APIVersion, GraphClientFactory
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
        self.emulator = emulator
        self.user_ids = [uuid4() for _ in range(USERS)]
        self.group_id = uuid4()
        self.upn = f"u7@t{self.id.hex[:8]}.example"
        emulator.seed(
            {
                "id": str(self.id),
                "display_name": "Contoso",
                "verified_domains": [f"t{self.id.hex[:8]}.example"],
                "users": [
                    {
                        "id": str(self.user_ids[n]),
                        "display_name": f"User {n}",
                        "user_principal_name": f"u{n}@t{self.id.hex[:8]}.example",
                    }
                    for n in range(USERS)
                ],
                "groups": [
                    {
                        "id": str(self.group_id),
                        "display_name": "Pilots",
                        "members": [str(u) for u in self.user_ids[:3]],
                    },
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
        beta_http = GraphClientFactory.create_with_default_middleware(
            api_version=APIVersion.beta,
            client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=emulator.ca)),
        )
        self.beta_adapter = BetaRequestAdapter(
            BaseBearerTokenAuthenticationProvider(EmulatorTokens(token)), client=beta_http
        )
        self.beta_adapter.base_url = f"{emulator.url}/beta"
        self.beta = BetaServiceClient(request_adapter=self.beta_adapter)

    def mutate(self, *mutations: dict[str, Any]) -> None:
        with self.emulator.client() as control:
            control.post(
                f"/_emulator/tenants/{self.id}/directory", json=list(mutations)
            ).raise_for_status()

    async def member_ids(self) -> set[str | None]:
        members = await self.graph.groups.by_group_id(str(self.group_id)).members.get()
        assert members is not None
        return {member.id for member in members.value or []}

    async def beta_groups_round(self, link: str | None = None) -> tuple[list[Any], str]:
        """One groups delta round with the beta SDK ($select with members): its entries and
        the deltaLink."""
        delta = self.beta.groups.delta
        if link is None:
            query = BetaGroupsDelta.DeltaRequestBuilderGetQueryParameters(
                select=["id", "displayName", "members"]
            )
            page = await delta.get(RequestConfiguration(query_parameters=query))
        else:
            page = await delta.with_url(link).get()
        entries: list[Any] = []
        while page is not None:
            entries += page.value or []
            if page.odata_delta_link:
                return entries, page.odata_delta_link
            assert page.odata_next_link
            page = await delta.with_url(page.odata_next_link).get()
        raise AssertionError("a delta round ended without a deltaLink")


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


def _members_delta(entries: list[Any]) -> list[dict[str, Any]]:
    """members@delta of every entry, as the beta SDK parsed it (an untyped annotation)."""
    found: list[dict[str, Any]] = []
    for entry in entries:
        for member in entry.additional_data.get("members@delta", []):
            found.append({**member, "id": str(member["id"])})  # it parses ids as UUIDs
    return found


async def test_beta_sdk_reads_members_delta_typed_as_the_members(tenant: Tenant) -> None:
    entries, link = await tenant.beta_groups_round()
    assert [e.display_name for e in entries] == ["Pilots"]
    assert {m["id"] for m in _members_delta(entries)} == {str(u) for u in tenant.user_ids[:3]}
    tenant.mutate(
        {
            "op": "remove_member",
            "group_id": str(tenant.group_id),
            "member_id": str(tenant.user_ids[0]),
        }
    )
    changes, _ = await tenant.beta_groups_round(link)
    [removed] = _members_delta(changes)
    # Microsoft's example types a removed member as itself, not as a directoryObject
    assert removed["@odata.type"] == "#microsoft.graph.user"
    assert removed["id"] == str(tenant.user_ids[0])
    assert removed["@removed"] == {"reason": "deleted"}


async def test_a_soft_deleted_user_keeps_its_memberships_until_deleted_for_good(
    tenant: Tenant,
) -> None:
    """delta-query-groups.md: only permanently deleted users are removed from groups."""
    _, link = await tenant.beta_groups_round()
    user = str(tenant.user_ids[1])
    page = await tenant.graph.users.delta.get()
    while page is not None and not page.odata_delta_link:
        page = await tenant.graph.users.delta.with_url(page.odata_next_link).get()
    assert page is not None
    users_link = page.odata_delta_link
    tenant.mutate({"op": "delete_user", "user_id": user})  # soft: to the recycle bin
    users_changes = await tenant.graph.users.delta.with_url(users_link).get()
    assert users_changes is not None
    [gone] = users_changes.value or []
    assert (gone.id, gone.additional_data.get("@removed")) == (user, {"reason": "changed"})
    unchanged, link = await tenant.beta_groups_round(link)
    assert unchanged == []  # the membership is kept
    assert user not in await tenant.member_ids()  # but not listed while deleted
    tenant.mutate({"op": "restore_user", "user_id": user})
    assert user in await tenant.member_ids()  # restored with its memberships
    tenant.mutate({"op": "delete_user", "user_id": user, "permanent": True})
    changes, _ = await tenant.beta_groups_round(link)
    [removed] = _members_delta(changes)
    assert (removed["id"], removed["@removed"]) == (user, {"reason": "deleted"})


# --- Intune, as the writer uses it (beta: winGetApp and filters on targets are beta's) --------


class IntuneTenant:
    def __init__(self, emulator: RunningEmulator) -> None:
        self.id, self.group, self.filter = uuid4(), uuid4(), uuid4()
        emulator.seed(
            {
                "id": str(self.id),
                "display_name": "Fabrikam",
                "verified_domains": [f"t{self.id.hex[:8]}.example"],
                "enterprise_apps": [
                    {
                        "app_id": emulator.apps["intune-writer"]["client_id"],
                        "permissions": ["DeviceManagementApps.ReadWrite.All"],
                    },
                    {
                        "app_id": emulator.apps["directory-connector"]["client_id"],
                        "permissions": ["Directory.Read.All"],
                    },
                ],
                "assignment_filters": [{"id": str(self.filter), "display_name": "Windows 11"}],
            }
        )
        self.beta = self._client(emulator, "intune-writer")
        self.stranger = self._client(emulator, "directory-connector")

    def _client(self, emulator: RunningEmulator, app: str) -> BetaServiceClient:
        http = GraphClientFactory.create_with_default_middleware(
            api_version=APIVersion.beta,
            client=httpx.AsyncClient(verify=ssl.create_default_context(cafile=emulator.ca)),
        )
        adapter = BetaRequestAdapter(
            BaseBearerTokenAuthenticationProvider(
                EmulatorTokens(emulator.app_token(app, str(self.id)))
            ),
            client=http,
        )
        adapter.base_url = f"{emulator.url}/beta"
        return BetaServiceClient(request_adapter=adapter)


async def test_the_beta_sdk_creates_a_winget_app_assigns_it_and_reads_it_expanded(
    emulator: RunningEmulator,
) -> None:
    from msgraph_beta.generated.device_app_management.mobile_apps.item.assign.assign_post_request_body import (  # noqa: E501
        AssignPostRequestBody,
    )
    from msgraph_beta.generated.device_app_management.mobile_apps.item.mobile_app_item_request_builder import (  # noqa: E501
        MobileAppItemRequestBuilder,
    )
    from msgraph_beta.generated.device_app_management.mobile_apps.mobile_apps_request_builder import (  # noqa: E501
        MobileAppsRequestBuilder,
    )
    from msgraph_beta.generated.models.device_and_app_management_assignment_filter_type import (
        DeviceAndAppManagementAssignmentFilterType,
    )
    from msgraph_beta.generated.models.group_assignment_target import GroupAssignmentTarget
    from msgraph_beta.generated.models.install_intent import InstallIntent
    from msgraph_beta.generated.models.mobile_app_assignment import MobileAppAssignment
    from msgraph_beta.generated.models.run_as_account_type import RunAsAccountType
    from msgraph_beta.generated.models.win_get_app import WinGetApp
    from msgraph_beta.generated.models.win_get_app_assignment_settings import (
        WinGetAppAssignmentSettings,
    )
    from msgraph_beta.generated.models.win_get_app_install_experience import (
        WinGetAppInstallExperience,
    )
    from msgraph_beta.generated.models.win_get_app_notification import WinGetAppNotification

    tenant = IntuneTenant(emulator)
    apps = tenant.beta.device_app_management.mobile_apps
    created = await apps.post(
        WinGetApp(
            display_name="7-Zip",
            publisher="Igor Pavlov",
            package_identifier="7zip.7zip",
            install_experience=WinGetAppInstallExperience(run_as_account=RunAsAccountType.System),
            notes="tenantflow:marker",
        )
    )
    assert isinstance(created, WinGetApp)
    assert created.id is not None
    assert created.install_experience is not None
    assert created.install_experience.run_as_account is RunAsAccountType.System
    await apps.by_mobile_app_id(created.id).assign.post(
        AssignPostRequestBody(
            mobile_app_assignments=[
                MobileAppAssignment(
                    intent=InstallIntent.Required,
                    target=GroupAssignmentTarget(
                        group_id=str(tenant.group),
                        device_and_app_management_assignment_filter_id=str(tenant.filter),
                        device_and_app_management_assignment_filter_type=(
                            DeviceAndAppManagementAssignmentFilterType.Include
                        ),
                    ),
                    settings=WinGetAppAssignmentSettings(
                        notifications=WinGetAppNotification.HideAll
                    ),
                )
            ]
        )
    )
    expand = MobileAppItemRequestBuilder.MobileAppItemRequestBuilderGetQueryParameters(
        expand=["assignments"]
    )
    read = await apps.by_mobile_app_id(created.id).get(
        RequestConfiguration(query_parameters=expand)
    )
    listed = await apps.get(
        RequestConfiguration(
            query_parameters=MobileAppsRequestBuilder.MobileAppsRequestBuilderGetQueryParameters(
                select=["id", "notes"], expand=["assignments"]
            )
        )
    )
    assert read is not None
    [assignment] = read.assignments or []
    assert assignment.intent is InstallIntent.Required
    assert isinstance(assignment.target, GroupAssignmentTarget)
    assert assignment.target.group_id == str(tenant.group)
    assert assignment.target.device_and_app_management_assignment_filter_type is (
        DeviceAndAppManagementAssignmentFilterType.Include
    )
    assert isinstance(assignment.settings, WinGetAppAssignmentSettings)
    assert assignment.settings.notifications is WinGetAppNotification.HideAll
    assert listed is not None
    [app] = listed.value or []
    assert app.notes == "tenantflow:marker"
    assert [a.id for a in app.assignments or []] == [assignment.id]


async def test_an_intune_refusal_parses_as_an_odata_error(emulator: RunningEmulator) -> None:
    from msgraph_beta.generated.models.o_data_errors.o_data_error import (
        ODataError as BetaODataError,
    )

    tenant = IntuneTenant(emulator)
    with pytest.raises(BetaODataError) as refused:
        await tenant.stranger.device_app_management.mobile_apps.get()
    assert refused.value.response_status_code == 403
    assert refused.value.error is not None
    assert refused.value.error.code == "Forbidden"
    assert "DeviceManagementApps" in (refused.value.error.message or "")
