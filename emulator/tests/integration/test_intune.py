"""Intune app management through Graph, as the writer will use it."""

from __future__ import annotations

import json
from typing import Any
from uuid import uuid4

import httpx
import pytest

from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

WRITER_PERMISSIONS = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "Organization.Read.All",
    "DeviceManagementConfiguration.Read.All",
]


class Intune:
    def __init__(self, emulator: RunningEmulator) -> None:
        self.emulator = emulator
        self.tenant = str(uuid4())
        self.sales, self.finance, self.filter = uuid4(), uuid4(), uuid4()
        self.firefox = uuid4()
        document = {
            "id": self.tenant,
            "display_name": "Northwind",
            "verified_domains": ["northwind.example"],
            "groups": [
                {"id": str(self.sales), "display_name": "Sales"},
                {"id": str(self.finance), "display_name": "Finance"},
            ],
            "enterprise_apps": [
                {
                    "app_id": emulator.apps["intune-writer"]["client_id"],
                    "permissions": WRITER_PERMISSIONS,
                },
                {
                    "app_id": emulator.apps["directory-connector"]["client_id"],
                    "permissions": ["Directory.Read.All"],
                },
            ],
            "intune_apps": [
                {
                    "id": str(self.firefox),
                    "@odata.type": "#microsoft.graph.winGetApp",
                    "display_name": "Mozilla Firefox",
                    "publisher": "Mozilla",
                    "properties": {"packageIdentifier": "9NZVDKPMR9RD"},
                    "assignments": [
                        {
                            "intent": "required",
                            "target": {
                                "@odata.type": "#microsoft.graph.groupAssignmentTarget",
                                "groupId": str(self.sales),
                            },
                        }
                    ],
                }
            ],
            "assignment_filters": [{"id": str(self.filter), "display_name": "Windows 11"}],
        }
        emulator.seed(document)

    def graph(self, app: str = "intune-writer") -> httpx.Client:
        return self.emulator.graph(app, self.tenant)


@pytest.fixture
def intune(emulator: RunningEmulator) -> Intune:
    return Intune(emulator)


def group_target(group: Any, filter_id: Any = None, with_hash: bool = True) -> dict[str, Any]:
    target: dict[str, Any] = {
        "@odata.type": ("#" if with_hash else "") + "microsoft.graph.groupAssignmentTarget",
        "groupId": str(group),
    }
    if filter_id:
        target["deviceAndAppManagementAssignmentFilterId"] = str(filter_id)
        target["deviceAndAppManagementAssignmentFilterType"] = "include"
    return target


def test_seeded_app_and_its_assignments(intune: Intune) -> None:
    with intune.graph() as graph:
        app = graph.get(f"/v1.0/deviceAppManagement/mobileApps/{intune.firefox}").json()
        assignments = graph.get(
            f"/v1.0/deviceAppManagement/mobileApps/{intune.firefox}/assignments"
        ).json()["value"]
        beta = graph.get(
            f"/beta/deviceAppManagement/mobileApps/{intune.firefox}/assignments"
        ).json()["value"]
    assert app["@odata.type"] == "#microsoft.graph.winGetApp"
    assert app["packageIdentifier"] == "9NZVDKPMR9RD"
    assert app["isAssigned"] is True
    [assignment] = assignments
    assert assignment["intent"] == "required"
    # v1.0's targets have no filter properties; beta's do
    assert assignment["target"] == {
        "@odata.type": "#microsoft.graph.groupAssignmentTarget",
        "groupId": str(intune.sales),
    }
    assert beta[0]["target"] == {
        "@odata.type": "#microsoft.graph.groupAssignmentTarget",
        "groupId": str(intune.sales),
        "deviceAndAppManagementAssignmentFilterId": None,
        "deviceAndAppManagementAssignmentFilterType": "none",
    }


def test_assign_replaces_the_whole_set_and_an_empty_list_clears_it(intune: Intune) -> None:
    url = f"/beta/deviceAppManagement/mobileApps/{intune.firefox}"
    with intune.graph() as graph:
        assert (
            graph.post(
                f"{url}/assign",
                json={
                    "mobileAppAssignments": [
                        {
                            "@odata.type": "#microsoft.graph.mobileAppAssignment",
                            "intent": "available",
                            "target": group_target(intune.finance, intune.filter, with_hash=False),
                            "settings": None,
                        },
                    ]
                },
            ).status_code
            == 204
        )
        after_replace = graph.get(f"{url}/assignments").json()["value"]
        assert graph.post(f"{url}/assign", json={"mobileAppAssignments": []}).status_code == 204
        after_clear = graph.get(f"{url}/assignments").json()["value"]
        app = graph.get(url, params={"$select": "isAssigned"}).json()
    [only] = after_replace
    assert only["target"]["groupId"] == str(intune.finance)  # Sales is gone: replaced, not added
    assert only["target"]["@odata.type"] == "#microsoft.graph.groupAssignmentTarget"
    assert only["target"]["deviceAndAppManagementAssignmentFilterType"] == "include"
    assert after_clear == []
    assert app["isAssigned"] is False


