"""The transactional outbox: an event is stored in the same transaction as the state change."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tenantflow.bus.tables import bus_tables
from tenantflow.contracts.common import EventPayload
from tenantflow.contracts.envelope import Envelope

ADD_MANY = """
    INSERT INTO "{schema}".outbox (event_id, topic, key, headers, value)
    SELECT v.event_id, v.topic, v.key, v.headers, v.value
    FROM unnest(CAST(:event_id AS text[]), CAST(:topic AS text[]), CAST(:key AS bytea[]),
                CAST(:headers AS jsonb[]), CAST(:value AS bytea[]))
         WITH ORDINALITY AS v(event_id, topic, key, headers, value, n)
    ORDER BY v.n"""
"""``{schema}`` is a checked identifier (``bus_tables``); identities follow the events' order."""


class Outbox:
    """Appends events to one service's outbox table; ``OutboxRelay`` publishes them."""

    def __init__(self, schema: str, source: str, topic_prefix: str = "") -> None:
        self.schema = schema
        self.topic_prefix = topic_prefix
        self._table = bus_tables(schema).outbox
        self.source = source

    def envelope(
        self, data: EventPayload, traceparent: str | None = None
    ) -> Envelope[EventPayload]:
        return Envelope(data=data, source=self.source, traceparent=traceparent)

    def _row(self, envelope: Envelope[EventPayload]) -> dict[str, Any]:
        return {
            "event_id": envelope.id,
            "topic": self.topic_prefix + envelope.topic,
            "key": envelope.key,
            "headers": [[name, value.decode()] for name, value in envelope.headers()],
            "value": envelope.value(),
        }

    async def add(
        self, db: AsyncSession | AsyncConnection, event: EventPayload | Envelope[EventPayload]
    ) -> Envelope[EventPayload]:
        """Store ``event`` in the caller's transaction; it is published only if that commits."""
        envelope = event if isinstance(event, Envelope) else self.envelope(event)
        connection = await db.connection() if isinstance(db, AsyncSession) else db
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
        rows = [
            self._row(event if isinstance(event, Envelope) else self.envelope(event))
            for event in events
        ]
        connection = await db.connection() if isinstance(db, AsyncSession) else db
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
