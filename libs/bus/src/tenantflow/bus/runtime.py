"""The pieces every service runs, started and stopped in the right order.

Start: migrate the service's schema, create missing topics, start the outbox relay, start the
broker (which starts the consumers), then the background loops. Stop (SIGTERM): the background
loops first, then the broker, so no new message is taken and the one in hand finishes; then the
relay; then the database pool. Every stop step is bounded and the whole stop ends within
``stop_timeout_s`` (plus a moment per step left when it runs out), whatever Kafka or PostgreSQL
do: a step that hangs is given up, and what it did not finish is redone by the next start
(unacknowledged outbox rows stay unmarked, uncommitted offsets are redelivered to the inbox).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tenantflow.bus.bounded import bounded
from tenantflow.bus.broker import make_broker
from tenantflow.bus.consumer import ConsumerSettings, EventConsumer
from tenantflow.bus.db import asyncpg_dsn, create_engine, migrate, session_factory
from tenantflow.bus.metrics import Metrics
from tenantflow.bus.outbox import Outbox
from tenantflow.bus.relay import OutboxRelay, RelaySettings
from tenantflow.bus.settings import DatabaseSettings, KafkaSettings, ServiceSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.contracts.topics import Topic

log = logging.getLogger(__name__)

MIN_STEP_S = 0.5


@dataclass
class ServiceRuntime:
    service: str
    """The service's name: its client id, CloudEvents source and actor name."""
    schema: str
    migrations: Path
    kafka: KafkaSettings
    database: DatabaseSettings
    relay_settings: RelaySettings = field(default_factory=RelaySettings)
    consumer_settings: ConsumerSettings = field(default_factory=ConsumerSettings)
    create_topics: bool = True
    stop_timeout_s: float = 10.0
    """How long ``stop`` may take in all."""

    def __post_init__(self) -> None:
        self.engine: AsyncEngine = create_engine(self.database)
        self.sessions = session_factory(self.engine)
        self.outbox = Outbox(
            self.schema, source=f"/tenantflow/{self.service}", topic_prefix=self.kafka.topic_prefix
        )
        self.broker = make_broker(self.kafka, client_id=f"tenantflow-{self.service}")
        self.relay = OutboxRelay(
            asyncpg_dsn(self.database),
            self.schema,
            self.kafka,
            client_id=f"tenantflow-{self.service}-relay",
            settings=self.relay_settings,
        )
        self.started = False
        self.consumers: list[EventConsumer] = []
        self.metrics = Metrics(self)
        self._delivery = self.metrics.histogram(
            "tenantflow_event_delivery_seconds",
            "How old an event was when a consumer group started handling it (from when it "
            "was stored in its producer's outbox).",
            ("consumer",),
        )
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._loops: dict[str, Callable[[], Awaitable[None]]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    def on_stop(self, close: Callable[[], Awaitable[None]]) -> None:
        """Run ``close`` when the service stops, after the broker and the relay."""
        self._closers.append(close)

    def in_background(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        """Run ``loop`` (a coroutine that runs until cancelled) while the service runs."""
        self._loops[name] = loop

    async def _guarded(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("%s: background loop %s failed; restarting it", self.service, name)
                await asyncio.sleep(1.0)

    @classmethod
    def for_service(
        cls, service: str, schema: str, migrations: Path, settings: ServiceSettings
    ) -> ServiceRuntime:
        return cls(
            service=service,
            schema=schema,
            migrations=migrations,
            kafka=settings.kafka,
            database=settings.database,
            create_topics=settings.create_topics,
            stop_timeout_s=settings.stop_timeout_seconds,
        )

    def consumer(self, group: str, *topics: Topic) -> EventConsumer:
        """A consumer group of this service, subscribed on the broker."""
        consumer = EventConsumer(
            name=f"{self.service}.{group}",
            topics=topics,
            sessions=self.sessions,
            outbox=self.outbox,
            service=self.service,
            settings=self.consumer_settings,
        )
        consumer.delivered = self._delivery.labels(self.service, consumer.name).observe
        consumer.subscribe(self.broker)
        self.consumers.append(consumer)
        return consumer

    async def start(self) -> None:
        await migrate(self.engine, self.migrations, self.schema)
        if self.create_topics:
            await ensure_topics(self.kafka)
        self.relay.start()
        await self.broker.start()
        self._tasks = [
            asyncio.create_task(self._guarded(name, loop), name=f"{self.service}.{name}")
            for name, loop in self._loops.items()
        ]
        self.started = True
        # what start-up made (modules, classes, the schema's metadata) lives as long as the
        # process: kept out of the collector's full passes, which otherwise walk it all and
        # stop the loop for about 100 ms each in a busy writer
        gc.collect()
        gc.freeze()
        log.info("%s started", self.service)

    async def stop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_timeout_s

        def left() -> float:
            # a step that comes after the time ran out still gets a moment to close cleanly
            return max(deadline - loop.time(), MIN_STEP_S)

        self.started = False
        for task in self._tasks:
            task.cancel()
        await bounded(asyncio.gather(*self._tasks, return_exceptions=True), left(), "loops")
        self._tasks = []
        for consumer in self.consumers:  # what is processed by now is not redelivered
            await bounded(consumer.offsets.commit_pending(), left(), f"{consumer.name}: commit")
        await bounded(self.broker.stop(), left(), f"{self.service}: broker stop")
        for consumer in self.consumers:
            await bounded(consumer.offsets.close(), left(), f"{consumer.name}: close")
        await self.relay.stop(left())
        for close in self._closers:
            await bounded(
                close(), left(), f"{self.service}: {getattr(close, '__qualname__', close)}"
            )
        await bounded(self.engine.dispose(), left(), f"{self.service}: database pool")
        log.info("%s stopped", self.service)

    async def outbox_backlog(self) -> tuple[int, float]:
        """Events stored but not published yet, and the oldest one's age in seconds."""
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        f"SELECT count(*), EXTRACT(EPOCH FROM now() - min(created_at)) "  # noqa: S608
                        f'FROM "{self.schema}".outbox WHERE published_at IS NULL'
                    )
                )
            ).one()
        return int(row[0]), float(row[1] or 0.0)

    async def readiness(self) -> dict[str, Any]:
        """Each dependency's state; ready when every value is true."""

        async def database() -> bool:
            try:
                async with self.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
            except Exception:
                return False
            return True

        db_ok, kafka_ok = await asyncio.gather(database(), self.broker.ping(timeout=2.0))
        return {
            "started": self.started,
            "database": db_ok,
            "kafka": bool(kafka_ok),
            "outbox_relay": self.relay.running,
        }
