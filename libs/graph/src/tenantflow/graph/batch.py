"""JSON batching (POST /$batch): at most 20 requests a call, each answered with its own status;
an item Graph throttled (429) is sent again on its own once its Retry-After has passed, the
others are never repeated. Shapes: shared/reference/graph-wire-formats.md §5."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tenantflow.graph.client import GraphClient
from tenantflow.graph.errors import retry_after_seconds

MAX_REQUESTS = 20


@dataclass(frozen=True)
class BatchRequest:
    id: str
    method: str
    url: str
    """Relative to the version, as Graph wants it: ``/users/{id}``."""
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    """Ids of earlier requests of the same batch (of the same 20)."""

    def wire(self) -> dict[str, Any]:
        item: dict[str, Any] = {"id": self.id, "method": self.method, "url": self.url}
        headers = dict(self.headers)
        if self.body is not None:
            item["body"] = self.body
            headers.setdefault("Content-Type", "application/json")
        if headers:
            item["headers"] = headers
        if self.depends_on:
            item["dependsOn"] = list(self.depends_on)
        return item


@dataclass(frozen=True)
class BatchResponse:
    id: str
    status: int
    body: Any
    headers: dict[str, str]

    @property
    def retry_after_s(self) -> float:
        # header names are case-insensitive; Graph writes Retry-After, proxies may not
        named = {name.lower(): value for name, value in self.headers.items()}
        return retry_after_seconds(named.get("retry-after"), 1.0)


async def batch(
    graph: GraphClient,
    token: str,
    requests: Sequence[BatchRequest],
    version: str = "v1.0",
    wait_throttled: bool = True,
) -> dict[str, BatchResponse]:
    """Every request's answer, by id, sent 20 at a time. A throttled item is retried alone,
    after its Retry-After, up to the client's attempts (``wait_throttled``), or handed back as
    its 429 for a caller that schedules its work."""
    ids = [request.id for request in requests]
    if len(set(ids)) != len(ids):
        raise ValueError("batch request ids must be unique")
    answers: dict[str, BatchResponse] = {}
    for start in range(0, len(requests), MAX_REQUESTS):
        chunk = list(requests[start : start + MAX_REQUESTS])
        known = {request.id for request in chunk}
        for request in chunk:
            if not set(request.depends_on) <= known:
                raise ValueError(f"{request.id} depends on a request outside its 20")
        answers |= await _send(graph, token, chunk, version)
    if wait_throttled:
        for _ in range(graph.attempts - 1):
            throttled = [r for r in requests if answers[r.id].status == 429]
            if not throttled:
                break
            await asyncio.sleep(max(answers[r.id].retry_after_s for r in throttled))
            for request in throttled:  # alone: never repeat what Graph applied already
                answers |= await _send(graph, token, [request], version)
    return answers


async def _send(
    graph: GraphClient, token: str, requests: list[BatchRequest], version: str
) -> dict[str, BatchResponse]:
    if len(requests) == 1 and requests[0].depends_on:  # retried alone: its dependencies ran
        requests = [replace(requests[0], depends_on=())]
    answer = await graph.request(
        token, "POST", f"/{version}/$batch", json={"requests": [r.wire() for r in requests]}
    )
    methods = {request.id: request.method for request in requests}
    answers = {
        str(item["id"]): BatchResponse(
            str(item["id"]),
            int(item["status"]),
            item.get("body"),
            {str(k): str(v) for k, v in (item.get("headers") or {}).items()},
        )
        for item in answer.get("responses", [])
    }
    for response in answers.values():
        graph.count_batch_item(methods.get(response.id, "?"), response.status, response.headers)
    return answers
