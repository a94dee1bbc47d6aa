"""Running a service process: logging, then uvicorn with a graceful SIGTERM that ends in time.

On SIGTERM (or Ctrl-C) uvicorn stops accepting, gives requests in flight a quarter of the grace
period, then runs the lifespan shutdown (ServiceRuntime.stop, bounded to half of it). Should
anything still hang, a watchdog ends the process when the grace period is over: a service never
outlives its grace period, whatever the broker does. Nothing is lost by that: the outbox keeps
what Kafka did not acknowledge, and unprocessed messages are redelivered.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from types import FrameType
from typing import Any

import uvicorn

from tenantflow.bus import logs, tracing
from tenantflow.bus.broker import FASTSTREAM_LOGGER
from tenantflow.bus.settings import ServiceSettings

log = logging.getLogger(__name__)
EXIT_GRACE_EXCEEDED = 70
LIBRARIES = (
    "aiokafka",
    "alembic",
    "faststream",
    FASTSTREAM_LOGGER,
    "uvicorn.error",
    "uvicorn.access",
    "httpx",
)
"""Loggers whose INFO is chatter for an operator (group joins, migrations, each request)."""


class _GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, grace_seconds: float) -> None:
        super().__init__(config)
        self._grace = grace_seconds
        self._watchdog: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._watchdog is None:
            self._watchdog = threading.Timer(self._grace, self._grace_exceeded)
            self._watchdog.daemon = True
            self._watchdog.start()
        super().handle_exit(sig, frame)

    def _grace_exceeded(self) -> None:
        log.critical("shutdown took longer than %.0f s; exiting now", self._grace)
        logging.shutdown()
        sys.stderr.flush()
        os._exit(EXIT_GRACE_EXCEEDED)


def serve(app: Any, settings: ServiceSettings, service: str) -> None:
    logs.configure(service, settings.log_level, settings.log_format)
    tracing.configure(service)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        log_config=None,  # uvicorn's lines go through the service's logging (text or JSON)
        lifespan="on",
        timeout_graceful_shutdown=max(1, round(settings.http_drain_seconds)),
        proxy_headers=False,
    )
    quiet_libraries(settings)  # after uvicorn's Config, which sets its own loggers' levels
    _GracefulServer(config, settings.shutdown_grace_seconds).run()


def quiet_libraries(settings: ServiceSettings) -> None:
    level = settings.library_log_level or ("DEBUG" if settings.log_level == "DEBUG" else "WARNING")
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(level)
