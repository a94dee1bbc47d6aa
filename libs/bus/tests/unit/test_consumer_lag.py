"""A consumer group's lag per partition, as its /metrics tell it: records after the last one
handled, against the high watermark of the last fetch."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from aiokafka import TopicPartition

from tenantflow.bus.offsets import OffsetCommitter

pytestmark = pytest.mark.unit

A, B, C = (TopicPartition("tenantflow.deployments", n) for n in range(3))


@dataclass
class FakeRecord:
    topic: str
    partition: int
    offset: int


@dataclass
class FakeKafkaConsumer:
    """The parts of aiokafka's consumer the lag reads."""

    highwaters: dict[TopicPartition, int]
    positions: dict[TopicPartition, int]
    committed: list[dict[TopicPartition, int]] = field(default_factory=list)

    def assignment(self) -> set[TopicPartition]:
        return set(self.highwaters) | set(self.positions)

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.highwaters.get(partition)

    async def position(self, partition: TopicPartition) -> int:
        return self.positions[partition]

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)


async def test_lag_counts_from_the_last_record_handled_or_where_the_consumer_resumed() -> None:
    kafka = FakeKafkaConsumer(highwaters={A: 10, B: 7}, positions={A: 0, B: 4, C: 0})
    offsets = OffsetCommitter("writer.deployments")
    assert await offsets.lag() == {}  # nothing consumed yet: no partitions known
    offsets.processed(kafka, FakeRecord(A.topic, 0, 5))  # type: ignore[arg-type]
    assert await offsets.lag() == {
        ("tenantflow.deployments", 0): 4,  # offsets 6 to 9 still to handle
        ("tenantflow.deployments", 1): 3,  # nothing handled there: from its position, 4
    }  # partition 2: not fetched yet, so no high watermark to count from
    await offsets.close()
