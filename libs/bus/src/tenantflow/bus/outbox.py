"""The transactional outbox: an event is stored in the same transaction as the state change.

An event on an audit topic is also linked into this service's audit chain for its tenant
(``contracts.chain``): the chain's head row is locked, the event gets the next place and the
hash after the head, and the head moves on, all in the caller's transaction. So a chain has no
gap and no fork whatever crashes when (a rolled-back transaction leaves no link behind), and
links follow commit order, which is outbox order, which is publication order. Heads are locked
in tenant order, so two transactions never wait on each other's chains in a cycle.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tenantflow.bus import tracing
from tenantflow.bus.tables import bus_tables
from tenantflow.contracts.chain import GENESIS
from tenantflow.contracts.common import EventPayload
from tenantflow.contracts.envelope import Envelope
from tenantflow.contracts.topics import TOPIC_CONFIGS

ADD_MANY = """
    INSERT INTO "{schema}".outbox (event_id, topic, key, headers, value)
    SELECT v.event_id, v.topic, v.key, v.headers, v.value
    FROM unnest(CAST(:event_id AS text[]), CAST(:topic AS text[]), CAST(:key AS bytea[]),
                CAST(:headers AS jsonb[]), CAST(:value AS bytea[]))
         WITH ORDINALITY AS v(event_id, topic, key, headers, value, n)
    ORDER BY v.n"""
"""``{schema}`` is a checked identifier (``bus_tables``); identities follow the events' order."""


CHAIN_START = """
    INSERT INTO "{schema}".audit_chain (tenant_id, seq, head)
    SELECT t, 0, :genesis FROM unnest(CAST(:tenants AS uuid[])) AS t ORDER BY t
    ON CONFLICT (tenant_id) DO NOTHING"""

CHAIN_LOCK = """
    SELECT tenant_id, seq, head FROM "{schema}".audit_chain
    WHERE tenant_id = ANY(CAST(:tenants AS uuid[]))
    ORDER BY tenant_id FOR UPDATE"""

CHAIN_ADVANCE = """
    UPDATE "{schema}".audit_chain c SET seq = v.seq, head = v.head
    FROM unnest(CAST(:tenants AS uuid[]), CAST(:seqs AS bigint[]), CAST(:heads AS text[]))
         AS v(tenant_id, seq, head)
    WHERE c.tenant_id = v.tenant_id"""


class Outbox:
    """Appends events to one service's outbox table; ``OutboxRelay`` publishes them."""

    def __init__(self, schema: str, source: str, topic_prefix: str = "") -> None:
        self.schema = schema
        self.topic_prefix = topic_prefix
        self._table = bus_tables(schema).outbox
        self.source = source

    def envelope(
        self,
        data: EventPayload,
        traceparent: str | None = None,
        at: datetime | None = None,
        tracestate: str | None = None,
    ) -> Envelope[EventPayload]:
        """``data`` as this service publishes it; dated ``at`` (now when not given): a service
        that records the moment of a decision in its rows dates the event the same. Its trace
        context is ``traceparent`` and ``tracestate``, else the current span's (bus.tracing)."""
        if traceparent is None:
            traceparent, tracestate = tracing.current()
        if at is None:
            return Envelope(
                data=data, source=self.source, traceparent=traceparent, tracestate=tracestate
            )
        return Envelope(
            data=data, source=self.source, traceparent=traceparent, tracestate=tracestate, time=at
        )

    def _row(self, envelope: Envelope[EventPayload]) -> dict[str, Any]:
        return {
            "event_id": envelope.id,
            "topic": self.topic_prefix + envelope.topic,
            "key": envelope.key,
            "headers": [[name, value.decode()] for name, value in envelope.headers()],
            "value": envelope.value(),
        }

    async def add(
        self,
        db: AsyncSession | AsyncConnection,
        event: EventPayload | Envelope[EventPayload],
        at: datetime | None = None,
    ) -> Envelope[EventPayload]:
        """Store ``event`` in the caller's transaction; it is published only if that commits.
        ``at`` dates a payload's envelope (see ``envelope``)."""
        envelope = event if isinstance(event, Envelope) else self.envelope(event, at=at)
        connection = await db.connection() if isinstance(db, AsyncSession) else db
        [envelope] = await self._chained(connection, [envelope])
        await connection.execute(insert(self._table).values(self._row(envelope)))
        return envelope

    async def add_many(
        self,
        db: AsyncSession | AsyncConnection,
        events: Sequence[EventPayload | Envelope[EventPayload]],
    ) -> None:
        """Store ``events``, in order, in the caller's transaction with one statement whose
        values travel as arrays: a sync that changes thousands of groups pays neither a round
        trip nor a compilation per event."""
        if not events:
            return
        envelopes = [
            event if isinstance(event, Envelope) else self.envelope(event) for event in events
        ]
        connection = await db.connection() if isinstance(db, AsyncSession) else db
        rows = [self._row(envelope) for envelope in await self._chained(connection, envelopes)]
        await connection.execute(
            text(ADD_MANY.format(schema=self.schema)),
            {
                "event_id": [row["event_id"] for row in rows],
                "topic": [row["topic"] for row in rows],
                "key": [row["key"] for row in rows],
                "headers": [json.dumps(row["headers"]) for row in rows],
                "value": [row["value"] for row in rows],
            },
        )

    async def _chained(
        self, connection: AsyncConnection, envelopes: list[Envelope[EventPayload]]
    ) -> list[Envelope[EventPayload]]:
        """``envelopes`` with the audit ones linked into their tenants' chains, in order."""
        audit = [n for n, e in enumerate(envelopes) if TOPIC_CONFIGS[e.data.topic].audit]
        if not audit:
            return envelopes
        tenants = sorted({envelopes[n].data.tenant_id for n in audit})
        await connection.execute(
            text(CHAIN_START.format(schema=self.schema)), {"tenants": tenants, "genesis": GENESIS}
        )
        locked = await connection.execute(
            text(CHAIN_LOCK.format(schema=self.schema)), {"tenants": tenants}
        )
        heads = {row.tenant_id: (int(row.seq), str(row.head)) for row in locked}
        linked = list(envelopes)
        for n in audit:
            tenant = linked[n].data.tenant_id
            seq, head = heads[tenant]
            linked[n] = linked[n].chained(head, seq + 1)
            heads[tenant] = (seq + 1, linked[n].chain.hash)  # type: ignore[union-attr]
        await connection.execute(
            text(CHAIN_ADVANCE.format(schema=self.schema)),
            {
                "tenants": tenants,
                "seqs": [heads[t][0] for t in tenants],
                "heads": [heads[t][1] for t in tenants],
            },
        )
        return linked
