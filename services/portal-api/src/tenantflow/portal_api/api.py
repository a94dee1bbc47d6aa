"""The FastAPI application: routes, error format, trusted proxies, lifespan."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response

from tenantflow.bus import tracing
from tenantflow.bus.logs import event_context
from tenantflow.bus.metrics import CONTENT_TYPE
from tenantflow.portal_api import audit, catalog, deployments, directory, problems, tenants
from tenantflow.portal_api.bootstrap import Portal
from tenantflow.portal_api.deps import PortalDep
from tenantflow.portal_api.proxy import TrustedProxies

TENANT_IN_PATH = re.compile(r"^/v1/tenants/([0-9a-fA-F-]{36})")
CHANGE_IN_PATH = re.compile(r"^/v1/changes/([0-9a-fA-F-]{36})")


class LogContext:
    """Each request is handled in a server span continuing its caller's trace (its
    traceparent header; the events it stores carry the span's context: bus.tracing), and every
    line logged meanwhile names its tenant, change (from the path) and trace: bus.logs."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        tenant, change = TENANT_IN_PATH.match(path), CHANGE_IN_PATH.match(path)
        headers = dict(scope.get("headers") or [])
        with tracing.serving(
            scope.get("method", ""),
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
                await self.app(scope, receive, send)


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
    app.add_middleware(LogContext)
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
