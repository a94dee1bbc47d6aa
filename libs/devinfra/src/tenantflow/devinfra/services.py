"""tenantflow's services as processes: which there are, and running one until it is ready.

The one list of services, and the one way to start one (``Service.command``,
``Service.environment``): `make run` (devinfra.run), the e2e tests and the benchmarks all use
them, and the compose.yaml check holds compose to the same list.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from tenantflow.devinfra.processes import die_with_parent, free_port
from tenantflow.devinfra.testing import eventually
from tenantflow.emulator.testing import RunningEmulator


@dataclass(frozen=True)
class Service:
    name: str
    module: str
    env_prefix: str
    port: int
    """Its port under `make run`."""

    @property
    def command(self) -> list[str]:
        return [sys.executable, "-m", self.module]

    def environment(
        self,
        shared: Mapping[str, str],
        settings: Mapping[str, str] | None = None,
        port: int | str | None = None,
        host: str = "127.0.0.1",
    ) -> dict[str, str]:
        """This process's environment plus ``shared`` (KAFKA_*, DATABASE_URL) and the
        service's own ``settings`` under its prefix (``CA_BUNDLE`` becomes
        ``TENANTFLOW_CONSENT_CA_BUNDLE``), listening on ``host``:``port`` (default: its port
        under `make run`)."""
        return {
            **os.environ,
            **shared,
            **{f"{self.env_prefix}{key}": value for key, value in (settings or {}).items()},
            f"{self.env_prefix}PORT": str(self.port if port is None else port),
            f"{self.env_prefix}HOST": host,
        }


SERVICES = {
    service.name: service
    for service in (
        Service("portal-api", "tenantflow.portal_api", "TENANTFLOW_PORTAL_", 8000),
        Service("consent", "tenantflow.consent", "TENANTFLOW_CONSENT_", 8081),
        Service("directory-sync", "tenantflow.directory_sync", "TENANTFLOW_DIRSYNC_", 8082),
        Service("intune-writer", "tenantflow.intune_writer", "TENANTFLOW_WRITER_", 8083),
    )
}


@dataclass
class ServiceProcess:
    service: Service
    url: str
    process: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    async def stop(self, grace_seconds: float = 30) -> int:
        """SIGTERM, then wait for the graceful shutdown; the exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), grace_seconds)
        except TimeoutError:
            self.process.kill()
            return await self.process.wait()


@asynccontextmanager
async def service_process(
    name: str,
    log: Path,
    environment: Mapping[str, str],
    settings: Mapping[str, str] | None = None,
    ready_within: float = 60,
) -> AsyncIterator[ServiceProcess]:
    """Run service ``name`` on a free port until the block ends. ``environment`` is shared (KAFKA_*,
    DATABASE_URL); ``settings`` are the service's own, without its prefix (``CA_BUNDLE``)."""
    service = SERVICES[name]
    port = free_port()
    with log.open("w") as sink:
        process = await asyncio.create_subprocess_exec(
            *service.command,
            env=service.environment(environment, settings, port),
            stdout=sink,
            stderr=asyncio.subprocess.STDOUT,
            # a test run that dies without cleaning up leaves no service behind
            preexec_fn=die_with_parent(signal.SIGTERM),
        )
    running = ServiceProcess(service, f"http://127.0.0.1:{port}", process, log)
    try:
        async with httpx.AsyncClient(base_url=running.url) as client:

            async def ready() -> bool:
                if process.returncode is not None:
                    raise RuntimeError(f"{name} exited {process.returncode}:\n{running.output()}")
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await eventually(ready, within=ready_within, what=f"{name} ready")
        yield running
    finally:
        await running.stop()


def emulated_microsoft(emulator: RunningEmulator) -> dict[str, dict[str, str]]:
    """The settings (without prefix) that point the services talking to Entra ID and Graph at
    ``emulator``, with the app registrations it knows."""
    connector, writer = emulator.apps["directory-connector"], emulator.apps["intune-writer"]
    endpoints = {
        "LOGIN_BASE_URL": emulator.url,
        "GRAPH_BASE_URL": emulator.url,
        "CA_BUNDLE": emulator.ca,
    }
    return {
        "portal-api": {
            "LOGIN_BASE_URL": emulator.url,
            "CA_BUNDLE": emulator.ca,
            "CLIENT_ID": str(emulator.apps["portal-api"]["client_id"]),
        },
        "consent": {
            **endpoints,
            "DIRECTORY_CONNECTOR_CLIENT_ID": str(connector["client_id"]),
            "DIRECTORY_CONNECTOR_SECRET": str(connector["client_secret"]),
            "INTUNE_WRITER_CLIENT_ID": str(writer["client_id"]),
            "INTUNE_WRITER_SECRET": str(writer["client_secret"]),
        },
        "directory-sync": {
            **endpoints,
            "DIRECTORY_CONNECTOR_CLIENT_ID": str(connector["client_id"]),
            "DIRECTORY_CONNECTOR_SECRET": str(connector["client_secret"]),
        },
        "intune-writer": {
            **endpoints,
            "INTUNE_WRITER_CLIENT_ID": str(writer["client_id"]),
            "INTUNE_WRITER_SECRET": str(writer["client_secret"]),
        },
    }
