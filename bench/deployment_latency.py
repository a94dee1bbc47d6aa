"""Deployment change latency: from a PUT accepted to the change applied in Intune, through the
pipeline.

portal-api, consent, directory-sync and intune-writer run as processes on real Kafka and
PostgreSQL (fsync on); Entra ID and Graph are the emulator at zero added latency. One tenant is
linked and Intune writing activated by its Global Administrator, its directory and assignment
filters read; then the administrator changes one deployment PUT after PUT, each waiting for its
verdict (idle: one change in flight). Nothing is in doubt, so consent calls no Graph API. PUTs
start at least ``SPACING_S`` apart: each change is one Intune write, and faster than 5 a second
the tenant would spend Intune's 100 writes per 20 s, after which the writer waits for the window
by design (what that costs is the throughput benchmark's subject, bench/intune_writer.py).

- "accepted_to_applied" (the target): from the client receiving the PUT's 202 to the portal
  recording the change applied (the change's ``updated_at``; same machine, same clock): the
  portal, consent, the writer (its read of the app's assignments and its /assign, the emulator
  at zero added latency) and back;
- "accepted_to_verdict": from the 202 to consent's verdict (the ``verified`` step's time on the
  timeline: consent's event);
- "accepted_to_written": from the 202 to the writer's Applied event (the ``applied`` step's
  time: when Graph acknowledged the write);
- "put": the PUT itself, sent to answered;
- "observed": from sending the PUT to the client seeing ``applied`` (GET /v1/changes/{id}
  polled every 5 ms, so it includes up to one poll interval and the GETs' own time);
- "hops": where the time goes, from the outboxes' and inboxes' timestamps.

Prints the figures and writes JSON to bench/results/.

    uv run python bench/deployment_latency.py [--changes 300] [--warmup 30]
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
from uuid import UUID, uuid4

import asyncpg
import httpx

from tenantflow.devinfra.infra import LocalInfra
from tenantflow.devinfra.services import emulated_microsoft, service_process
from tenantflow.devinfra.testing import eventually, infra_and_emulator, latency_summary
from tenantflow.emulator.testing import RunningEmulator

ROOT = Path(__file__).resolve().parents[1]
POLL_S = 0.02
SPACING_S = 0.25
"""4 changes a second at most: 80 writes per 20 s, within Intune's 100."""
APP = "company-portal"
WRITER_PERMISSIONS = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementConfiguration.Read.All",
    "Organization.Read.All",
]


def seed(emulator: RunningEmulator) -> tuple[UUID, UUID, list[UUID]]:
    tenant, admin, groups = uuid4(), uuid4(), [uuid4() for _ in range(10)]
    domain = f"t{tenant.hex[:10]}.example"
    emulator.seed(
        {
            "id": str(tenant),
            "display_name": "Contoso",
            "verified_domains": [domain],
            "users": [
                {
                    "id": str(admin),
                    "display_name": "Admin",
                    "user_principal_name": f"admin@{domain}",
                    "directory_roles": ["Global Administrator"],
                }
            ],
            "groups": [{"id": str(g), "display_name": f"Group {n}"} for n, g in enumerate(groups)],
            "enterprise_apps": [
                {
                    "app_id": emulator.apps["directory-connector"]["client_id"],
                    "permissions": ["Directory.Read.All"],
                },
                {
                    "app_id": emulator.apps["intune-writer"]["client_id"],
                    "permissions": WRITER_PERMISSIONS,
                },
            ],
        }
    )
    return tenant, admin, groups


async def ready(client: httpx.AsyncClient, tenant: UUID) -> None:
    """Link, activate Intune writing, and wait for the directory in the portal."""
    path = f"/v1/tenants/{tenant}"
    if (await client.post("/v1/tenants", json={"tenant_id": str(tenant)})).status_code != 202:
        raise RuntimeError("linking was refused")

    async def status(intune: bool, wanted: str) -> bool:
        body = (await client.get(path)).json()
        return bool((body["intune_writing"] if intune else body)["status"] == wanted)

    await eventually(lambda: status(False, "linked"), within=60, what="linked")
    if (await client.post(f"{path}/intune")).status_code != 202:
        raise RuntimeError("activating Intune writing was refused")
    await eventually(lambda: status(True, "enabled"), within=60, what="Intune writing")

    async def synced() -> bool:
        return bool((await client.get(f"{path}/directory")).json()["status"] == "synced")

    await eventually(synced, within=120, what="the directory")


