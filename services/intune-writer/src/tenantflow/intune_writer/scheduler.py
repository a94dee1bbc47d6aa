"""The scheduler: due deployments written to Intune, tenant by tenant, within Intune's limits.

Each writer process claims tenants that have due deployments (a lease in ``writer_tenants``,
taken with SKIP LOCKED, so a tenant's budget is only ever spent by one process; several
processes share the tenants, and one that joins takes unclaimed tenants, with no partition
rebalance involved). Each claimed tenant is served by its own task, so a throttled or slow
tenant delays no other. A task works in rounds: renew the lease, take due deployments (as many
as the budget has writes for), apply each (Graph I/O with no transaction open), then record
every outcome and its events in one transaction. When the budget is spent or Graph answered
429, the tenant is released with the time it may be called again (a Retry-After is kept
exactly, never shortened); the process wakes for it then.

Crash safety: desired state is durable before the scheduler sees it; before a round writes,
the targets it may write are recorded as tenantflow's (``managed_keys``); an app's Graph id is
recorded as soon as Graph created it, and the marker finds it if that record was lost. A lease
that expired without release (its process died) is taken over with the window counted as
full, as the dead process's last writes are unknown. Anything unrecorded is redone; /assign
with the whole set is idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import random
import socket
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from tenantflow.bus.db import transaction
from tenantflow.bus.errors import TransientError, is_transient
from tenantflow.bus.logs import event_context
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.common import EventPayload
from tenantflow.contracts.envelope import Envelope
from tenantflow.contracts.events import (
    CatalogApp,
    DeploymentChangeApplied,
    DeploymentChangeFailed,
    DeploymentChangeSuperseded,
    DesiredAssignment,
    GraphError,
)
from tenantflow.graph.client import GraphClient
from tenantflow.graph.credentials import AppCredentials
from tenantflow.graph.errors import GraphCallFailed, Throttled, TokenRefused
from tenantflow.intune_writer import reconcile
from tenantflow.intune_writer.filters import ACTOR
from tenantflow.intune_writer.graph import Calls, IntuneSession, NoBudget, graph_error_of
from tenantflow.intune_writer.models import (
    ChangeState,
    Deployment,
    TenantState,
    WriterTenant,
)
from tenantflow.intune_writer.throttle import PACE_S, Budget, Limits

log = logging.getLogger(__name__)

# the statements name the service's schema (models.SCHEMA) as it is: a constant

CLAIM = """
    WITH due AS (
        SELECT t.tenant_id, t.lease_owner AS previous_owner
        FROM intune_writer.writer_tenants t
        WHERE t.state = 'active'
          AND (t.not_before IS NULL OR t.not_before <= :now)
          AND (t.lease_until IS NULL OR t.lease_until < :now)
          AND EXISTS (SELECT 1 FROM intune_writer.deployments d
                      WHERE d.tenant_id = t.tenant_id AND d.due_at <= :now)
        ORDER BY t.not_before NULLS FIRST
        LIMIT :limit
        FOR UPDATE OF t SKIP LOCKED
    )
    UPDATE intune_writer.writer_tenants t
    SET lease_owner = :owner, lease_until = :until
    FROM due WHERE t.tenant_id = due.tenant_id
    RETURNING t.tenant_id, t.budget, t.source_of_truth, due.previous_owner"""

TAKE = text("""
    WITH due AS (
        SELECT tenant_id, app FROM intune_writer.deployments
        WHERE tenant_id = :tenant AND due_at <= :now
        ORDER BY due_at LIMIT :limit
        FOR UPDATE
    )
    UPDATE intune_writer.deployments d
    SET managed_keys = (
        SELECT COALESCE(jsonb_agg(DISTINCT k ORDER BY k), '[]'::jsonb)
        FROM (
            SELECT jsonb_array_elements_text(d.managed_keys) AS k
            UNION
            SELECT COALESCE(a -> 'target' ->> 'group_id', a -> 'target' ->> 'kind')
            FROM jsonb_array_elements(d.desired) AS a
        ) AS keys
    )
    FROM due
    WHERE d.tenant_id = due.tenant_id AND d.app = due.app
    RETURNING d.*""")
"""A round's deployments; a desired target's key is its group id or its kind, as
``AssignmentTarget.key`` has it."""

# recording a round: a few statements whatever its size (values travel as arrays)
LOCK_TENANT = text("""
    SELECT state, lease_owner, source_of_truth FROM intune_writer.writer_tenants
    WHERE tenant_id = :tenant FOR UPDATE""")
LOCK_DEPLOYMENTS = text("""
    SELECT app, desired_revision, applied_revision, due_at, attempts, intune_app_id,
           managed_keys
    FROM intune_writer.deployments
    WHERE tenant_id = :tenant AND app = ANY(CAST(:apps AS text[]))
    ORDER BY app FOR UPDATE""")
WAITING_CHANGES = text("""
    SELECT change_id, app, revision, verified_event, traceparent, tracestate,
           updated_at AS verified_at
    FROM intune_writer.changes
    WHERE tenant_id = :tenant AND app = ANY(CAST(:apps AS text[])) AND state = 'verified'
    ORDER BY change_id FOR UPDATE""")
RECORD_DEPLOYMENTS = text("""
    UPDATE intune_writer.deployments d
    SET due_at = v.due_at, attempts = v.attempts, last_error = v.last_error,
        applied_revision = v.applied_revision, intune_app_id = v.intune_app_id,
        managed_keys = v.managed_keys
    FROM unnest(CAST(:apps AS text[]), CAST(:due_at AS timestamptz[]),
                CAST(:attempts AS int[]), CAST(:last_error AS text[]),
                CAST(:applied_revision AS int[]), CAST(:intune_app_id AS uuid[]),
                CAST(:managed_keys AS jsonb[]))
         AS v(app, due_at, attempts, last_error, applied_revision, intune_app_id, managed_keys)
    WHERE d.tenant_id = :tenant AND d.app = v.app""")
RECORD_CHANGES = text("""
    UPDATE intune_writer.changes c SET state = v.state, updated_at = :now
    FROM unnest(CAST(:change_ids AS uuid[]), CAST(:states AS text[])) AS v(change_id, state)
    WHERE c.change_id = v.change_id""")
RECORD_TENANT = text("""
    UPDATE intune_writer.writer_tenants
    SET lease_owner = CASE WHEN :released THEN NULL ELSE lease_owner END,
        lease_until = :until,
        not_before = CASE WHEN :released THEN :not_before ELSE not_before END,
        budget = CAST(:budget AS jsonb)
    WHERE tenant_id = :tenant""")
RECORD_FOUND = text("""
    UPDATE intune_writer.deployments d SET intune_app_id = v.intune_app_id
    FROM unnest(CAST(:apps AS text[]), CAST(:ids AS uuid[])) AS v(app, intune_app_id)
    WHERE d.tenant_id = :tenant AND d.app = v.app AND d.intune_app_id IS NULL""")
WAITING_COUNT = text("""
    SELECT count(*) FROM intune_writer.deployments
    WHERE tenant_id = :tenant AND due_at IS NOT NULL""")

NEXT_DUE = """
    SELECT min(GREATEST(COALESCE(t.not_before, d.next_due), COALESCE(t.lease_until, d.next_due),
                        d.next_due))
    FROM intune_writer.writer_tenants t
    CROSS JOIN LATERAL (SELECT min(due_at) AS next_due FROM intune_writer.deployments d
                        WHERE d.tenant_id = t.tenant_id AND d.due_at IS NOT NULL) d
    WHERE t.state = 'active' AND d.next_due IS NOT NULL"""


GATHER = 20
"""A tenant out of writes comes back when this many fit again (one JSON batch), or as many as
it has waiting, rather than for each write the window frees."""
RECORDING = 3
"""Rounds one process records at once: each builds its events in memory before its commit, and
more at once only queue on the database (many tenants ending a window together)."""
PREFETCH_FROM = 2
"""A round of this many changes reads its apps' assignments in JSON batches instead of one
call per app."""


@dataclass(frozen=True)
class SchedulerSettings:
    tenants_per_process: int = 64
    """Tenants one process serves at once (each its own task)."""
    changes_per_round: int = 100
    lease_s: float = 30.0
    """A claimed tenant is renewed every round; a round is cut at half of this."""
    poll_s: float = 5.0
    access_denied_pause_s: float = 60.0
    """Graph refused access (401/403, AADSTS700016): consent re-checks; the tenant's work waits
    this long, or until consent revokes it for good."""
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    limits: Limits = field(default_factory=Limits)
    pace_s: float = PACE_S
    """A round takes the writes the window frees within this long and sends each when it does
    (``throttle.PACE_S``)."""
    lead_s: float = PACE_S / 2
    """A tenant out of writes is served this long before the window frees room for them."""


@dataclass(frozen=True)
class Work:
    """A due deployment as a round took it."""

    tenant_id: UUID
    app: str
    revision: int
    change_id: UUID
    catalog_app: CatalogApp
    desired: list[DesiredAssignment]
    remove_app: bool
    intune_app_id: UUID | None
    managed_keys: list[str]
    attempts: int

    @classmethod
    def of(cls, row: Any) -> Work:
        """From a ``deployments`` row (the ORM's or a plain one)."""
        return cls(
            tenant_id=row.tenant_id,
            app=row.app,
            revision=row.desired_revision,
            change_id=row.desired_change,
            catalog_app=CatalogApp.model_validate(row.catalog_app),
            desired=[DesiredAssignment.model_validate(a) for a in row.desired],
            remove_app=row.remove_app,
            intune_app_id=row.intune_app_id,
            managed_keys=list(row.managed_keys),
            attempts=row.attempts,
        )


@dataclass(frozen=True)
class Applied:
    work: Work
    intune_app_id: UUID | None
    plan: reconcile.Plan | None
    request_ids: list[str]


@dataclass(frozen=True)
class Failed:
    work: Work
    error: GraphError
    request_ids: list[str]


@dataclass(frozen=True)
class Deferred:
    """Not done this round: ``delay_s`` None leaves it due (budget, 429: the tenant waits)."""

    work: Work
    delay_s: float | None = None
    error: str | None = None
    forget_app: bool = False
    """Graph no longer has the recorded app (deleted in Intune): find or create it again."""


Outcome = Applied | Failed | Deferred


@dataclass(frozen=True)
class Claimed:
    """A tenant this process leased, and its budget."""

    tenant_id: UUID
    budget: Budget
    source_of_truth: bool


@dataclass(frozen=True)
class Step:
    """What a tenant's task does after recording a round."""

    work: list[Work]
    source_of_truth: bool
    released: bool = False
    wait_s: float = 0.0
    reason: str = ""
    """Why the tenant waits ``wait_s``: quota, retry_after or access_denied."""


class LeaseLost(Exception):
    """Another process holds the tenant now: this task stops."""


class Parked(LeaseLost):
    """The tenant was parked (revoked) since it was claimed: this task stops."""


@dataclass
class Scheduler:
    runtime: ServiceRuntime
    graph: GraphClient
    credentials: AppCredentials
    settings: SchedulerSettings = field(default_factory=SchedulerSettings)
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    monotonic: Callable[[], float] = time.monotonic
    random: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.wake = asyncio.Event()
        self._recording = asyncio.Semaphore(RECORDING)
        self.tasks: dict[UUID, asyncio.Task[None]] = {}
        self.ended: Counter[tuple[str]] = Counter()
        """Changes this process ended, by state, for the service's metrics."""
        self.waited: Callable[[str, float], None] = lambda reason, seconds: None
        """Told each wait a tenant is given and why (quota, retry_after, access_denied,
        backoff): the service's metrics."""
        self.took: Callable[[str, float], None] = lambda state, seconds: None
        """Told how long each change took from verified to its end, by state."""

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Claim due tenants and serve each in its own task, until cancelled."""
        try:
            while True:
                self.wake.clear()
                free = self.settings.tenants_per_process - len(self.tasks)
                for claimed in await self._claim(free) if free > 0 else []:
                    # the task copies this context: its tenant on every line it logs
                    with event_context(claimed.tenant_id, None, None):
                        task = asyncio.create_task(self._serve(claimed))
                    self.tasks[claimed.tenant_id] = task
                    task.add_done_callback(functools.partial(self._done, claimed.tenant_id))
                delay = await self._next_due()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), delay)
        finally:
            tasks = list(self.tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def report(self) -> dict[str, Any]:
        return await report(self.runtime, self.settings.limits, self.owner)

    def _done(self, tenant_id: UUID, _: asyncio.Task[None]) -> None:
        self.tasks.pop(tenant_id, None)
        self.wake.set()  # room for another tenant, or this one has more

    async def _claim(self, limit: int) -> list[Claimed]:
        """Lease up to ``limit`` due tenants, in one short transaction. Each tenant's task then
        takes its own first round (``_serve``): taking every claimed tenant's changes here would
        hold them all back until the last one's were read."""
        now, moment = self.clock(), self.monotonic()
        async with transaction(self.runtime.sessions) as session:
            rows = await (await session.connection()).execute(
                text(CLAIM),
                {
                    "now": now,
                    "limit": limit,
                    "owner": self.owner,
                    "until": now + timedelta(seconds=self.settings.lease_s),
                },
            )
            claimed = []
            for row in rows.all():
                budget = Budget.restore(row.budget, self.settings.limits, moment, now.timestamp())
                if row.previous_owner is not None:
                    log.warning(
                        "taking over %s from %s, whose lease ran out",
                        row.tenant_id,
                        row.previous_owner,
                    )
                    budget.blackout(moment)
                claimed.append(Claimed(row.tenant_id, budget, row.source_of_truth))
            return claimed

    def _room(self, budget: Budget) -> int:
        """Changes for a round: as many as the budget has writes for now or within the pace."""
        left = budget.writes_left(self.monotonic(), within=self.settings.pace_s)
        return max(1, min(self.settings.changes_per_round, left))

    async def _next_due(self) -> float:
        async with self.runtime.sessions() as session:
            next_due = (await (await session.connection()).execute(text(NEXT_DUE))).scalar()
        if next_due is None:
            return self.settings.poll_s
        wait = float((next_due - self.clock()).total_seconds())
        return min(self.settings.poll_s, max(0.01, wait))

    # --- one tenant ----------------------------------------------------------------------

    async def _serve(self, claimed: Claimed) -> None:
        tenant_id, budget = claimed.tenant_id, claimed.budget
        try:
            token = await self.graph.token(self.credentials, str(tenant_id))
        except TokenRefused as refused:
            log.warning("no token for %s: %s", tenant_id, refused)
            await self._release(
                tenant_id, budget, self.settings.access_denied_pause_s, "access_denied"
            )
            return
        except Exception as exc:
            if not is_transient(exc):
                raise
            await self._release(tenant_id, budget, self.settings.backoff_initial_s, "backoff")
            return
        intune = IntuneSession(
            self.graph, token, tenant_id, budget, clock=self.monotonic, pace_s=self.settings.pace_s
        )
        # the first pass records nothing and takes the tenant's first round
        work: list[Work] = []
        source_of_truth = claimed.source_of_truth
        released = False
        try:
            while True:
                outcomes = await self._round(intune, work, source_of_truth) if work else []
                step = await self._record(tenant_id, outcomes, budget)
                await self._record_found(tenant_id, intune.take_found())
                if step.released:
                    released = True
                    break
                work, source_of_truth = step.work, step.source_of_truth
        except Parked:
            # consent or writing was revoked meanwhile: hand the tenant back cleanly (its
            # budget kept, no takeover wait) for when it is enabled again
            await self._release(tenant_id, budget, 0.0)
            released = True
        except LeaseLost:
            released = True
        finally:
            if not released:  # cancelled, or a failure: hand the tenant on cleanly
                with contextlib.suppress(Exception):
                    await asyncio.shield(self._release(tenant_id, budget, 0.0))

    async def _next(
        self,
        connection: AsyncConnection,
        tenant_id: UUID,
        source_of_truth: bool,
        budget: Budget,
        pause: float | None,
    ) -> Step:
        """In the round's recording transaction: the next round's changes, or the tenant
        released (nothing due, out of writes, or paused) with the time it may be served again."""
        now, moment = self.clock(), self.monotonic()
        wait = pause or budget.wait(moment, write=True)
        reads_free = not budget.wait(moment, write=False)  # nor a Retry-After
        # the next round when its reads may go now and its writes within the pace (each sent
        # once the window frees it); else the tenant is released until then
        if not pause and wait <= self.settings.pace_s and reads_free:
            work = await self._take(connection, tenant_id, self._room(budget), now)
            if work:
                return Step(work, source_of_truth)
        elif not pause:
            # back when a batch's worth of writes fits, not a write at a time
            due = await connection.scalar(WAITING_COUNT, {"tenant": tenant_id})
            wait = budget.gathered_wait(moment, min(int(due or 0), GATHER)) or wait
            if reads_free:
                # only the window holds it (no Retry-After, reads free): back a little ahead,
                # its round read by the time the window frees room for its first writes
                wait = max(wait - self.settings.lead_s, 0.0)
        reason = "access_denied" if pause else budget.holding(moment)
        return Step([], source_of_truth, released=True, wait_s=wait, reason=reason)

    async def _take(
        self, connection: AsyncConnection, tenant_id: UUID, limit: int, now: datetime
    ) -> list[Work]:
        """The tenant's due deployments, oldest first, in one statement; their desired
        targets are tenantflow's from here on (``managed_keys``), since it may write them."""
        rows = await connection.execute(TAKE, {"tenant": tenant_id, "now": now, "limit": limit})
        return sorted((Work.of(row) for row in rows), key=lambda w: w.app)

    async def _round(
        self, intune: IntuneSession, work: Sequence[Work], source_of_truth: bool
    ) -> list[Outcome]:
        """The round's changes applied; the outcomes not recorded yet (a round whose writes
        wait on the window records those that ended meanwhile: ``_write_planned``)."""
        intune.held = None  # what Intune holds is read afresh each round
        if len(work) >= PREFETCH_FROM:
            try:
                await intune.prefetch(Calls(), [(w.app, w.intune_app_id) for w in work])
            except (NoBudget, Throttled):
                return [Deferred(w) for w in work]
            except (GraphCallFailed, TransientError) as exc:
                log.warning("batched reads of %s failed, per app now: %s", intune.tenant_id, exc)
        planned, others = self._planned(intune, work, source_of_truth)
        recorded: set[int] = set()

        async def checkpoint(outcomes: list[Outcome]) -> None:
            await self._record(intune.tenant_id, outcomes, intune.budget, final=False)
            recorded.update(id(outcome.work) for outcome in outcomes)

        # the changes whose app and assignments the round knows go in one task; each other one
        # (to create, to remove, to read on its own) in a task of its own
        tasks: list[asyncio.Task[Any]] = (
            [asyncio.create_task(self._write_planned(intune, planned, checkpoint))]
            if planned
            else []
        )
        tasks += [asyncio.create_task(self._apply(intune, w, source_of_truth)) for w in others]
        done, pending = await asyncio.wait(tasks, timeout=self.settings.lease_s / 2)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        ended: dict[int, Outcome] = {}
        groups = [[w for w, _, _ in planned]] if planned else []
        groups += [[w] for w in others]
        for group, task in zip(groups, tasks, strict=True):
            if task in done and task.exception() is None:
                result = task.result()
                results = result if isinstance(result, list) else [result]
                ended.update((id(outcome.work), outcome) for outcome in results)
            else:
                error = "round cut short" if task in pending else repr(task.exception())
                ended.update((id(w), Deferred(w, self._backoff(w.attempts), error)) for w in group)
        return [ended[id(w)] for w in work if id(w) not in recorded]

    def _planned(
        self, intune: IntuneSession, work: Sequence[Work], source_of_truth: bool
    ) -> tuple[list[tuple[Work, UUID, reconcile.Plan]], list[Work]]:
        """The round's changes planned now, with no Graph call: their app is known and what
        Intune holds for it was read (``prefetch``); and the others."""
        planned, others = [], []
        for w in work:
            app_id = w.intune_app_id or intune.marked(w.app)
            current = intune.held.get(app_id) if app_id and intune.held is not None else None
            if app_id is None or current is None or (w.remove_app and not w.desired):
                others.append(w)
                continue
            plan = reconcile.plan(w.desired, current, w.managed_keys, source_of_truth)
            planned.append((w, app_id, plan))
        return planned, others

    async def _write_planned(
        self,
        intune: IntuneSession,
        planned: Sequence[tuple[Work, UUID, reconcile.Plan]],
        checkpoint: Callable[[list[Outcome]], Awaitable[None]] | None = None,
    ) -> list[Outcome]:
        """Planned changes written together: their /assign calls queued at once and sent in
        JSON batches, each answer its change's outcome. While the window holds the next batch
        back (paced), the outcomes so far are recorded (``checkpoint``), so their events leave
        then rather than all at the round's end; the rest are returned."""
        writes = [(w, app_id, plan) for w, app_id, plan in planned if not plan.unchanged]
        answers = intune.queue_writes([(app_id, plan.body) for _, app_id, plan in writes])
        ended: list[Outcome] = [
            Applied(w, app_id, plan, []) for w, app_id, plan in planned if plan.unchanged
        ]
        try:
            for (w, app_id, plan), answer in zip(writes, answers, strict=True):
                try:
                    request_id = await answer
                except (NoBudget, Throttled, GraphCallFailed, TransientError) as error:
                    ended.append(self._settled(intune, w, app_id, error, Calls()))
                else:
                    ended.append(Applied(w, app_id, plan, [request_id] if request_id else []))
                if checkpoint is not None and len(ended) >= GATHER and intune.pacing:
                    await checkpoint(ended)
                    ended = []
        finally:
            for answer in answers:  # a round cut short: what was not sent is not sent
                if not answer.done():
                    answer.cancel()
                elif not answer.cancelled():
                    answer.exception()  # retrieved: no warning for an exception not awaited
        return ended

    async def _apply(self, intune: IntuneSession, work: Work, source_of_truth: bool) -> Outcome:
        """Make Intune hold ``work``'s desired state; Graph I/O only, no transaction."""
        calls = Calls()
        app_id: UUID | None = None
        try:
            app_id = work.intune_app_id or await intune.find_marked(calls, work.app)
            if app_id is None and not work.desired:
                return Applied(work, None, None, calls.writes)  # nothing to remove
            if app_id is None:
                app_id = await intune.create(calls, work.catalog_app)
                await self._record_app(work, app_id)
            current = await intune.assignments(calls, app_id)
            plan = reconcile.plan(work.desired, current, work.managed_keys, source_of_truth)
            if not plan.unchanged:
                await intune.assign(calls, app_id, plan.body)
            if work.remove_app and not work.desired and not plan.foreign_kept:
                await intune.delete(calls, app_id)
                intune.forget(work.app)
                return Applied(work, None, plan, calls.writes)
            return Applied(work, app_id, plan, calls.writes)
        except (NoBudget, Throttled, GraphCallFailed, TransientError) as error:
            return self._settled(intune, work, app_id, error, calls)

    def _settled(
        self,
        intune: IntuneSession,
        work: Work,
        app_id: UUID | None,
        error: NoBudget | Throttled | GraphCallFailed | TransientError,
        calls: Calls,
    ) -> Outcome:
        """The outcome of a change whose Graph call raised ``error``."""
        if isinstance(error, NoBudget | Throttled):
            return Deferred(work)  # the tenant waits (its budget, a Retry-After)
        if isinstance(error, TransientError):
            return Deferred(work, self._backoff(work.attempts), str(error))
        if error.status == 404 and app_id is not None:
            intune.forget(work.app)
            return Deferred(work, 0.0, str(error), forget_app=True)
        if error.status in (401, 403):
            # reported to consent by the client's hook; the tenant's work waits
            return Deferred(work, self.settings.access_denied_pause_s, str(error))
        return Failed(work, graph_error_of(error), calls.all)

    def _backoff(self, attempts: int) -> float:
        """Jittered: between half and all of initial * 2^attempts, at most the maximum."""
        ceiling = min(self.settings.backoff_max_s, self.settings.backoff_initial_s * 2**attempts)
        return self.random.uniform(ceiling / 2, ceiling)

    async def _record_app(self, work: Work, app_id: UUID) -> None:
        async with transaction(self.runtime.sessions) as session:
            await session.exec(
                update(Deployment)
                .where(col(Deployment.tenant_id) == work.tenant_id)
                .where(col(Deployment.app) == work.app)
                .values(intune_app_id=app_id)
            )

    async def _record_found(self, tenant_id: UUID, found: dict[str, UUID]) -> None:
        """The Graph ids a marker listing found, on deployments that have none yet: the
        next session reads their assignments without listing the tenant's apps again. Its
        own short transaction, after the round's: a failure costs only a listing later."""
        if not found:
            return
        apps = sorted(found)
        try:
            async with transaction(self.runtime.sessions) as session:
                await (await session.connection()).execute(
                    RECORD_FOUND,
                    {"tenant": tenant_id, "apps": apps, "ids": [found[app] for app in apps]},
                )
        except Exception as exc:
            if not (is_transient(exc) or isinstance(exc, DBAPIError)):  # a deadlock, say
                raise
            log.warning("ids found for %s not recorded: %r", tenant_id, exc)

    # --- recording -----------------------------------------------------------------------

    async def _record(
        self, tenant_id: UUID, outcomes: Sequence[Outcome], budget: Budget, final: bool = True
    ) -> Step:
        """Every outcome of a round and its events, in one transaction of a few plain
        statements whatever the round's size (the tenant, the round's deployments and their
        waiting changes locked and read at once, each table written with one statement, the
        events stored at once), and in it the next round taken or the tenant released
        (``_next``); not ``final``: outcomes of a round still under way, the lease renewed."""
        now = self.clock()
        pause = None
        apps = sorted({outcome.work.app for outcome in outcomes})
        async with self._recording, transaction(self.runtime.sessions) as session:
            connection = await session.connection()
            tenant = (await connection.execute(LOCK_TENANT, {"tenant": tenant_id})).first()
            if tenant is None or tenant.lease_owner != self.owner:
                raise LeaseLost(tenant_id)
            if tenant.state != TenantState.ACTIVE:
                raise Parked(tenant_id)
            rows = (
                {
                    row.app: row
                    for row in await connection.execute(
                        LOCK_DEPLOYMENTS, {"tenant": tenant_id, "apps": apps}
                    )
                }
                if apps
                else {}
            )
            waiting: dict[str, list[Any]] = defaultdict(list)
            ended = sorted({o.work.app for o in outcomes if not isinstance(o, Deferred)})
            if ended:
                for change in await connection.execute(
                    WAITING_CHANGES, {"tenant": tenant_id, "apps": ended}
                ):
                    waiting[change.app].append(change)
            recorded: list[dict[str, Any]] = []
            states: list[tuple[UUID, ChangeState]] = []
            events: list[Envelope[EventPayload]] = []
            took: list[tuple[str, float]] = []
            for outcome in outcomes:
                row = rows.get(outcome.work.app)
                if row is None:
                    continue  # unlinked meanwhile: its changes were failed as dropped
                written = self._written(row, outcome, now)
                if written["delay"] == self.settings.access_denied_pause_s:
                    pause = written["delay"]
                recorded.append(written)
                if not isinstance(outcome, Deferred):
                    concluded, states_now = self._conclude(waiting[outcome.work.app], outcome, now)
                    events += concluded
                    states += states_now
                    verified_at = {c.change_id: c.verified_at for c in waiting[outcome.work.app]}
                    took += [
                        (state.value, (now - verified_at[change_id]).total_seconds())
                        for change_id, state in states_now
                    ]
            if recorded:
                await connection.execute(
                    RECORD_DEPLOYMENTS,
                    {
                        "tenant": tenant_id,
                        **{
                            name: [r[name] for r in recorded]
                            for name in (
                                "apps",
                                "due_at",
                                "attempts",
                                "last_error",
                                "applied_revision",
                                "intune_app_id",
                                "managed_keys",
                            )
                        },
                    },
                )
            if states:
                await connection.execute(
                    RECORD_CHANGES,
                    {
                        "now": now,
                        "change_ids": [change_id for change_id, _ in states],
                        "states": [state.value for _, state in states],
                    },
                )
            await self.runtime.outbox.add_many(connection, events)
            step = (
                await self._next(connection, tenant_id, tenant.source_of_truth, budget, pause)
                if final
                else Step([], tenant.source_of_truth)
            )
            held = (
                self._released(budget, step.wait_s, self.clock())
                if step.released
                else {
                    "lease_until": self.clock() + timedelta(seconds=self.settings.lease_s),
                    "not_before": None,  # kept as it is (RECORD_TENANT)
                    "budget": self._budget_state(budget),
                }
            )
            await connection.execute(
                RECORD_TENANT,
                {
                    "tenant": tenant_id,
                    "released": step.released,
                    "until": held["lease_until"],
                    "not_before": held["not_before"],
                    "budget": json.dumps(held["budget"]),
                },
            )
        self.ended.update((state.value,) for _, state in states)
        for state, seconds in took:
            self.took(state, seconds)
        if step.wait_s > 0:
            self.waited(step.reason, step.wait_s)
            self.wake.set()  # recompute when to look next
        return step

    def _written(self, row: Any, outcome: Outcome, now: datetime) -> dict[str, Any]:
        """What a deployment's row holds once ``outcome`` is recorded (``row``: as locked)."""
        newer = row.desired_revision > outcome.work.revision
        written = {
            "apps": row.app,
            "due_at": row.due_at,
            "attempts": row.attempts,
            "last_error": None,
            "applied_revision": row.applied_revision,
            "intune_app_id": row.intune_app_id,
            "managed_keys": json.dumps(row.managed_keys),
            "delay": None,
        }
        if isinstance(outcome, Deferred):
            if outcome.delay_s is not None and not newer:
                written["due_at"] = now + timedelta(seconds=outcome.delay_s)
                written["attempts"] = row.attempts + 1
            if outcome.forget_app:
                written["intune_app_id"] = None
            written["last_error"], written["delay"] = outcome.error, outcome.delay_s
            return written
        written["due_at"], written["attempts"] = (now if newer else None), 0
        if isinstance(outcome, Applied):
            written["applied_revision"] = outcome.work.revision
            written["intune_app_id"] = outcome.intune_app_id
            written["managed_keys"] = json.dumps(
                sorted({a.target.key for a in outcome.work.desired})
            )
        else:
            written["last_error"] = outcome.error.message
        return written

    def _conclude(
        self, waiting: Sequence[Any], outcome: Applied | Failed, now: datetime
    ) -> tuple[list[Envelope[EventPayload]], list[tuple[UUID, ChangeState]]]:
        """The change's outcome event, and Superseded for the older changes it coalesced
        (``waiting``: the deployment's verified changes, locked), with each one's new state.
        Each event continues its change's trace (the context its verification was handled
        in)."""
        work = outcome.work
        common = {"tenant_id": work.tenant_id, "actor": ACTOR, "app": work.app}
        events: list[Envelope[EventPayload]] = []
        states: list[tuple[UUID, ChangeState]] = []
        for change in sorted(waiting, key=lambda c: c.revision):
            if change.revision > work.revision:
                continue  # verified after this round took its deployment: still to write
            cause = {"correlation_id": change.change_id, "causation_id": change.verified_event}
            event: EventPayload
            if change.change_id != work.change_id:
                state = ChangeState.SUPERSEDED
                event = DeploymentChangeSuperseded(
                    **common,
                    **cause,
                    revision=change.revision,
                    superseded_by_revision=work.revision,
                    superseded_by_change=work.change_id,
                )
            elif isinstance(outcome, Applied):
                state = ChangeState.APPLIED
                event = _applied(outcome, now, common, cause)
            else:
                state = ChangeState.FAILED
                event = DeploymentChangeFailed(
                    **common,
                    **cause,
                    revision=work.revision,
                    reason="graph_error",
                    detail=f"Graph answered {outcome.error.status} {outcome.error.code}: "
                    f"{outcome.error.message}"[:2000],
                    retryable=False,
                    graph_error=outcome.error,
                    graph_request_ids=outcome.request_ids,
                )
            states.append((change.change_id, state))
            events.append(
                self.runtime.outbox.envelope(
                    event, traceparent=change.traceparent, tracestate=change.tracestate
                )
            )
        return events, states

    async def _release(
        self, tenant_id: UUID, budget: Budget, wait_s: float, reason: str = ""
    ) -> None:
        now = self.clock()
        async with transaction(self.runtime.sessions) as session:
            await session.exec(
                update(WriterTenant)
                .where(col(WriterTenant.tenant_id) == tenant_id)
                .where(col(WriterTenant.lease_owner) == self.owner)
                .values(**self._released(budget, wait_s, now))
            )
        if wait_s > 0:
            self.waited(reason, wait_s)
            self.wake.set()  # recompute when to look next

    def _released(self, budget: Budget, wait_s: float, now: datetime) -> dict[str, Any]:
        """A released tenant's row: no lease, served again after ``wait_s``, its budget kept."""
        return {
            "lease_owner": None,
            "lease_until": None,
            "not_before": now + timedelta(seconds=wait_s) if wait_s > 0 else None,
            "budget": self._budget_state(budget),
        }

    def _budget_state(self, budget: Budget) -> dict[str, Any]:
        """The budget for the next owner, on both clocks read together: a wall-clock time
        taken earlier (a transaction's start) would date the window's writes that much too
        early, and the next round would write before Intune's window allowed it."""
        return budget.state(self.monotonic(), self.clock().timestamp())


def _applied(
    outcome: Applied, now: datetime, common: dict[str, Any], cause: dict[str, Any]
) -> DeploymentChangeApplied:
    plan = outcome.plan

    def foreign(wires: list[dict[str, Any]]) -> list[DesiredAssignment]:
        return [a for a in map(reconcile.desired_of, wires) if a is not None]

    return DeploymentChangeApplied(
        **common,
        **cause,
        revision=outcome.work.revision,
        intune_app_id=outcome.intune_app_id,
        assignments_before=plan.before if plan else [],
        written_assignments=plan.written if plan and outcome.intune_app_id else [],
        unchanged=plan.unchanged if plan else True,
        graph_request_ids=outcome.request_ids,
        applied_at=now,
        replaced_foreign_assignments=foreign(plan.foreign_removed) if plan else [],
        kept_foreign_assignments=foreign(plan.foreign_kept) if plan else [],
    )


REPORT = """
    SELECT t.tenant_id, t.state, t.state_reason, t.not_before, t.lease_owner, t.lease_until,
           t.budget->>'write_limit' AS write_limit,
           count(d.app) FILTER (WHERE d.due_at IS NOT NULL) AS waiting,
           min(d.due_at) AS next_due, max(d.attempts) AS most_attempts
    FROM intune_writer.writer_tenants t
    LEFT JOIN intune_writer.deployments d ON d.tenant_id = t.tenant_id
    GROUP BY t.tenant_id
    HAVING count(d.app) FILTER (WHERE d.due_at IS NOT NULL) > 0 OR t.state <> 'active'
        OR t.not_before > now()
    ORDER BY t.tenant_id"""


async def report(runtime: ServiceRuntime, limits: Limits, owner: str) -> dict[str, Any]:
    """The scheduler as operators read it (every process's tenants: the state is shared):
    each tenant with waiting work or a pause, when it may next be written to, and the write
    limit it has learned."""

    def iso(moment: datetime | None) -> str | None:
        return moment.isoformat() if moment else None

    async with runtime.sessions() as session:
        rows = (await (await session.connection()).execute(text(REPORT))).all()
    return {
        "process": owner,
        "published_limit": {
            "writes": limits.writes,
            "requests": limits.requests,
            "window_seconds": limits.window_s,
        },
        "tenants": [
            {
                "tenant_id": str(row.tenant_id),
                "state": row.state,
                "state_reason": row.state_reason,
                "waiting_deployments": row.waiting,
                "next_due": iso(row.next_due),
                "next_allowed_call": iso(row.not_before),
                "learned_write_limit": int(row.write_limit or limits.writes),
                "served_by": row.lease_owner,
                "lease_until": iso(row.lease_until),
                "most_attempts": row.most_attempts,
            }
            for row in rows
        ],
    }
