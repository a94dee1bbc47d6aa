"""Running a service process: logging, then uvicorn with a graceful SIGTERM."""

from __future__ import annotations

import logging
from typing import Any

import uvicorn

from tenantflow.bus.settings import ServiceSettings


def serve(app: Any, settings: ServiceSettings) -> None:
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        lifespan="on",
        timeout_graceful_shutdown=20,
        proxy_headers=False,
    )
