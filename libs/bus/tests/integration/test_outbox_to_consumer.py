"""The bus on a real Kafka broker and a real PostgreSQL: outbox, relay, inbox, dead letters."""

from __future__ import annotations

import asyncio
import base64
from uuid import UUID, uuid4

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from sqlalchemy import func, select

from tenantflow.bus.clients import connection_kwargs
from tenantflow.bus.consumer import ConsumerSettings, HandlerContext, Outcome
from tenantflow.bus.db import migrate, transaction
from tenantflow.bus.errors import PermanentError, TransientError
from tenantflow.bus.relay import OutboxRelay
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.bus.tables import bus_tables
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.envelope import Envelope, decode
from tenantflow.contracts.events import DeadLettered, TenantLinkRequested, TenantLinkVerified
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.testing import eventually, publish, read_topic

pytestmark = pytest.mark.integration


def link_requested(tenant: UUID | None = None) -> TenantLinkRequested:
    tenant = tenant or uuid4()
    return TenantLinkRequested(
        tenant_id=tenant,
        actor=UserActor(tenant_id=tenant, object_id=uuid4()),
        correlation_id=uuid4(),
    )


TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def record_in_outbox(
    runtime: ServiceRuntime, event: TenantLinkRequested, traceparent: str | None = None
) -> str:
    async with transaction(runtime.sessions) as session:
        envelope = await runtime.outbox.add(session, runtime.outbox.envelope(event, traceparent))
    return envelope.id


async def unpublished(runtime: ServiceRuntime) -> int:
    outbox = bus_tables(runtime.schema).outbox
    async with runtime.engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(outbox).where(outbox.c.published_at.is_(None))
        )
    return int(count or 0)


