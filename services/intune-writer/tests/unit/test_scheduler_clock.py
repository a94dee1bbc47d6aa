"""The budget handed from one round (or process) to the next keeps its writes' times, however
long the transaction that stores it has run: both clocks are read at the same moment."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from tenantflow.intune_writer.scheduler import Scheduler
from tenantflow.intune_writer.throttle import Budget, Limits

pytestmark = pytest.mark.unit

LIMITS = Limits(writes=100, requests=1000, window_s=20.0)
EPOCH = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


@dataclass
class Clocks:
    """A monotonic clock and a wall clock that run together, as on a real machine."""

    at: float = 0.0

    def monotonic(self) -> float:
        return self.at

    def wall(self) -> datetime:
        return EPOCH + timedelta(seconds=self.at)


def test_the_budget_stored_late_in_a_transaction_dates_its_writes_as_they_were() -> None:
    clocks = Clocks()
    scheduler = Scheduler(
        runtime=cast(Any, None),
        graph=cast(Any, None),
        credentials=cast(Any, None),
        clock=clocks.wall,
        monotonic=clocks.monotonic,
    )
    budget = Budget(LIMITS)
    clocks.at = 10.0
    for _ in range(100):
        assert budget.take(clocks.at, write=True)
        budget.answered(clocks.at, write=True)
    started = clocks.wall()  # a recording transaction starts here …
    clocks.at = 12.5  # … and runs 2.5 s on a loaded machine before the budget is stored
    state = scheduler._released(budget, 0.0, started)["budget"]

    restored = Budget.restore(state, LIMITS, clocks.monotonic(), clocks.wall().timestamp())
    assert restored.wait(clocks.monotonic(), write=True) == pytest.approx(17.5)  # 10 + 20 - 12.5
