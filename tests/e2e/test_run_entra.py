"""`make run` against Microsoft: with TENANTFLOW_MICROSOFT=entra in a .env file, no emulator is
started and every service gets its endpoints and app registration from the file's shared
names. Microsoft is out of reach here, so the file points them at an emulator of its own,
given exactly as Entra ID would be (its URL, its CA, the three registrations' ids and secrets):
a tenant linked through the portal proves each setting reached the service that needs it."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import httpx
import pytest

from tenantflow.devinfra.processes import free_port
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.services import SERVICES
from tenantflow.devinfra.testing import create_database, eventually
from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.e2e

CONNECTOR_PERMISSIONS = ["Directory.Read.All"]


def run(env_file: Path, log: Path, **environment: str) -> subprocess.Popen[bytes]:
    with log.open("w") as sink:
        return subprocess.Popen(
            [sys.executable, "-m", "tenantflow.devinfra.run"],
            env={
                **{k: v for k, v in environment.items()},
                "PATH": "/usr/bin:/bin",
                "TENANTFLOW_ENV_FILE": str(env_file),
                "TENANTFLOW_INFRA_DIR": str(log.parent / "infra"),
            },
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


async def test_a_missing_setting_stops_the_run_at_once_naming_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "TENANTFLOW_MICROSOFT=entra\nTENANTFLOW_PORTAL_API_CLIENT_ID=" + str(uuid4()) + "\n"
    )
    log = tmp_path / "run.log"
    supervisor = run(env_file, log)
    assert await asyncio.to_thread(supervisor.wait, 60) != 0
    said = log.read_text()
    assert "TENANTFLOW_DIRECTORY_CONNECTOR_CLIENT_ID" in said
    assert "TENANTFLOW_INTUNE_WRITER_SECRET (or TENANTFLOW_INTUNE_WRITER_CERTIFICATE" in said
    assert "TENANTFLOW_PORTAL_API_CLIENT_ID," not in said  # that one was given
    assert not (tmp_path / "infra").exists()  # nothing was started


async def test_run_takes_entra_and_graph_from_a_env_file(
    infra: RunningInfra, emulator: RunningEmulator, tmp_path: Path
) -> None:
    ports = {service.name: free_port() for service in SERVICES.values()}
    connector, writer = emulator.apps["directory-connector"], emulator.apps["intune-writer"]
    env_file = tmp_path / ".env"
    env_file.write_text(
        "\n".join(
            [
                "TENANTFLOW_MICROSOFT=entra",
                f"TENANTFLOW_LOGIN_BASE_URL={emulator.url}",
                f"TENANTFLOW_GRAPH_BASE_URL={emulator.url}",
                f"TENANTFLOW_CA_BUNDLE={emulator.ca}",
                f"TENANTFLOW_PORTAL_API_CLIENT_ID={emulator.apps['portal-api']['client_id']}",
                f"TENANTFLOW_DIRECTORY_CONNECTOR_CLIENT_ID={connector['client_id']}",
                f"TENANTFLOW_DIRECTORY_CONNECTOR_SECRET={connector['client_secret']}",
                f"TENANTFLOW_INTUNE_WRITER_CLIENT_ID={writer['client_id']}",
                f"TENANTFLOW_INTUNE_WRITER_SECRET={writer['client_secret']}",
                f"KAFKA_BOOTSTRAP_SERVERS={infra.bootstrap_servers}",
                f"KAFKA_TOPIC_PREFIX=x{uuid4().hex[:8]}.",
                f"DATABASE_URL={await create_database(infra.database_url)}",
                *(f"{s.env_prefix}PORT={ports[s.name]}" for s in SERVICES.values()),
            ]
        )
        + "\n"
    )
    log = tmp_path / "run.log"
    supervisor = run(env_file, log)
    try:
        output = lambda: log.read_text(errors="replace")  # noqa: E731

        async def ready() -> bool:
            assert supervisor.poll() is None, output()[-4000:]
            async with httpx.AsyncClient(timeout=5) as client:
                for port in ports.values():
                    try:
                        if (await client.get(f"http://127.0.0.1:{port}/readyz")).status_code != 200:
                            return False
                    except httpx.TransportError:
                        return False
            return True

        await eventually(ready, within=180, what="every service ready")
        assert f"Entra ID on {emulator.url}" in output()
        assert "demo tenants" not in output()  # no emulator of its own
        assert "tokens: Entra ID issues them to your portal front end for the API" in output()
        assert not (tmp_path / "infra" / "kafka").exists()  # the .env's Kafka and PostgreSQL

        # a tenant linked: consent reached "Entra ID" and "Graph" with the connector's
        # registration from the file, the portal accepted a token for its registration
        tenant, admin = emulator.seed_tenant_with_admin(
            {"directory-connector": CONNECTOR_PERMISSIONS}
        )
        token = emulator.user_token(tenant, admin, "Tenantflow.Admin")
        headers = {"authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{ports['portal-api']}", headers=headers, timeout=10
        ) as portal:
            answer = await portal.post("/v1/tenants", json={"tenant_id": str(tenant)})
            assert answer.status_code == 202, answer.text

            async def linked() -> bool:
                return bool(
                    (await portal.get(f"/v1/tenants/{tenant}")).json()["status"] == "linked"
                )

            await eventually(linked, within=60, what="the tenant linked")
        supervisor.send_signal(signal.SIGINT)
        await asyncio.to_thread(supervisor.wait, 120)
        assert output().rstrip().endswith("stopped"), output()[-2000:]
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
