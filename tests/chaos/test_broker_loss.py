"""Kafka lost for good while a service publishes: SIGTERM still ends the process within its
grace period, and what Kafka never acknowledged stays in the outbox for the next run."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from uuid import uuid4

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tenantflow.bus.outbox import Outbox
from tenantflow.bus.serve import EXIT_GRACE_EXCEEDED
from tenantflow.contracts.common import ServiceActor
from tenantflow.contracts.events import TenantUnlinked
from tenantflow.devinfra.kafka import KafkaBroker
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.services import emulated_microsoft, service_process
from tenantflow.devinfra.testing import create_database, eventually
from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.e2e

GRACE_S = 6.0
SCHEMA = "directory_sync"


async def test_sigterm_ends_a_service_in_time_after_kafka_died(
    infra: RunningInfra, emulator: RunningEmulator, tmp_path: Path
) -> None:
    broker = KafkaBroker(tmp_path / "kafka", bound_to_parent=True)
    await asyncio.to_thread(broker.start)
    database_url = await create_database(infra.database_url)
    engine = create_async_engine(database_url)
    outbox = Outbox(SCHEMA, source="/tenantflow/test")

    async def publish(count: int) -> None:
        for _ in range(count):
            event = TenantUnlinked(
                tenant_id=uuid4(), actor=ServiceActor(service="test"), correlation_id=uuid4()
            )
            async with engine.begin() as connection:
                await outbox.add(connection, event)

    async def unmarked() -> int:
        async with engine.connect() as db:
            query = f"SELECT count(*) FROM {SCHEMA}.outbox WHERE published_at IS NULL"
            return int(await db.scalar(text(query)) or 0)

    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "DATABASE_URL": database_url,
    }
    settings = {
        **emulated_microsoft(emulator)["directory-sync"],
        "SHUTDOWN_GRACE_SECONDS": str(GRACE_S),
    }
    try:
        async with service_process(
            "directory-sync", tmp_path / "service.log", environment, settings
        ) as running:
            await publish(1)

            async def relayed() -> bool:
                return await unmarked() == 0

            await eventually(relayed, within=30, what="the first event relayed")
            broker.kill()
            await publish(3)
            await eventually(
                lambda: "Unable connect to node" in running.output(),
                within=30,
                what="the service noticed the broker is gone",
            )
            loop = asyncio.get_running_loop()
            started = loop.time()
            returncode = await running.stop(grace_seconds=GRACE_S + 10)
            took = loop.time() - started
            output = running.output()
        assert returncode in (-signal.SIGTERM, EXIT_GRACE_EXCEEDED), output
        assert took <= GRACE_S + 1.0, output
        assert await unmarked() == 3  # the next run sends them
    finally:
        await engine.dispose()
        await asyncio.to_thread(broker.stop)
