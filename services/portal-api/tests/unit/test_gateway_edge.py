"""What the portal believes of the API gateway's headers, and its rate limits."""

from __future__ import annotations

from ipaddress import ip_network

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tenantflow.portal_api.proxy import TrustedProxies
from tenantflow.portal_api.ratelimit import RateLimiter

pytestmark = pytest.mark.unit


async def _seen(request: Request) -> JSONResponse:
    assert request.client is not None
    return JSONResponse({"url": str(request.url), "client": request.client.host})


async def seen_by_app(peer: str, headers: dict[str, str]) -> dict[str, str]:
    app = TrustedProxies(
        Starlette(routes=[Route("/x", _seen)]),
        [ip_network("10.0.0.0/24"), ip_network("fd00::/8")],
    )
    transport = httpx.ASGITransport(app=app, client=(peer, 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://svc.internal") as client:
        body: dict[str, str] = (await client.get("/x", headers=headers)).json()
        return body


FORWARDED = {
    "x-forwarded-for": "198.51.100.4, 10.0.0.9",
    "x-forwarded-proto": "https",
    "x-forwarded-host": "portal.example.com",
}


async def test_a_trusted_gateway_is_believed_and_its_own_hops_skipped() -> None:
    seen = await seen_by_app("10.0.0.7", FORWARDED)
    assert seen == {"url": "https://portal.example.com/x", "client": "198.51.100.4"}


async def test_anyone_else_is_not() -> None:
    seen = await seen_by_app("203.0.113.50", FORWARDED)
    assert seen == {"url": "http://svc.internal/x", "client": "203.0.113.50"}


async def test_a_spoofed_first_hop_does_not_win() -> None:
    # the client sent X-Forwarded-For itself; the gateway appended the real address
    seen = await seen_by_app("10.0.0.7", {"x-forwarded-for": "1.1.1.1, 192.0.2.8"})
    assert seen["client"] == "192.0.2.8"


async def test_a_malformed_host_is_ignored() -> None:
    seen = await seen_by_app("10.0.0.7", {"x-forwarded-host": "evil.example/\r\nx: y"})
    assert seen["url"] == "http://svc.internal/x"


def test_a_bucket_allows_its_burst_then_says_when_to_retry() -> None:
    now = [0.0]
    limits = RateLimiter(per_minute=60, burst=3, clock=lambda: now[0])
    assert [limits.acquire("u") for _ in range(3)] == [None, None, None]
    assert limits.acquire("u") == 1
    assert limits.acquire("someone else") is None
    now[0] += 1.0
    assert limits.acquire("u") is None
    assert limits.acquire("u") == 1


def test_forgotten_keys_start_full() -> None:
    now = [0.0]
    limits = RateLimiter(per_minute=1, burst=1, max_keys=2, clock=lambda: now[0])
    assert limits.acquire("a") is None
    assert limits.acquire("a") == 60
    limits.acquire("b")
    limits.acquire("c")  # "a" is the least recently used: forgotten
    assert limits.acquire("a") is None
