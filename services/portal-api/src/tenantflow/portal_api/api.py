"""The FastAPI application: routes, error format, trusted proxies, lifespan."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import Histogram

from tenantflow.bus import tracing
from tenantflow.bus.logs import event_context
from tenantflow.bus.metrics import CONTENT_TYPE
from tenantflow.portal_api import audit, catalog, deployments, directory, problems, tenants
from tenantflow.portal_api.bootstrap import Portal
from tenantflow.portal_api.deps import PortalDep
from tenantflow.portal_api.proxy import TrustedProxies

TENANT_IN_PATH = re.compile(r"^/v1/tenants/([0-9a-fA-F-]{36})")
CHANGE_IN_PATH = re.compile(r"^/v1/changes/([0-9a-fA-F-]{36})")


class RequestContext:
    """Each request is handled in a server span continuing its caller's trace (its
    traceparent header; the events it stores carry the span's context: bus.tracing); every
    line logged meanwhile names its tenant, change (from the path) and trace (bus.logs); and
    its duration is observed by route template, method and status."""

    def __init__(self, app: Any, durations: Histogram, service: str) -> None:
        self.app = app
        self.durations = durations
        self.service = service

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope.get("path", ""), scope.get("method", "")
        tenant, change = TENANT_IN_PATH.match(path), CHANGE_IN_PATH.match(path)
        headers = dict(scope.get("headers") or [])
        status = 500  # unless an answer starts

        async def send_observed(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.monotonic()
        with tracing.serving(
            method,
            path,
            headers.get(b"traceparent", b"").decode("latin-1") or None,
            headers.get(b"tracestate", b"").decode("latin-1") or None,
        ):
            traceparent, _ = tracing.current()
            with event_context(
                tenant.group(1) if tenant else None,
                change.group(1) if change else None,
                traceparent,
            ):
                try:
                    await self.app(scope, receive, send_observed)
                finally:
                    # the template, not the path: one series per route, whatever its ids
                    route = getattr(scope.get("route"), "path", None) or "unmatched"
                    self.durations.labels(self.service, method, route, str(status)).observe(
                        time.monotonic() - started
                    )


def create_app(portal: Portal) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await portal.start()
        try:
            yield
        finally:
            await portal.runtime.stop()

    app = FastAPI(
        title="tenantflow portal API",
        version="1.0.0",
        lifespan=lifespan,
        description="Link Entra ID tenants and deploy Intune apps across them. Errors are "
        "RFC 9457 application/problem+json; every answer carries X-Request-ID.",
    )
    app.state.portal = portal
    app.add_middleware(problems.BodyLimit, max_bytes=portal.settings.max_body_bytes)
    problems.install(app)
    app.add_middleware(TrustedProxies, trusted=portal.settings.trusted_proxies)
    app.add_middleware(
        RequestContext,
        durations=portal.runtime.metrics.histogram(
            "tenantflow_http_request_seconds",
            "Time to answer a portal API request, by method, route template and status.",
            ("method", "route", "status"),
        ),
        service=portal.runtime.service,
    )
    app.include_router(tenants.router)
    app.include_router(directory.router)
    app.include_router(deployments.router)
    app.include_router(catalog.router)
    app.include_router(audit.router)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    checks = {
        "description": "Whether each dependency is ready",
        "content": {
            "application/json": {
                "schema": {"type": "object", "additionalProperties": {"type": "boolean"}}
            }
        },
    }

    @app.get("/readyz", tags=["operations"], responses={200: checks, 503: checks})
    async def readyz(portal: PortalDep) -> Any:
        """PostgreSQL and Kafka are reachable and the outbox relay runs."""
        checks = await portal.runtime.readiness()
        return JSONResponse(checks, status_code=200 if all(checks.values()) else 503)

    @app.get("/metrics", tags=["operations"], include_in_schema=False)
    async def metrics(portal: PortalDep) -> Response:
        """Prometheus metrics (the text format)."""
        return Response(await portal.runtime.metrics.render(), media_type=CONTENT_TYPE)

    return app
