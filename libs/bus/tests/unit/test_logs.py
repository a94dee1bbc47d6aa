"""JSON log lines carry the service and the tenant, change and trace being worked on."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from uuid import uuid4

import pytest

from tenantflow.bus import logs

pytestmark = pytest.mark.unit


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    logs.configure("consent", "INFO", "json")
    stream = io.StringIO()
    handler = root.handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(stream)
    yield stream
    root.handlers[:] = saved
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_logged_while_an_event_is_handled_names_its_tenant_change_and_trace(
    captured: io.StringIO,
) -> None:
    tenant, change, trace = uuid4(), uuid4(), "4bf92f3577b34da6a3ce929d0e0e4736"
    with logs.event_context(tenant, change, f"00-{trace}-00f067aa0ba902b7-01"):
        logging.getLogger("tenantflow.consent.handlers").warning("tenant %s refused", "x")
    logging.getLogger("aiokafka").warning("outside any event")
    inside, outside = lines(captured)
    assert inside["message"] == "tenant x refused"
    assert inside["level"] == "WARNING"
    assert inside["logger"] == "tenantflow.consent.handlers"
    assert inside["service"] == "consent"
    assert (inside["tenant_id"], inside["change_id"], inside["trace_id"]) == (
        str(tenant),
        str(change),
        trace,
    )
    assert "time" in inside
    assert outside["tenant_id"] is None
    assert outside["service"] == "consent"


def test_text_stays_the_default_and_readable() -> None:
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    try:
        logs.configure("consent", "INFO", "text")
        formatter = root.handlers[0].formatter
        assert formatter is not None
        assert formatter._fmt == logs.TEXT
    finally:
        root.handlers[:] = saved
        root.setLevel(level)
