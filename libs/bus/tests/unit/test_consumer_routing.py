"""What a consumer does with a record before it needs a database."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import uuid4

import pytest

from tenantflow.bus.consumer import EventConsumer, HandlerContext, Outcome
from tenantflow.bus.outbox import Outbox
from tenantflow.contracts.common import ServiceActor
from tenantflow.contracts.envelope import Envelope
from tenantflow.contracts.events import GroupRemoved, TenantLinkRequested
from tenantflow.contracts.topics import Topic

pytestmark = pytest.mark.unit


@dataclass
class FakeRecord:
    headers: list[tuple[str, bytes]]
    value: bytes
    key: bytes | None = None
    topic: str = "tenantflow.tenants"
    partition: int = 0
    offset: int = 0


class FakeSessions:
    def __call__(self) -> None:
        raise AssertionError("no database work expected")


def consumer() -> EventConsumer:
    consumer = EventConsumer(
        name="test.links",
        topics=[Topic.TENANTS],
        sessions=FakeSessions(),  # type: ignore[arg-type]
        outbox=Outbox("test_schema", "/tenantflow/test"),
        service="test",
    )

    @consumer.handles(TenantLinkRequested)
    async def handle(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        raise AssertionError("not for this record")

    return consumer


async def test_other_types_on_the_topic_are_ignored() -> None:
    tenant = uuid4()
    other = Envelope(
        data=GroupRemoved(
            tenant_id=tenant,
            actor=ServiceActor(service="directory-sync"),
            correlation_id=uuid4(),
            group_id=uuid4(),
        ),
        source="/tenantflow/directory-sync",
    )
    events = consumer()
    outcome = await events.process(FakeRecord(other.headers(), other.value()))
    assert outcome is Outcome.IGNORED
    assert events.stats == {Outcome.IGNORED: 1}


def test_a_handler_for_another_topic_is_refused() -> None:
    events = consumer()
    with pytest.raises(ValueError, match="not consumed here"):
        events.handles(GroupRemoved)


async def test_an_empty_poll_is_followed_by_the_next_one_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """FastStream's batch subscriber sleeps after an empty poll, and a record arriving then
    waits out the sleep; the consumer's subscriber polls again at once instead (getmany itself
    waits for a record)."""
    import anyio
    from faststream.kafka import KafkaBroker

    async def no_sleep(*_: object) -> None:
        raise AssertionError("slept after an empty poll")

    monkeypatch.setattr(anyio, "sleep", no_sleep)
    broker = KafkaBroker("localhost:9092")
    consumer().subscribe(broker)
    (subscriber,) = broker.subscribers
    polls: list[dict[str, int]] = []
    record = FakeRecord(headers=[], value=b"{}")

    class FakeKafka:
        async def getmany(self, **kwargs: int) -> dict[str, list[FakeRecord]]:
            polls.append(kwargs)
            return {} if len(polls) == 1 else {"partition": [record]}

    assert await subscriber.get_msg(FakeKafka()) == ()
    assert await subscriber.get_msg(FakeKafka()) == (record,)
    assert polls[0]["timeout_ms"] > 0  # each poll waits for a record
