"""Tenant-link verification against the emulated Entra ID and Graph: the whole matrix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from tenantflow.consent.verification import (
    ELIGIBLE_GLOBAL_ADMINISTRATOR,
    NOT_AUTHORIZED,
    Rejected,
    Verified,
    verify,
)
from tenantflow.contracts.events import LinkAuthorization, VerificationFailure
from tenantflow.emulator.testing import RunningEmulator
from tenantflow.graph.client import GraphClient
from tenantflow.graph.credentials import AppCredentials

pytestmark = pytest.mark.integration

CONNECTOR_NEEDS = ["Directory.Read.All"]
WRITER_NEEDS = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementConfiguration.Read.All",
    "Organization.Read.All",
]


class Tenant:
    def __init__(
        self,
        emulator: RunningEmulator,
        consents: dict[str, list[str]],
        disabled: frozenset[str] = frozenset(),
    ) -> None:
        self.id = uuid4()
        self.admin, self.direct, self.via_group, self.plain = (uuid4() for _ in range(4))
        self.eligible = uuid4()
        self.group = uuid4()
        assigned = [str(self.direct), str(self.group)]
        emulator.seed(
            {
                "id": str(self.id),
                "display_name": "Contoso",
                "verified_domains": ["contoso.example", "contoso.onmicrosoft.com"],
                "users": [
                    {
                        "id": str(self.admin),
                        "display_name": "Admin",
                        "user_principal_name": "a@c.example",
                        "directory_roles": ["Global Administrator"],
                    },
                    {
                        "id": str(self.direct),
                        "display_name": "Direct",
                        "user_principal_name": "d@c.example",
                    },
                    {
                        "id": str(self.via_group),
                        "display_name": "Member",
                        "user_principal_name": "m@c.example",
                    },
                    {
                        "id": str(self.plain),
                        "display_name": "Plain",
                        "user_principal_name": "p@c.example",
                    },
                    {
                        "id": str(self.eligible),
                        "display_name": "Eligible",
                        "user_principal_name": "e@c.example",
                        "eligible_roles": ["Global Administrator"],
                    },
                ],
                "groups": [
                    {
                        "id": str(self.group),
                        "display_name": "Linkers",
                        "members": [str(self.via_group)],
                    }
                ],
                "enterprise_apps": [
                    {
                        "app_id": emulator.apps[name]["client_id"],
                        "permissions": permissions,
                        "assigned_principals": assigned if name == "directory-connector" else [],
                        "account_enabled": name not in disabled,
                    }
                    for name, permissions in consents.items()
                ],
            }
        )


@pytest.fixture
async def graph(emulator: RunningEmulator) -> AsyncIterator[GraphClient]:
    client = GraphClient(emulator.url, emulator.url, emulator.ca, backoff_s=0.01)
    yield client
    await client.close()


def credentials(emulator: RunningEmulator, app: str) -> AppCredentials:
    return AppCredentials(
        UUID(emulator.apps[app]["client_id"]), emulator.apps[app]["client_secret"]
    )


async def test_a_certificate_credential_verifies_like_a_secret(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    tenant = Tenant(emulator, {"directory-connector": CONNECTOR_NEEDS})
    registration = emulator.apps["directory-connector"]
    app = AppCredentials(
        UUID(registration["client_id"]),
        certificate=Path(registration["certificate_path"]),
        private_key=Path(registration["private_key_path"]),
    )
    assert isinstance(await verify(graph, app, tenant.id, CONNECTOR_NEEDS, None), Verified)
    with pytest.raises(ValueError, match="neither a secret nor a certificate"):
        AppCredentials(UUID(registration["client_id"]))


@pytest.mark.parametrize(
    ("who", "how"),
    [
        ("admin", LinkAuthorization.GLOBAL_ADMINISTRATOR),
        ("direct", LinkAuthorization.APP_ASSIGNMENT),
        ("via_group", LinkAuthorization.APP_ASSIGNMENT_THROUGH_GROUP),
    ],
)
async def test_who_may_link(
    emulator: RunningEmulator, graph: GraphClient, who: str, how: LinkAuthorization
) -> None:
    tenant = Tenant(emulator, {"directory-connector": CONNECTOR_NEEDS})
    result = await verify(
        graph,
        credentials(emulator, "directory-connector"),
        tenant.id,
        CONNECTOR_NEEDS,
        getattr(tenant, who),
    )
    assert result == Verified("Contoso", "contoso.example", CONNECTOR_NEEDS, how)


async def test_a_plain_user_is_not_authorized(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    tenant = Tenant(emulator, {"directory-connector": CONNECTOR_NEEDS})
    result = await verify(
        graph,
        credentials(emulator, "directory-connector"),
        tenant.id,
        CONNECTOR_NEEDS,
        tenant.plain,
    )
    assert isinstance(result, Rejected)
    assert result.reason is VerificationFailure.USER_NOT_AUTHORIZED


async def test_no_consent_gives_the_admin_consent_url(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    tenant = Tenant(emulator, {})
    app = credentials(emulator, "directory-connector")
    result = await verify(graph, app, tenant.id, CONNECTOR_NEEDS, tenant.admin)
    assert isinstance(result, Rejected)
    assert result.reason is VerificationFailure.ADMIN_CONSENT_MISSING
    assert result.admin_consent_url == (
        f"{emulator.url}/{tenant.id}/v2.0/adminconsent?client_id={app.client_id}"
        "&scope=https://graph.microsoft.com/.default"
    )


async def test_consent_without_a_required_permission(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    tenant = Tenant(emulator, {"directory-connector": ["User.Read.All"]})
    result = await verify(
        graph,
        credentials(emulator, "directory-connector"),
        tenant.id,
        CONNECTOR_NEEDS,
        tenant.admin,
    )
    assert isinstance(result, Rejected)
    assert result.reason is VerificationFailure.PERMISSION_MISSING
    assert result.missing_permissions == ["Directory.Read.All"]


async def test_intune_writer_with_and_without_its_permissions(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    complete = Tenant(
        emulator,
        {
            "directory-connector": CONNECTOR_NEEDS,
            "intune-writer": [*WRITER_NEEDS, "Directory.Read.All"],
        },
    )
    partial = Tenant(
        emulator,
        {
            "directory-connector": CONNECTOR_NEEDS,
            "intune-writer": ["DeviceManagementApps.ReadWrite.All"],
        },
    )
    writer = credentials(emulator, "intune-writer")
    assert isinstance(await verify(graph, writer, complete.id, WRITER_NEEDS, None), Verified)
    rejected = await verify(graph, writer, partial.id, WRITER_NEEDS, None)
    assert isinstance(rejected, Rejected)
    assert rejected.missing_permissions == [
        "DeviceManagementConfiguration.Read.All",
        "DeviceManagementManagedDevices.Read.All",
        "Organization.Read.All",
    ]


async def test_revoked_consent_is_noticed_by_a_recheck(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    tenant = Tenant(emulator, {"directory-connector": CONNECTOR_NEEDS})
    app = credentials(emulator, "directory-connector")
    assert isinstance(await verify(graph, app, tenant.id, CONNECTOR_NEEDS, None), Verified)
    with emulator.client() as control:
        control.delete(f"/_emulator/tenants/{tenant.id}/consents/{app.client_id}")
    graph.forget_tokens(str(tenant.id))  # a cached token would stay valid for its hour
    result = await verify(graph, app, tenant.id, CONNECTOR_NEEDS, None)
    assert isinstance(result, Rejected)
    assert result.reason is VerificationFailure.ADMIN_CONSENT_MISSING


async def test_throttled_graph_calls_are_retried_after_retry_after(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    tenant = Tenant(emulator, {"directory-connector": CONNECTOR_NEEDS})
    with emulator.client() as control:
        control.post(
            "/_emulator/faults",
            json={
                "path": "^/v1.0/organization$",
                "share": 0.5,
                "status": 429,
                "retry_after": "0.05",
            },
        )
    try:
        result = await verify(
            graph,
            credentials(emulator, "directory-connector"),
            tenant.id,
            CONNECTOR_NEEDS,
            tenant.admin,
        )
    finally:
        with emulator.client() as control:
            control.delete("/_emulator/faults")
    assert isinstance(result, Verified)


PIM = "RoleEligibilitySchedule.Read.Directory"


@pytest.mark.parametrize("can_read_eligibility", [True, False])
async def test_an_eligible_global_administrator_must_activate_first(
    emulator: RunningEmulator, graph: GraphClient, can_read_eligibility: bool
) -> None:
    granted = [*CONNECTOR_NEEDS, PIM] if can_read_eligibility else CONNECTOR_NEEDS
    tenant = Tenant(emulator, {"directory-connector": granted})
    app = credentials(emulator, "directory-connector")
    result = await verify(graph, app, tenant.id, CONNECTOR_NEEDS, tenant.eligible)
    plain = await verify(graph, app, tenant.id, CONNECTOR_NEEDS, tenant.plain)
    assert isinstance(result, Rejected)
    assert result.reason is VerificationFailure.USER_NOT_AUTHORIZED
    assert "activate" in result.detail.lower()
    assert result.detail == (
        ELIGIBLE_GLOBAL_ADMINISTRATOR if can_read_eligibility else NOT_AUTHORIZED
    )
    assert isinstance(plain, Rejected)
    assert plain.detail == NOT_AUTHORIZED
    emulator.change_directory(
        tenant.id,
        {"op": "activate_role", "user_id": str(tenant.eligible), "role": "Global Administrator"},
    ).raise_for_status()
    activated = await verify(graph, app, tenant.id, CONNECTOR_NEEDS, tenant.eligible)
    assert isinstance(activated, Verified)
    assert activated.authorized_by is LinkAuthorization.GLOBAL_ADMINISTRATOR


@pytest.mark.parametrize("app_name", ["directory-connector", "intune-writer"])
async def test_a_disabled_enterprise_app_is_rejected_not_retried(
    emulator: RunningEmulator, graph: GraphClient, app_name: str
) -> None:
    tenant = Tenant(
        emulator,
        {"directory-connector": CONNECTOR_NEEDS, "intune-writer": WRITER_NEEDS},
        disabled=frozenset({app_name}),
    )
    writer = credentials(emulator, "intune-writer")
    connector = credentials(emulator, "directory-connector")
    result = await verify(graph, writer, tenant.id, WRITER_NEEDS, tenant.admin, connector)
    assert isinstance(result, Rejected)
    assert result.reason is VerificationFailure.APP_DISABLED
    assert "AADSTS7000112" in result.detail
    assert "enable" in result.detail


async def test_an_app_disabled_after_its_token_was_issued_is_rejected(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    tenant = Tenant(emulator, {"directory-connector": CONNECTOR_NEEDS})
    app = credentials(emulator, "directory-connector")
    assert isinstance(await verify(graph, app, tenant.id, CONNECTOR_NEEDS, None), Verified)
    emulator.change_directory(
        tenant.id, {"op": "set_app_enabled", "app_id": str(app.client_id), "account_enabled": False}
    ).raise_for_status()
    result = await verify(graph, app, tenant.id, CONNECTOR_NEEDS, None)  # the cached token
    assert isinstance(result, Rejected)
    assert result.reason is VerificationFailure.APP_DISABLED


async def test_our_own_credential_refused_is_a_verdict_naming_it(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    tenant = Tenant(emulator, {"directory-connector": CONNECTOR_NEEDS})
    wrong = AppCredentials(UUID(emulator.apps["directory-connector"]["client_id"]), "not-it")
    result = await verify(graph, wrong, tenant.id, CONNECTOR_NEEDS, tenant.admin)
    assert isinstance(result, Rejected)
    assert result.reason is VerificationFailure.APP_CREDENTIALS_INVALID
    assert "AADSTS7000215" in result.detail
    assert "tenantflow's operators" in result.detail


async def test_an_assignment_past_the_first_page_is_found(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    """Graph pages appRoleAssignedTo (100 a page here): the user assigned last is on page 2."""
    tenant, user = uuid4(), uuid4()
    others = [uuid4() for _ in range(150)]
    people = [*others, user]
    emulator.seed(
        {
            "id": str(tenant),
            "display_name": "Contoso",
            "verified_domains": [f"t{tenant.hex[:8]}.example"],
            "users": [
                {"id": str(p), "display_name": f"U{n}", "user_principal_name": f"u{n}@c.example"}
                for n, p in enumerate(people)
            ],
            "enterprise_apps": [
                {
                    "app_id": emulator.apps["directory-connector"]["client_id"],
                    "permissions": CONNECTOR_NEEDS,
                    "assigned_principals": [str(p) for p in people],
                }
            ],
        }
    )
    app = credentials(emulator, "directory-connector")
    result = await verify(graph, app, tenant, CONNECTOR_NEEDS, user)
    assert isinstance(result, Verified)
    assert result.authorized_by is LinkAuthorization.APP_ASSIGNMENT
