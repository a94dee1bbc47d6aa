"""Stopping is bounded whatever Kafka does: the broker is killed while the relay sends, and the
relay and the whole runtime still stop in time, losing nothing the outbox had not marked."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tenantflow.bus.db import transaction
from tenantflow.bus.relay import RelaySettings
from tenantflow.bus.runtime import MIN_STEP_S, ServiceRuntime
from tenantflow.bus.settings import DatabaseSettings, KafkaSettings
from tenantflow.contracts.common import ServiceActor
from tenantflow.contracts.events import TenantUnlinked
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.kafka import KafkaBroker
from tenantflow.devinfra.testing import eventually

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).parent / "migrations"
STOP_TIMEOUT_S = 3.0


@pytest.fixture
def doomed_kafka(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of this test's own, to kill."""
    broker = KafkaBroker(tmp_path / "kafka", bound_to_parent=True)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def add_events(runtime: ServiceRuntime, count: int) -> None:
    for _ in range(count):
        async with transaction(runtime.sessions) as session:
            await runtime.outbox.add(
                session,
                TenantUnlinked(
                    tenant_id=uuid4(), actor=ServiceActor(service="test"), correlation_id=uuid4()
                ),
            )


async def test_kafka_killed_mid_send_cannot_hold_up_a_stop(
    doomed_kafka: KafkaBroker, database_settings: DatabaseSettings
) -> None:
    runtime = ServiceRuntime(
        service="doomed",
        schema=f"t_{uuid4().hex[:10]}",
        migrations=MIGRATIONS,
        kafka=KafkaSettings(bootstrap_servers=doomed_kafka.bootstrap_servers),
        database=database_settings,
        relay_settings=RelaySettings(retry_backoff_s=0.1, close_timeout_s=1.0),
        stop_timeout_s=STOP_TIMEOUT_S,
    )
    consumer = runtime.consumer("readers", Topic.TENANTS)

    @consumer.handles(TenantUnlinked)
    async def read(event: TenantUnlinked, ctx: object) -> None:
        """Only here so the broker has a consumer group to stop."""

    await runtime.start()
    await add_events(runtime, 1)
    await eventually(lambda: runtime.relay.published == 1, what="the first event published")

    doomed_kafka.kill()
    await add_events(runtime, 3)
    await eventually(lambda: runtime.relay.in_flight > 0, what="a send to the dead broker")

    loop = asyncio.get_running_loop()
    started = loop.time()
    steps = 6 + len(runtime.consumers) * 2  # each may get MIN_STEP_S after the deadline
    await asyncio.wait_for(runtime.stop(), STOP_TIMEOUT_S + steps * MIN_STEP_S + 5)
    took = loop.time() - started

    assert took <= STOP_TIMEOUT_S + steps * MIN_STEP_S
    engine = create_async_engine(database_settings.url.get_secret_value())
    try:
        async with engine.connect() as db:
            unmarked = await db.scalar(
                text(f'SELECT count(*) FROM "{runtime.schema}".outbox WHERE published_at IS NULL')
            )
    finally:
        await engine.dispose()
    assert unmarked == 3  # kept for the next relay: nothing lost
    # the relay's producer, given up on, leaves no task behind to retry the dead broker
    assert [
        task for task in asyncio.all_tasks() if _client_of(task) == "tenantflow-doomed-relay"
    ] == []


def _client_of(task: asyncio.Task[object]) -> str | None:
    """The Kafka client id of an aiokafka task's object (a client, or a sender with a client)."""
    frame = getattr(task.get_coro(), "cr_frame", None)
    owner = frame.f_locals.get("self") if frame is not None else None
    client = owner if hasattr(owner, "_client_id") else getattr(owner, "client", None)
    return getattr(client, "_client_id", None)
