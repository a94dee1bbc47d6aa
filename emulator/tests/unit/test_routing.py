"""The indexed router routes exactly as Starlette's own: the same route for every path and
method, the same 404s and 405s, routes tried in their order."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from tenantflow.emulator.routing import indexed

pytestmark = pytest.mark.unit


def answering(name: str) -> Callable[[Request], Awaitable[PlainTextResponse]]:
    async def endpoint(request: Request) -> PlainTextResponse:
        return PlainTextResponse(f"{name} {dict(request.path_params)}")

    return endpoint


def routes() -> list[Route]:
    return [
        Route("/_emulator/health", answering("health")),
        Route("/v1.0/users", answering("users")),
        Route("/v1.0/users/{id}", answering("user")),
        Route("/v1.0/users/{id}", answering("patch user"), methods=["PATCH"]),
        Route("/v1.0/users/delta", answering("never: the route before takes it")),
        Route("/v1.0/servicePrincipals{ref:path}", answering("service principal")),
        Route(
            "/beta/deviceAppManagement/mobileApps/{id}/assign",
            answering("assign"),
            methods=["POST"],
        ),
        Route("/{tenant}/oauth2/v2.0/token", answering("token"), methods=["POST"]),
        Route("/v1.0/{rest:path}", answering("unknown v1.0"), methods=["GET", "POST"]),
    ]


REQUESTS = [
    ("GET", "/_emulator/health"),
    ("GET", "/v1.0/users"),
    ("GET", "/v1.0/users/"),
    ("GET", "/v1.0/users/42"),
    ("PATCH", "/v1.0/users/42"),
    ("DELETE", "/v1.0/users/42"),
    ("GET", "/v1.0/users/delta"),
    ("GET", "/v1.0/servicePrincipals(appId='x')"),
    ("POST", "/beta/deviceAppManagement/mobileApps/7/assign"),
    ("GET", "/beta/deviceAppManagement/mobileApps/7/assign"),
    ("POST", "/contoso/oauth2/v2.0/token"),
    ("GET", "/v1.0/groups"),
    ("DELETE", "/v1.0/groups"),
    ("GET", "/beta/nothing"),
    ("GET", "/"),
    ("GET", "/nothing/at/all"),
]


@pytest.mark.parametrize(("method", "path"), REQUESTS)
async def test_the_same_answer_as_starlettes_router(method: str, path: str) -> None:
    answers = []
    for app in (Starlette(routes=routes()), indexed(Starlette(routes=routes()))):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://graph") as client:
            answer = await client.request(method, path, follow_redirects=False)
        answers.append((answer.status_code, answer.text, answer.headers.get("allow")))
    assert answers[0] == answers[1]
