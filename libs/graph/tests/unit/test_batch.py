"""JSON batching: 20 requests a call, each item's own status, a throttled item retried alone."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from tenantflow.graph.batch import BatchRequest, BatchResponse, batch
from tenantflow.graph.client import GraphClient

pytestmark = pytest.mark.unit


def graph_answering(throttle_once: set[str]) -> tuple[GraphClient, list[list[str]]]:
    """A Graph whose $batch answers 200 per item, but 429 the first time for ``throttle_once``."""
    calls: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1.0/$batch"
        items = json.loads(request.content)["requests"]
        assert len(items) <= 20
        calls.append([item["id"] for item in items])
        responses = []
        for item in items:
            if item["id"] in throttle_once:
                throttle_once.discard(item["id"])
                responses.append({"id": item["id"], "status": 429, "headers": {"Retry-After": "0"}})
            else:
                responses.append({"id": item["id"], "status": 200, "body": {"url": item["url"]}})
        return httpx.Response(200, json={"responses": responses})

    graph = GraphClient(
        "https://login.example",
        "https://graph.example",
        None,
        backoff_s=0.001,
        random=random.Random(1),
        transport=httpx.MockTransport(handler),
    )
    return graph, calls


async def test_requests_go_twenty_at_a_time_and_a_throttled_one_alone() -> None:
    graph, calls = graph_answering({"7"})
    requests = [BatchRequest(str(n), "GET", f"/users/{n}") for n in range(25)]
    answers = await batch(graph, "t", requests)
    assert [len(call) for call in calls] == [20, 5, 1]
    assert calls[2] == ["7"]  # only the throttled item again
    assert {answer.status for answer in answers.values()} == {200}
    assert answers["7"].body == {"url": "/users/7"}
    # the metrics count each item's answer, the 429 inside a batch answered 200 included
    assert graph.batch_items == {("GET", "200", ""): 25, ("GET", "429", ""): 1}


async def test_a_caller_that_schedules_gets_the_429_back() -> None:
    graph, calls = graph_answering({"1"})
    answers = await batch(graph, "t", [BatchRequest("1", "GET", "/users/1")], wait_throttled=False)
    assert answers["1"].status == 429
    assert answers["1"].retry_after_s == 0.0
    assert len(calls) == 1


def test_a_body_gets_its_content_type() -> None:
    wire = BatchRequest("a", "PATCH", "/x", body={"n": 1}, depends_on=("b",)).wire()
    assert wire == {
        "id": "a",
        "method": "PATCH",
        "url": "/x",
        "body": {"n": 1},
        "headers": {"Content-Type": "application/json"},
        "dependsOn": ["b"],
    }


async def test_dependencies_stay_within_their_twenty() -> None:
    graph, _ = graph_answering(set())
    requests = [BatchRequest(str(n), "GET", "/x") for n in range(20)]
    requests.append(BatchRequest("20", "GET", "/x", depends_on=("0",)))
    with pytest.raises(ValueError, match="outside its 20"):
        await batch(graph, "t", requests)


def test_retry_after_is_read_whatever_the_header_names_case() -> None:
    assert BatchResponse("a", 429, None, {"retry-after": "3"}).retry_after_s == 3.0
    assert BatchResponse("a", 429, None, {"Retry-After": "2.5"}).retry_after_s == 2.5
    assert BatchResponse("a", 429, None, {}).retry_after_s == 1.0
