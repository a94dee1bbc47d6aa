"""Graph's published limits (shared/reference/graph-wire-formats.md §5).

Intune (mobileApps and related; GD includes/throttling-intune-applications.md): per app per
tenant 100 writes / 1,000 requests per 20 s, per tenant 200 writes / 2,000 requests per 20 s.
Microsoft states them as counts per 20 seconds, so they are sliding windows here: at most 100
writes by one app in one tenant in any 20 s, and a throttled caller may write again when the
oldest write of the window is 20 s old (not a bucket refilled at 5/s, which would let about 200
through in the first 20 s). Directory (users, groups, devices, servicePrincipals;
concepts/throttling-limits.md): token buckets of resource units per app and tenant per 10 s, by
tenant size (3,500 under 50 users, 5,000 up to 500, 8,000 above), with per-request costs.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Budget(Protocol):
    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` may be spent; 0 when it may now."""
        ...

    def spend(self, cost: float, now: float) -> None: ...


@dataclass
class SlidingWindow:
    """At most ``limit`` units in any ``window_s`` seconds."""

    limit: int
    window_s: float
    spent: deque[tuple[float, float]] = field(default_factory=deque)
    total: float = 0.0

    def _expire(self, now: float) -> None:
        while self.spent and self.spent[0][0] <= now - self.window_s:
            self.total -= self.spent.popleft()[1]

    def wait_for(self, cost: float, now: float) -> float:
        self._expire(now)
        excess, wait = self.total + cost - self.limit, 0.0
        for at, amount in self.spent:
            if excess <= 0:
                break
            excess -= amount
            wait = at + self.window_s - now
        return max(0.0, wait) if excess <= 0 else self.window_s

    def spend(self, cost: float, now: float) -> None:
        self.spent.append((now, cost))
        self.total += cost


@dataclass
class TokenBucket:
    capacity: float
    per_seconds: float
    tokens: float = -1.0
    updated: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = self.capacity

    def refill(self, now: float) -> None:
        rate = self.capacity / self.per_seconds
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * rate)
        self.updated = now

    def wait_for(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` tokens are there; 0 when they are now."""
        self.refill(now)
        return max(0.0, (cost - self.tokens) / (self.capacity / self.per_seconds))

    def spend(self, cost: float, now: float) -> None:
        self.tokens -= cost


@dataclass(frozen=True)
class Throttled:
    retry_after_s: float
    scope: str
    information: str
    """x-ms-throttle-information: why (GD concepts/throttling-limits.md names
    WriteLimitExceeded and ResourceUnitLimitExceeded; RequestLimitExceeded for a request
    count is ours, as Microsoft gives only examples)."""


@dataclass(frozen=True)
class Limits:
    """Graph's published numbers by default; each can be changed (settings or control plane)."""

    intune_app_writes: int = 100
    intune_tenant_writes: int = 200
    intune_app_requests: int = 1000
    intune_tenant_requests: int = 2000
    intune_window_s: float = 20.0
    directory_units_small: int = 3500
    """Tenants under 50 users."""
    directory_units_medium: int = 5000
    """Tenants of 50 to 500 users."""
    directory_units_large: int = 8000
    directory_window_s: float = 10.0

    def directory_units(self, tenant_users: int) -> int:
        if tenant_users < 50:
            return self.directory_units_small
        if tenant_users <= 500:
            return self.directory_units_medium
        return self.directory_units_large


def directory_cost(path: str, has_select: bool, has_expand: bool) -> int:
    """Resource units of one request (GD concepts/throttling-limits.md)."""
    if "/members" in path or "/transitiveMembers" in path:
        cost = 3
    elif "checkMember" in path:
        cost = 4
    elif path.rstrip("/").endswith(("/users", "/groups", "/devices", "/servicePrincipals")):
        cost = 2
    else:
        cost = 1
    if has_select:
        cost -= 1
    if has_expand:
        cost += 1
    return max(1, cost)


@dataclass
class Throttling:
    enabled: bool = True
    fractional_retry_after: bool = False
    limits: Limits = field(default_factory=Limits)
    clock: Callable[[], float] = time.monotonic
    buckets: dict[tuple[str, ...], Budget] = field(default_factory=dict)

    def _budget(self, key: tuple[str, ...], capacity: int, per_seconds: float) -> Budget:
        budget = self.buckets.get(key)
        if budget is None:
            budget = self.buckets[key] = (
                SlidingWindow(capacity, per_seconds)
                if key[0].startswith("intune")
                else TokenBucket(capacity, per_seconds, updated=self.clock())
            )
        return budget

    def intune(self, app_id: str, tenant_id: str, method: str) -> Throttled | None:
        if not self.enabled:
            return None
        now = self.clock()
        limits = self.limits
        # x-ms-throttle-scope is <Scope>/<Limit>/<ApplicationId>/<TenantId> (GD
        # concepts/throttling-limits.md, "Throttled responses requests")
        checks = [
            (
                ("intune-any", app_id, tenant_id),
                limits.intune_app_requests,
                f"Tenant_Application/ReadWrite/{app_id}/{tenant_id}",
            ),
            (
                ("intune-any", tenant_id),
                limits.intune_tenant_requests,
                f"Tenant/ReadWrite/{app_id}/{tenant_id}",
            ),
        ]
        if method in WRITE_METHODS:
            checks = [
                (
                    ("intune-write", app_id, tenant_id),
                    limits.intune_app_writes,
                    f"Tenant_Application/Write/{app_id}/{tenant_id}",
                ),
                (
                    ("intune-write", tenant_id),
                    limits.intune_tenant_writes,
                    f"Tenant/Write/{app_id}/{tenant_id}",
                ),
                *checks,
            ]
        return self._take_all(checks, limits.intune_window_s, 1, now)

    def directory(self, app_id: str, tenant_id: str, users: int, cost: int) -> Throttled | None:
        if not self.enabled:
            return None
        key = ("directory", app_id, tenant_id)
        scope = f"Tenant_Application/ReadWrite/{app_id}/{tenant_id}"
        units, window = self.limits.directory_units(users), self.limits.directory_window_s
        return self._take_all([(key, units, scope)], window, cost, self.clock())

    def _take_all(
        self,
        checks: list[tuple[tuple[str, ...], int, str]],
        per_seconds: float,
        cost: int,
        now: float,
    ) -> Throttled | None:
        """All budgets must grant; none is charged unless all do (a refused request is free)."""
        budgets = [
            (self._budget(key, capacity, per_seconds), scope) for key, capacity, scope in checks
        ]
        for budget, scope in budgets:
            wait = budget.wait_for(cost, now)
            if wait > 0:
                if scope.split("/")[1] == "Write":
                    information = "WriteLimitExceeded"
                elif isinstance(budget, TokenBucket):
                    information = "ResourceUnitLimitExceeded"
                else:
                    information = "RequestLimitExceeded"
                return Throttled(wait, scope, information)
        for budget, _ in budgets:
            budget.spend(cost, now)
        return None

    def retry_after(self, throttled: Throttled) -> str:
        if self.fractional_retry_after:
            return f"{max(throttled.retry_after_s, 0.001):.3f}"
        return str(max(1, math.ceil(throttled.retry_after_s)))

    def reset(self) -> None:
        self.buckets.clear()
