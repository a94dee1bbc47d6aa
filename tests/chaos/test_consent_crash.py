"""Crashes in the middle of the linking flow lose nothing: consent killed (SIGKILL) while it waits
on Graph is replaced, the request is redelivered, and the tenant ends linked with one verdict."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from tenantflow.bus.settings import KafkaSettings
from tenantflow.contracts.envelope import decode
from tenantflow.contracts.events import TenantLinkVerified
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.services import emulated_microsoft, service_process
from tenantflow.devinfra.testing import create_database, eventually, read_topic
from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.e2e


async def test_consent_killed_mid_verification_loses_nothing(
    infra: RunningInfra, emulator: RunningEmulator, tmp_path: Path
) -> None:
    tenant, admin = emulator.seed_tenant_with_admin({"directory-connector": ["Directory.Read.All"]})
    kafka = KafkaSettings(
        bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"c{uuid4().hex[:8]}."
    )
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "DATABASE_URL": await create_database(infra.database_url),
    }
    microsoft = emulated_microsoft(emulator)
    token = emulator.user_token(tenant, admin, "Tenantflow.Admin")
    control = emulator.client()
    slow_graph = control.post(
        "/_emulator/faults", json={"path": "^/v1.0/organization$", "latency_ms": 5000}
    ).json()
    try:
        async with (
            service_process(
                "portal-api", tmp_path / "portal.log", environment, microsoft["portal-api"]
            ) as portal,
            httpx.AsyncClient(
                base_url=portal.url, headers={"authorization": f"Bearer {token}"}
            ) as client,
        ):
            async with service_process(
                "consent", tmp_path / "consent-1.log", environment, microsoft["consent"]
            ) as doomed:
                response = await client.post("/v1/tenants", json={"tenant_id": str(tenant)})
                assert response.status_code == 202

                def waiting_on_graph() -> bool:
                    faults = control.get("/_emulator/faults").json()
                    return any(f["id"] == slow_graph["id"] and f["matched"] for f in faults)

                await eventually(waiting_on_graph, within=30, what="consent waiting on Graph")
                doomed.process.kill()
                await doomed.process.wait()
            control.delete("/_emulator/faults").raise_for_status()
            body: dict[str, Any] = {}

            async def linked() -> bool:
                nonlocal body
                body = (await client.get(f"/v1/tenants/{tenant}")).json()
                return bool(body["status"] != "pending")

            async with service_process(
                "consent", tmp_path / "consent-2.log", environment, microsoft["consent"]
            ):
                await eventually(linked, within=90, what="linked by the replacement")
    finally:
        control.delete("/_emulator/faults")
        control.close()
    assert body["status"] == "linked"
    records = await read_topic(kafka, Topic.TENANTS, count=2)
    verdicts = [
        decode(r.headers, r.value)
        for r in records
        if dict(r.headers).get("ce_type") == TenantLinkVerified.event_type.encode()
    ]
    assert len(verdicts) == 1
