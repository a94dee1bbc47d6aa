"""A scrape of /metrics never hangs on PostgreSQL or Kafka: what it reads at scrape time is
bounded, and kept as last read when they do not answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from tenantflow.bus import metrics
from tenantflow.bus.metrics import Metrics

pytestmark = pytest.mark.unit


@dataclass
class FakeRelay:
    published: int = 3


@dataclass
class FakeRuntime:
    """The parts of ServiceRuntime the metrics read; its database answers, then hangs."""

    service: str = "consent"
    consumers: list[Any] = field(default_factory=list)
    relay: FakeRelay = field(default_factory=FakeRelay)
    database_up: bool = True

    async def outbox_backlog(self) -> tuple[int, float]:
        if not self.database_up:
            await asyncio.Event().wait()  # a server that never answers
        return 7, 1.5


async def test_a_scrape_keeps_the_last_backlog_when_the_database_hangs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(metrics, "READ_TIMEOUT_S", 0.05)
    runtime = FakeRuntime()
    exposed = Metrics(cast(Any, runtime))
    assert b'tenantflow_outbox_backlog{service="consent"} 7.0' in await exposed.render()
    runtime.database_up = False
    scraped = await asyncio.wait_for(exposed.render(), 5)
    assert b'tenantflow_outbox_backlog{service="consent"} 7.0' in scraped
    assert b'tenantflow_events_published_total{service="consent"} 3.0' in scraped
