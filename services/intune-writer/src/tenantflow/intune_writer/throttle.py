"""One tenant's Intune budget as the writer spends it: Intune's published limits, what it learned.

Microsoft publishes Intune's limits for mobileApps and their assignments as counts per 20 s:
100 writes and 1,000 requests per app per tenant (GD includes/throttling-intune-applications.md,
shared/reference/graph-wire-formats.md §5). The writer keeps both as sliding windows of its own
calls, so it never sends the call Intune would refuse, and stops the tenant's calls until a
429's Retry-After has passed, never earlier.

A tenant whose real limit is lower than the published one (another app sharing the tenant's
200 writes, a limit Microsoft lowered) answers 429 before the window is full. The budget then
learns: the writes it had in the window when refused are the limit now (at least half of what it
assumed, so one stray 429 does not collapse it). It recovers slowly: every two whole windows
without such a 429 give back 5% of the published limit.

Pure code with an injected clock (seconds, any origin), persisted whole between the processes
that take the tenant in turn (``state`` / ``restore``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

RECOVERY_SHARE = 0.05
RECOVERY_WINDOWS = 2
"""Quiet windows (no 429 of a write limit) before each step back up."""
IN_FLIGHT_WAIT_S = 0.05
GATHER_SLACK_S = 1.0
"""How much later than the first free write a tenant out of writes comes back, to send more
of them together."""
PACE_S = 1.0
"""A round takes the writes its budget frees within this long, reads for them at once, and
sends each as soon as the window allows it, rather than coming back for every batch the window
frees; what a write is based on was read at most about this long before."""


def write_limit_scope(scope: str | None) -> bool:
    """Whether x-ms-throttle-scope names a write limit: <Scope>/<Limit>/<AppId>/<TenantId>
    with Limit Write (GD concepts/throttling-limits.md)."""
    parts = (scope or "").split("/")
    return len(parts) >= 2 and parts[1] == "Write"


@dataclass(frozen=True)
class Limits:
    writes: int = 100
    requests: int = 1000
    window_s: float = 20.0


@dataclass
class Window:
    """The times of the calls made in the last ``window_s``; a call counts from when it was
    answered, so the writer's window never ends before Intune's own does."""

    window_s: float
    times: list[float] = field(default_factory=list)

    def expire(self, now: float) -> None:
        cutoff = now - self.window_s
        if self.times and self.times[0] <= cutoff:
            self.times = [at for at in self.times if at > cutoff]

    def count(self, now: float) -> int:
        self.expire(now)
        return len(self.times)

    def live_at(self, at: float) -> int:
        """How many of the calls made so far still count at ``at`` (now or later)."""
        return sum(1 for t in self.times if t > at - self.window_s)

    def freed(self, excess: int, now: float) -> float:
        """Seconds until the ``excess`` oldest calls have left the window (inf: there are
        fewer)."""
        if excess <= 0:
            return 0.0
        self.expire(now)
        if excess > len(self.times):
            return math.inf
        return max(0.0, sorted(self.times)[excess - 1] + self.window_s - now)

    def wait(self, limit: int, now: float, count: int = 1) -> float:
        """Seconds until ``count`` more calls fit under ``limit``."""
        self.expire(now)
        if limit <= 0:
            return IN_FLIGHT_WAIT_S  # the calls in flight fill it: look again once answered
        count = min(count, limit)
        return self.freed(len(self.times) + count - limit, now)

    def add(self, at: float) -> None:
        self.times.append(at)
        if len(self.times) > 1 and self.times[-2] > at:
            self.times.sort()


@dataclass
class Budget:
    """What one writer app may still send to one tenant, and from when."""

    limits: Limits = field(default_factory=Limits)
    write_limit: int = 0
    """The writes per window assumed now: the published limit, or less once learned."""
    not_before: float = 0.0
    """No call before this (a Retry-After, or a takeover after a crash)."""
    last_throttled: float | None = None
    last_recovered: float | None = None
    proven: int | None = None
    """The write limit last learned from a 429: above it, the limit is being probed."""
    in_flight_writes: int = 0
    in_flight_requests: int = 0

    def __post_init__(self) -> None:
        if self.write_limit <= 0:
            self.write_limit = self.limits.writes
        self.writes = Window(self.limits.window_s)
        self.requests = Window(self.limits.window_s)

    # --- deciding ------------------------------------------------------------------------

    def wait(self, now: float, write: bool, count: int = 1) -> float:
        """Seconds until ``count`` calls (writes when ``write``) may be sent; 0 when they may
        now."""
        self._recover(now)
        wait = max(0.0, self.not_before - now)
        requests_limit = self.limits.requests - self.in_flight_requests
        wait = max(wait, self.requests.wait(requests_limit, now, count))
        if write:
            writes_limit = self.write_limit - self.in_flight_writes
            wait = max(wait, self.writes.wait(writes_limit, now, count))
        return wait

    def holding(self, now: float) -> str:
        """Why no write may go now: ``retry_after`` (a 429's, or a takeover's wait) or
        ``quota`` (the window is full)."""
        return "retry_after" if self.not_before > now else "quota"

    def gathered_wait(self, now: float, count: int, slack_s: float = GATHER_SLACK_S) -> float:
        """Seconds until as many of ``count`` writes as will fit about as soon as the first
        one does (within ``slack_s`` of it): a tenant out of writes comes back for a batch, not
        for each write the window frees, yet never waits a whole window for writes a learned
        limit leaves no room for (with 10 free of a limit of 50, waiting for 20 would wait
        until the next window's writes age out)."""
        first = self.wait(now, write=True)
        for wanted in range(count, 1, -1):
            wait = self.wait(now, True, wanted)
            if wait <= first + slack_s:
                return wait
        return first

    def probing(self, now: float, unsent: int = 0) -> bool:
        """Whether one more write goes beyond the limit last learned (recovering): such writes
        go one at a time, so a probe that finds the limit still there costs one 429.
        ``unsent``: writes reserved (``take``) but not sent yet, which do not count."""
        if self.proven is None or self.write_limit <= self.proven:
            return False
        return self._sent(now, unsent) >= self.proven

    def batch_size(self, now: float, largest: int, unsent: int = 0) -> int:
        """Writes to send together now: ``largest`` while under half the limit, half of it
        past that (a limit lower than assumed refuses at most that many), one when probing.
        ``unsent`` as for ``probing``: a round reserves its writes before sending any."""
        if self.probing(now, unsent):
            return 1
        sent = self._sent(now, unsent)
        size = largest if sent < self.write_limit // 2 else max(1, largest // 2)
        if self.proven is not None and sent < self.proven < self.write_limit:
            size = min(size, self.proven - sent)  # up to what was learned; beyond, one by one
        return size

    def _sent(self, now: float, unsent: int) -> int:
        return self.writes.count(now) + self.in_flight_writes - unsent

    def writes_left(self, now: float, within: float = 0.0) -> int:
        """How many writes could be sent right now, or by ``within`` seconds from now."""
        if self.not_before > now or self.wait(now, write=False) > within:
            return 0  # a Retry-After is waited out by the tenant, never within a round
        later = now + within
        left = self.write_limit - self.writes.live_at(later) - self.in_flight_writes
        requests_left = (
            self.limits.requests - self.requests.live_at(later) - self.in_flight_requests
        )
        return max(0, min(left, requests_left))

    # --- spending ------------------------------------------------------------------------

    def take(self, now: float, write: bool, within: float = 0.0) -> bool:
        """Reserve a call if it may be sent now, or by ``within`` seconds from now (then
        ``send_wait`` says when; never during a Retry-After); ``answered`` (or ``throttled``)
        ends it."""
        if self.not_before > now or self.wait(now, write) > within:
            return False
        self.in_flight_requests += 1
        self.in_flight_writes += write
        return True

    def send_wait(self, now: float, unsent: int, write: bool = True) -> float:
        """Seconds until the reserved calls but the last ``unsent`` of them may be sent (the
        calls sent and not answered yet count as the window's); inf during a Retry-After (not
        waited out here) or when a limit learned meanwhile leaves no room for them."""
        if self.not_before > now:
            return math.inf
        wait = self.requests.freed(
            self.requests.count(now) + self.in_flight_requests - unsent - self.limits.requests,
            now,
        )
        if write:
            excess = self.writes.count(now) + self.in_flight_writes - unsent - self.write_limit
            wait = max(wait, self.writes.freed(excess, now))
        return wait

    def unused(self, write: bool) -> None:
        """A reserved call was not sent after all."""
        self.in_flight_requests -= 1
        self.in_flight_writes -= write

    def answered(self, now: float, write: bool) -> None:
        """A reserved call was answered (whatever the answer): it counts from now."""
        self.in_flight_requests -= 1
        self.in_flight_writes -= write
        self.requests.add(now)
        if write:
            self.writes.add(now)

    def throttled(
        self, now: float, retry_after_s: float, write: bool, scope: str | None = None
    ) -> None:
        """A reserved call got 429: nothing before its Retry-After. A 429 of a write limit
        (x-ms-throttle-scope <Scope>/Write/<app>/<tenant>) before the window was full teaches
        a lower limit; a 429 that names no write limit (a service under load) is waited out
        and teaches nothing. Intune charges nothing for a refused call."""
        self.in_flight_requests -= 1
        self.in_flight_writes -= write
        self.not_before = max(self.not_before, now + retry_after_s)
        if write and write_limit_scope(scope):
            self.last_throttled = now
            seen = self.writes.count(now)
            if seen < self.write_limit:
                self.write_limit = max(1, seen, math.ceil(self.write_limit / 2))
                self.proven = self.write_limit

    def blackout(self, now: float) -> None:
        """The previous owner of this tenant died mid-work: writes it sent that were not
        recorded may be in Intune's window, so the window counts as full for its length."""
        self.not_before = max(self.not_before, now + self.limits.window_s)

    def _recover(self, now: float) -> None:
        if self.write_limit >= self.limits.writes:
            return
        since = max(self.last_throttled or 0.0, self.last_recovered or 0.0)
        if now - since >= RECOVERY_WINDOWS * self.limits.window_s:
            step = max(1, math.ceil(self.limits.writes * RECOVERY_SHARE))
            self.write_limit = min(self.limits.writes, self.write_limit + step)
            self.last_recovered = now

    # --- persisting ----------------------------------------------------------------------

    def state(self, now: float, epoch: float) -> dict[str, Any]:
        """What the next owner needs, times as seconds since ``epoch``: the wall clock read
        at the same moment as ``now`` (any gap between the two readings would move every
        write of the window that much earlier, and the next owner would write that early).
        Calls still in flight count as answered now: Intune has them, or will soon."""
        self.writes.expire(now)
        self.requests.expire(now)

        def wall(at: float | None) -> float | None:
            return None if at is None else at - now + epoch

        return {
            "write_limit": self.write_limit,
            "not_before": wall(self.not_before) if self.not_before > now else None,
            "last_throttled": wall(self.last_throttled),
            "last_recovered": wall(self.last_recovered),
            "proven": self.proven,
            "writes": [wall(at) for at in self.writes.times] + [epoch] * self.in_flight_writes,
            "requests": [wall(at) for at in self.requests.times]
            + [epoch] * self.in_flight_requests,
        }

    @classmethod
    def restore(
        cls, state: dict[str, Any] | None, limits: Limits, now: float, epoch: float
    ) -> Budget:
        """The budget ``state`` describes, on this process's clock (``now`` is ``epoch``)."""
        budget = cls(limits)
        if not state:
            return budget

        def local(at: float | None) -> float | None:
            return None if at is None else at - epoch + now

        budget.write_limit = max(
            1, min(limits.writes, int(state.get("write_limit") or limits.writes))
        )
        budget.not_before = local(state.get("not_before")) or 0.0
        budget.last_throttled = local(state.get("last_throttled"))
        budget.last_recovered = local(state.get("last_recovered"))
        budget.proven = state.get("proven")
        budget.writes.times = sorted(float(local(at) or 0.0) for at in state.get("writes", []))
        budget.requests.times = sorted(float(local(at) or 0.0) for at in state.get("requests", []))
        return budget
