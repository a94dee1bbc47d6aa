"""Every error is RFC 9457 problem+json with a stable type and the request id."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict

from tenantflow.portal_api import problems
from tenantflow.portal_api.problems import Problem

pytestmark = pytest.mark.unit

JSON = {"content-type": "application/json"}


class LinkRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tenant_id: UUID


LIMIT = 64 * 1024
handled: list[int] = []
"""Bodies the route handled (their sizes): a refused body never reaches it."""


def app(limit: int = LIMIT) -> FastAPI:
    application = FastAPI()
    application.add_middleware(problems.BodyLimit, max_bytes=limit)
    problems.install(application)

    @application.post("/v1/tenants")
    async def link(body: LinkRequest) -> dict[str, str]:
        handled.append(len(str(body)))
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

    @application.get("/database-restarting")
    async def database_restarting() -> None:
        raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")

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


async def test_a_database_restarting_is_a_503_to_retry(client: httpx.AsyncClient) -> None:
    response = await client.get("/database-restarting")
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "https://tenantflow.dev/problems/unavailable"
    assert "starting up" not in response.text


async def test_a_malformed_request_id_is_replaced(client: httpx.AsyncClient) -> None:
    response = await client.get("/nowhere", headers={"X-Request-ID": "bad id\twith spaces"})
    assert UUID(response.headers["x-request-id"])


def chunks(total: int, size: int = 8192) -> Iterator[bytes]:
    """A JSON body of ``total`` bytes, sent in pieces (chunked: no Content-Length)."""
    yield b'{"tenant_id": "6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10", "pad": "'
    sent = 60
    while sent < total:
        piece = min(size, total - sent)
        yield b"x" * piece
        sent += piece
    yield b'"}'


class Streamed:
    """An async body of ``total`` bytes, streamed as it is sent."""

    def __init__(self, total: int) -> None:
        self.total = total

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in chunks(self.total):
            yield piece


def assert_too_large(response: httpx.Response) -> None:
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"]
    body = response.json()
    assert body["type"] == "https://tenantflow.dev/problems/content-too-large"
    assert body["max_bytes"] == LIMIT


@pytest.mark.parametrize(
    ("case", "request_kwargs", "closes"),
    [
        # read to its end (within 32 times the limit): the connection stays usable
        ("declared", {"content": b"{" + b" " * (LIMIT + 1) + b"}"}, False),
        ("chunked, within the drain", {"content": Streamed(2 * LIMIT)}, False),
        # past what is worth reading: answered, and the connection closed
        ("chunked, no length", {"content": Streamed(20 * 1024 * 1024)}, True),
        (
            "a length that understates it",
            {"content": Streamed(20 * 1024 * 1024), "headers": {"content-length": "64"}},
            True,
        ),
        (
            "declared, the client waiting for 100-continue",
            {
                "content": b"{" + b" " * (LIMIT + 1) + b"}",
                "headers": {"expect": "100-continue"},
            },
            True,
        ),
    ],
)
async def test_a_body_over_the_limit_is_refused_before_parsing(
    client: httpx.AsyncClient, case: str, request_kwargs: dict[str, Any], closes: bool
) -> None:
    handled.clear()
    headers = {"content-type": "application/json", **request_kwargs.pop("headers", {})}
    response = await client.post("/v1/tenants", headers=headers, **request_kwargs)
    assert_too_large(response)
    assert handled == []
    assert (response.headers.get("connection") == "close") is closes


async def test_a_body_within_the_limit_reaches_the_route(client: httpx.AsyncClient) -> None:
    handled.clear()
    response = await client.post(
        "/v1/tenants", content=b"".join(chunks(LIMIT - 1024)), headers=JSON
    )
    assert response.status_code == 422  # "pad" is unknown: parsed, then refused by the schema
    response = await client.post(
        "/v1/tenants", json={"tenant_id": "6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10"}
    )
    assert response.status_code == 200
    assert len(handled) == 1


async def test_errors_echo_only_a_bounded_part_of_the_request() -> None:
    transport = httpx.ASGITransport(app=app(limit=4 * 1024 * 1024))
    async with httpx.AsyncClient(transport=transport, base_url="http://portal") as client:
        huge_key = "k" * 1024 * 1024
        response = await client.post("/v1/tenants", json={"tenant_id": "x", huge_key: 1})
        many = await client.post(
            "/v1/tenants", json={f"key{i}": i for i in range(500)} | {"tenant_id": "x"}
        )
        long_path = await client.get("/" + "p" * 50_000)
    assert response.status_code == 422
    assert len(response.content) < 4096
    assert any(
        part.startswith("kkkk") and len(part) <= problems.ECHO_MAX
        for error in response.json()["errors"]
        for part in error["location"]
    )
    assert many.status_code == 422
    assert len(many.json()["errors"]) == problems.ERRORS_MAX
    assert "501 errors" in many.json()["detail"]
    assert long_path.status_code == 404
    assert len(long_path.content) < 4096
