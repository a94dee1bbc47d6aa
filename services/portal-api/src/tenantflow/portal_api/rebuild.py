"""The portal's read models rebuilt from the event log, in an empty database, by the code the
live service runs; and a row-for-row comparison with a live database.

The log is applied in its order: each partition's events in offset order, partitions merged by
event time (the caller's part: ``tenantflow-audit rebuild``). Each event goes to

- the portal's own requests (a link, an Intune activation, an unlink, a deployment change): the
  functions the routes call as they accept one (``tenants.record_*``,
  ``deployments.record_change_requested``), with the event's time as the moment; the routes
  date the event with the moment they record, so both give the same rows;
- every consumer group's handlers for it (``handlers.RESULTS``, ``CHANGES``, the audit page's),
  as the live consumers run them; a handler dates what it records with the event's time.

Read models rebuilt (``READ_MODELS``): accounts, tenant links and their tracks, deployments,
deployment changes, the audit page's events. Not rebuilt: the directory read model (a cache of
Entra ID, on a topic not kept forever: directory-sync fills it again) and the app catalog
(configuration, seeded at start-up, not events); the bus's own tables (outbox, inbox, audit
chain heads) are no read model.

Where the live database can differ from a rebuild: a user's request that raced a verdict for
the same tenant (the live service applied them in the order their transactions ran, the log
holds them in the order they were published), and rows the service wrote before this rebuild
existed (random account ids, the database's clock on updates). ``compare`` names every row that
differs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantflow.bus.consumer import Handler, HandlerContext
from tenantflow.bus.db import SessionFactory, migrate, session_factory, snapshot, transaction
from tenantflow.bus.outbox import Outbox
from tenantflow.bus.reader import Record
from tenantflow.contracts.common import EventPayload, UserActor
from tenantflow.contracts.envelope import Envelope, EnvelopeError, decode
from tenantflow.contracts.events import (
    DeploymentChangeRequested,
    IntuneWritingActivationRequested,
    TenantLinkRequested,
    TenantUnlinked,
)
from tenantflow.portal_api.bootstrap import MIGRATIONS
from tenantflow.portal_api.deployments import record_change_requested
from tenantflow.portal_api.handlers import CHANGES, RESULTS, Projection, audit_projection
from tenantflow.portal_api.models import (
    SCHEMA,
    Account,
    AuditEventRow,
    Deployment,
    DeploymentChange,
    TenantLink,
    TenantTrack,
)
from tenantflow.portal_api.tenants import (
    linked,
    open_link,
    record_intune_requested,
    record_link_requested,
    record_unlinked,
)

READ_MODELS: tuple[Table, ...] = tuple(
    model.__table__  # type: ignore[union-attr]
    for model in (Account, TenantLink, TenantTrack, Deployment, DeploymentChange, AuditEventRow)
)

Position = tuple[str, int, int]
"""Where an event is in the log: topic (its full name), partition, offset."""


class NotEmpty(Exception):
    """The database to rebuild into holds read-model rows already."""


async def link_requested(event: TenantLinkRequested, ctx: HandlerContext) -> None:
    if isinstance(event.actor, UserActor):
        at = ctx.envelope.time
        tenant = await open_link(ctx.session, event.actor.tenant_id, event.tenant_id, at)
        record_link_requested(ctx.session, tenant, event, at)


async def intune_requested(event: IntuneWritingActivationRequested, ctx: HandlerContext) -> None:
    if isinstance(event.actor, UserActor):
        tenant = await linked(ctx.session, event.actor.tenant_id, event.tenant_id, lock=True)
        if tenant is not None:
            record_intune_requested(ctx.session, tenant, event, ctx.envelope.time)


async def unlinked(event: TenantUnlinked, ctx: HandlerContext) -> None:
    if isinstance(event.actor, UserActor):
        tenant = await linked(ctx.session, event.actor.tenant_id, event.tenant_id, lock=True)
        if tenant is not None:
            record_unlinked(ctx.session, tenant, ctx.envelope.time)


async def change_requested(event: DeploymentChangeRequested, ctx: HandlerContext) -> None:
    if isinstance(event.actor, UserActor):
        deployment = await ctx.session.get(
            Deployment, (event.tenant_id, event.app), with_for_update=True
        )
        record_change_requested(ctx.session, deployment, event, ctx.envelope.time)


OWN_REQUESTS: Projection = {
    TenantLinkRequested: link_requested,
    IntuneWritingActivationRequested: intune_requested,
    TenantUnlinked: unlinked,
    DeploymentChangeRequested: change_requested,
}
"""What the routes recorded when they accepted a request, recorded again from its event."""


@dataclass
class Rebuild:
    """Applies the log's events to an empty database's read models."""

    engine: AsyncEngine
    topic_prefix: str = ""
    applied: int = 0
    """Events that at least one projection handled."""
    handlers: dict[type[EventPayload], list[Handler]] = field(default_factory=dict, init=False)
    """Every projection's handlers of each event type, in the order they run."""

    def __post_init__(self) -> None:
        self.sessions: SessionFactory = session_factory(self.engine)
        self.outbox = Outbox(SCHEMA, "/tenantflow/portal-api", self.topic_prefix)
        """Handed to handlers, never written: a rebuild publishes nothing."""
        for projection in (OWN_REQUESTS, RESULTS, CHANGES, audit_projection(self.topic_prefix)):
            for payload, handler in projection.items():
                self.handlers.setdefault(payload, []).append(handler)

    async def prepare(self) -> None:
        """Migrate the portal's schema; refuse a database whose read models hold rows."""
        await migrate(self.engine, MIGRATIONS, SCHEMA)
        async with self.engine.connect() as connection:
            for table in READ_MODELS:
                count = select(func.count()).select_from(table)
                rows = (await connection.execute(count)).scalar()
                if rows:
                    raise NotEmpty(
                        f"{table.fullname} holds {rows} rows: rebuild into an empty database"
                    )

    async def feed(self, records: Sequence[Record]) -> list[tuple[Record, str]]:
        """Apply ``records`` (a run of the log in its order) in one transaction; the ones that
        cannot be decoded are left out and returned, with why."""
        events, undecodable = [], []
        for record in records:
            try:
                envelope = decode(list(record.headers or []), record.value)
            except EnvelopeError as exc:
                undecodable.append((record, str(exc)))
                continue
            events.append((envelope, (record.topic, record.partition, record.offset)))
        await self.apply(events)
        return undecodable

    async def apply(self, events: Sequence[tuple[Envelope[EventPayload], Position]]) -> None:
        """Apply ``events`` in order, in one transaction; each handler sees the database as
        the ones before it left it (as in a consumer's poll)."""
        async with transaction(self.sessions) as session:
            for envelope, position in events:
                handlers = self.handlers.get(type(envelope.data), [])
                for handler in handlers:
                    await session.flush()
                    session.expire_all()
                    ctx = HandlerContext(session, envelope, self.outbox, position=position)
                    await handler(envelope.data, ctx)
                self.applied += bool(handlers)


