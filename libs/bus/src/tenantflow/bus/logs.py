"""A service's logging: readable text by default, JSON lines on request, each with its context.

``LOG_FORMAT=json`` writes one JSON object a line (python-json-logger): time, level, logger,
message, the service, and the tenant, change and trace being worked on when the line was
logged. That context is set where the work is known — a consumer around each event it
handles (``event_context``) — and carried by contextvars, so every line logged meanwhile, by
tenantflow or a library, carries it. The trace id is the W3C traceparent's.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Literal

from pythonjsonlogger.json import JsonFormatter

CONTEXT: ContextVar[dict[str, str] | None] = ContextVar("tenantflow_log_context", default=None)
FIELDS = ("tenant_id", "change_id", "trace_id")
TEXT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class WithContext(logging.Filter):
    """Puts the service and the work under way on every record (empty where none is)."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        record.service = self.service
        context = CONTEXT.get() or {}
        for name in FIELDS:
            setattr(record, name, context.get(name))
        return True


def configure(service: str, level: str, form: Literal["text", "json"]) -> None:
    """Root logging for a service process."""
    handler = logging.StreamHandler()
    handler.addFilter(WithContext(service))
    if form == "json":
        handler.setFormatter(
            JsonFormatter(
                ["asctime", "levelname", "name", "message", "service", *FIELDS],
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(logging.Formatter(TEXT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


@contextmanager
def event_context(tenant_id: Any, change_id: Any, traceparent: str | None) -> Iterator[None]:
    """The tenant, change (correlation id) and trace a piece of work is about, for every line
    logged inside."""
    trace = traceparent.split("-")[1] if traceparent and traceparent.count("-") == 3 else None
    token = CONTEXT.set(
        {
            "tenant_id": str(tenant_id) if tenant_id is not None else "",
            "change_id": str(change_id) if change_id is not None else "",
            "trace_id": trace or "",
        }
    )
    try:
        yield
    finally:
        CONTEXT.reset(token)
