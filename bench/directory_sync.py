"""Directory sync: how long syncs take and how much memory the sync process needs.

directory-sync runs as a process on real Kafka and PostgreSQL against the emulator; links are
announced on the bus as consent would (TenantLinkVerified), sync requests as the portal would.
A sync is timed from the event's publication to the tenant's row recording the finished sync
(polled every 20 ms). Scenarios:

- big: one synthetic tenant (default 50,000 users, 5,000 groups, 60,000 devices, departments
  nesting teams), throttling off: the initial full sync, and the process's peak RSS (VmHWM);
- incremental: 100 directory changes on the big tenant, then one requested sync;
- concurrent: ten tenants of 5,000 users synced at once vs the same ten one after another, and
  a small tenant's sync started alongside the ten;
- limits: the big tenant's initial sync with Graph's directory limits on, against the minimum
  those limits allow for the requests it made (the emulator's token bucket: capacity C resource
  units per window W, so N units take at least (N - C) * W / C seconds).

    uv run python bench/directory_sync.py [--users 50000 --groups 5000 --devices 60000]
        [--parts big ten limits] [--rounds 5] [--tight-units 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4, uuid5

import asyncpg

from tenantflow.bus.settings import KafkaSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.contracts.common import EventPayload, ServiceActor
from tenantflow.contracts.events import (
    DirectorySyncRequested,
    LinkAuthorization,
    TenantLinkVerified,
)
from tenantflow.devinfra.infra import LocalInfra
from tenantflow.devinfra.services import ServiceProcess, emulated_microsoft, service_process
from tenantflow.devinfra.testing import infra_and_emulator, publish
from tenantflow.emulator.seeds import NAMESPACE, synthetic_tenant
from tenantflow.emulator.testing import RunningEmulator

ROOT = Path(__file__).resolve().parents[1]
ACTOR = ServiceActor(service="bench")


class Bench:
    def __init__(self, infra: LocalInfra, emulator: RunningEmulator) -> None:
        self.infra, self.emulator = infra, emulator
        environment = infra.environment()
        self.kafka = KafkaSettings(
            bootstrap_servers=environment["KAFKA_BOOTSTRAP_SERVERS"],
            topic_prefix=environment.get("KAFKA_TOPIC_PREFIX", ""),
        )
        self.dsn = environment["DATABASE_URL"].replace("postgresql+asyncpg://", "postgresql://")

    def seed(self, users: int, groups: int, devices: int) -> UUID:
        tenant = uuid4()
        document = synthetic_tenant(
            tenant, "Bench", f"t{tenant.hex[:8]}.example", users, groups, devices
        )
        document["enterprise_apps"] = [
            {
                "app_id": self.emulator.apps["directory-connector"]["client_id"],
                "permissions": ["Directory.Read.All"],
            }
        ]
        self.emulator.seed(document)
        return tenant

    async def publish(self, *events: EventPayload) -> None:
        await publish(self.kafka, *events, source="/tenantflow/bench")

    @staticmethod
    def verified(tenant: UUID) -> TenantLinkVerified:
        return TenantLinkVerified(
            tenant_id=tenant,
            actor=ACTOR,
            correlation_id=uuid4(),
            display_name="Bench",
            default_domain="bench.example",
            granted_permissions=["Directory.Read.All"],
            authorized_by=LinkAuthorization.GLOBAL_ADMINISTRATOR,
        )

    async def synced_after(self, tenants: list[UUID], since: float, within: float) -> float:
        """Seconds from ``since`` (perf_counter) until every tenant recorded a sync that
        finished after it."""
        started_wall = time.time() - (time.perf_counter() - since)
        connection = await asyncpg.connect(self.dsn)
        try:
            while True:
                rows = await connection.fetch(
                    "SELECT tenant_id, last_sync_at FROM directory_sync.tenants "
                    "WHERE tenant_id = ANY($1::uuid[])",
                    tenants,
                )
                done = [
                    r
                    for r in rows
                    if r["last_sync_at"] and r["last_sync_at"].timestamp() >= started_wall
                ]
                if len(done) == len(tenants):
                    return time.perf_counter() - since
                if time.perf_counter() - since > within:
                    raise RuntimeError(f"{len(done)} of {len(tenants)} synced within {within} s")
                await asyncio.sleep(0.02)
        finally:
            await connection.close()

    async def link_and_wait(self, tenants: list[UUID], within: float = 900) -> float:
        started = time.perf_counter()
        await self.publish(*(self.verified(t) for t in tenants))
        return await self.synced_after(tenants, started, within)

    def throttling(self, enabled: bool) -> None:
        with self.emulator.client() as control:
            control.put("/_emulator/throttling", json={"enabled": enabled}).raise_for_status()


async def big_tenant(
    bench: Bench,
    args: argparse.Namespace,
    logs: Path,
    settings: dict[str, str],
    result: dict[str, Any],
) -> None:
    environment = bench.infra.environment()
    big = bench.seed(args.users, args.groups, args.devices)
    async with service_process("directory-sync", logs / "big.log", environment, settings) as sync:
        initial = await bench.link_and_wait([big])
        result["big_initial_sync"] = {
            "users": args.users,
            "groups": args.groups,
            "devices": args.devices,
            "seconds": round(initial, 2),
            "peak_rss_mb": peak_rss_mb(sync),
        }
        print(
            f"initial sync {args.users}/{args.groups}/{args.devices}: {initial:.2f} s, "
            f"peak RSS {peak_rss_mb(sync)} MB",
            flush=True,
        )
        increments = []
        for round_ in range(args.rounds):
            mutations = [
                {"op": "rename_group", "group_id": _group(big, n), "display_name": f"R{round_}-{n}"}
                for n in range(args.groups // 4, args.groups // 4 + 50)
            ] + [
                {
                    "op": "add_member",
                    "group_id": _group(big, args.groups - 1 - n),
                    "member_id": _user(big, args.users - 1 - n - round_ * 50),
                }
                for n in range(50)
            ]
            bench.emulator.change_directory(big, *mutations).raise_for_status()
            started = time.perf_counter()
            await bench.publish(
                DirectorySyncRequested(
                    tenant_id=big, actor=ACTOR, correlation_id=uuid4(), mode="delta"
                )
            )
            increments.append(await bench.synced_after([big], started, 120))
        result["incremental_100_changes"] = {
            "rounds": args.rounds,
            "median_s": round(statistics.median(increments), 3),
            "all_s": [round(s, 3) for s in increments],
        }
        print(
            f"incremental sync of 100 changes: median {statistics.median(increments):.3f} s",
            flush=True,
        )


async def limited_sync(
    bench: Bench, args: argparse.Namespace, logs: Path, settings: dict[str, str], units: int
) -> dict[str, Any]:
    """The big tenant's initial sync with the emulator's directory limits on, at ``units``
    resource units per 10 s (8,000 is Graph's for tenants over 500 users), against the least
    time those limits allow for the units spent: the bucket starts full (C units) and refills
    at C per window, so N units need at least (N - C) * window / C seconds."""
    window = 10.0
    with bench.emulator.client() as control:
        control.put(
            "/_emulator/throttling",
            json={
                "enabled": True,
                "limits": {
                    f"directory_units_{size}": units for size in ("small", "medium", "large")
                }
                | {"directory_window_s": window},
            },
        ).raise_for_status()
    tenant = bench.seed(args.users, args.groups, args.devices)
    environment = bench.infra.environment()
    async with service_process(
        "directory-sync", logs / f"limits-{units}.log", environment, settings
    ):
        began = time.time()
        seconds = await bench.link_and_wait([tenant])
    with bench.emulator.client() as control:
        requests = control.get("/_emulator/requests", params={"tenant": str(tenant)}).json()
    deltas = [entry for entry in requests if "/delta" in str(entry["path"])]
    fetches = [datetime.fromisoformat(entry["time"]).timestamp() - began for entry in deltas]
    spent = sum(entry["status"] == 200 for entry in deltas)  # a delta page with $select: 1 unit
    minimum = max(0.0, (spent - units) * window / units)
    return {
        "limit": f"{units} units per {window:g} s",
        "seconds": round(seconds, 2),
        "resource_units": spent,
        "throttled": sum(entry["status"] == 429 for entry in requests),
        "first_fetch_s": round(min(fetches), 2),
        "last_fetch_s": round(max(fetches), 2),
        "minimum_by_limits_s": round(minimum, 2),
        "over_minimum": round(seconds / minimum - 1, 3) if minimum else None,
    }


def peak_rss_mb(process: ServiceProcess) -> float:
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
    return round(int(line.split()[1]) / 1024, 1)


async def run(bench: Bench, args: argparse.Namespace, logs: Path) -> dict[str, Any]:
    await ensure_topics(bench.kafka)
    settings = emulated_microsoft(bench.emulator)["directory-sync"] | {
        "LOG_LEVEL": "WARNING",
        "POLL_SECONDS": "0.2",
        "CONCURRENCY": "16",
    }
    if args.pages_in_flight:
        settings["PAGES_IN_FLIGHT"] = str(args.pages_in_flight)
    result: dict[str, Any] = {}
    bench.throttling(False)
    if "big" in args.parts:
        await big_tenant(bench, args, logs, settings, result)
    if "ten" in args.parts:
        await ten_tenants(bench, args, logs, settings, result)
    if "limits" in args.parts:
        for name, units in (("graph_limits", 8000), ("tight_limits", args.tight_units)):
            figures = await limited_sync(bench, args, logs, settings, units)
            result[f"big_initial_sync_{name}"] = figures
            print(
                f"with {figures['limit']}: {figures['seconds']} s for {figures['resource_units']} "
                f"units ({figures['throttled']} answered 429; fetches from "
                f"{figures['first_fetch_s']} s to {figures['last_fetch_s']} s); the limits allow "
                f"it in {figures['minimum_by_limits_s']} s at least",
                flush=True,
            )
        bench.throttling(False)
    return result


async def ten_tenants(
    bench: Bench,
    args: argparse.Namespace,
    logs: Path,
    settings: dict[str, str],
    result: dict[str, Any],
) -> None:
    environment = bench.infra.environment()
    # ten tenants: one after another, then at once (fresh tenants each time), and a small one
    sequential_tenants = [bench.seed(5000, 500, 5000) for _ in range(10)]
    concurrent_tenants = [bench.seed(5000, 500, 5000) for _ in range(10)]
    small = bench.seed(50, 5, 50)
    async with service_process("directory-sync", logs / "ten.log", environment, settings):
        sequential = 0.0
        for tenant in sequential_tenants:
            sequential += await bench.link_and_wait([tenant])
        started = time.perf_counter()
        await bench.publish(*(bench.verified(t) for t in concurrent_tenants))
        published_big = time.perf_counter() - started
        await bench.publish(bench.verified(small))
        if args.trace_small:
            small_at = time.perf_counter() - started
            print(f"  published: big +{published_big:.2f} s, small +{small_at:.2f} s")
        small_s = await bench.synced_after([small], started, 600)
        if args.trace_small:
            began = time.time() - (time.perf_counter() - started)
            with bench.emulator.client() as control:
                entries = control.get("/_emulator/requests", params={"tenant": str(small)}).json()
                entries += control.get(
                    "/_emulator/requests", params={"path_prefix": f"/{small}"}
                ).json()
                for entry in sorted(entries, key=lambda e: str(e["time"])):
                    at = datetime.fromisoformat(entry["time"]).timestamp() - began
                    print(f"  small: +{at:.2f} s {entry['path']}")
        concurrent = await bench.synced_after(concurrent_tenants, started, 900)
    result["ten_tenants_5000_users"] = {
        "sequential_s": round(sequential, 2),
        "concurrent_s": round(concurrent, 2),
        "ratio": round(concurrent / sequential, 3),
        "small_tenant_alongside_s": round(small_s, 2),
    }
    print(
        f"ten tenants of 5000 users: sequential {sequential:.2f} s, concurrent {concurrent:.2f} s "
        f"(ratio {concurrent / sequential:.3f}); a small tenant alongside: {small_s:.2f} s",
        flush=True,
    )


def _group(tenant: UUID, n: int) -> str:
    """The id synthetic_tenant gives its n-th group."""
    return str(uuid5(NAMESPACE, f"{tenant}/group/{n}"))


def _user(tenant: UUID, n: int) -> str:
    return str(uuid5(NAMESPACE, f"{tenant}/user/{n}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--groups", type=int, default=5_000)
    parser.add_argument("--devices", type=int, default=60_000)
    parser.add_argument("--rounds", type=int, default=5, help="incremental syncs measured")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=("big", "ten", "limits"),
        default=["big", "ten", "limits"],
        help="what to measure: the big tenant's syncs, ten tenants and a small one at once, "
        "the big tenant's initial sync under Graph's limits",
    )
    parser.add_argument(
        "--tight-units",
        type=int,
        default=200,
        help="resource units per 10 s of the run where the limits bind",
    )
    parser.add_argument("--pages-in-flight", type=int, help="the service's PAGES_IN_FLIGHT")
    parser.add_argument("--trace-small", action="store_true", help="the small tenant's calls")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="tenantflow-bench-") as workdir,
        infra_and_emulator(Path(workdir)) as (infra, emulator),
    ):
        result = asyncio.run(run(Bench(infra, emulator), args, Path(workdir)))
    result["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version()}
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "directory_sync.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