async def test_outbox_relay_kafka_consumer_inbox(runtime: ServiceRuntime) -> None:
    handled: list[str] = []
    consumer = runtime.consumer("links", Topic.TENANTS)

    @consumer.handles(TenantLinkRequested)
    async def verify(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        handled.append(ctx.event_id)
        await ctx.emit(
            TenantLinkVerified(
                tenant_id=event.tenant_id,
                actor=event.actor,
                correlation_id=event.correlation_id,
                display_name="Contoso",
                default_domain="contoso.onmicrosoft.com",
                granted_permissions=["Directory.Read.All"],
                authorized_by="global_administrator",
            )
        )

    await runtime.start()
    event = link_requested()
    event_id = await record_in_outbox(runtime, event, traceparent=TRACEPARENT)

    await eventually(lambda: handled == [event_id], what="the consumer handled the event")
    records = await read_topic(runtime.kafka, Topic.TENANTS, count=2)
    follow_up = decode(records[-1].headers, records[-1].value)
    assert isinstance(follow_up.data, TenantLinkVerified)
    assert follow_up.data.causation_id == event_id
    assert follow_up.data.correlation_id == event.correlation_id
    assert follow_up.traceparent == TRACEPARENT
    assert records[0].key == str(event.tenant_id).encode()
    assert records[0].partition == records[-1].partition  # keyed by tenant: one partition
    await eventually(lambda: consumer.stats[Outcome.IGNORED] == 1, what="follow-up skipped")

    async def all_marked() -> bool:
        return await unpublished(runtime) == 0

    await eventually(all_marked, what="outbox rows marked published")


class _KilledAfterPublish(OutboxRelay):
    """A relay whose process dies after Kafka acknowledged the batch, before marking it."""

    published_batch = asyncio.Event()

    async def mark_published(self, connection: object, ids: list[int]) -> None:  # type: ignore[override]
        self.published_batch.set()
        await asyncio.Event().wait()  # never returns: the task is killed here


async def test_relay_killed_between_publish_and_mark_duplicates_and_inbox_drops(
    runtime: ServiceRuntime,
) -> None:
    await migrate(runtime.engine, runtime.migrations, runtime.schema)
    doomed = _KilledAfterPublish(
        runtime.relay._dsn, runtime.schema, runtime.kafka, client_id="doomed-relay"
    )
    doomed.published_batch = asyncio.Event()
    doomed.start()
    event_id = await record_in_outbox(runtime, link_requested())
    await asyncio.wait_for(doomed.published_batch.wait(), 20)
    await doomed.stop()  # killed: the row stays unpublished
    assert await unpublished(runtime) == 1

    handled: list[str] = []
    consumer = runtime.consumer("links", Topic.TENANTS)

    @consumer.handles(TenantLinkRequested)
    async def verify(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        handled.append(ctx.event_id)

    await runtime.start()  # a fresh relay republishes the row

    records = await read_topic(runtime.kafka, Topic.TENANTS, count=2)
    assert [dict(r.headers)["ce_id"].decode() for r in records] == [event_id, event_id]
    await eventually(lambda: consumer.stats[Outcome.DUPLICATE] == 1, what="duplicate dropped")
    assert handled == [event_id]
    assert await unpublished(runtime) == 0


async def committed_offset(runtime: ServiceRuntime, group: str, topic: str) -> dict[int, int]:
    admin = AIOKafkaAdminClient(**connection_kwargs(runtime.kafka, "test-admin"))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {
        tp.partition: meta.offset
        for tp, meta in offsets.items()
        if isinstance(tp, TopicPartition)
        and tp.topic == runtime.kafka.topic_prefix + topic
        and meta.offset >= 0
    }


async def test_a_failing_handler_gets_the_message_again_and_the_offset_waits(
    runtime: ServiceRuntime,
) -> None:
    attempts: list[str] = []
    healthy = asyncio.Event()
    consumer = runtime.consumer("links", Topic.TENANTS)

    @consumer.handles(TenantLinkRequested)
    async def verify(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        attempts.append(ctx.event_id)
        if not healthy.is_set():
            raise TransientError("Graph answered 503")

    await runtime.start()
    event_id = await record_in_outbox(runtime, link_requested())
    await eventually(lambda: len(attempts) >= 3, what="redelivered while failing")
    [record] = await read_topic(runtime.kafka, Topic.TENANTS, count=1)
    committed = await committed_offset(runtime, consumer.name, Topic.TENANTS)
    assert committed.get(record.partition, 0) <= record.offset  # not past the failing message

    healthy.set()
    await eventually(lambda: consumer.stats[Outcome.HANDLED] == 1, what="handled once healthy")
    assert set(attempts) == {event_id}

    async def offset_committed() -> bool:
        offsets = await committed_offset(runtime, consumer.name, Topic.TENANTS)
        return offsets.get(record.partition) == record.offset + 1

    await eventually(offset_committed, what="offset committed after success")
    assert consumer.stats[Outcome.DEAD_LETTERED] == 0


async def test_a_buggy_handler_is_retried_then_dead_lettered(runtime: ServiceRuntime) -> None:
    calls: list[str] = []
    consumer = runtime.consumer("links", Topic.TENANTS)

    @consumer.handles(TenantLinkRequested)
    async def verify(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        calls.append(ctx.event_id)
        raise KeyError("a bug")

    await runtime.start()
    event_id = await record_in_outbox(runtime, link_requested())
    letters = await read_topic(runtime.kafka, Topic.DEAD_LETTER, count=1)
    letter = decode(letters[0].headers, letters[0].value)
    assert isinstance(letter.data, DeadLettered)
    assert calls == [event_id] * runtime.consumer_settings.max_attempts
    assert letter.data.attempts == runtime.consumer_settings.max_attempts
    assert letter.data.error_type == "KeyError"
    assert letter.data.causation_id == event_id


async def test_poison_message_is_dead_lettered_and_the_partition_keeps_flowing(
    runtime: ServiceRuntime,
) -> None:
    handled: list[UUID] = []
    consumer = runtime.consumer("links", Topic.TENANTS)

    @consumer.handles(TenantLinkRequested)
    async def verify(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        handled.append(event.tenant_id)

    await runtime.start()
    tenant = uuid4()
    good = link_requested(tenant)
    poison_headers = [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"poison-1"),
        ("ce_source", b"/somewhere"),
        ("ce_type", TenantLinkRequested.event_type.encode()),
        ("ce_time", b"2026-11-22T10:00:00Z"),
        ("ce_subject", str(tenant).encode()),
        ("content-type", b"application/json"),
    ]
    producer = AIOKafkaProducer(**connection_kwargs(runtime.kafka, "poisoner"))
    await producer.start()
    try:
        await producer.send_and_wait(
            runtime.kafka.topic_prefix + Topic.TENANTS,
            value=b"{not json",
            key=str(tenant).encode(),
            headers=poison_headers,
        )
    finally:
        await producer.stop()
    await record_in_outbox(runtime, good)  # same tenant: same partition, behind the poison

    await eventually(lambda: handled == [tenant], what="the next message was processed")
    letters = await read_topic(runtime.kafka, Topic.DEAD_LETTER, count=1)
    letter = decode(letters[0].headers, letters[0].value)
    assert isinstance(letter.data, DeadLettered)
    assert letter.data.consumer == "bus-test.links"
    assert letter.data.error_type == "undecodable"
    assert "does not match" in letter.data.error
    assert letter.data.tenant_id == tenant
    assert letter.data.causation_id == "poison-1"
    assert [(h.name, h.value.encode()) for h in letter.data.original_headers] == poison_headers
    assert base64.b64decode(letter.data.original_value_base64) == b"{not json"
    assert letters[0].key == str(tenant).encode()
    assert consumer.stats[Outcome.DEAD_LETTERED] == 1


async def test_the_relay_producer_is_idempotent_on_the_broker(
    runtime: ServiceRuntime, infra
) -> None:  # type: ignore[no-untyped-def]
    await runtime.start()
    await record_in_outbox(runtime, link_requested())
    records = await read_topic(runtime.kafka, Topic.TENANTS, count=1)
    topic = runtime.kafka.topic_prefix + Topic.TENANTS

    described = await asyncio.to_thread(infra.describe_producers, topic, records[0].partition)
    rows = [line.split() for line in described.splitlines()[1:] if line.strip()]
    assert len(rows) == 1, described  # the broker tracks one idempotent producer id ...
    producer_id, _epoch, _coordinator_epoch, last_sequence = rows[0][:4]
    assert int(producer_id) >= 0
    assert int(last_sequence) == 0  # ... with the sequence number of the one record it sent


async def test_a_non_idempotent_producer_leaves_no_producer_state(
    runtime: ServiceRuntime, infra
) -> None:  # type: ignore[no-untyped-def]
    """The control for the test above: the broker's view really tells the two apart."""
    topic = runtime.kafka.topic_prefix + Topic.TENANTS
    producer = AIOKafkaProducer(**connection_kwargs(runtime.kafka, "plain"), acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=b"{}", key=b"k", partition=0)
    finally:
        await producer.stop()
    described = await asyncio.to_thread(infra.describe_producers, topic, 0)
    assert [line for line in described.splitlines()[1:] if line.strip()] == []


async def test_an_unsupported_version_of_a_handled_type_is_dead_lettered(
    runtime: ServiceRuntime,
) -> None:
    consumer = runtime.consumer("links", Topic.TENANTS)

    @consumer.handles(TenantLinkRequested)
    async def verify(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        raise AssertionError("a v2 event must not reach the v1 handler")

    await runtime.start()
    event = Envelope(data=link_requested(), source="/tenantflow/future-portal")
    headers = [(n, b"2" if n == "ce_schemaversion" else v) for n, v in event.headers()]
    producer = AIOKafkaProducer(**connection_kwargs(runtime.kafka, "future-producer"))
    await producer.start()
    try:
        await producer.send_and_wait(
            runtime.kafka.topic_prefix + event.topic, event.value(), key=event.key, headers=headers
        )
    finally:
        await producer.stop()

    letters = await read_topic(runtime.kafka, Topic.DEAD_LETTER, count=1)
    letter = decode(letters[0].headers, letters[0].value)
    assert isinstance(letter.data, DeadLettered)
    assert letter.data.error_type == "unsupported_version"
    assert letter.data.correlation_id == event.data.correlation_id


async def test_events_added_together_are_published_in_order_whole(
    runtime: ServiceRuntime,
) -> None:
    tenant = uuid4()
    events = [link_requested(tenant) for _ in range(250)]
    await runtime.start()
    async with transaction(runtime.sessions) as session:
        await runtime.outbox.add_many(session, events)
    records = await read_topic(runtime.kafka, Topic.TENANTS, count=len(events))
    decoded = [decode(record.headers, record.value) for record in records]
    assert [envelope.data for envelope in decoded] == events
    assert {record.key for record in records} == {str(tenant).encode()}
    assert all(envelope.source == runtime.outbox.source for envelope in decoded)


async def test_a_polls_records_are_handled_together_and_a_poison_one_alone_is_dead_lettered(
    runtime: ServiceRuntime,
) -> None:
    tenant = uuid4()
    events = [link_requested(tenant) for _ in range(300)]  # one tenant: one partition, in order
    poison = events[150].correlation_id
    seen: list[UUID] = []
    runtime.consumer_settings = ConsumerSettings(max_records=100)
    consumer = runtime.consumer("links", Topic.TENANTS)

    @consumer.handles(TenantLinkRequested)
    async def verify(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        seen.append(event.correlation_id)
        if event.correlation_id == poison:
            raise PermanentError("this one can never be handled")
        await ctx.emit(
            TenantLinkVerified(
                tenant_id=event.tenant_id,
                actor=event.actor,
                correlation_id=event.correlation_id,
                display_name="Contoso",
                default_domain="contoso.onmicrosoft.com",
                granted_permissions=["Directory.Read.All"],
                authorized_by="global_administrator",
            )
        )

    await publish(runtime.kafka, *events)  # all there before the first poll
    await runtime.start()
    await eventually(
        lambda: consumer.stats[Outcome.HANDLED] == len(events) - 1, what="all but the poison"
    )
    letters = await read_topic(runtime.kafka, Topic.DEAD_LETTER, count=1)
    assert [decode(r.headers, r.value).data.correlation_id for r in letters] == [poison]
    follow_ups = await read_topic(runtime.kafka, Topic.TENANTS, count=2 * len(events) - 1)
    verified = [
        decode(r.headers, r.value).data
        for r in follow_ups
        if decode(r.headers, r.value).data.event_type == TenantLinkVerified.event_type
    ]
    # each handled exactly once in effect, in order: what a rolled-back poll did is gone
    assert [v.correlation_id for v in verified] == [
        e.correlation_id for e in events if e.correlation_id != poison
    ]
    assert consumer.stats[Outcome.DEAD_LETTERED] == 1
    # polls without the poison went in one transaction each; only the poisoned one (at most
    # 100 records) was handled again, one by one
    assert consumer.polls_together >= 1
    assert len(seen) <= len(events) + 100
