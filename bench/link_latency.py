"""Tenant linking latency: from POST /v1/tenants to status linked, through the whole pipeline.

portal-api and consent run as processes on real Kafka and PostgreSQL (fsync on); Entra ID and
Graph are the emulator at zero added latency. Each tenant is linked by its Global Administrator,
one at a time; the client polls the tenant every 5 ms, so "observed" includes up to one poll
interval. "server" is the portal's own record: requested_at to the verdict's projection
(updated_at). Prints the figures and writes JSON to bench/results/.

    uv run python bench/link_latency.py [--links 100] [--warmup 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from tenantflow.devinfra.infra import LocalInfra
from tenantflow.devinfra.services import emulated_microsoft, service_process
from tenantflow.devinfra.testing import infra_and_emulator, latency_summary
from tenantflow.emulator.testing import RunningEmulator

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.005


async def link_once(client: httpx.AsyncClient, tenant: UUID, token: str) -> tuple[float, float]:
    """Observed and server-side seconds from the POST to linked."""
    headers = {"authorization": f"Bearer {token}"}
    started = time.perf_counter()
    response = await client.post("/v1/tenants", json={"tenant_id": str(tenant)}, headers=headers)
    if response.status_code != 202:
        raise RuntimeError(f"POST answered {response.status_code}: {response.text}")
    while True:
        body: dict[str, Any] = (await client.get(f"/v1/tenants/{tenant}", headers=headers)).json()
        if body["status"] != "pending":
            observed = time.perf_counter() - started
            break
        await asyncio.sleep(POLL_S)
    if body["status"] != "linked":
        raise RuntimeError(f"{tenant} ended {body['status']}: {body.get('message')}")
    requested = datetime.fromisoformat(body["requested_at"])
    linked = datetime.fromisoformat(body["updated_at"])
    return observed, (linked - requested).total_seconds()


async def measure(infra: LocalInfra, emulator: RunningEmulator, links: int, warmup: int) -> Any:
    tenants = [
        emulator.seed_tenant_with_admin({"directory-connector": ["Directory.Read.All"]})
        for _ in range(links + warmup)
    ]
    tokens = [emulator.user_token(t, a, "Tenantflow.Admin") for t, a in tenants]
    environment = infra.environment()
    microsoft = emulated_microsoft(emulator)
    quiet = {"LOG_LEVEL": "WARNING"}
    with tempfile.TemporaryDirectory(prefix="tenantflow-bench-logs-") as logs:
        async with (
            service_process(
                "consent", Path(logs) / "consent.log", environment, microsoft["consent"] | quiet
            ),
            service_process(
                "portal-api",
                Path(logs) / "portal.log",
                environment,
                microsoft["portal-api"]
                | quiet
                | {"USER_REQUESTS_PER_MINUTE": "1000000", "TENANT_REQUESTS_PER_MINUTE": "1000000"},
            ) as portal,
            httpx.AsyncClient(base_url=portal.url, timeout=30) as client,
        ):
            results = [
                await link_once(client, tenant, token)
                for (tenant, _), token in zip(tenants, tokens, strict=True)
            ]
    measured = results[warmup:]
    return {
        "benchmark": "post_tenant_to_linked",
        "links": links,
        "warmup_links": warmup,
        "poll_interval_ms": POLL_S * 1000,
        "observed": latency_summary([observed for observed, _ in measured]),
        "server": latency_summary([server for _, server in measured]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10, help="links made first, not counted")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="tenantflow-bench-") as workdir,
        infra_and_emulator(Path(workdir)) as (infra, emulator),
    ):
        result = asyncio.run(measure(infra, emulator, args.links, args.warmup))
    observed, server = result["observed"], result["server"]
    print(
        f"POST /v1/tenants -> linked, {args.links} links one at a time: observed median "
        f"{observed['median_ms']} ms, p95 {observed['p95_ms']} ms, max {observed['max_ms']} ms; "
        f"server-side median {server['median_ms']} ms, p95 {server['p95_ms']} ms"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "link_latency.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
