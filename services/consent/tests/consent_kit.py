"""Helpers of consent's integration tests: consent on the session's Kafka, PostgreSQL and
emulator, and the portal's requests as it would publish them.

On the test path (pytest's ``pythonpath``), so every test module of the service imports them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.bus.settings import KafkaSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.consent.bootstrap import bootstrap
from tenantflow.consent.settings import Settings
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.envelope import Envelope, decode
from tenantflow.contracts.events import (
    EventPayload,
    IntuneWritingActivationRequested,
    TenantLinkRequested,
)
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import publish as publish_events
from tenantflow.devinfra.testing import read_topic
from tenantflow.emulator.testing import RunningEmulator


@asynccontextmanager
async def running_consent(
    infra: RunningInfra, emulator: RunningEmulator, database_url: str, **overrides: Any
) -> AsyncIterator[ServiceRuntime]:
    kafka = KafkaSettings(
        bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"t{uuid4().hex[:10]}."
    )
    await ensure_topics(kafka)
    settings = Settings(
        kafka=kafka,
        database={"url": database_url},  # type: ignore[arg-type]
        login_base_url=emulator.url,
        graph_base_url=emulator.url,
        ca_bundle=Path(emulator.ca),
        directory_connector_client_id=emulator.apps["directory-connector"]["client_id"],
        directory_connector_secret=emulator.apps["directory-connector"]["client_secret"],
        intune_writer_client_id=emulator.apps["intune-writer"]["client_id"],
        intune_writer_secret=emulator.apps["intune-writer"]["client_secret"],
        create_topics=False,
        **overrides,
    )
    runtime = bootstrap(settings)
    await runtime.start()
    try:
        yield runtime
    finally:
        await runtime.stop()


async def publish(runtime: ServiceRuntime, event: EventPayload) -> str:
    """What portal-api's relay would put on the bus; the event's id."""
    [event_id] = await publish_events(runtime.kafka, event, source="/tenantflow/portal-api")
    return event_id


async def request(
    runtime: ServiceRuntime,
    kind: type[TenantLinkRequested | IntuneWritingActivationRequested],
    tenant: UUID,
    user: UUID,
    change: UUID | None = None,
) -> str:
    """A portal user's request, as portal-api would publish it; its event id."""
    event = kind(
        tenant_id=tenant,
        actor=UserActor(tenant_id=tenant, object_id=user),
        correlation_id=change or uuid4(),
    )
    return await publish(runtime, event)


async def verdicts(runtime: ServiceRuntime, count: int) -> list[Envelope[EventPayload]]:
    records = await read_topic(runtime.kafka, Topic.TENANTS, count=count + 1, within=60)
    return [decode(r.headers, r.value) for r in records[1:]]


async def results(
    runtime: ServiceRuntime, topic: Topic, count: int
) -> list[Envelope[EventPayload]]:
    """The first ``count`` events on ``topic`` after the first (the request)."""
    records = await read_topic(runtime.kafka, topic, count=count + 1, within=60)
    return [decode(r.headers, r.value) for r in records[1:]]
