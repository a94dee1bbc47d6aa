"""At-least-once, idempotent event consumption with dead-lettering.

Records come a poll at a time. A poll's records are handled together, in one PostgreSQL
transaction: claim their event ids in the inbox (one statement; duplicates stop there), run each
record's handler in order, store the events they emit in the outbox. If anything in it fails, it
is rolled back whole and the poll's records are handled one by one instead, each in its own
transaction, so a poison record is dead-lettered alone and the others pass. The Kafka offsets
are committed only after the transaction that handled their records committed. Failures of a
record on its own:

- undecodable, an unsupported version, or ``PermanentError``: dead-lettered at once;
- infrastructure (``errors.is_transient``): retried with backoff until it passes, never skipped;
- anything else: retried ``max_attempts`` times, then dead-lettered with the error.

A dead letter is itself an outbox event, committed with the inbox claim, so the partition moves
on only once the reason is safely stored. Offsets never move past an unhandled message: if the
process dies mid-retry, the next owner of the partition gets the message again.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from itertools import chain
from typing import Any, Protocol, TypeVar
from uuid import UUID, uuid5

from aiokafka import TopicPartition
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel.ext.asyncio.session import AsyncSession

from tenantflow.bus import tracing
from tenantflow.bus.broker import CONSUMER_SETTINGS
from tenantflow.bus.db import SessionFactory, transaction
from tenantflow.bus.errors import PermanentError, is_transient
from tenantflow.bus.logs import event_context
from tenantflow.bus.offsets import OffsetCommitter
from tenantflow.bus.outbox import Outbox
from tenantflow.bus.tables import bus_tables
from tenantflow.contracts.common import EventPayload, ServiceActor
from tenantflow.contracts.envelope import (
    Envelope,
    EnvelopeError,
    decode,
    header_map,
    read_type,
)
from tenantflow.contracts.events import DeadLettered, OriginalHeader
from tenantflow.contracts.topics import Topic

log = logging.getLogger(__name__)

P = TypeVar("P", bound=EventPayload)
NIL_TENANT = UUID(int=0)
BATCH_TIMEOUT_MS = 200
"""How long one poll waits for a record (it returns as soon as one arrives); between polls the
loop sees whether the consumer is stopping."""
CLAIM_MANY = """
    INSERT INTO "{schema}".inbox (consumer, event_id)
    SELECT :consumer, unnest(CAST(:event_ids AS text[]))
    ON CONFLICT DO NOTHING
    RETURNING event_id"""
"""A poll's events claimed in one statement (``{schema}`` is a checked identifier, as in the
outbox's statements); the ones returned were not handled before."""
"""How long a poll waits for records when none are buffered (records that arrive end it)."""


class Record(Protocol):
    """What the consumer needs of a Kafka record (aiokafka's ConsumerRecord has it)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


class Outcome(StrEnum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    DEAD_LETTERED = "dead_lettered"


@dataclass(frozen=True)
class ConsumerSettings:
    max_attempts: int = 5
    """Attempts before an unexpected error dead-letters a message; infrastructure failures
    (``errors.is_transient``) are retried without limit instead."""
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    max_records: int = 500
    """Records handled together, at most, from one poll."""


@dataclass
class HandlerContext:
    """What a handler gets besides its event: the open transaction and a way to emit events."""

    session: AsyncSession
    envelope: Envelope[EventPayload]
    outbox: Outbox
    committed: list[Callable[[], None]] = field(default_factory=list)
    emitted: list[Envelope[EventPayload]] = field(default_factory=list)
    """Stored in the outbox, in order, with one statement before the transaction commits."""
    position: tuple[str, int, int] | None = None
    """Where the event is in the log: topic (as the deployment names it), partition, offset."""

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the handler's transaction committed (not if it rolls back):
        to wake work that must see what the handler wrote."""
        self.committed.append(callback)

    @property
    def event_id(self) -> str:
        return self.envelope.id

    async def emit(self, data: EventPayload) -> Envelope[EventPayload]:
        """Store a follow-up event in this transaction. The trace continues from the handling, and
        the causation id is the handled event's unless the handler set another."""
        if data.causation_id is None:
            data = data.model_copy(update={"causation_id": self.envelope.id})
        # the span handling the event, or (a handler called outside one) the event's own
        traceparent, tracestate = tracing.current()
        if traceparent is None:
            traceparent, tracestate = self.envelope.traceparent, self.envelope.tracestate
        follow_up = Envelope(
            data=data, source=self.outbox.source, traceparent=traceparent, tracestate=tracestate
        )
        self.emitted.append(follow_up)
        return follow_up