def test_create_patch_list_and_delete(intune: Intune) -> None:
    with intune.graph() as graph:
        created = graph.post(
            "/beta/deviceAppManagement/mobileApps",
            json={
                "@odata.type": "#microsoft.graph.webApp",
                "displayName": "Intranet",
                "appUrl": "https://intranet.northwind.example",
                "useManagedBrowser": False,
            },
        )
        assert created.status_code == 201
        app_id = created.json()["id"]
        assert (
            graph.patch(
                f"/beta/deviceAppManagement/mobileApps/{app_id}",
                json={"displayName": "Intranet portal"},
            ).status_code
            == 204
        )
        web_apps = graph.get(
            "/v1.0/deviceAppManagement/mobileApps",
            params={"$filter": "isof('microsoft.graph.webApp')"},
        ).json()["value"]
        one = graph.post(
            f"/v1.0/deviceAppManagement/mobileApps/{app_id}/assignments",
            json={
                "intent": "available",
                "target": {"@odata.type": "#microsoft.graph.allLicensedUsersAssignmentTarget"},
            },
        )
        assert one.status_code == 201
        assert (
            graph.delete(
                f"/v1.0/deviceAppManagement/mobileApps/{app_id}/assignments/{one.json()['id']}"
            ).status_code
            == 204
        )
        assert graph.delete(f"/v1.0/deviceAppManagement/mobileApps/{app_id}").status_code == 204
        gone = graph.get(f"/v1.0/deviceAppManagement/mobileApps/{app_id}")
    assert [(a["id"], a["displayName"]) for a in web_apps] == [(app_id, "Intranet portal")]
    assert gone.status_code == 404


def test_a_winget_app_is_created_and_returned_as_graph_documents_it(intune: Intune) -> None:
    apps = "/beta/deviceAppManagement/mobileApps"
    app = {
        "@odata.type": "#microsoft.graph.winGetApp",
        "displayName": "Company Portal",
        "publisher": "Microsoft Corporation",
        "packageIdentifier": "9WZDNCRFJ3PZ",
        "installExperience": {
            "@odata.type": "microsoft.graph.winGetAppInstallExperience",
            "runAsAccount": "system",
        },
    }
    with intune.graph() as graph:
        no_identifier = graph.post(apps, json={**app, "packageIdentifier": None})
        no_experience = graph.post(
            apps, json={k: v for k, v in app.items() if k != "installExperience"}
        )
        bad_account = graph.post(apps, json={**app, "installExperience": {"runAsAccount": "admin"}})
        created = graph.post(
            apps, json={**app, "isAssigned": True, "publishingState": "notPublished"}
        )
        app_id = created.json()["id"]
        read = graph.get(f"{apps}/{app_id}").json()
        renamed = graph.patch(f"{apps}/{app_id}", json={"displayName": "Portal"})
        same_identifier = graph.patch(
            f"{apps}/{app_id}", json={"packageIdentifier": "9WZDNCRFJ3PZ"}
        )
        repackaged = graph.patch(f"{apps}/{app_id}", json={"packageIdentifier": "9NBLGGH5R558"})
        as_user = graph.patch(
            f"{apps}/{app_id}", json={"installExperience": {"runAsAccount": "user"}}
        )
    assert [r.status_code for r in (no_identifier, no_experience, bad_account)] == [400] * 3
    assert created.status_code == 201
    assert read["packageIdentifier"] == "9WZDNCRFJ3PZ"
    # read-only properties a client sends are ignored; manifestHash is part of the resource
    assert (read["isAssigned"], read["publishingState"]) == (False, "published")
    assert "manifestHash" in read
    assert read["installExperience"] == {
        "@odata.type": "#microsoft.graph.winGetAppInstallExperience",
        "runAsAccount": "system",
    }
    assert renamed.status_code == same_identifier.status_code == 204
    assert repackaged.status_code == as_user.status_code == 400
    assert "cannot be modified" in repackaged.json()["error"]["message"]