@dataclass(frozen=True)
class Difference:
    table: str
    key: tuple[Any, ...]
    kind: str
    """missing (live only), extra (rebuilt only) or changed."""
    columns: tuple[str, ...] = ()
    """The columns that differ, when changed."""

    def __str__(self) -> str:
        key = ", ".join(str(part) for part in self.key)
        if self.kind == "changed":
            return f"{self.table} ({key}): differs in {', '.join(self.columns)}"
        where = "only in the live database" if self.kind == "missing" else "only in the rebuild"
        return f"{self.table} ({key}): {where}"


async def _rows(
    sessions: SessionFactory, table: Table
) -> AsyncIterator[tuple[tuple[Any, ...], dict[str, Any]]]:
    """The table's rows in primary-key order (text in code-point order, as Python compares)."""
    keys = list(table.primary_key.columns)
    order = [key.collate("C") if key.type.python_type is str else key for key in keys]
    async with snapshot(sessions) as session:
        result = await session.stream(
            select(table).order_by(*order).execution_options(yield_per=1000)
        )
        async for row in result.mappings():
            yield tuple(row[key.name] for key in keys), dict(row)


async def compare(live: AsyncEngine, rebuilt: AsyncEngine) -> tuple[int, list[Difference]]:
    """Every read model's rows, live against rebuilt, merged by primary key: the rows compared
    and each row that differs (missing, extra, or which columns)."""
    compared, found = 0, []
    live_sessions, rebuilt_sessions = session_factory(live), session_factory(rebuilt)
    for table in READ_MODELS:
        left, right = _rows(live_sessions, table), _rows(rebuilt_sessions, table)
        a, b = await anext(left, None), await anext(right, None)
        while a is not None or b is not None:
            compared += 1
            if b is None or (a is not None and a[0] < b[0]):
                assert a is not None
                found.append(Difference(table.name, a[0], "missing"))
                a = await anext(left, None)
            elif a is None or b[0] < a[0]:
                found.append(Difference(table.name, b[0], "extra"))
                b = await anext(right, None)
            else:
                columns = tuple(name for name in a[1] if a[1][name] != b[1][name])
                if columns:
                    found.append(Difference(table.name, a[0], "changed", columns))
                a, b = await anext(left, None), await anext(right, None)
    return compared, found
