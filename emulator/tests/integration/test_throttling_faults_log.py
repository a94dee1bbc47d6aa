"""Throttling, injected faults and the request log, over HTTPS."""

from __future__ import annotations

import time
from typing import Any
from uuid import uuid4

import httpx
import pytest

from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration


def tenant_with_connector(emulator: RunningEmulator) -> tuple[str, httpx.Client]:
    tenant = str(uuid4())
    emulator.seed(
        {
            "id": tenant,
            "display_name": "Fabrikam",
            "verified_domains": ["fabrikam.example"],
            "enterprise_apps": [
                {
                    "app_id": emulator.apps["directory-connector"]["client_id"],
                    "permissions": ["Directory.Read.All"],
                }
            ],
        }
    )
    return tenant, emulator.graph("directory-connector", tenant)


def test_directory_throttling_answers_429_at_the_configured_rate(
    emulator: RunningEmulator,
) -> None:
    """100 resource units per 10 s for a small tenant here (the published 3,500 are checked
    with a fake clock in the unit tier: a slow machine cannot send faster than that refills),
    2 units per list request: a burst gets 50 requests plus what the bucket refilled meanwhile
    (5 requests per second), no more."""
    tenant, graph = tenant_with_connector(emulator)
    granted = 0
    with emulator.client() as control:
        control.put(
            "/_emulator/throttling",
            json={"enabled": True, "limits": {"directory_units_small": 100}},
        ).raise_for_status()
    try:
        with graph:
            started = time.monotonic()
            while (response := graph.get("/v1.0/users")).status_code == 200:
                granted += 1
                assert granted < 5000, "never throttled"
            elapsed = time.monotonic() - started
    finally:
        with emulator.client() as control:
            control.put("/_emulator/throttling", json={"enabled": True}).raise_for_status()
    assert granted >= 50  # not before the limit
    assert granted <= 50 + elapsed * 5 + 1  # and not after it either
    assert response.status_code == 429
    assert int(response.headers["Retry-After"]) >= 1
    assert response.headers["x-ms-throttle-scope"].endswith(f"/{tenant}")
    error = response.json()["error"]
    assert error["code"] == "TooManyRequests"
    assert error["innerError"]["status"] == "429"


@pytest.fixture
def clean_faults(emulator: RunningEmulator) -> Any:
    yield
    with emulator.client() as client:
        client.delete("/_emulator/faults")


@pytest.mark.usefixtures("clean_faults")
def test_faults_fire_at_the_configured_share(emulator: RunningEmulator) -> None:
    _, graph = tenant_with_connector(emulator)
    with emulator.client() as control:
        rule = control.post(
            "/_emulator/faults",
            json={
                "method": "GET",
                "path": "^/v1.0/organization$",
                "share": 0.25,
                "status": 503,
                "retry_after": "2",
            },
        ).json()
    with graph:
        responses = [graph.get("/v1.0/organization") for _ in range(40)]
        unaffected = graph.get("/v1.0/users", params={"$top": "1"})
    failed = [r for r in responses if r.status_code == 503]
    assert len(failed) == 10
    assert all(r.status_code == 200 for r in responses if r not in failed)
    assert failed[0].headers["Retry-After"] == "2"
    assert failed[0].json()["error"]["code"] == "ServiceUnavailable"
    assert failed[0].json()["error"]["innerError"]["request-id"] == failed[0].headers["request-id"]
    assert unaffected.status_code == 200
    with emulator.client() as control:
        [listed] = control.get("/_emulator/faults").json()
    assert listed["id"] == rule["id"]
    assert listed["fired"] == 10


@pytest.mark.usefixtures("clean_faults")
def test_a_dropped_connection(emulator: RunningEmulator) -> None:
    _, graph = tenant_with_connector(emulator)
    with emulator.client() as control:
        control.post("/_emulator/faults", json={"path": "/organization", "drop_connection": True})
    with graph, pytest.raises(httpx.RemoteProtocolError):
        graph.get("/v1.0/organization")


def test_the_request_log_records_app_tenant_and_status(emulator: RunningEmulator) -> None:
    tenant, graph = tenant_with_connector(emulator)
    with graph:
        response = graph.get("/v1.0/organization")
    with emulator.client() as control:
        entries = control.get("/_emulator/requests", params={"tenant": tenant}).json()
    [entry] = [e for e in entries if e["path"] == "/v1.0/organization"]
    assert entry["status"] == 200
    assert entry["method"] == "GET"
    assert entry["client_app"] == emulator.apps["directory-connector"]["client_id"]
    assert entry["request_id"] == response.headers["request-id"]


@pytest.mark.usefixtures("clean_faults")
def test_a_fault_for_one_tenant_leaves_the_others_alone(emulator: RunningEmulator) -> None:
    slow, slow_graph = tenant_with_connector(emulator)
    _, other_graph = tenant_with_connector(emulator)
    with emulator.client() as control:
        control.post(
            "/_emulator/faults", json={"path": "/organization", "status": 503, "tenant": slow}
        ).raise_for_status()
    with slow_graph, other_graph:
        assert slow_graph.get("/v1.0/organization").status_code == 503
        assert other_graph.get("/v1.0/organization").status_code == 200
