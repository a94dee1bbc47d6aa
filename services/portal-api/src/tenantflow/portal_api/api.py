"""The FastAPI application: routes, error format, lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.portal_api import problems


def get_runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[ServiceRuntime, Depends(get_runtime)]


def create_app(runtime: ServiceRuntime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        try:
            yield
        finally:
            await runtime.stop()

    app = FastAPI(title="tenantflow portal API", version="1.0.0", lifespan=lifespan)
    app.state.runtime = runtime
    problems.install(app)

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], responses={503: {"description": "Not ready"}})
    async def readyz(runtime: RuntimeDep) -> Any:
        """PostgreSQL and Kafka are reachable and the outbox relay runs."""
        checks = await runtime.readiness()
        return JSONResponse(checks, status_code=200 if all(checks.values()) else 503)

    return app
