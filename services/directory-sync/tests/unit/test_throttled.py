"""A throttled tenant's fetches wait for Retry-After in place while the throttling is short,
and its sync pauses once it lasts longer (sync.TenantSync._hold), on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import uuid4

import pytest

from tenantflow.directory_sync.settings import Settings
from tenantflow.directory_sync.sync import Run, TenantSync
from tenantflow.graph.errors import Throttled

pytestmark = pytest.mark.unit

START = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


def syncer(clock: Clock, hold: float) -> TenantSync:
    settings = Settings(
        graph_base_url="https://localhost:8443",
        login_base_url="https://localhost:8443",
        hold_throttled_seconds=hold,
    )
    nothing = cast(Any, None)  # _hold touches neither the database nor Graph
    return TenantSync(nothing, nothing, nothing, settings, clock=clock)


def a_run() -> Run:
    return Run(uuid4(), uuid4(), 1, 0, True, None, START, None)


def throttled(seconds: float) -> Throttled:
    return Throttled(seconds, "Tenant_Application/ReadWrite/app/tenant", "GET /v1.0/users/delta")


def test_a_short_retry_after_is_waited_for_in_place_never_less() -> None:
    clock, run = Clock(), a_run()
    sync = syncer(clock, hold=5)
    sync._hold(run, throttled(1.5))
    assert run.resume_at == START + timedelta(seconds=1.5)
    clock.now += timedelta(seconds=0.2)  # another round's 429 meanwhile, shorter: no earlier
    sync._hold(run, throttled(0.5))
    assert run.resume_at == START + timedelta(seconds=1.5)


def test_throttling_that_lasts_longer_than_the_hold_pauses_the_sync() -> None:
    clock, run = Clock(), a_run()
    sync = syncer(clock, hold=5)
    sync._hold(run, throttled(2))
    clock.now += timedelta(seconds=2)
    sync._hold(run, throttled(2))  # 4 s throttled in all
    clock.now += timedelta(seconds=2)
    with pytest.raises(Throttled):
        sync._hold(run, throttled(2))  # would make 6


def test_a_long_retry_after_pauses_at_once_and_zero_always_pauses() -> None:
    with pytest.raises(Throttled):
        syncer(Clock(), hold=5)._hold(a_run(), throttled(30))
    with pytest.raises(Throttled):
        syncer(Clock(), hold=0)._hold(a_run(), throttled(0.5))