def test_bad_assignments_are_refused(intune: Intune) -> None:
    with intune.graph() as graph:
        response = graph.post(
            f"/v1.0/deviceAppManagement/mobileApps/{intune.firefox}/assign",
            json={
                "mobileAppAssignments": [
                    {"intent": "sometimes", "target": group_target(intune.sales)}
                ]
            },
        )
        still = graph.get(
            f"/v1.0/deviceAppManagement/mobileApps/{intune.firefox}/assignments"
        ).json()["value"]
    assert response.status_code == 400
    assert len(still) == 1  # nothing half-applied


def test_an_app_without_intune_permissions_gets_intunes_403(intune: Intune) -> None:
    with intune.graph("directory-connector") as graph:
        response = graph.get("/v1.0/deviceAppManagement/mobileApps")
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "Forbidden"  # Intune's JSON straight in the message, no wrapper
    inner = json.loads(error["message"])
    assert inner["_version"] == 3
    assert "DeviceManagementApps.ReadWrite.All" in inner["Message"]
    assert error["innerError"]["request-id"] == response.headers["request-id"]


def test_assignment_filters(intune: Intune) -> None:
    with intune.graph() as graph:
        [listed] = graph.get("/beta/deviceManagement/assignmentFilters").json()["value"]
        one = graph.get(f"/beta/deviceManagement/assignmentFilters/{intune.filter}").json()
    assert listed["id"] == str(intune.filter)
    assert listed["@odata.type"] == "#microsoft.graph.deviceAndAppManagementAssignmentFilter"
    assert one["platform"] == "windows10AndLater"


def test_intune_writes_are_throttled_at_100_per_20_seconds(intune: Intune) -> None:
    url = f"/v1.0/deviceAppManagement/mobileApps/{intune.firefox}"
    with intune.graph() as graph:
        statuses = [graph.patch(url, json={"notes": str(n)}).status_code for n in range(100)]
        throttled = graph.patch(url, json={"notes": "one too many"})
        read = graph.get(url)
    assert set(statuses) == {204}
    # a window, not a refilling bucket: the 101st write within 20 s is refused however slowly
    # the first hundred went, until the first of them is 20 s old
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["Retry-After"]) <= 20
    # <Scope>/<Limit>/<ApplicationId>/<TenantId>, and why (GD concepts/throttling-limits.md)
    app_id = intune.emulator.apps["intune-writer"]["client_id"]
    assert throttled.headers["x-ms-throttle-scope"] == (
        f"Tenant_Application/Write/{app_id}/{intune.tenant}"
    )
    assert throttled.headers["x-ms-throttle-information"] == "WriteLimitExceeded"
    assert read.status_code == 200  # reads have their own, larger budget


def test_assignments_are_expanded_on_an_app_and_on_the_list(intune: Intune) -> None:
    apps = "/beta/deviceAppManagement/mobileApps"
    with intune.graph() as graph:
        one = graph.get(f"{apps}/{intune.firefox}", params={"$expand": "assignments"}).json()
        expanded = {"$expand": "assignments", "$select": "id,notes"}
        listed = graph.get(apps, params=expanded).json()["value"]
        plain = graph.get(f"{apps}/{intune.firefox}").json()
        unknown = graph.get(f"{apps}/{intune.firefox}", params={"$expand": "categoriez"})
    assert [a["target"]["groupId"] for a in one["assignments"]] == [str(intune.sales)]
    [app] = listed
    assert set(app) == {"id", "@odata.type", "notes", "assignments"}
    assert app["assignments"] == one["assignments"]
    assert "assignments" not in plain  # only when asked for
    assert unknown.status_code == 400  # never silently ignored


def test_v1_has_neither_filters_on_targets_nor_wingetapps(intune: Intune) -> None:
    filtered = {
        "intent": "available",
        "target": group_target(intune.finance, intune.filter),
    }
    with intune.graph() as graph:
        assigned = graph.post(
            f"/v1.0/deviceAppManagement/mobileApps/{intune.firefox}/assign",
            json={"mobileAppAssignments": [filtered]},
        )
        created = graph.post(
            "/v1.0/deviceAppManagement/mobileApps",
            json={
                "@odata.type": "#microsoft.graph.winGetApp",
                "displayName": "Company Portal",
                "packageIdentifier": "9WZDNCRFJ3PZ",
                "installExperience": {"runAsAccount": "user"},
            },
        )
        unchanged = graph.get(
            f"/beta/deviceAppManagement/mobileApps/{intune.firefox}/assignments"
        ).json()["value"]
    assert assigned.status_code == 400
    assert "deviceAndAppManagementAssignmentFilterId" in assigned.json()["error"]["message"]
    assert created.status_code == 400
    assert [a["target"]["groupId"] for a in unchanged] == [str(intune.sales)]
