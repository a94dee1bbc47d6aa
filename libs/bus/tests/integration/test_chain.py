"""The audit chain on real PostgreSQL and Kafka: gap-free through the outbox, even with
concurrent and rolled-back transactions, and every alteration, drop or reordering named."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from uuid import UUID, uuid4

import pytest
from aiokafka import AIOKafkaProducer

from tenantflow.bus.chain import ChainVerifier
from tenantflow.bus.clients import connection_kwargs
from tenantflow.bus.db import migrate, transaction
from tenantflow.bus.relay import OutboxRelay, RelaySettings
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.envelope import decode
from tenantflow.contracts.events import GroupRemoved, TenantLinkRequested
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.testing import read_topic

pytestmark = pytest.mark.integration


def requested(tenant: UUID) -> TenantLinkRequested:
    return TenantLinkRequested(
        tenant_id=tenant,
        actor=UserActor(tenant_id=tenant, object_id=uuid4()),
        correlation_id=uuid4(),
    )


class Rollback(Exception):
    pass


async def chained_events(runtime: ServiceRuntime, tenants: list[UUID]) -> int:
    """Events for ``tenants`` in concurrent transactions, several per transaction, one rolled
    back, and a non-audit event among them; how many audit events were committed."""

    async def commit(tenant: UUID, count: int) -> None:
        async with transaction(runtime.sessions) as session:
            await runtime.outbox.add_many(session, [requested(tenant) for _ in range(count)])
            await runtime.outbox.add(
                session,
                GroupRemoved(
                    tenant_id=tenant,
                    actor=requested(tenant).actor,
                    correlation_id=uuid4(),
                    group_id=uuid4(),
                ),
            )

    async def rolled_back(tenant: UUID) -> None:
        async with transaction(runtime.sessions) as session:
            await runtime.outbox.add(session, requested(tenant))
            raise Rollback

    await asyncio.gather(*(commit(t, n % 3 + 1) for n, t in enumerate(tenants * 4)))
    with pytest.raises(Rollback):
        await rolled_back(tenants[0])
    await asyncio.gather(*(commit(t, 2) for t in tenants))
    return sum(n % 3 + 1 for n in range(len(tenants) * 4)) + 2 * len(tenants)


async def test_the_outbox_links_every_audit_event_without_gap_and_the_replay_finds_it_whole(
    runtime: ServiceRuntime,
) -> None:
    await migrate(runtime.engine, runtime.migrations, runtime.schema)
    tenants = [uuid4() for _ in range(3)]
    committed = await chained_events(runtime, tenants)
    relay = OutboxRelay(
        runtime.relay._dsn,
        runtime.schema,
        runtime.kafka,
        client_id="chain-test",
        settings=RelaySettings(standby_check_s=0.1),
    )
    relay.start()
    try:
        records = await read_topic(runtime.kafka, Topic.TENANTS, count=committed)
    finally:
        await relay.stop()
    assert len(records) == committed

    verifier = ChainVerifier(runtime.kafka.topic_prefix)
    verifier.feed(records)
    assert verifier.finish() == []
    places: dict[UUID, list[int]] = defaultdict(list)
    for record in sorted(records, key=lambda r: (r.partition, r.offset)):
        envelope = decode(record.headers, record.value)
        assert envelope.chain is not None
        places[envelope.data.tenant_id].append(envelope.chain.seq)
    for tenant in tenants:  # in publication order, 1, 2, 3, … with nothing missing
        assert places[tenant] == list(range(1, len(places[tenant]) + 1))

    # forged straight onto the topic: an altered copy, a replay of an earlier event
    first, second = sorted(
        (r for r in records if r.key == str(tenants[0]).encode()), key=lambda r: r.offset
    )[:2]
    producer = AIOKafkaProducer(**connection_kwargs(runtime.kafka, "forger"))
    await producer.start()
    try:
        altered = second.value.replace(b'"kind":"user"', b'"kind": "user"')
        forged = await producer.send_and_wait(
            first.topic,
            altered,
            key=second.key,
            headers=list(second.headers),
            partition=second.partition,
        )
        replayed = await producer.send_and_wait(
            first.topic,
            first.value,
            key=first.key,
            headers=list(first.headers),
            partition=first.partition,
        )
    finally:
        await producer.stop()
    tampered = await read_topic(runtime.kafka, Topic.TENANTS, count=committed + 2)
    verifier = ChainVerifier(runtime.kafka.topic_prefix)
    verifier.feed(tampered)
    found = {(b.kind, b.position[2]) for b in verifier.finish()}
    assert ("altered", forged.offset) in found
    assert ("reordered", replayed.offset) in found

    dropped = [r for r in records if r is not second]
    verifier = ChainVerifier(runtime.kafka.topic_prefix)
    verifier.feed(dropped)
    [gap] = verifier.finish()
    assert gap.kind == "gap"
    assert "place 2" in gap.detail
