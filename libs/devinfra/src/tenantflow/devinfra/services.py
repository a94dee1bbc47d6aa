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


MICROSOFT_LOGIN = "https://login.microsoftonline.com"
MICROSOFT_GRAPH = "https://graph.microsoft.com"


@dataclass(frozen=True)
class MicrosoftApps:
    """Where Entra ID and Graph are, and tenantflow's three app registrations there: the
    settings (without prefix) of each service that talks to them. Credentials are given by
    suffix: ``CLIENT_ID`` and ``SECRET``, or ``CLIENT_ID``, ``CERTIFICATE`` and
    ``PRIVATE_KEY``."""

    login_base_url: str
    graph_base_url: str
    ca_bundle: str | None
    portal_client_id: str
    directory_connector: Mapping[str, str]
    intune_writer: Mapping[str, str]
    provider_tenant_id: str | None = None

    def settings(self) -> dict[str, dict[str, str]]:
        endpoints = {"LOGIN_BASE_URL": self.login_base_url, "GRAPH_BASE_URL": self.graph_base_url}
        if self.ca_bundle:
            endpoints["CA_BUNDLE"] = self.ca_bundle
        connector = {f"DIRECTORY_CONNECTOR_{k}": v for k, v in self.directory_connector.items()}
        writer = {f"INTUNE_WRITER_{k}": v for k, v in self.intune_writer.items()}
        portal = {
            "LOGIN_BASE_URL": self.login_base_url,
            "CLIENT_ID": self.portal_client_id,
            **({"CA_BUNDLE": self.ca_bundle} if self.ca_bundle else {}),
            **({"PROVIDER_TENANT_ID": self.provider_tenant_id} if self.provider_tenant_id else {}),
        }
        return {
            "portal-api": portal,
            "consent": {**endpoints, **connector, **writer},
            "directory-sync": {**endpoints, **connector},
            "intune-writer": {**endpoints, **writer},
        }


def emulated_microsoft(emulator: RunningEmulator) -> dict[str, dict[str, str]]:
    """The settings (without prefix) that point the services talking to Entra ID and Graph at
    ``emulator``, with the app registrations it knows."""
    connector, writer = emulator.apps["directory-connector"], emulator.apps["intune-writer"]
    return MicrosoftApps(
        login_base_url=emulator.url,
        graph_base_url=emulator.url,
        ca_bundle=emulator.ca,
        portal_client_id=str(emulator.apps["portal-api"]["client_id"]),
        directory_connector={
            "CLIENT_ID": str(connector["client_id"]),
            "SECRET": str(connector["client_secret"]),
        },
        intune_writer={
            "CLIENT_ID": str(writer["client_id"]),
            "SECRET": str(writer["client_secret"]),
        },
    ).settings()


class MicrosoftNotConfigured(Exception):
    """The settings for real Entra ID and Graph are incomplete; the message names what is
    missing."""


def entra_microsoft(environment: Mapping[str, str]) -> MicrosoftApps:
    """Real Entra ID and Graph, from ``environment`` (a .env file, see .env.example):
    ``TENANTFLOW_LOGIN_BASE_URL`` and ``TENANTFLOW_GRAPH_BASE_URL`` (Microsoft's global cloud
    unless set), ``TENANTFLOW_CA_BUNDLE`` (a TLS-inspecting proxy's CA; the system's trust
    store unless set), ``TENANTFLOW_PORTAL_API_CLIENT_ID``, ``TENANTFLOW_PROVIDER_TENANT_ID``
    (optional), and for the directory connector and the Intune writer
    ``TENANTFLOW_<APP>_CLIENT_ID`` with ``_SECRET``, or with ``_CERTIFICATE`` and
    ``_PRIVATE_KEY`` (PEM file paths, preferred)."""
    missing: list[str] = []

    def credentials(app: str) -> dict[str, str]:
        prefix = f"TENANTFLOW_{app}_"
        found = {
            key: environment[prefix + key]
            for key in ("CLIENT_ID", "SECRET", "CERTIFICATE", "PRIVATE_KEY")
            if environment.get(prefix + key)
        }
        if "CLIENT_ID" not in found:
            missing.append(prefix + "CLIENT_ID")
        if "SECRET" not in found and not {"CERTIFICATE", "PRIVATE_KEY"} <= set(found):
            missing.append(f"{prefix}SECRET (or {prefix}CERTIFICATE and {prefix}PRIVATE_KEY)")
        return found

    portal = environment.get("TENANTFLOW_PORTAL_API_CLIENT_ID", "")
    if not portal:
        missing.append("TENANTFLOW_PORTAL_API_CLIENT_ID")
    connector, writer = credentials("DIRECTORY_CONNECTOR"), credentials("INTUNE_WRITER")
    if missing:
        raise MicrosoftNotConfigured(
            "TENANTFLOW_MICROSOFT=entra needs " + ", ".join(missing) + " (see .env.example)"
        )
    return MicrosoftApps(
        login_base_url=environment.get("TENANTFLOW_LOGIN_BASE_URL") or MICROSOFT_LOGIN,
        graph_base_url=environment.get("TENANTFLOW_GRAPH_BASE_URL") or MICROSOFT_GRAPH,
        ca_bundle=environment.get("TENANTFLOW_CA_BUNDLE") or None,
        portal_client_id=portal,
        directory_connector=connector,
        intune_writer=writer,
        provider_tenant_id=environment.get("TENANTFLOW_PROVIDER_TENANT_ID") or None,
    )
