"""Every error is RFC 9457 problem+json with a stable type and the request id."""

from __future__ import annotations

from uuid import UUID

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from tenantflow.portal_api import problems
from tenantflow.portal_api.problems import Problem

pytestmark = pytest.mark.unit


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: UUID


def app() -> FastAPI:
    application = FastAPI()
    problems.install(application)

    @application.post("/v1/tenants")
    async def link(body: LinkRequest) -> dict[str, str]:
        return {"tenant_id": str(body.tenant_id)}

    @application.get("/conflict")
    async def conflict() -> None:
        raise Problem(
            409,
            "A link request is already pending.",
            slug="link-pending",
            headers={"Location": "/v1/tenants/x"},
        )

    @application.get("/crash")
    async def crash() -> None:
        raise RuntimeError("boom")

    return application


@pytest.fixture
async def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://portal")


async def test_a_raised_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/conflict", headers={"X-Request-ID": "gw-123"})
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["location"] == "/v1/tenants/x"
    assert response.headers["x-request-id"] == "gw-123"
    assert response.json() == {
        "type": "https://tenantflow.dev/problems/link-pending",
        "title": "Conflict",
        "status": 409,
        "detail": "A link request is already pending.",
        "instance": "/conflict",
        "request_id": "gw-123",
    }


async def test_unknown_fields_are_a_422_problem(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/tenants",
        json={"tenant_id": "6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10", "owner": "me"},
    )
    body = response.json()
    assert response.status_code == 422
    assert body["type"] == "https://tenantflow.dev/problems/validation-failed"
    assert body["errors"][0]["location"] == ["body", "owner"]
    assert UUID(response.headers["x-request-id"])  # generated when none was given


async def test_unknown_routes_are_a_404_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["type"] == "https://tenantflow.dev/problems/not-found"


async def test_a_crash_is_a_500_problem_without_internals(client: httpx.AsyncClient) -> None:
    response = await client.get("/crash", headers={"X-Request-ID": "gw-500"})
    body = response.json()
    assert response.status_code == 500
    assert body["type"] == "https://tenantflow.dev/problems/internal-error"
    assert "boom" not in response.text
    assert body["request_id"] == "gw-500"


async def test_a_malformed_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere", headers={"X-Request-ID": "bad id\twith spaces"})
    assert UUID(response.headers["x-request-id"])