async def change_once(
    client: httpx.AsyncClient, tenant: UUID, group: UUID, etag: str | None
) -> tuple[float, float, float, float, float, str]:
    """Seconds from sending the PUT to its 202, from sending it to the client seeing the change
    applied, from the 202 to consent's verdict, to the writer's write, and to the portal
    recording it applied; the new ETag."""
    headers = {"if-match": etag} if etag else {"if-none-match": "*"}
    body = {
        "assignments": [{"target": {"kind": "group", "group_id": str(group)}, "intent": "required"}]
    }
    started = time.perf_counter()
    response = await client.put(
        f"/v1/tenants/{tenant}/deployments/{APP}", json=body, headers=headers
    )
    if response.status_code != 202:
        raise RuntimeError(f"PUT answered {response.status_code}: {response.text}")
    accepted_at = time.time()
    accepted = time.perf_counter() - started
    location = response.headers["location"]
    while True:
        change: dict[str, Any] = (await client.get(location)).json()
        if change["status"] in ("applied", "failed", "rejected"):
            observed = time.perf_counter() - started
            break
        await asyncio.sleep(POLL_S)  # polling the API as a client would, with a deadline below
        if time.perf_counter() - started > 60:
            raise RuntimeError(f"the change is still {change['status']} after 60 s")
    if change["status"] != "applied":
        raise RuntimeError(f"the change ended {change['status']}: {change.get('detail')}")
    recorded = datetime.fromisoformat(change["updated_at"]).timestamp() - accepted_at
    steps = {step["status"]: datetime.fromisoformat(step["at"]) for step in change["timeline"]}
    decided = steps["verified"].timestamp() - accepted_at
    written = steps["applied"].timestamp() - accepted_at
    return accepted, observed, decided, written, recorded, response.headers["etag"]


HOPS = """
SELECT req.created_at AS requested,
       req.published_at AS requested_published,
       cin.processed_at AS consent_received,
       ver.created_at AS verified,
       ver.published_at AS verified_published,
       win.processed_at AS writer_received,
       app.created_at AS written,
       app.published_at AS applied_published,
       pin.processed_at AS portal_received
FROM portal_api.outbox req
JOIN consent.inbox cin ON cin.event_id = req.event_id AND cin.consumer = 'consent.changes'
JOIN consent.outbox ver
  ON convert_from(ver.value, 'UTF8')::jsonb ->> 'causation_id' = req.event_id
JOIN intune_writer.inbox win
  ON win.event_id = ver.event_id AND win.consumer = 'intune-writer.deployments'
JOIN intune_writer.outbox app
  ON convert_from(app.value, 'UTF8')::jsonb ->> 'causation_id' = ver.event_id
JOIN portal_api.inbox pin ON pin.event_id = app.event_id AND pin.consumer = 'portal-api.changes'
WHERE req.topic LIKE '%tenantflow.deployments'
ORDER BY req.id DESC LIMIT $1
"""


async def breakdown(database_url: str, changes: int) -> dict[str, dict[str, float]]:
    """Where a change's time goes, from the outboxes' and inboxes' timestamps (each the start
    of its transaction): the portal's relay, consent's handling and relay, the writer's ingest,
    scheduling and Graph calls ("writer": to the start of the transaction recording the write),
    its relay, the portal's projection."""
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await connection.fetch(HOPS, changes)
    finally:
        await connection.close()
    names = [
        ("portal_relay", "requested", "requested_published"),
        ("to_consent", "requested_published", "consent_received"),
        ("consent", "consent_received", "verified"),
        ("consent_relay", "verified", "verified_published"),
        ("to_writer", "verified_published", "writer_received"),
        ("writer", "writer_received", "written"),
        ("writer_relay", "written", "applied_published"),
        ("to_portal", "applied_published", "portal_received"),
    ]
    return {
        name: latency_summary([(row[end] - row[start]).total_seconds() for row in rows])
        for name, start, end in names
    }


