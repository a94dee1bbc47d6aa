"""Publishes a service's outbox to Kafka, in commit order, and marks what was published.

- Wakes on the outbox trigger's NOTIFY, so an event leaves within milliseconds of its commit;
  ``idle_check_s`` is only a safety net for a notification lost with a dropped connection.
- One relay per schema is active at a time (a session advisory lock); replicas stand by. That
  keeps rows in id order, and aiokafka's idempotent producer keeps that order per partition.
- Rows go out in outbox id order among those committed. Two transactions writing events for the
  same tenant at once could commit in the other order than their ids; a service that changes a
  tenant's state locks that tenant's row first, which makes id order the commit order per tenant.
- Publish, then mark. A crash in between republishes the rows: a duplicate that consumers'
  inboxes drop, never a loss.
- Stopping is bounded: with the broker gone, the producer's flush never completes, so ``stop``
  gives up after its timeout. What was not acknowledged is not marked, and the next relay sends
  it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from tenantflow.bus.bounded import bounded
from tenantflow.bus.clients import producer_kwargs
from tenantflow.bus.settings import KafkaSettings
from tenantflow.bus.tables import bus_tables

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RelaySettings:
    batch_size: int = 500
    idle_check_s: float = 5.0
    standby_check_s: float = 2.0
    retry_backoff_s: float = 1.0
    retain_published_days: int = 7
    purge_every_s: float = 3600.0
    close_timeout_s: float = 5.0
    """At most this long for the producer's flush and the connection's close when a relay run
    ends: with the broker gone, the flush never completes."""


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: bytes | None
    headers: list[tuple[str, bytes]]
    value: bytes


class OutboxRelay:
    def __init__(
        self,
        dsn: str,
        schema: str,
        kafka: KafkaSettings,
        client_id: str,
        settings: RelaySettings | None = None,
    ) -> None:
        self._dsn = dsn
        self._tables = bus_tables(schema)
        self._kafka = kafka
        self._client_id = client_id
        self.settings = settings or RelaySettings()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.published = 0
        self.in_flight = 0
        """Rows sent and not yet acknowledged."""
        self.is_leader = False
        self.last_error: BaseException | None = None
        # schema is a checked identifier (bus_tables), never user input
        table = f'"{schema}".outbox'
        self._select = (
            f"SELECT id, topic, key, headers, value FROM {table} "  # noqa: S608
            "WHERE published_at IS NULL ORDER BY id LIMIT $1"
        )
        self._mark = f"UPDATE {table} SET published_at = now() WHERE id = ANY($1::bigint[])"  # noqa: S608
        self._purge = f"DELETE FROM {table} WHERE published_at < now() - make_interval(days => $1)"  # noqa: S608

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name=f"outbox-relay-{self._tables.schema}")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def stop(self, within_s: float = 10.0) -> None:
        """Stop relaying, waiting at most ``within_s`` seconds, whatever Kafka does."""
        if self._task is None:
            return
        task, self._task = self._task, None
        task.cancel()
        await bounded(task, within_s, f"outbox relay for {self._tables.schema}: stop")

    async def run(self) -> None:
        """Relay until cancelled, reconnecting to PostgreSQL and Kafka after failures."""
        while True:
            try:
                await self._run_once()
            except Exception as exc:
                self.last_error = exc
                self.is_leader = False
                expected = isinstance(
                    exc, OSError | asyncpg.PostgresError | asyncpg.InterfaceError | KafkaError
                )
                log.log(
                    logging.WARNING if expected else logging.ERROR,
                    "outbox relay for %s failed, retrying: %r",
                    self._tables.schema,
                    exc,
                    exc_info=not expected,
                )
                await asyncio.sleep(self.settings.retry_backoff_s)

    async def _run_once(self) -> None:
        connection: asyncpg.Connection = await asyncpg.connect(self._dsn)
        producer = AIOKafkaProducer(**producer_kwargs(self._kafka, self._client_id))
        try:
            await connection.add_listener(self._tables.notify_channel, self._notified)
            await self._become_leader(connection)
            await producer.start()
            await self._relay(connection, producer)
        finally:
            self.is_leader = False
            self.in_flight = 0
            limit, where = self.settings.close_timeout_s, f"outbox relay for {self._tables.schema}"
            if not await bounded(producer.stop(), limit, f"{where}: flush"):
                await bounded(_discard(producer), limit, f"{where}: discarding the producer")
            await bounded(connection.close(), limit, f"{where}: close")

    def _notified(self, *_: Any) -> None:
        self._wake.set()

    async def _become_leader(self, connection: asyncpg.Connection) -> None:
        key = f"outbox-relay:{self._tables.schema}"
        while not await connection.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", key):
            self._wake.clear()  # a standby retries on the next commit or after standby_check_s
            await self._wait(self.settings.standby_check_s)
        self.is_leader = True

    async def _wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _relay(self, connection: asyncpg.Connection, producer: AIOKafkaProducer) -> None:
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        while True:
            self._wake.clear()
            while await self.relay_batch(connection, producer) == self.settings.batch_size:
                pass
            if loop.time() >= next_purge:
                await connection.execute(self._purge, self.settings.retain_published_days)
                next_purge = loop.time() + self.settings.purge_every_s
            await self._wait(self.settings.idle_check_s)

    async def relay_batch(self, connection: asyncpg.Connection, producer: AIOKafkaProducer) -> int:
        rows = await self._fetch(connection)
        if not rows:
            return 0
        await self.publish(producer, rows)
        await self.mark_published(connection, [row.id for row in rows])
        self.published += len(rows)
        return len(rows)

    async def _fetch(self, connection: asyncpg.Connection) -> list[OutboxRow]:
        records = await connection.fetch(self._select, self.settings.batch_size)
        return [
            OutboxRow(
                id=record["id"],
                topic=record["topic"],
                key=record["key"],
                headers=[(name, value.encode()) for name, value in _json(record["headers"])],
                value=record["value"],
            )
            for record in records
        ]

    async def publish(self, producer: AIOKafkaProducer, rows: Sequence[OutboxRow]) -> None:
        """Send every row, then wait for every acknowledgement. Sends are queued in id order;
        aiokafka keeps one request in flight per partition, so each partition keeps it."""
        self.in_flight = len(rows)
        deliveries = [
            await producer.send(row.topic, value=row.value, key=row.key, headers=row.headers)
            for row in rows
        ]
        await asyncio.gather(*deliveries)
        self.in_flight = 0

    async def mark_published(self, connection: asyncpg.Connection, ids: list[int]) -> None:
        await connection.execute(self._mark, ids)


async def _discard(producer: AIOKafkaProducer) -> None:
    """End a producer whose flush cannot complete (the broker is gone), so its tasks do not
    outlive it. aiokafka has no abort: these are its internals, looked up defensively, so a
    change there leaves the tasks behind rather than failing the stop."""
    sender = getattr(producer, "_sender", None)
    if sender is not None and hasattr(sender, "close"):
        await sender.close()
    client = getattr(producer, "client", None)
    if client is not None:
        await client.close()


def _json(value: Any) -> Any:
    """asyncpg hands jsonb over as text unless a codec is registered."""
    return json.loads(value) if isinstance(value, str) else value
