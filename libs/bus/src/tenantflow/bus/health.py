"""A minimal ASGI app for workers: lifespan runs the service, /healthz and /readyz report on it,
/metrics gives its Prometheus metrics.

uvicorn serves it, so SIGTERM gives a clean shutdown through the lifespan protocol.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from tenantflow.bus.metrics import CONTENT_TYPE
from tenantflow.bus.runtime import ServiceRuntime

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


Report = Callable[[], Awaitable[dict[str, Any]]]


def worker_app(
    runtime: ServiceRuntime, reports: dict[str, Report] | None = None
) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The worker's ASGI app; ``reports`` are extra read-only JSON documents by path, for
    operators (such as the writer's /scheduler)."""
    reports = reports or {}

    async def respond(send: Send, status: int, body: dict[str, Any]) -> None:
        await answer(send, status, json.dumps(body).encode(), "application/json")

    async def answer(send: Send, status: int, payload: bytes, content_type: str) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", content_type.encode()),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def lifespan(receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await runtime.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await runtime.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        if scope["path"] == "/healthz":
            await respond(send, 200, {"status": "ok", "service": runtime.service})
        elif scope["path"] == "/readyz":
            checks = await runtime.readiness()
            await respond(send, 200 if all(checks.values()) else 503, checks)
        elif scope["path"] == "/metrics" and scope["method"] == "GET":
            await answer(send, 200, await runtime.metrics.render(), CONTENT_TYPE)
        elif scope["path"] in reports and scope["method"] == "GET":
            await respond(send, 200, await reports[scope["path"]]())
        else:
            await respond(send, 404, {"status": 404, "title": "Not Found"})

    return app
