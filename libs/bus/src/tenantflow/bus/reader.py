"""Read topics as they are, outside any consumer group: for auditors' replays and for tests.

The reader assigns itself partitions (no group is joined, so no rebalance touches a service's
consumers) and never commits an offset: nothing it does is visible to the services. It reads
from the beginning, or from the first offset at or after a time (Kafka's offsets-for-times), to
the end offsets the partitions had when the read began, so a replay has a definite end however
busy the topic is.

A tenant's events are all on one partition (events are keyed by tenant id): ``partition_of``
names it, so a reader of one tenant need not read the others' partitions.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from heapq import heappop, heappush
from typing import Any, TypeAlias
from uuid import UUID

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from tenantflow.bus.clients import KeyPartitioner, connection_kwargs
from tenantflow.bus.settings import KafkaSettings
from tenantflow.contracts.topics import TOPIC_CONFIGS, Topic

Record: TypeAlias = ConsumerRecord[Any, Any]
KEYS = KeyPartitioner()


def partition_of(topic: Topic, tenant_id: UUID) -> int:
    """The partition a tenant's events are on: Kafka's default partitioner (murmur2 of the key,
    as the Java client and aiokafka's producer compute it) over the topic's partitions."""
    partitions = list(range(TOPIC_CONFIGS[topic].partitions))
    return KEYS(str(tenant_id).encode(), partitions, partitions)


@dataclass
class PartitionReader:
    """Reads ``topics`` (all their partitions, or those in ``only``) to their end offsets."""

    settings: KafkaSettings
    topics: Sequence[Topic]
    only: dict[Topic, list[int]] | None = None
    """Partitions to read per topic (the others are not read); None: every partition."""
    client_id: str = "tenantflow-reader"
    fetch_max_bytes: int = 50 * 1024 * 1024
    max_partition_fetch_bytes: int = 4 * 1024 * 1024
    planned: int | None = None
    """Offsets between the start and the end of the read under way (records, or fewer where
    a topic was compacted): known once ``batches`` has begun, for a progress bar."""

    def partitions(self) -> list[TopicPartition]:
        return [
            TopicPartition(self.settings.topic_prefix + topic, partition)
            for topic in self.topics
            for partition in (
                self.only.get(topic, [])
                if self.only is not None
                else range(TOPIC_CONFIGS[topic].partitions)
            )
        ]

    async def batches(self, since: datetime | None = None) -> AsyncIterator[list[Record]]:
        """Every record from the beginning (or from ``since``) to the end offsets read when
        the call began, a fetch at a time (each partition's records in offset order)."""
        async for fetched, _ in self._fetches(since, lambda _: True):
            batch = [record for records in fetched.values() for record in records]
            if batch:
                yield batch

    async def in_time_order(self, since: datetime | None = None) -> AsyncIterator[list[Record]]:
        """The same records, each partition's in offset order and the partitions merged by
        record timestamp (the producer's clock as it sent them: publication order; ties by
        topic, partition), a run at a time.

        Streaming: a partition is read ahead only while its buffer is empty (the others are
        paused), so memory holds about one fetch per partition however long the log is."""
        buffers: dict[TopicPartition, deque[Record]] = {}
        heads: list[tuple[int, str, int, TopicPartition]] = []
        starving = set(self.partitions())
        """Partitions still being read with nothing buffered: none may be passed by."""

        def empty(partition: TopicPartition) -> bool:
            return not buffers.get(partition)

        async for fetched, finished in self._fetches(since, empty):
            for partition, records in fetched.items():
                buffer = buffers.setdefault(partition, deque())
                if not buffer and records:
                    first = records[0]
                    heappush(heads, (first.timestamp, first.topic, first.partition, partition))
                buffer.extend(records)
                if buffer:
                    starving.discard(partition)
            starving -= finished
            run: list[Record] = []
            while heads and not starving:
                _, _, _, partition = heappop(heads)
                buffer = buffers[partition]
                run.append(buffer.popleft())
                if buffer:
                    nxt = buffer[0]
                    heappush(heads, (nxt.timestamp, nxt.topic, nxt.partition, partition))
                elif partition not in finished:
                    starving.add(partition)
            if run:
                yield run

    async def _fetches(
        self, since: datetime | None, wanted: Callable[[TopicPartition], bool]
    ) -> AsyncIterator[tuple[dict[TopicPartition, list[Record]], set[TopicPartition]]]:
        """Fetches to the end offsets: each one's records by partition (up to the end offset)
        and the partitions read to their end so far. Partitions that ``wanted`` declines are
        paused until it takes them again."""
        consumer = AIOKafkaConsumer(
            **connection_kwargs(self.settings, self.client_id),
            group_id=None,
            enable_auto_commit=False,
            fetch_max_bytes=self.fetch_max_bytes,
            max_partition_fetch_bytes=self.max_partition_fetch_bytes,
        )
        try:
            await consumer.start()
        except BaseException:
            await consumer.stop()  # what it opened before it failed
            raise
        try:
            partitions = self.partitions()
            if not partitions:
                return
            consumer.assign(partitions)
            ends = await consumer.end_offsets(partitions)
            starts = await self._starts(consumer, partitions, since, ends)
            self.planned = sum(ends[p] - starts[p] for p in partitions)
            left = {p for p in partitions if starts[p] < ends[p]}
            for partition in partitions:
                consumer.seek(partition, starts[partition])
            while left:
                taken = {p for p in left if wanted(p)} or left
                consumer.pause(*(left - taken))
                consumer.resume(*taken)
                fetched = await consumer.getmany(*taken, timeout_ms=1000)
                kept: dict[TopicPartition, list[Record]] = {}
                for partition, records in fetched.items():
                    end = ends[partition]
                    kept[partition] = [r for r in records if r.offset < end]
                    if records and records[-1].offset >= end - 1:
                        left.discard(partition)
                for partition in list(taken & left):  # an end past compacted or aborted records
                    if await consumer.position(partition) >= ends[partition]:
                        left.discard(partition)
                yield kept, set(partitions) - left
        finally:
            await consumer.stop()

    async def records(self, since: datetime | None = None) -> AsyncIterator[Record]:
        async for batch in self.batches(since):
            for record in batch:
                yield record

    @staticmethod
    async def _starts(
        consumer: AIOKafkaConsumer,
        partitions: list[TopicPartition],
        since: datetime | None,
        ends: dict[TopicPartition, int],
    ) -> dict[TopicPartition, int]:
        if since is None:
            return dict(await consumer.beginning_offsets(partitions))
        wanted = {p: int(since.timestamp() * 1000) for p in partitions}
        found = await consumer.offsets_for_times(wanted)
        return {p: (found[p].offset if found.get(p) is not None else ends[p]) for p in partitions}
