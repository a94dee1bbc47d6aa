"""The relay on real PostgreSQL and Kafka: one leader per schema, order per key, fail-over."""

from __future__ import annotations

from collections import defaultdict
from uuid import UUID, uuid4

import pytest

from tenantflow.bus.db import migrate, transaction
from tenantflow.bus.relay import OutboxRelay, RelaySettings
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.events import TenantLinkRequested
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.testing import eventually, read_topic

pytestmark = pytest.mark.integration


def relay(runtime: ServiceRuntime, name: str) -> OutboxRelay:
    return OutboxRelay(
        runtime.relay._dsn,
        runtime.schema,
        runtime.kafka,
        client_id=name,
        settings=RelaySettings(standby_check_s=0.1, batch_size=7),
    )


async def commit_events(runtime: ServiceRuntime, tenants: list[UUID], count: int) -> list[str]:
    ids = []
    for index in range(count):
        tenant = tenants[index % len(tenants)]
        event = TenantLinkRequested(
            tenant_id=tenant,
            actor=UserActor(tenant_id=tenant, object_id=uuid4()),
            correlation_id=uuid4(),
        )
        async with transaction(runtime.sessions) as session:
            ids.append((await runtime.outbox.add(session, event)).id)
    return ids


async def test_one_leader_publishes_each_event_once_in_order_per_tenant(
    runtime: ServiceRuntime,
) -> None:
    await migrate(runtime.engine, runtime.migrations, runtime.schema)
    relays = [relay(runtime, "relay-a"), relay(runtime, "relay-b")]
    for each in relays:
        each.start()
    try:
        await eventually(lambda: any(r.is_leader for r in relays), what="a leader")
        tenants = [uuid4() for _ in range(5)]
        committed = await commit_events(runtime, tenants, 60)

        records = await read_topic(runtime.kafka, Topic.TENANTS, count=60)
        # a batch is on the topic a moment before the relay has marked and counted it
        await eventually(lambda: sum(r.published for r in relays) == 60, what="all counted")
        assert sum(r.is_leader for r in relays) == 1
        assert sum(r.published for r in relays) == 60
        assert len(records) == 60  # nothing twice without a crash

        by_tenant: dict[bytes, list[str]] = defaultdict(list)
        for record in sorted(records, key=lambda r: (r.partition, r.offset)):
            by_tenant[record.key].append(dict(record.headers)["ce_id"].decode())
        for index, tenant in enumerate(tenants):
            assert by_tenant[str(tenant).encode()] == committed[index::5]
    finally:
        for each in relays:
            await each.stop()


async def test_the_standby_takes_over_when_the_leader_stops(runtime: ServiceRuntime) -> None:
    await migrate(runtime.engine, runtime.migrations, runtime.schema)
    first, second = relay(runtime, "relay-a"), relay(runtime, "relay-b")
    first.start()
    await eventually(lambda: first.is_leader, what="first relay leads")
    second.start()
    try:
        tenants = [uuid4()]
        await commit_events(runtime, tenants, 3)
        await eventually(lambda: first.published == 3, what="leader published")
        assert not second.is_leader

        await first.stop()
        await eventually(lambda: second.is_leader, what="standby took over")
        await commit_events(runtime, tenants, 2)
        await eventually(lambda: second.published == 2, what="new leader published")
        assert len(await read_topic(runtime.kafka, Topic.TENANTS, count=5)) == 5
    finally:
        await first.stop()
        await second.stop()
