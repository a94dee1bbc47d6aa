"""The transactional outbox: an event is stored in the same transaction as the state change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from tenantflow.bus.tables import bus_tables
from tenantflow.contracts.common import EventPayload
from tenantflow.contracts.envelope import Envelope


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
        self, db: AsyncSession | AsyncConnection, events: Sequence[EventPayload]
    ) -> None:
        """Store ``events``, in order, in the caller's transaction, as one executemany (which
        SQLAlchemy sends as a few multi-row INSERTs of one cached statement): a sync that
        changes thousands of groups pays neither a round trip nor a compilation per event."""
        if not events:
            return
        connection = await db.connection() if isinstance(db, AsyncSession) else db
        await connection.execute(
            insert(self._table), [self._row(self.envelope(event)) for event in events]
        )
