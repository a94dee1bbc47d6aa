"""The partition reader on real Kafka: to the end offsets of when it began, from a time, one
tenant's partition only, and nothing left behind for any consumer group."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from uuid import UUID, uuid4

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from tenantflow.bus.clients import connection_kwargs
from tenantflow.bus.reader import PartitionReader, partition_of
from tenantflow.bus.settings import KafkaSettings
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.envelope import decode
from tenantflow.contracts.events import DeploymentChangeRequested, TenantLinkRequested
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.testing import publish

pytestmark = pytest.mark.integration


def requested(tenant: UUID) -> TenantLinkRequested:
    return TenantLinkRequested(
        tenant_id=tenant,
        actor=UserActor(tenant_id=tenant, object_id=uuid4()),
        correlation_id=uuid4(),
    )


async def read(reader: PartitionReader, since: datetime | None = None) -> list[str]:
    return [decode(r.headers, r.value).id async for batch in reader.batches(since) for r in batch]


async def test_it_reads_to_the_end_it_found_from_the_beginning_or_a_time(
    kafka_settings: KafkaSettings,
) -> None:
    tenants = [uuid4() for _ in range(8)]
    early = await publish(kafka_settings, *(requested(t) for t in tenants))
    middle = datetime.now(UTC)
    late = await publish(kafka_settings, *(requested(t) for t in tenants))
    reader = PartitionReader(kafka_settings, [Topic.TENANTS])

    assert sorted(await read(reader)) == sorted(early + late)
    assert sorted(await read(reader, since=middle)) == sorted(late)
    assert await read(reader, since=datetime.now(UTC) + timedelta(hours=1)) == []

    records = reader.records()
    first = await anext(records)
    more = await publish(kafka_settings, requested(tenants[0]))  # after the read began
    rest = [decode(r.headers, r.value).id async for r in records]
    assert more[0] not in rest
    assert len(rest) + 1 == len(early + late)
    assert first is not None


async def test_one_tenants_partition_holds_all_its_events_and_none_of_the_read_commits(
    kafka_settings: KafkaSettings,
) -> None:
    ours, others = uuid4(), [uuid4() for _ in range(20)]
    mine = await publish(kafka_settings, *(requested(ours) for _ in range(5)))
    await publish(kafka_settings, *(requested(t) for t in others))
    partition = partition_of(Topic.TENANTS, ours)
    reader = PartitionReader(kafka_settings, [Topic.TENANTS], only={Topic.TENANTS: [partition]})

    groups_before = await consumer_groups(kafka_settings)
    records = [r async for batch in reader.batches() for r in batch]
    assert await consumer_groups(kafka_settings) == groups_before  # no group joined, none made
    assert {r.partition for r in records} == {partition}
    ids = [decode(r.headers, r.value).id for r in records]
    assert [i for i in ids if i in mine] == mine  # all of ours, in order
    elsewhere = [t for t in others if partition_of(Topic.TENANTS, t) != partition]
    assert elsewhere  # twenty tenants over six partitions: some are on others
    tenants = {decode(r.headers, r.value).data.tenant_id for r in records}
    assert not tenants & set(elsewhere)


async def test_in_time_order_merges_the_partitions_by_timestamp_keeping_each_ones_order(
    kafka_settings: KafkaSettings,
) -> None:
    tenants = [uuid4() for _ in range(12)]
    ours: list[str] = []
    for round_ in range(3):  # one at a time: each later than the one before
        for tenant in tenants:
            event = requested(tenant) if round_ != 1 else applied(tenant)
            ours += await publish(kafka_settings, event)
    # small fetches: a partition is read in many, the others wait paused meanwhile
    reader = PartitionReader(
        kafka_settings, [Topic.TENANTS, Topic.DEPLOYMENTS], max_partition_fetch_bytes=2048
    )
    records = [r async for run in reader.in_time_order() for r in run]

    assert len(records) == reader.planned
    everything = [r async for batch in reader.batches() for r in batch]
    assert sorted((r.topic, r.partition, r.offset) for r in records) == sorted(
        (r.topic, r.partition, r.offset) for r in everything
    )
    last: dict[tuple[str, int], int] = {}
    for record in records:  # each partition in offset order
        assert record.offset > last.get((record.topic, record.partition), -1)
        last[(record.topic, record.partition)] = record.offset
    ids = [decode(r.headers, r.value).id for r in records]
    found = [ids.index(event_id) for event_id in ours]
    for before, after in pairwise(found):
        if records[before].timestamp < records[after].timestamp:  # later, wherever it went
            assert before < after


def applied(tenant: UUID) -> DeploymentChangeRequested:
    return DeploymentChangeRequested.model_validate(
        {
            "tenant_id": str(tenant),
            "actor": {"kind": "user", "tenant_id": str(tenant), "object_id": str(uuid4())},
            "correlation_id": str(uuid4()),
            "app": "company-portal",
            "revision": 1,
            "replaces_revision": 0,
            "operation": "replace",
            "catalog_app": {
                "catalog_id": "company-portal",
                "display_name": "Company Portal",
                "publisher": "Microsoft",
                "package_identifier": "9WZDNCRFJ3PZ",
                "run_as_account": "user",
            },
            "desired_assignments": [],
            "previous_assignments": [],
        }
    )


async def consumer_groups(settings: KafkaSettings) -> set[str]:
    admin = AIOKafkaAdminClient(**connection_kwargs(settings, "reader-test"))
    await admin.start()
    try:
        return {group for group, *_ in await admin.list_consumer_groups()}
    finally:
        await admin.close()
