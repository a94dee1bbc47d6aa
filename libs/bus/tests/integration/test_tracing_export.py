"""Spans leave a service only when OTLP is configured: with OTEL_EXPORTER_OTLP_ENDPOINT set, its
spans reach that endpoint over OTLP/HTTP, continuing the trace they were given; without it,
nothing is sent (spans are still made, for the trace ids of events and logs)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

pytestmark = pytest.mark.integration

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PROBE = f"""
from tenantflow.bus import tracing
provider = tracing.configure("trace-probe")
with tracing.serving("PUT", "/v1/probe", "00-{TRACE_ID}-b7ad6b7169203331-01", None):
    pass
provider.force_flush()
provider.shutdown()
"""


@pytest.fixture
def collector() -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """An OTLP/HTTP endpoint that keeps what it is sent."""
    received: list[tuple[str, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()


def probe(**otel: str) -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    subprocess.run(
        [sys.executable, "-c", PROBE], env={**environment, **otel}, check=True, timeout=60
    )


def test_spans_are_exported_where_otlp_is_configured(
    collector: tuple[str, list[tuple[str, bytes]]],
) -> None:
    endpoint, received = collector
    probe(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint)
    [(path, body)] = received
    assert path == "/v1/traces"
    assert b"trace-probe" in body  # the service's name, as the resource
    assert bytes.fromhex(TRACE_ID) in body  # the caller's trace, continued


def test_nothing_is_sent_where_it_is_not(collector: tuple[str, list[tuple[str, bytes]]]) -> None:
    _, received = collector
    probe()
    assert received == []
