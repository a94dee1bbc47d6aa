"""Graph calls: transient failures retried with jitter, a 429 typed with its Retry-After and
scope (or waited out by the convenience policy), refusals raised as they are."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable

import httpx
import pytest

from tenantflow.bus.errors import TransientError, is_transient
from tenantflow.graph.client import GraphClient
from tenantflow.graph.errors import ForeignLink, GraphCallFailed, Throttled, retry_after_seconds

pytestmark = pytest.mark.unit

Answer = Callable[[httpx.Request], httpx.Response]


def client(*answers: Answer | httpx.Response, attempts: int = 4) -> tuple[GraphClient, list[str]]:
    """A client whose Graph answers ``answers`` in turn (the last one for ever)."""
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(f"{request.method} {request.url.path}")
        answer = answers[min(len(seen), len(answers)) - 1]
        return answer(request) if callable(answer) else answer

    graph = GraphClient(
        "https://login.example",
        "https://graph.example",
        None,
        attempts=attempts,
        backoff_s=0.001,
        random=random.Random(7),
        transport=httpx.MockTransport(handler),
    )
    return graph, seen


def throttled(retry_after: str) -> httpx.Response:
    return httpx.Response(
        429,
        headers={"Retry-After": retry_after, "x-ms-throttle-scope": "Tenant_Application/Read/a/t"},
        json={"error": {"code": "TooManyRequests", "message": "Please retry again later."}},
    )


OK = httpx.Response(200, json={"value": [1]})


async def test_server_errors_and_dropped_connections_are_retried() -> None:
    def dropped(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection reset", request=request)

    graph, seen = client(httpx.Response(503), dropped, httpx.Response(504), OK)
    assert await graph.send("t", "GET", "/v1.0/users") == {"value": [1]}
    assert len(seen) == 4


async def test_a_failure_that_stays_is_transient_after_the_last_attempt() -> None:
    graph, seen = client(httpx.Response(500), attempts=3)
    with pytest.raises(TransientError, match="500 3 times"):
        await graph.send("t", "GET", "/v1.0/users")
    assert len(seen) == 3


async def test_a_429_is_a_typed_result_with_its_retry_after_and_scope() -> None:
    graph, seen = client(throttled("2.5"))
    with pytest.raises(Throttled) as caught:
        await graph.send("t", "GET", "/v1.0/users")
    assert caught.value.retry_after_s == 2.5
    assert caught.value.scope == "Tenant_Application/Read/a/t"
    assert is_transient(caught.value)  # unhandled, the bus retries it: never a verdict
    assert len(seen) == 1  # send never waits: the caller schedules


async def test_the_waiting_policy_waits_a_429_out() -> None:
    graph, seen = client(throttled("0.01"), throttled("0"), OK)
    assert await graph.request("t", "GET", "/v1.0/users") == {"value": [1]}
    assert len(seen) == 3


async def test_a_refusal_is_raised_with_graphs_code() -> None:
    denied = httpx.Response(
        403,
        json={"error": {"code": "Authorization_RequestDenied", "message": "Insufficient"}},
    )
    graph, seen = client(denied)
    with pytest.raises(GraphCallFailed) as caught:
        await graph.request("t", "GET", "/v1.0/users")
    assert (caught.value.status, caught.value.code) == (403, "Authorization_RequestDenied")
    assert len(seen) == 1


def test_backoff_is_jittered_and_grows() -> None:
    graph, _ = client(OK)
    graph.backoff_s = 1.0
    waits = {attempt: [graph.backoff(attempt) for _ in range(200)] for attempt in (1, 2, 3)}
    for attempt, values in waits.items():
        assert all(0 <= value <= 2 ** (attempt - 1) for value in values)
        assert len(set(values)) > 150  # spread out, not in lockstep
    assert max(waits[3]) > 2.0


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("7", 7.0),
        ("0.25", 0.25),
        (email.utils.formatdate(1_000_030.0, usegmt=True), 30.0),
        (email.utils.formatdate(999_000.0, usegmt=True), 0.0),  # already past
        (None, 5.0),
        ("soon", 5.0),
    ],
)
def test_retry_after_integer_fraction_or_http_date(value: str | None, seconds: float) -> None:
    assert retry_after_seconds(value, 5.0, now=lambda: 1_000_000.0) == pytest.approx(seconds)


async def test_pages_follow_each_nextlink_as_given_to_the_last() -> None:
    opaque = "https://graph.example/v1.0/users?$skiptoken=X%2B%2F%3D&$top=2"
    consistency: list[str | None] = []

    def pages(request: httpx.Request) -> httpx.Response:
        consistency.append(request.headers.get("ConsistencyLevel"))
        if "skiptoken" not in str(request.url):
            return httpx.Response(200, json={"value": [1, 2], "@odata.nextLink": opaque})
        assert str(request.url) == opaque  # never rebuilt
        return httpx.Response(200, json={"value": [3]})

    graph, _ = client(pages)
    listed = [
        page["value"]
        async for page in graph.pages(
            "t", "/v1.0/users", {"$top": "2"}, headers={"ConsistencyLevel": "eventual"}
        )
    ]
    assert listed == [[1, 2], [3]]
    assert consistency == ["eventual", "eventual"]  # resent on every page
    assert await graph.read_all("t", "/v1.0/users") == [1, 2, 3]


@pytest.mark.parametrize(
    "elsewhere",
    [
        "https://evil.example/v1.0/users?$skiptoken=1",
        "http://graph.example/v1.0/users?$skiptoken=1",  # downgraded
        "https://graph.example:8443/v1.0/users?$skiptoken=1",  # another port
        "https://graph.example.evil.example/v1.0/users",
    ],
)
async def test_a_nextlink_to_another_host_is_refused_and_never_sent(elsewhere: str) -> None:
    graph, seen = client(httpx.Response(200, json={"value": [1], "@odata.nextLink": elsewhere}))
    with pytest.raises(ForeignLink):
        await graph.read_all("t", "/v1.0/users")
    assert seen == ["GET /v1.0/users"]
