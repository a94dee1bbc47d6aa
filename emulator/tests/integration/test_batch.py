"""$batch: limits, dependsOn, per-item authorisation, and a write whose item says 429."""

from __future__ import annotations

from uuid import uuid4

import httpx
import pytest

from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration


def writer_graph(emulator: RunningEmulator) -> tuple[str, str, httpx.Client]:
    tenant, app_id, group = str(uuid4()), str(uuid4()), str(uuid4())
    emulator.seed(
        {
            "id": tenant,
            "display_name": "Tailspin",
            "verified_domains": ["tailspin.example"],
            "groups": [{"id": group, "display_name": "Pilots"}],
            "enterprise_apps": [
                {
                    "app_id": emulator.apps["intune-writer"]["client_id"],
                    "permissions": ["DeviceManagementApps.ReadWrite.All"],
                }
            ],
            "intune_apps": [{"id": app_id, "display_name": "7-Zip"}],
        }
    )
    return app_id, group, emulator.graph("intune-writer", tenant)


def assign_body(group: str) -> dict[str, object]:
    return {
        "mobileAppAssignments": [
            {
                "intent": "required",
                "target": {
                    "@odata.type": "#microsoft.graph.groupAssignmentTarget",
                    "groupId": group,
                },
            }
        ]
    }


def test_items_are_answered_on_their_own_with_depends_on(emulator: RunningEmulator) -> None:
    app_id, group, graph = writer_graph(emulator)
    with graph:
        response = graph.post(
            "/v1.0/$batch",
            json={
                "requests": [
                    {
                        "id": "1",
                        "method": "GET",
                        "url": f"/deviceAppManagement/mobileApps/{app_id}",
                    },
                    {"id": "2", "method": "GET", "url": "/users"},
                    {
                        "id": "3",
                        "method": "GET",
                        "url": f"/deviceAppManagement/mobileApps/{uuid4()}",
                    },
                    {
                        "id": "4",
                        "method": "POST",
                        "url": f"/deviceAppManagement/mobileApps/{app_id}/assign",
                        "headers": {"Content-Type": "application/json"},
                        "body": assign_body(group),
                        "dependsOn": ["3"],
                    },
                    {
                        "id": "5",
                        "method": "POST",
                        "url": f"/deviceAppManagement/mobileApps/{app_id}/assign",
                        "headers": {"Content-Type": "application/json"},
                        "body": assign_body(group),
                        "dependsOn": ["1"],
                    },
                ]
            },
        )
    assert response.status_code == 200
    by_id = {item["id"]: item for item in response.json()["responses"]}
    assert by_id["1"]["status"] == 200
    assert by_id["1"]["body"]["displayName"] == "7-Zip"
    assert by_id["2"]["status"] == 403  # authorised per item: the writer cannot read users
    assert by_id["2"]["body"]["error"]["code"] == "Authorization_RequestDenied"
    assert by_id["3"]["status"] == 404
    assert by_id["4"]["status"] == 424
    assert by_id["5"]["status"] == 204

    # each item ran as a request of its own: its own request id, in its error and in the log
    request_id = by_id["2"]["body"]["error"]["innerError"]["request-id"]
    assert request_id
    assert request_id != response.headers["request-id"]
    with emulator.client() as control:
        [logged] = control.get("/_emulator/requests", params={"request_id": request_id}).json()
    assert (logged["path"], logged["status"], logged["in_batch"]) == ("/v1.0/users", 403, True)


def test_more_than_20_requests_is_a_400(emulator: RunningEmulator) -> None:
    _, _, graph = writer_graph(emulator)
    with graph:
        response = graph.post(
            "/v1.0/$batch",
            json={
                "requests": [
                    {"id": str(n), "method": "GET", "url": "/organization"} for n in range(21)
                ]
            },
        )
    assert response.status_code == 400


def test_a_body_without_content_type_is_a_400(emulator: RunningEmulator) -> None:
    app_id, group, graph = writer_graph(emulator)
    with graph:
        response = graph.post(
            "/v1.0/$batch",
            json={
                "requests": [
                    {
                        "id": "1",
                        "method": "POST",
                        "url": f"/deviceAppManagement/mobileApps/{app_id}/assign",
                        "body": assign_body(group),
                    }
                ]
            },
        )
    assert response.status_code == 400


def test_the_write_succeeds_but_its_item_says_429(emulator: RunningEmulator) -> None:
    app_id, group, graph = writer_graph(emulator)
    with emulator.client() as control:
        control.post(
            "/_emulator/faults",
            json={
                "method": "POST",
                "path": "/assign$",
                "batch_write_429": True,
                "retry_after": "3",
            },
        )
    try:
        with graph:
            response = graph.post(
                "/v1.0/$batch",
                json={
                    "requests": [
                        {
                            "id": "1",
                            "method": "POST",
                            "url": f"/deviceAppManagement/mobileApps/{app_id}/assign",
                            "headers": {"Content-Type": "application/json"},
                            "body": assign_body(group),
                        }
                    ]
                },
            )
            assignments = graph.get(
                f"/v1.0/deviceAppManagement/mobileApps/{app_id}/assignments"
            ).json()["value"]
    finally:
        with emulator.client() as control:
            control.delete("/_emulator/faults")
    [item] = response.json()["responses"]
    assert item["status"] == 429
    assert item["headers"]["Retry-After"] == "3"
    assert [a["target"]["groupId"] for a in assignments] == [group]  # yet it was written
