"""Graph's published limits, on a clock the test moves."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from tenantflow.emulator.settings import EmulatorSettings
from tenantflow.emulator.throttling import Limits, Throttling, directory_cost

pytestmark = pytest.mark.unit


@dataclass
class FakeClock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def test_intune_writes_per_app_and_tenant() -> None:
    clock = FakeClock()
    throttling = Throttling(clock=clock)
    for _ in range(100):
        assert throttling.intune("app", "tenant", "POST") is None
    throttled = throttling.intune("app", "tenant", "POST")
    assert throttled is not None
    # <Scope>/<Limit>/<ApplicationId>/<TenantId>, as Graph documents the header
    assert throttled.scope == "Tenant_Application/Write/app/tenant"
    assert throttled.information == "WriteLimitExceeded"
    assert throttled.retry_after_s == pytest.approx(20.0)  # when the window's first write ages out
    assert throttling.retry_after(throttled) == "20"
    assert throttling.intune("app", "tenant", "GET") is None  # reads have their own budget
    assert throttling.intune("other-app", "tenant", "POST") is None
    clock.now += 19.9
    assert throttling.intune("app", "tenant", "POST") is not None  # no refill meanwhile
    clock.now += 0.1
    assert throttling.intune("app", "tenant", "POST") is None


def test_at_most_100_writes_in_any_20_seconds_however_they_are_spread() -> None:
    clock = FakeClock()
    throttling = Throttling(clock=clock)
    granted = []
    for _ in range(400):  # a write attempt every 0.1 s for 40 s
        if throttling.intune("app", "tenant", "POST") is None:
            granted.append(clock.now)
        clock.now += 0.1
    assert len(granted) == 200  # 100 in each 20 s, not 100 plus a refill of 5 a second
    assert all(sum(1 for t in granted if start <= t < start + 20) <= 100 for start in granted)


def test_intune_writes_per_tenant_across_apps() -> None:
    throttling = Throttling(clock=FakeClock())
    for app in ("a", "b"):
        for _ in range(100):
            assert throttling.intune(app, "tenant", "PATCH") is None
    throttled = throttling.intune("c", "tenant", "DELETE")
    assert throttled is not None
    assert throttled.scope == "Tenant/Write/c/tenant"


def test_a_refused_request_costs_nothing() -> None:
    clock = FakeClock()
    throttling = Throttling(clock=clock)
    for _ in range(100):
        throttling.intune("app", "tenant", "POST")
    for _ in range(50):
        assert throttling.intune("app", "tenant", "POST") is not None
    clock.now += 20
    assert [throttling.intune("app", "tenant", "POST") is None for _ in range(101)] == [
        *[True] * 100,
        False,
    ]


def test_directory_units_by_tenant_size_and_cost() -> None:
    throttling = Throttling(clock=FakeClock())
    granted = 0
    while throttling.directory("app", "small", users=10, cost=2) is None:
        granted += 1
    assert granted == 1750  # 3,500 units per 10 s for a tenant under 50 users
    big = Throttling(clock=FakeClock())
    granted = 0
    while big.directory("app", "big", users=1000, cost=2) is None:
        granted += 1
    assert granted == 4000  # 8,000 units above 500 users


def test_request_costs() -> None:
    assert directory_cost("/v1.0/users", has_select=False, has_expand=False) == 2
    assert directory_cost("/v1.0/users", has_select=True, has_expand=False) == 1
    assert directory_cost("/v1.0/groups/x/members", has_select=False, has_expand=False) == 3
    assert directory_cost("/v1.0/users/x/checkMemberGroups", has_select=False, has_expand=True) == 5


def test_fractional_retry_after() -> None:
    throttling = Throttling(clock=FakeClock(), fractional_retry_after=True)
    for _ in range(100):
        throttling.intune("app", "tenant", "POST")
    throttled = throttling.intune("app", "tenant", "POST")
    assert throttled is not None
    assert throttling.retry_after(throttled) == "20.000"


def test_switched_off() -> None:
    throttling = Throttling(enabled=False, clock=FakeClock())
    assert all(throttling.intune("app", "t", "POST") is None for _ in range(500))


def test_limits_are_configurable() -> None:
    throttling = Throttling(clock=FakeClock(), limits=Limits(intune_app_writes=3))
    assert [throttling.intune("app", "t", "POST") is None for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


def test_limits_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TENANTFLOW_EMULATOR_THROTTLE_LIMITS__INTUNE_APP_WRITES", "7")
    assert EmulatorSettings().throttle_limits.intune_app_writes == 7