Handler = Callable[[Any, HandlerContext], Awaitable[None]]


@dataclass
class _Failure:
    error_type: str
    error: str
    attempts: int


@dataclass
class EventConsumer:
    """One consumer group: its topics, its handlers by event type and version, its inbox."""

    name: str
    topics: Sequence[Topic]
    sessions: SessionFactory
    outbox: Outbox
    service: str
    settings: ConsumerSettings = field(default_factory=ConsumerSettings)
    _handlers: dict[tuple[str, int], tuple[type[EventPayload], Handler]] = field(
        default_factory=dict
    )

    def __post_init__(self) -> None:
        self.delivered: Callable[[float], None] = lambda _: None
        """Told each event's age as its handling starts (the service's metrics)."""
        self._inbox = bus_tables(self.outbox.schema).inbox
        self.stats: Counter[Outcome] = Counter()
        self.polls_together = 0
        """Polls whose records were handled in one transaction (the others, one by one)."""
        self.offsets = OffsetCommitter(self.name)

    def handles(
        self, payload: type[P]
    ) -> Callable[
        [Callable[[P, HandlerContext], Awaitable[None]]],
        Callable[[P, HandlerContext], Awaitable[None]],
    ]:
        """Register the decorated coroutine as the handler of ``payload``'s type and version."""
        if payload.topic not in self.topics:
            raise ValueError(f"{payload.event_type} is on {payload.topic}, not consumed here")

        def register(
            handler: Callable[[P, HandlerContext], Awaitable[None]],
        ) -> Callable[[P, HandlerContext], Awaitable[None]]:
            self._handlers[(payload.event_type, payload.schema_version)] = (payload, handler)
            return handler

        return register

    def subscribe(self, broker: KafkaBroker) -> None:
        """Attach this consumer to ``broker`` as one FastStream subscriber."""

        async def whole_message(message: Any) -> Any:
            # Decoding is ours: a poison message must reach process(). The handler is given the
            # message as its body: FastStream's context injection of a KafkaMessage parameter
            # would resolve it in a worker thread, for every message.
            return message

        subscriber = broker.subscriber(
            *(self.outbox.topic_prefix + topic.value for topic in self.topics),
            group_id=self.name,
            decoder=whole_message,
            no_reply=True,
            title=self.name,
            batch=True,
            max_records=self.settings.max_records,
            batch_timeout_ms=BATCH_TIMEOUT_MS,
            **{
                **CONSUMER_SETTINGS,
                "max_poll_records": self.settings.max_records,
                "ack_policy": AckPolicy.MANUAL,
            },
        )

        subscriber.get_msg = functools.partial(_poll, subscriber)

        @subscriber  # type: ignore[untyped-decorator]  # FastStream's decorator is untyped
        async def consume(message: Any) -> None:
            records: Sequence[Any] = message.raw_message
            done = 0
            try:
                if await self.process_together(records):
                    done = len(records)
                else:
                    for record in records:
                        await self.process(record)
                        done += 1
            except BaseException:
                # not processed: rewind each partition to its first record not processed, so
                # this consumer reads them again
                rewound: set[TopicPartition] = set()
                for record in records[done:]:
                    partition = TopicPartition(record.topic, record.partition)
                    if partition not in rewound:
                        message.consumer.seek(partition, record.offset)
                        rewound.add(partition)
                raise
            finally:
                for record in records[:done]:
                    self.offsets.processed(message.consumer, record)

    # --- processing ------------------------------------------------------------------------

    async def process(self, record: Record) -> Outcome:
        outcome = await self._process(record)
        self.stats[outcome] += 1
        return outcome

    async def process_together(self, records: Sequence[Record]) -> bool:
        """Handle ``records`` in one transaction (see the module's docstring); False, with
        nothing done, when they must be handled one by one instead: a single record, one that
        must be dead-lettered, or a failure of any handler."""
        if len(records) < 2:
            return False
        prepared: list[tuple[Envelope[EventPayload], Handler, Record] | None] = []
        for record in records:
            try:
                event_type, version = read_type(record.headers)
            except EnvelopeError:
                return False
            registered = self._handlers.get((event_type, version))
            if registered is None:
                if any(known_type == event_type for known_type, _ in self._handlers):
                    return False  # an unsupported version: dead-lettered on its own
                prepared.append(None)
                continue
            payload_type, handler = registered
            try:
                prepared.append(
                    (decode(record.headers, record.value, accept=[payload_type]), handler, record)
                )
            except EnvelopeError:
                return False
        outcomes: list[Outcome] = []
        committed: list[Callable[[], None]] = []
        emitted: list[Envelope[EventPayload]] = []
        try:
            async with transaction(self.sessions) as session:
                ids = [item[0].id for item in prepared if item is not None]
                claimed = await self._claim_many(session, ids)
                for item in prepared:
                    if item is None:
                        outcomes.append(Outcome.IGNORED)
                        continue
                    envelope, handler, record = item
                    if envelope.id not in claimed:
                        outcomes.append(Outcome.DUPLICATE)
                        continue
                    claimed.discard(envelope.id)  # the same event twice in one poll: once
                    # each handler sees the database as the ones before it left it
                    await session.flush()
                    session.expire_all()
                    ctx = HandlerContext(session, envelope, self.outbox, position=_at(record))
                    with _handling(self.name, record, envelope, self.delivered):
                        await handler(envelope.data, ctx)
                    committed.extend(ctx.committed)
                    emitted.extend(ctx.emitted)
                    outcomes.append(Outcome.HANDLED)
                await self.outbox.add_many(session, emitted)
        except Exception as exc:
            log.info("%s: %d records handled one by one: %r", self.name, len(records), exc)
            return False
        for callback in committed:
            callback()
        self.stats.update(outcomes)
        self.polls_together += 1
        return True

    async def _claim_many(self, session: AsyncSession, event_ids: list[str]) -> set[str]:
        if not event_ids:
            return set()
        connection = await session.connection()
        claimed = await connection.execute(
            text(CLAIM_MANY.format(schema=self.outbox.schema)),
            {"consumer": self.name, "event_ids": event_ids},
        )
        return set(claimed.scalars())

    async def _process(self, record: Record) -> Outcome:
        try:
            event_type, version = read_type(record.headers)
        except EnvelopeError as exc:
            return await self._dead_letter(record, None, _Failure("undecodable", str(exc), 1))
        registered = self._handlers.get((event_type, version))
        if registered is None:
            if any(known_type == event_type for known_type, _ in self._handlers):
                failure = _Failure("unsupported_version", f"{event_type} v{version}", 1)
                return await self._dead_letter(record, None, failure)
            return Outcome.IGNORED  # another consumer's event on a shared topic
        payload_type, handler = registered
        try:
            envelope = decode(record.headers, record.value, accept=[payload_type])
        except EnvelopeError as exc:
            return await self._dead_letter(record, None, _Failure("undecodable", str(exc), 1))
        with _handling(self.name, record, envelope, self.delivered):
            return await self._handle(record, envelope, handler)

    async def _handle(
        self, record: Record, envelope: Envelope[EventPayload], handler: Handler
    ) -> Outcome:
        attempt = 0
        while True:
            attempt += 1
            try:
                async with transaction(self.sessions) as session:
                    if not await self._claim(session, envelope.id):
                        return Outcome.DUPLICATE
                    ctx = HandlerContext(session, envelope, self.outbox, position=_at(record))
                    await handler(envelope.data, ctx)
                    await self.outbox.add_many(session, ctx.emitted)
                for callback in ctx.committed:
                    callback()
                return Outcome.HANDLED
            except PermanentError as exc:
                failure = _Failure(type(exc).__name__, str(exc), attempt)
                return await self._dead_letter(record, envelope, failure)
            except Exception as exc:
                if not is_transient(exc) and attempt >= self.settings.max_attempts:
                    log.exception(
                        "%s: giving up on %s after %d attempts", self.name, envelope.id, attempt
                    )
                    failure = _Failure(type(exc).__name__, str(exc), attempt)
                    return await self._dead_letter(record, envelope, failure)
                log.warning("%s: attempt %d on %s failed: %r", self.name, attempt, envelope.id, exc)
                await self._backoff(attempt)

    async def _claim(self, session: AsyncSession, event_id: str) -> bool:
        connection = await session.connection()
        claimed = await connection.execute(
            insert(self._inbox)
            .values(consumer=self.name, event_id=event_id)
            .on_conflict_do_nothing()
            .returning(self._inbox.c.event_id)
        )
        return claimed.first() is not None

    async def _backoff(self, attempt: int) -> None:
        delay = self.settings.backoff_initial_s * 2 ** (attempt - 1)
        await asyncio.sleep(min(delay, self.settings.backoff_max_s))

    async def _dead_letter(
        self, record: Record, envelope: Envelope[EventPayload] | None, failure: _Failure
    ) -> Outcome:
        event_id = envelope.id if envelope else _coordinates(record)
        letter = self._letter(record, envelope, failure)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with transaction(self.sessions) as session:
                    if await self._claim(session, event_id):
                        await self.outbox.add(session, letter)
                log.error("%s: dead-lettered %s: %s", self.name, event_id, failure.error)
                return Outcome.DEAD_LETTERED
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("%s: storing a dead letter failed: %r", self.name, exc)
                await self._backoff(attempt)

    def _letter(
        self, record: Record, envelope: Envelope[EventPayload] | None, failure: _Failure
    ) -> Envelope[EventPayload]:
        data = DeadLettered(
            tenant_id=envelope.data.tenant_id if envelope else _tenant_of(record),
            actor=ServiceActor(service=self.service),
            correlation_id=(envelope.data.correlation_id if envelope else _correlation_of(record)),
            causation_id=envelope.id if envelope else _header(record, "ce_id"),
            consumer=self.name,
            error_type=failure.error_type,
            error=failure.error[:4000],
            attempts=failure.attempts,
            original_topic=record.topic,
            original_partition=record.partition,
            original_offset=record.offset,
            original_key=record.key.decode(errors="replace") if record.key else None,
            original_headers=[
                OriginalHeader(name=name, value=value.decode(errors="replace"))
                for name, value in record.headers
            ],
            original_value_base64=base64.b64encode(record.value or b"").decode(),
        )
        traceparent = envelope.traceparent if envelope else _header(record, "traceparent")
        return Envelope(data=data, source=self.outbox.source, traceparent=traceparent)


