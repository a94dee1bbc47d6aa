"""Each test gets its own schema and its own topic prefix on the session's Kafka and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from uuid import uuid4

import pytest

from tenantflow.bus.consumer import ConsumerSettings
from tenantflow.bus.relay import RelaySettings
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.bus.settings import DatabaseSettings, KafkaSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.devinfra.pytest_plugin import RunningInfra

MIGRATIONS = Path(__file__).parent / "migrations"


@pytest.fixture
async def kafka_settings(infra: RunningInfra) -> KafkaSettings:
    settings = KafkaSettings(
        bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"t{uuid4().hex[:10]}."
    )
    await ensure_topics(settings)
    return settings


@pytest.fixture
def database_settings(infra: RunningInfra) -> DatabaseSettings:
    return DatabaseSettings(url=infra.database_url)  # type: ignore[arg-type]


@pytest.fixture
async def runtime(
    kafka_settings: KafkaSettings, database_settings: DatabaseSettings
) -> AsyncIterator[ServiceRuntime]:
    runtime = ServiceRuntime(
        service="bus-test",
        schema=f"t_{uuid4().hex[:10]}",
        migrations=MIGRATIONS,
        kafka=kafka_settings,
        database=database_settings,
        relay_settings=RelaySettings(retry_backoff_s=0.1),
        consumer_settings=ConsumerSettings(max_attempts=3, backoff_initial_s=0.01),
        create_topics=False,
    )
    yield runtime
    if runtime.started:
        await runtime.stop()
    else:
        await runtime.engine.dispose()
