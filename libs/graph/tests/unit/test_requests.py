"""Graph calls: transient failures retried with jitter, a 429 typed with its Retry-After and
scope (or waited out by the convenience policy), refusals raised as they are."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from uuid import UUID, uuid4

import httpx
import jwt
import pytest

from tenantflow.bus.errors import TransientError, is_transient
from tenantflow.graph.client import GraphClient
from tenantflow.graph.errors import (
    ForeignLink,
    GraphCallFailed,
    ResyncNeeded,
    Throttled,
    retry_after_seconds,
)

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


def app_token(tenant: str, app: str) -> str:
    return jwt.encode({"tid": tenant, "appid": app, "roles": []}, "k" * 32, algorithm="HS256")


async def test_a_401_or_403_is_reported_with_its_tenant_and_app() -> None:
    reported: list[tuple[UUID, UUID, int | None, str, str]] = []

    async def report(tenant: UUID, app: UUID, status: int | None, code: str, detail: str) -> None:
        reported.append((tenant, app, status, code, detail))

    denied = httpx.Response(
        403, json={"error": {"code": "Authorization_RequestDenied", "message": "Insufficient"}}
    )
    graph, _ = client(denied, httpx.Response(404, json={"error": {"code": "NotFound"}}))
    graph.report_denied = report
    tenant, app = uuid4(), uuid4()
    for _ in range(2):
        with pytest.raises(GraphCallFailed):
            await graph.send(app_token(str(tenant), str(app)), "GET", "/v1.0/users")
    assert reported == [(tenant, app, 403, "Authorization_RequestDenied", "Insufficient")]


@pytest.mark.parametrize(
    ("answer", "location"),
    [
        (
            httpx.Response(
                410,
                headers={"Location": "https://graph.example/v1.0/users/delta?$deltatoken="},
                json={"error": {"code": "resyncRequired", "message": "gone"}},
            ),
            "https://graph.example/v1.0/users/delta?$deltatoken=",
        ),
        (
            httpx.Response(400, json={"error": {"code": "syncStateNotFound", "message": "old"}}),
            None,
        ),
        (httpx.Response(400, json={"error": {"code": "resyncRequired", "message": "again"}}), None),
    ],
)
async def test_every_way_graph_asks_for_a_resync_is_one_type(
    answer: httpx.Response, location: str | None
) -> None:
    graph, _ = client(answer)
    with pytest.raises(ResyncNeeded) as caught:
        async for _ in graph.delta_round(
            "t", "https://graph.example/v1.0/users/delta?$deltatoken=a"
        ):
            pass
    assert caught.value.location == location


async def test_a_delta_round_pages_to_its_deltalink() -> None:
    delta = "https://graph.example/v1.0/users/delta?$deltatoken=next"
    graph, seen = client(
        httpx.Response(200, json={"value": [1], "@odata.nextLink": "https://graph.example/d?p=2"}),
        httpx.Response(200, json={"value": [2], "@odata.deltaLink": delta}),
    )
    delta_round = graph.delta_round("t", "/v1.0/users/delta", {"$select": "id"})
    assert [page["value"] async for page in delta_round] == [[1], [2]]
    assert delta_round.delta_link == delta
    assert len(seen) == 2


async def test_a_deltalink_to_another_host_is_refused() -> None:
    graph, _ = client(
        httpx.Response(200, json={"value": [], "@odata.deltaLink": "https://evil.example/d"})
    )
    with pytest.raises(ForeignLink):
        async for _ in graph.delta_round("t", "/v1.0/users/delta"):
            pass
    with pytest.raises(ForeignLink):  # a stored link is checked before it is followed
        async for _ in graph.delta_round("t", "https://evil.example/v1.0/users/delta"):
            pass
