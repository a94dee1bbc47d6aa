"""Graph's directory reads, as tenantflow's services will make them, over HTTPS."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import httpx
import pytest

from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

GA_TEMPLATE = "62e90394-69f5-4237-9190-012177145e10"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


class Contoso:
    """A small tenant: an admin, a plain user, nested groups, devices, two enterprise apps."""

    def __init__(self, emulator: RunningEmulator) -> None:
        self.id = uuid4()
        self.admin, self.plain, self.assigned_via_group = uuid4(), uuid4(), uuid4()
        self.devices = [uuid4() for _ in range(3)]
        self.outer, self.inner = uuid4(), uuid4()
        self.users = [
            {
                "id": str(self.admin),
                "display_name": "Megan Bowen",
                "user_principal_name": "megan@contoso.example",
                "directory_roles": ["Global Administrator"],
            },
            {
                "id": str(self.plain),
                "display_name": "Alex Wilber",
                "user_principal_name": "alex@contoso.example",
            },
            {
                "id": str(self.assigned_via_group),
                "display_name": "Diego Siciliani",
                "user_principal_name": "diego@contoso.example",
            },
            *(
                {"display_name": f"User {n:03}", "user_principal_name": f"u{n:03}@contoso.example"}
                for n in range(250)
            ),
        ]
        document = {
            "id": str(self.id),
            "display_name": "Contoso",
            "verified_domains": ["contoso.example", "contoso.onmicrosoft.com"],
            "users": self.users,
            "groups": [
                {
                    "id": str(self.inner),
                    "display_name": "Inner",
                    "members": [str(self.assigned_via_group)],
                },
                {
                    "id": str(self.outer),
                    "display_name": "Outer",
                    "members": [str(self.inner), str(self.devices[0])],
                },
            ],
            "devices": [
                {"id": str(d), "display_name": f"PC-{i}"} for i, d in enumerate(self.devices)
            ],
            "enterprise_apps": [
                {
                    "app_id": emulator.apps["directory-connector"]["client_id"],
                    "permissions": ["Directory.Read.All"],
                    "assigned_principals": [str(self.outer)],
                },
                {
                    "app_id": emulator.apps["intune-writer"]["client_id"],
                    "permissions": ["DeviceManagementApps.ReadWrite.All"],
                },
            ],
        }
        emulator.seed(document)
        self.emulator = emulator

    def graph(self, app: str = "directory-connector") -> httpx.Client:
        return self.emulator.graph(app, str(self.id))


@pytest.fixture(scope="module")
def contoso(emulator: RunningEmulator) -> Contoso:
    return Contoso(emulator)


def follow(client: httpx.Client, response: httpx.Response) -> list[dict[str, Any]]:
    """Every item across nextLink pages, each nextLink followed as given: it names the
    emulator, the host that served the page."""
    items: list[dict[str, Any]] = []
    body = response.json()
    while True:
        items += body["value"]
        if "@odata.nextLink" not in body:
            return items
        link = body["@odata.nextLink"]
        assert urlsplit(link).netloc == client.base_url.netloc.decode(), link
        body = client.get(link).json()


def test_organization(contoso: Contoso) -> None:
    with contoso.graph() as graph:
        [org] = graph.get("/v1.0/organization").json()["value"]
    assert org["id"] == str(contoso.id)
    assert [d["name"] for d in org["verifiedDomains"]] == [
        "contoso.example",
        "contoso.onmicrosoft.com",
    ]
    assert org["verifiedDomains"][0]["isDefault"] is True


def test_users_page_with_opaque_next_links_and_select(contoso: Contoso) -> None:
    with contoso.graph() as graph:
        first = graph.get("/v1.0/users", params={"$top": "100", "$select": "displayName"})
        body = first.json()
        assert len(body["value"]) == 100
        assert set(body["value"][0]) == {"@odata.type", "id", "displayName"}
        assert "$skiptoken=" in body["@odata.nextLink"]
        users = follow(graph, first)
    assert len(users) == len(contoso.users)
    assert len({u["id"] for u in users}) == len(users)
    assert all(set(u) == {"@odata.type", "id", "displayName"} for u in users)


def test_count_needs_consistency_level(contoso: Contoso) -> None:
    with contoso.graph() as graph:
        refused = graph.get("/v1.0/users", params={"$count": "true"})
        counted = graph.get(
            "/v1.0/users",
            params={"$count": "true", "$top": "5"},
            headers={"ConsistencyLevel": "eventual"},
        )
    assert refused.status_code == 400
    assert counted.json()["@odata.count"] == len(contoso.users)


def test_filter_by_id(contoso: Contoso) -> None:
    with contoso.graph() as graph:
        found = graph.get(
            "/v1.0/users", params={"$filter": f"id eq '{contoso.admin}' or id eq '{contoso.plain}'"}
        ).json()["value"]
        unsupported = graph.get("/v1.0/users", params={"$filter": "startswith(displayName,'M')"})
    assert {u["id"] for u in found} == {str(contoso.admin), str(contoso.plain)}
    assert unsupported.status_code == 400
    assert unsupported.json()["error"]["code"] == "Request_UnsupportedQuery"


def test_members_and_transitive_members(contoso: Contoso) -> None:
    with contoso.graph() as graph:
        direct = graph.get(f"/v1.0/groups/{contoso.outer}/members").json()["value"]
        transitive = graph.get(f"/v1.0/groups/{contoso.outer}/transitiveMembers").json()["value"]
    assert {m["@odata.type"] for m in direct} == {
        "#microsoft.graph.group",
        "#microsoft.graph.device",
    }
    assert str(contoso.assigned_via_group) in {m["id"] for m in transitive}


def test_service_principals_by_app_id_and_alternate_key(contoso: Contoso) -> None:
    connector = contoso.emulator.apps["directory-connector"]["client_id"]
    with contoso.graph() as graph:
        [ours] = graph.get(
            "/v1.0/servicePrincipals", params={"$filter": f"appId eq '{connector}'"}
        ).json()["value"]
        graph_sp = graph.get(
            f"/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')", params={"$select": "id,appRoles"}
        ).json()
        missing = graph.get(
            "/v1.0/servicePrincipals", params={"$filter": f"appId eq '{uuid4()}'"}
        ).json()["value"]
        assignments = graph.get(f"/v1.0/servicePrincipals/{ours['id']}/appRoleAssignments").json()
        assigned_to = graph.get(f"/v1.0/servicePrincipals/{ours['id']}/appRoleAssignedTo").json()
    roles = {role["value"]: role["id"] for role in graph_sp["appRoles"]}
    assert roles["Directory.Read.All"] == "7ab1d382-f21e-4acd-a863-ba3e13f7da61"
    assert missing == []
    [grant] = assignments["value"]
    assert grant["appRoleId"] == roles["Directory.Read.All"]
    assert grant["resourceId"] == graph_sp["id"]
    assert grant["principalType"] == "ServicePrincipal"
    [group_assignment] = assigned_to["value"]
    assert group_assignment["principalId"] == str(contoso.outer)
    assert group_assignment["principalType"] == "Group"
    assert group_assignment["appRoleId"] == "00000000-0000-0000-0000-000000000000"


def test_check_member_groups_follows_nesting(contoso: Contoso) -> None:
    with contoso.graph() as graph:
        response = graph.post(
            f"/v1.0/users/{contoso.assigned_via_group}/checkMemberGroups",
            json={"groupIds": [str(contoso.outer), str(uuid4())]},
        )
        plain = graph.post(
            f"/v1.0/users/{contoso.plain}/checkMemberGroups",
            json={"groupIds": [str(contoso.outer)]},
        )
        objects = graph.post(
            f"/v1.0/users/{contoso.assigned_via_group}/checkMemberObjects",
            json={"ids": [str(contoso.inner), str(contoso.outer)]},
        )
    assert response.json()["value"] == [str(contoso.outer)]
    assert plain.json()["value"] == []
    assert objects.json()["value"] == [str(contoso.inner), str(contoso.outer)]


def test_global_administrator_role_assignments(contoso: Contoso) -> None:
    with contoso.graph() as graph:
        admin = graph.get(
            "/v1.0/roleManagement/directory/roleAssignments",
            params={"$filter": f"principalId eq '{contoso.admin}'"},
        ).json()["value"]
        plain = graph.get(
            "/v1.0/roleManagement/directory/roleAssignments",
            params={"$filter": f"principalId eq '{contoso.plain}'"},
        ).json()["value"]
        unfiltered = graph.get("/v1.0/roleManagement/directory/roleAssignments")
        holders = graph.get(f"/v1.0/directoryRoles(roleTemplateId='{GA_TEMPLATE}')/members").json()[
            "value"
        ]
    assert [a["roleDefinitionId"] for a in admin] == [GA_TEMPLATE]
    assert admin[0]["directoryScopeId"] == "/"
    assert plain == []
    assert unfiltered.status_code == 400
    assert [h["id"] for h in holders] == [str(contoso.admin)]


def test_missing_permission_is_authorization_request_denied(contoso: Contoso) -> None:
    with contoso.graph("intune-writer") as graph:
        response = graph.get("/v1.0/users")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "Authorization_RequestDenied"
    assert error["message"] == "Insufficient privileges to complete the operation."
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    assert UUID(error["innerError"]["client-request-id"])


def test_no_or_forged_token_is_401(contoso: Contoso) -> None:
    with contoso.emulator.client() as client:
        anonymous = client.get("/v1.0/organization")
        forged = client.get("/v1.0/organization", headers={"authorization": "Bearer a.b.c"})
    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert forged.status_code == 401


def test_beta_prefix_serves_the_same(contoso: Contoso) -> None:
    with contoso.graph() as graph:
        assert graph.get("/beta/organization").json()["value"][0]["id"] == str(contoso.id)


def test_an_eligible_role_is_a_schedule_not_an_assignment(emulator: RunningEmulator) -> None:
    tenant, eligible = uuid4(), uuid4()
    emulator.seed(
        {
            "id": str(tenant),
            "display_name": "Fabrikam",
            "verified_domains": [f"f{tenant.hex[:8]}.example"],
            "users": [
                {
                    "id": str(eligible),
                    "display_name": "Eli",
                    "user_principal_name": "eli@fabrikam.example",
                    "eligible_roles": ["Global Administrator"],
                }
            ],
            "enterprise_apps": [
                {
                    "app_id": emulator.apps["directory-connector"]["client_id"],
                    "permissions": ["Directory.Read.All", "RoleEligibilitySchedule.Read.Directory"],
                },
                {
                    "app_id": emulator.apps["intune-writer"]["client_id"],
                    "permissions": ["Directory.Read.All"],
                },
            ],
        }
    )
    who = {"$filter": f"principalId eq '{eligible}'"}
    base = "/v1.0/roleManagement/directory"
    with emulator.graph("directory-connector", str(tenant)) as graph:
        assigned = graph.get(f"{base}/roleAssignments", params=who).json()["value"]
        schedules = graph.get(f"{base}/roleEligibilitySchedules", params=who).json()
        [instance] = graph.get(f"{base}/roleEligibilityScheduleInstances", params=who).json()[
            "value"
        ]
    with emulator.graph("intune-writer", str(tenant)) as graph:
        denied = graph.get(f"{base}/roleEligibilityScheduleInstances", params=who)
    assert assigned == []  # only active assignments are listed there
    [schedule] = schedules["value"]
    assert schedules["@odata.context"].endswith(
        "#roleManagement/directory/roleEligibilitySchedules"
    )
    assert schedule["roleDefinitionId"] == GA_TEMPLATE
    assert schedule["directoryScopeId"] == "/"
    assert schedule["status"] == "Provisioned"
    assert instance["roleEligibilityScheduleId"] == schedule["id"]
    assert instance["principalId"] == str(eligible)
    # Directory.Read.All does not reach eligibility
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "Authorization_RequestDenied"

    refused = emulator.change_directory(
        tenant, {"op": "activate_role", "user_id": str(eligible), "role": "Global Reader"}
    )
    emulator.change_directory(
        tenant, {"op": "activate_role", "user_id": str(eligible), "role": "Global Administrator"}
    ).raise_for_status()
    with emulator.graph("directory-connector", str(tenant)) as graph:
        active = graph.get(f"{base}/roleAssignments", params=who).json()["value"]
    assert refused.status_code == 422  # not eligible for it
    assert [a["roleDefinitionId"] for a in active] == [GA_TEMPLATE]