def _coordinates(record: Record) -> str:
    return f"{record.topic}/{record.partition}/{record.offset}"


def _header(record: Record, name: str) -> str | None:
    try:
        return header_map(record.headers).get(name)
    except EnvelopeError:
        return None


def _tenant_of(record: Record) -> UUID:
    """The key is the tenant id; a record without a usable one is filed under the nil tenant."""
    key = record.key.decode(errors="replace") if record.key else None
    for candidate in (key, _header(record, "ce_subject")):
        if not candidate:
            continue
        try:
            return UUID(candidate)
        except ValueError:
            continue
    return NIL_TENANT


def _correlation_of(record: Record) -> UUID:
    try:
        return UUID(json.loads(record.value or b"")["correlation_id"])
    except (ValueError, KeyError, TypeError):
        # stable, so a redelivered poison message gets the same correlation id
        return uuid5(UUID(int=0), _coordinates(record))


def _at(record: Record) -> tuple[str, int, int]:
    return (str(record.topic), int(record.partition), int(record.offset))


@contextmanager
def _handling(
    group: str,
    record: Record,
    envelope: Envelope[EventPayload],
    delivered: Callable[[float], None],
) -> Iterator[None]:
    """While ``envelope`` is handled: a consumer span continuing its trace (the events its
    handler emits carry the span's context), and every line logged naming its tenant, change
    and trace. ``delivered`` is told how old the event is (from its time) as handling starts."""
    delivered((datetime.now(UTC) - envelope.time).total_seconds())
    data = envelope.data
    with tracing.consuming(
        envelope.traceparent,
        envelope.tracestate,
        str(record.topic),
        group,
        envelope.type,
        envelope.id,
        (int(record.partition), int(record.offset)),
    ):
        traceparent, _ = tracing.current()
        with event_context(data.tenant_id, data.correlation_id, traceparent):
            yield


async def _poll(subscriber: Any, consumer: Any) -> tuple[Any, ...]:
    """A FastStream batch subscriber's next poll, without the pause it takes after an empty one.

    FastStream 0.7's ``BatchSubscriber.get_msg`` sleeps ``batch_timeout_ms`` after a poll that
    found nothing, and a record arriving meanwhile waits out the sleep: on a quiet topic every
    hop of a change took 0 to 400 ms more (bench/deployment_latency.py). ``getmany`` itself
    returns as soon as a record arrives, so polling again at once costs no CPU while waiting."""
    polled = await consumer.getmany(
        timeout_ms=subscriber.batch_timeout_ms, max_records=subscriber.max_records
    )
    return tuple(chain.from_iterable(polled.values()))
