"""Every service starts as its own process, reports ready, and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.services import SERVICES, emulated_microsoft, service_process
from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_service_starts_ready_and_stops_on_sigterm(
    service: str, infra: RunningInfra, emulator: RunningEmulator, tmp_path: Path
) -> None:
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "DATABASE_URL": infra.database_url,
    }
    # consent refuses the emulator's demo secrets with Microsoft's endpoints: point it at the
    # emulator, as make run does
    # uvicorn's lifecycle lines are library chatter, shown when asked for
    settings = {**emulated_microsoft(emulator).get(service, {}), "LIBRARY_LOG_LEVEL": "INFO"}
    async with service_process(service, tmp_path / "service.log", environment, settings) as running:
        async with httpx.AsyncClient(base_url=running.url) as client:
            health = await client.get("/healthz")
            assert health.status_code == 200
            assert health.json()["status"] == "ok"
            readiness = (await client.get("/readyz")).json()
            assert readiness == {
                "started": True,
                "database": True,
                "kafka": True,
                "outbox_relay": True,
            }
        returncode = await running.stop()
        output = running.output()
    # uvicorn finishes the graceful shutdown, then re-raises SIGTERM so the exit status says
    # what ended the process (143 in a shell or container)
    assert returncode == -signal.SIGTERM, output
    assert f"{service} stopped" in output
    assert "Application shutdown complete" in output
