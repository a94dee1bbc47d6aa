"""Every service starts as its own process, reports ready, and shuts down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import pytest

from tenantflow.devinfra.processes import free_port
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import eventually

pytestmark = pytest.mark.e2e

SERVICES = {
    "portal-api": ("tenantflow.portal_api", "TENANTFLOW_PORTAL_"),
    "consent": ("tenantflow.consent", "TENANTFLOW_CONSENT_"),
    "directory-sync": ("tenantflow.directory_sync", "TENANTFLOW_DIRSYNC_"),
    "intune-writer": ("tenantflow.intune_writer", "TENANTFLOW_WRITER_"),
}


@pytest.mark.parametrize("service", sorted(SERVICES))
async def test_service_starts_ready_and_stops_on_sigterm(
    service: str, infra: RunningInfra, tmp_path: Path
) -> None:
    module, prefix = SERVICES[service]
    port = free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "DATABASE_URL": infra.database_url,
        f"{prefix}PORT": str(port),
        f"{prefix}HOST": "127.0.0.1",
    }
    log = (tmp_path / "service.log").open("w")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", module, env=env, stdout=log, stderr=asyncio.subprocess.STDOUT
    )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:

            async def ready() -> bool:
                assert process.returncode is None, (tmp_path / "service.log").read_text()
                try:
                    response = await client.get("/readyz")
                except httpx.TransportError:
                    return False
                return response.status_code == 200

            await eventually(ready, within=60, what=f"{service} ready")
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

        process.send_signal(signal.SIGTERM)
        returncode = await asyncio.wait_for(process.wait(), 30)
        output = (tmp_path / "service.log").read_text()
        # uvicorn finishes the graceful shutdown, then re-raises SIGTERM so the exit status says
        # what ended the process (143 in a shell or container)
        assert returncode == -signal.SIGTERM, output
        assert f"{service} stopped" in output
        assert "Application shutdown complete" in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
