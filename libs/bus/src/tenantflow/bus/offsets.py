"""Offset commits off the hot path, never past a message that was not fully processed.

A consumer processes one message at a time. Once a message's transaction committed, its
offset + 1 is recorded here and committed in the background; commits that pile up while one is
in flight are coalesced into the next. A commit that is lost (a crash, a rebalance) only means
the next owner of the partition gets already-processed messages again, which the inbox drops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

log = logging.getLogger(__name__)


class OffsetCommitter:
    def __init__(self, name: str) -> None:
        self._name = name
        self._pending: dict[TopicPartition, int] = {}
        self._consumer: AIOKafkaConsumer | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.commits = 0
        self._next: dict[TopicPartition, int] = {}
        """Per partition, the offset after the last record processed (for the lag)."""

    def processed(self, consumer: AIOKafkaConsumer, record: Any) -> None:
        """``record`` is done (its transaction committed): its offset may be committed."""
        self._consumer = consumer
        partition = TopicPartition(record.topic, record.partition)
        self._pending[partition] = self._next[partition] = record.offset + 1
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"offsets-{self._name}")

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            await self.commit_pending()

    async def commit_pending(self) -> None:
        consumer, offsets = self._consumer, self._pending
        self._pending = {}
        if consumer is None or not offsets:
            return
        assigned = consumer.assignment()
        offsets = {tp: offset for tp, offset in offsets.items() if tp in assigned}
        if not offsets:
            return
        try:
            await consumer.commit(offsets)
            self.commits += 1
        except (IllegalStateError, KafkaError) as exc:
            # a rebalance took the partition: its new owner resumes from the last commit
            log.warning("%s: offset commit skipped: %r", self._name, exc)

    async def lag(self) -> dict[tuple[str, int], int]:
        """Records after the last one processed, per partition assigned now, against the high
        watermark of the consumer's last fetch of it; on a partition with nothing processed
        yet, from the consumer's position (where it resumed)."""
        consumer = self._consumer
        if consumer is None:
            return {}
        lag = {}
        for partition in consumer.assignment():
            end = consumer.highwater(partition)
            if end is None:
                continue  # not fetched yet
            done = self._next.get(partition)
            if done is None:
                try:
                    done = await consumer.position(partition)
                except (IllegalStateError, KafkaError):
                    continue  # taken by a rebalance meanwhile
            lag[(partition.topic, partition.partition)] = max(0, end - done)
        return lag

    async def close(self) -> None:
        """Stop committing. Offsets still pending are redelivered later; the inbox drops them."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