async def measure(infra: LocalInfra, emulator: RunningEmulator, changes: int, warmup: int) -> Any:
    tenant, admin, groups = seed(emulator)
    token = emulator.user_token(tenant, admin, "Tenantflow.Admin")
    environment = infra.environment()
    microsoft = emulated_microsoft(emulator)
    quiet = {"LOG_LEVEL": "WARNING"}
    unlimited = {"USER_REQUESTS_PER_MINUTE": "1000000", "TENANT_REQUESTS_PER_MINUTE": "1000000"}
    with tempfile.TemporaryDirectory(prefix="tenantflow-bench-logs-") as logs:

        def process(service: str, extra: dict[str, str] | None = None) -> Any:
            settings = microsoft[service] | quiet | (extra or {})
            return service_process(service, Path(logs) / f"{service}.log", environment, settings)

        async with (
            process("consent"),
            process("directory-sync"),
            process("intune-writer"),
            process("portal-api", unlimited) as portal,
            httpx.AsyncClient(
                base_url=portal.url, timeout=30, headers={"authorization": f"Bearer {token}"}
            ) as client,
        ):
            await ready(client, tenant)
            results, etag = [], None
            for number in range(changes + warmup):
                started = time.monotonic()
                *figures, etag = await change_once(
                    client, tenant, groups[number % len(groups)], etag
                )
                results.append(figures)
                # pacing the load (see SPACING_S), not synchronisation
                await asyncio.sleep(max(0.0, SPACING_S - (time.monotonic() - started)))
            hops = await breakdown(infra.database_url, changes)
    measured = results[warmup:]
    return {
        "benchmark": "put_deployment_to_applied",
        "changes": changes,
        "warmup_changes": warmup,
        "poll_interval_ms": POLL_S * 1000,
        "put_spacing_ms": SPACING_S * 1000,
        "put": latency_summary([figures[0] for figures in measured]),
        "observed": latency_summary([figures[1] for figures in measured]),
        "accepted_to_verdict": latency_summary([figures[2] for figures in measured]),
        "accepted_to_written": latency_summary([figures[3] for figures in measured]),
        "accepted_to_applied": latency_summary([figures[4] for figures in measured]),
        "accepted_to_applied_samples_ms": [round(figures[4] * 1000, 1) for figures in measured],
        "hops": hops,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30, help="changes made first, not counted")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="tenantflow-bench-") as workdir,
        infra_and_emulator(Path(workdir)) as (infra, emulator),
    ):
        result = asyncio.run(measure(infra, emulator, args.changes, args.warmup))
    put, observed = result["put"], result["observed"]
    verdict, written = result["accepted_to_verdict"], result["accepted_to_written"]
    applied = result["accepted_to_applied"]
    for hop, figures in result["hops"].items():
        print(f"  {hop}: median {figures['median_ms']} ms, p99 {figures['p99_ms']} ms")
    print(
        f"PUT accepted (202) -> the portal records the change applied, {args.changes} changes "
        f"one at a time: median {applied['median_ms']} ms, p99 {applied['p99_ms']} ms, max "
        f"{applied['max_ms']} ms (to consent's verdict: median {verdict['median_ms']} ms, p99 "
        f"{verdict['p99_ms']} ms; to the write: median {written['median_ms']} ms, p99 "
        f"{written['p99_ms']} ms). The PUT itself: median {put['median_ms']} ms, p99 "
        f"{put['p99_ms']} ms. PUT sent -> client sees applied (polling every "
        f"{POLL_S * 1000:g} ms): median {observed['median_ms']} ms, p99 {observed['p99_ms']} ms"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "deployment_latency.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
