"""The Intune writer under Intune's limits: throughput against the quota, the same work done the
way scripts do it, adaptation to a lower real limit, head-of-line isolation, and scale-out.

Real Kafka and PostgreSQL (fsync on), the emulator with throttling on at Microsoft's published
limits (100 writes and 1,000 requests per 20 s per app per tenant), writer processes as in
production. Changes are put on the deployments topic as portal-api requests them and consent
verifies them.

- throughput: 5,000 changes across 25 tenants (200 apps each, created already and carrying
  tenantflow's marker; one /assign each). The changes are ingested while the tenants are parked
  (consent revoked), then every tenant is enabled at once: the clock runs from that moment to the
  last change applied. The minimum the quota allows is computed from the emulator's limits: a
  tenant's n writes need (ceil(n / limit) - 1) windows, as a window's writes may all go at once.
  Also: the share of Graph calls answered 429, whether any tenant ever had more than its limit in
  any window (from the emulator's request log), the writers' peak RSS;
- scripts: the same workload as scripts do it, one change at a time, tenant after tenant (read
  the app's assignments, then /assign, waiting out each 429's Retry-After), on fresh tenants;
- adaptation: the emulator's per-app write limit halved while the writer assumes the published
  one;
- head of line: one tenant's Graph calls take 2 s each (kept busy) while the others run at zero
  latency, each making a change every 2 s: the others' latency from requested and verified to
  applied (``--slow-ms 0`` runs the same load with no slow tenant, to compare);
- scale-out: the throughput run with 1, 2 and 3 writer processes in one consumer group.

Prints the figures and writes JSON to bench/results/intune_writer.json; with BENCH_REQUEST_LOG set
to a path, the emulator's request log of the last writer run is written there too.

    uv run python bench/intune_writer.py [--parts throughput scripts adaptation headofline
                                                    scaleout] [--tenants 25] [--apps 200]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import re
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from tenantflow.bus.clients import connection_kwargs, producer_kwargs
from tenantflow.bus.settings import KafkaSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.contracts.common import EventPayload, UserActor
from tenantflow.contracts.envelope import Envelope, decode
from tenantflow.contracts.events import (
    AssignmentTarget,
    CatalogApp,
    ConsentRevoked,
    DeploymentChangeApplied,
    DeploymentChangeRequested,
    DeploymentChangeVerified,
    DesiredAssignment,
    EnterpriseApp,
    IntuneWritingEnabled,
    VerificationFailure,
)
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.infra import LocalInfra
from tenantflow.devinfra.services import ServiceProcess, emulated_microsoft, service_process
from tenantflow.devinfra.testing import (
    create_database,
    eventually,
    infra_and_emulator,
    latency_summary,
)
from tenantflow.emulator.testing import RunningEmulator

ROOT = Path(__file__).resolve().parents[1]
WRITER_PERMISSIONS = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementConfiguration.Read.All",
    "Organization.Read.All",
]
PUBLISHED = {"intune_app_writes": 100, "intune_app_requests": 1000, "intune_window_s": 20.0}
APPLY_DEADLINE_S = 600


@dataclass
class Tenant:
    id: UUID
    admin: UUID
    group: UUID
    apps: list[str]


def seed(emulator: RunningEmulator, apps: int) -> Tenant:
    """A tenant whose writer app is consented, with ``apps`` winGetApps tenantflow created
    before (its marker in their notes), none assigned."""
    tenant = Tenant(uuid4(), uuid4(), uuid4(), [f"app-{n}" for n in range(apps)])
    emulator.seed(
        {
            "id": str(tenant.id),
            "display_name": "Contoso",
            "verified_domains": [f"t{tenant.id.hex[:12]}.example"],
            "enterprise_apps": [
                {
                    "app_id": emulator.apps["intune-writer"]["client_id"],
                    "permissions": WRITER_PERMISSIONS,
                }
            ],
            "intune_apps": [
                {
                    "display_name": app,
                    "properties": {
                        "packageIdentifier": f"Bench.{app}",
                        "installExperience": {"runAsAccount": "system"},
                        "notes": f"Deployed by tenantflow; keep this line: "
                        f"tenantflow:{tenant.id}/{app}",
                    },
                }
                for app in tenant.apps
            ],
        }
    )
    return tenant


def set_throttling(emulator: RunningEmulator, **limits: Any) -> dict[str, Any]:
    wanted = {**PUBLISHED, **limits}
    with emulator.client() as control:
        control.put(
            "/_emulator/throttling", json={"enabled": True, "limits": wanted}
        ).raise_for_status()
    return wanted


def changes(tenant: Tenant, revision: int = 1) -> list[EventPayload]:
    """One change per app: requested as portal-api does, verified as consent does."""
    actor = UserActor(tenant_id=tenant.id, object_id=tenant.admin)
    events: list[EventPayload] = []
    for app in tenant.apps:
        common = {
            "tenant_id": tenant.id,
            "actor": actor,
            "correlation_id": uuid4(),
            "app": app,
            "revision": revision,
        }
        events.append(
            DeploymentChangeRequested(
                **common,
                catalog_app=CatalogApp(
                    catalog_id=app,
                    package_identifier=f"Bench.{app}",
                    display_name=app,
                    publisher="Bench",
                    run_as_account="system",
                ),
                replaces_revision=revision - 1,
                operation="replace",
                desired_assignments=[
                    DesiredAssignment(
                        target=AssignmentTarget(kind="group", group_id=tenant.group),
                        intent="required",
                    )
                ],
            )
        )
        events.append(DeploymentChangeVerified(**common))
    return events


def enabled(tenant: Tenant) -> IntuneWritingEnabled:
    return IntuneWritingEnabled(
        tenant_id=tenant.id,
        actor=UserActor(tenant_id=tenant.id, object_id=tenant.admin),
        correlation_id=uuid4(),
        granted_permissions=WRITER_PERMISSIONS,
    )


def revoked(tenant: Tenant) -> ConsentRevoked:
    return ConsentRevoked(
        tenant_id=tenant.id,
        actor=UserActor(tenant_id=tenant.id, object_id=tenant.admin),
        correlation_id=uuid4(),
        app=EnterpriseApp.INTUNE_WRITER,
        reason=VerificationFailure.ADMIN_CONSENT_MISSING,
        detail="parked for the benchmark",
        detected_by="scheduled_check",
    )


async def publish(
    kafka: KafkaSettings, events: Sequence[EventPayload], producer: AIOKafkaProducer | None = None
) -> None:
    """Put ``events`` on their topics, acknowledged, with ``producer`` or a producer of its own."""
    own = producer is None
    if producer is None:
        producer = AIOKafkaProducer(**producer_kwargs(kafka, "bench-intune-writer"))
        await producer.start()
    try:
        sent = []
        for event in events:
            envelope = Envelope(data=event, source="/tenantflow/bench")
            sent.append(
                await producer.send(
                    kafka.topic_prefix + envelope.topic,
                    envelope.value(),
                    key=envelope.key,
                    headers=envelope.headers(),
                )
            )
        await asyncio.gather(*sent)
    finally:
        if own:
            await producer.stop()


class Outcomes:
    """Every Applied event on the deployments topic, as it arrives."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self.applied: dict[UUID, DeploymentChangeApplied] = {}
        self.seen_at: dict[UUID, float] = {}

    @contextlib.asynccontextmanager
    async def tailing(self) -> AsyncIterator[Outcomes]:
        consumer = AIOKafkaConsumer(
            self.kafka.topic_prefix + Topic.DEPLOYMENTS,
            **connection_kwargs(self.kafka, "bench-outcomes"),
            group_id=f"bench-{uuid4().hex[:8]}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        await consumer.start()
        task = asyncio.create_task(self._read(consumer))
        try:
            yield self
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await consumer.stop()

    async def _read(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batch = await consumer.getmany(timeout_ms=100)
            now = time.monotonic()
            for records in batch.values():
                for record in records:
                    event = decode(record.headers, record.value).data
                    if isinstance(event, DeploymentChangeApplied):
                        self.applied[event.correlation_id] = event
                        self.seen_at[event.correlation_id] = now

    async def wait_for(self, count: int, within: float = APPLY_DEADLINE_S) -> None:
        await eventually(lambda: len(self.applied) >= count, within=within, what="all applied")


async def writers(
    count: int, workdir: Path, environment: dict[str, str], settings: dict[str, str]
) -> AsyncIterator[list[ServiceProcess]]:
    async with contextlib.AsyncExitStack() as stack:
        processes = [
            await stack.enter_async_context(
                service_process("intune-writer", workdir / f"writer-{n}.log", environment, settings)
            )
            for n in range(count)
        ]
        yield processes


def peak_rss_mb(process: ServiceProcess) -> float:
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    match = re.search(r"VmHWM:\s+(\d+) kB", status)
    return round(int(match.group(1)) / 1024, 1) if match else float("nan")


def cpu_seconds(process: ServiceProcess) -> float:
    """CPU time the process used so far (user and system)."""
    fields = Path(f"/proc/{process.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def request_log(emulator: RunningEmulator, since: str) -> list[dict[str, Any]]:
    with emulator.client() as control:
        entries: list[dict[str, Any]] = control.get(
            "/_emulator/requests", params={"since": since}, timeout=120
        ).json()
    return entries


def quota_check(
    entries: list[dict[str, Any]], tenants: set[str], limit: int, window_s: float, since: str
) -> dict[str, Any]:
    """From the emulator's log: Graph calls and 429s, and the most writes any tenant got
    through in any window (a tenant over its limit would show here)."""
    ours = [e for e in entries if e["tenant"] in tenants and "/deviceAppManagement/" in e["path"]]
    writes: dict[str, list[float]] = defaultdict(list)
    for entry in ours:
        if entry["method"] != "GET" and entry["status"] != 429:
            writes[entry["tenant"]].append(datetime.fromisoformat(entry["time"]).timestamp())
    busiest = 0
    for times in writes.values():
        times.sort()
        start = 0
        for end, at in enumerate(times):
            while at - times[start] >= window_s:
                start += 1
            busiest = max(busiest, end - start + 1)
    throttled = [e for e in ours if e["status"] == 429]
    first = min((t[0] for t in writes.values() if t), default=0.0)
    enabled = datetime.fromisoformat(since).timestamp()
    calls = sorted(datetime.fromisoformat(e["time"]).timestamp() for e in ours)
    # how long after the window allowed it each write beyond a window's worth went (the
    # write ``limit`` before it had left the window): the scheduler's slack in later windows
    lags = sorted(
        t[k] - (t[k - limit] + window_s) for t in writes.values() for k in range(limit, len(t))
    )
    timeline = {
        "late_after_window_s": {
            "median": round(lags[len(lags) // 2], 3) if lags else None,
            "p95": round(lags[int(len(lags) * 0.95)], 3) if lags else None,
            "max": round(lags[-1], 3) if lags else None,
        },
        # from the first Graph call after enabling (token and inventory first), so the
        # writer's start shows apart from the spread of the writes
        "first_call_to_first_write_s": round(first - calls[0], 2) if calls else None,
        "tenants_first_writes_spread_s": round(
            max((t[0] for t in writes.values() if t), default=first) - first, 2
        ),
        "enabling_to_first_call_s": round(calls[0] - enabled, 2) if calls else None,
        "first_write_to_limit_s": round(
            max((t[min(limit, len(t)) - 1] - t[0] for t in writes.values() if t), default=0), 2
        ),
        "first_write_to_last_s": round(
            max((t[-1] for t in writes.values() if t), default=0) - first, 2
        ),
    }
    # the writes as they went, for the plot against what the quota allows
    went = sorted(t - enabled for times in writes.values() for t in times)
    series, count = [], 0
    for step in range(math.ceil((went[-1] if went else 0) / 0.1) + 1):
        while count < len(went) and went[count] <= step * 0.1:
            count += 1
        series.append([round(step * 0.1, 1), count])
    return {
        **timeline,
        "writes_over_time": series,
        "tenants_written": len(writes),
        "window_s": window_s,
        "graph_calls": len(ours),
        "answered_429": len(throttled),
        # <Scope>/<Limit> of x-ms-throttle-scope: which limit refused them
        "answered_429_by_limit": dict(
            Counter("/".join(str(e.get("throttle_scope")).split("/")[:2]) for e in throttled)
        ),
        "share_429_percent": round(100 * len(throttled) / max(1, len(ours)), 2),
        "most_writes_in_any_window": busiest,
        "limit_per_window": limit,
    }


async def run_writer_workload(
    infra: LocalInfra,
    emulator: RunningEmulator,
    workdir: Path,
    tenants: list[Tenant],
    processes: int,
    limits: dict[str, Any],
    settings: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Ingest one change per app of every tenant while parked, then enable all at once."""
    kafka = KafkaSettings(
        bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"b{uuid4().hex[:8]}."
    )
    await ensure_topics(kafka)
    database = await create_database(infra.database_url)
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "DATABASE_URL": database,
    }
    writer_settings = {
        **emulated_microsoft(emulator)["intune-writer"],
        "POLL_SECONDS": "0.5",
        "FILTER_READ_INTERVAL_SECONDS": "3600",
        **(settings or {}),
    }
    total = sum(len(t.apps) for t in tenants)
    async with (
        Outcomes(kafka).tailing() as outcomes,
        contextlib.asynccontextmanager(writers)(
            processes, workdir, environment, writer_settings
        ) as running,
    ):
        await publish(kafka, [e for t in tenants for e in (enabled(t), revoked(t))])
        connection = await asyncpg.connect(database.replace("+asyncpg", ""))
        try:

            async def parked() -> bool:
                count = await connection.fetchval(
                    "SELECT count(*) FROM intune_writer.writer_tenants WHERE state = 'parked'"
                )
                return bool(count == len(tenants))

            # the tenants topic has its own consumer: every tenant parked before any change
            # arrives, or a tenant could start writing during the ingest
            await eventually(parked, within=120, what="every tenant parked")
            ingest_started = time.monotonic()
            await publish(kafka, [e for t in tenants for e in changes(t)])

            async def ingested() -> bool:
                count = await connection.fetchval(
                    "SELECT count(*) FROM intune_writer.deployments WHERE desired_revision = 1"
                )
                return bool(count == total)

            await eventually(ingested, within=300, what="every change ingested")
            ingest_s = time.monotonic() - ingest_started
            assert await parked(), "a tenant left its parked state during the ingest"
        finally:
            await connection.close()
        producer = AIOKafkaProducer(**producer_kwargs(kafka, "bench-intune-writer"))
        await producer.start()  # connected before the clock starts: it times the writer
        try:
            since = datetime.now(UTC).isoformat()
            cpu_before = [cpu_seconds(p) for p in running]
            started = time.monotonic()
            await publish(kafka, [enabled(t) for t in tenants], producer)
        finally:
            await producer.stop()
        await outcomes.wait_for(total)
        elapsed = max(outcomes.seen_at.values()) - started
        rss = [peak_rss_mb(p) for p in running]
        cpu = [round(cpu_seconds(p) - b, 2) for p, b in zip(running, cpu_before, strict=True)]
    per_tenant = max(len(t.apps) for t in tenants)
    minimum = (math.ceil(per_tenant / limits["intune_app_writes"]) - 1) * limits["intune_window_s"]
    entries = request_log(emulator, since)
    if os.environ.get("BENCH_REQUEST_LOG"):  # the emulator's log of the run, to look into it
        await asyncio.to_thread(
            Path(os.environ["BENCH_REQUEST_LOG"]).write_text, json.dumps(entries)
        )
    check = quota_check(
        entries,
        {str(t.id) for t in tenants},
        limits["intune_app_writes"],
        limits["intune_window_s"],
        since,
    )
    return {
        "changes": total,
        "tenants": len(tenants),
        "writer_processes": processes,
        "ingest_seconds": round(ingest_s, 2),
        "seconds": round(elapsed, 2),
        "minimum_seconds": minimum,
        "ratio_to_minimum": round(elapsed / minimum, 3) if minimum else None,
        "writer_peak_rss_mb": rss,
        "writer_cpu_seconds": cpu,
        **check,
    }


async def scripted(emulator: RunningEmulator, tenants: list[Tenant]) -> dict[str, Any]:
    """One change at a time, tenant after tenant: read the app's assignments, /assign the set
    with the new one, sleep out every 429's Retry-After and try again."""
    apps = "/beta/deviceAppManagement/mobileApps"
    counts = {"calls": 0, "throttled": 0}
    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=emulator.url, verify=emulator.ssl_context(), timeout=60
    ) as client:

        async def call(
            headers: dict[str, str], method: str, path: str, **kwargs: Any
        ) -> httpx.Response:
            while True:
                counts["calls"] += 1
                response = await client.request(method, path, headers=headers, **kwargs)
                if response.status_code != 429:
                    response.raise_for_status()
                    return response
                counts["throttled"] += 1
                await asyncio.sleep(float(response.headers["Retry-After"]))

        for tenant in tenants:
            token = emulator.app_token("intune-writer", str(tenant.id))
            headers = {"Authorization": f"Bearer {token}"}
            query = {"$select": "id,displayName", "$top": "999"}
            listed = await call(headers, "GET", apps, params=query)
            ids = {a["displayName"]: a["id"] for a in listed.json()["value"]}
            wanted = {
                "intent": "required",
                "target": {
                    "@odata.type": "#microsoft.graph.groupAssignmentTarget",
                    "groupId": str(tenant.group),
                },
            }
            for app in tenant.apps:
                path = f"{apps}/{ids[app]}"
                current = (await call(headers, "GET", f"{path}/assignments")).json()["value"]
                body = [{k: v for k, v in a.items() if k != "id"} for a in current] + [wanted]
                await call(headers, "POST", f"{path}/assign", json={"mobileAppAssignments": body})
    return {
        "changes": sum(len(t.apps) for t in tenants),
        "seconds": round(time.monotonic() - started, 2),
        "graph_calls": counts["calls"],
        "answered_429": counts["throttled"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parts = ["throughput", "scripts", "adaptation", "headofline", "scaleout"]
    parser.add_argument("--parts", nargs="+", choices=parts, default=parts)
    parser.add_argument("--tenants", type=int, default=25)
    parser.add_argument("--apps", type=int, default=200)
    parser.add_argument("--slow-ms", type=int, default=2000, help="the slow tenant's latency")
    args = parser.parse_args()
    results: dict[str, Any] = {
        "benchmark": "intune_writer",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    with (
        tempfile.TemporaryDirectory(prefix="tenantflow-bench-") as workdir,
        infra_and_emulator(Path(workdir)) as (infra, emulator),
    ):
        work = Path(workdir)

        def fresh() -> list[Tenant]:
            return [seed(emulator, args.apps) for _ in range(args.tenants)]

        if "throughput" in args.parts:
            limits = set_throttling(emulator)
            result = asyncio.run(run_writer_workload(infra, emulator, work, fresh(), 1, limits))
            results["throughput"] = result
            print(
                f"throughput: {result['changes']} changes, {result['tenants']} tenants: "
                f"{result['seconds']} s (minimum {result['minimum_seconds']} s, "
                f"x{result['ratio_to_minimum']}), {result['share_429_percent']}% of "
                f"{result['graph_calls']} calls answered 429, writer CPU "
                f"{result['writer_cpu_seconds']} s, most writes in a window "
                f"{result['most_writes_in_any_window']}/{result['limit_per_window']}, "
                f"writer peak RSS {result['writer_peak_rss_mb']} MB "
                f"(ingest {result['ingest_seconds']} s)"
            )
        if "scripts" in args.parts:
            set_throttling(emulator)
            result = asyncio.run(scripted(emulator, fresh()))
            results["scripts"] = result
            line = f"scripts: {result['seconds']} s, {result['answered_429']} 429s"
            if "throughput" in results:
                result["ratio_to_writer"] = round(
                    result["seconds"] / results["throughput"]["seconds"], 1
                )
                line += f", x{result['ratio_to_writer']} the writer's time"
            print(line)
        if "adaptation" in args.parts:
            limits = set_throttling(emulator, intune_app_writes=PUBLISHED["intune_app_writes"] // 2)
            result = asyncio.run(run_writer_workload(infra, emulator, work, fresh(), 1, limits))
            results["adaptation"] = result
            print(
                f"adaptation (real limit {limits['intune_app_writes']}, writer assumes "
                f"{PUBLISHED['intune_app_writes']}): {result['seconds']} s (minimum "
                f"{result['minimum_seconds']} s, x{result['ratio_to_minimum']}), "
                f"{result['share_429_percent']}% answered 429"
            )
        if "scaleout" in args.parts:
            limits = set_throttling(emulator)
            results["scaleout"] = []
            for processes in (1, 2, 3):
                result = asyncio.run(
                    run_writer_workload(infra, emulator, work, fresh(), processes, limits)
                )
                results["scaleout"].append(result)
                print(
                    f"scale-out, {processes} writer(s): {result['seconds']} s "
                    f"(x{result['ratio_to_minimum']}), most writes in a window "
                    f"{result['most_writes_in_any_window']}/{result['limit_per_window']}"
                )
        if "headofline" in args.parts:
            set_throttling(emulator)
            result = asyncio.run(
                head_of_line(infra, emulator, work, args.tenants, slow_ms=args.slow_ms)
            )
            results["headofline"] = result
            summary = result["verified_to_applied"]
            print(
                f"head of line: one tenant at {args.slow_ms} ms per Graph call; the "
                f"{result['fast_tenants']} "
                f"others ({result['fast_changes_per_s']} changes/s), verified -> applied: "
                f"p50 {summary['median_ms']} ms, "
                f"p99 {summary['p99_ms']} ms ({result['changes_measured']} changes; the slow "
                f"tenant had {result['slow_tenant_changes_applied_meanwhile']} applied); "
                f"writer hops {result['writer_hops']}"
            )
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "intune_writer.json").write_text(json.dumps(results, indent=2) + "\n")


async def head_of_line(
    infra: LocalInfra,
    emulator: RunningEmulator,
    workdir: Path,
    count: int,
    rounds: int = 20,
    slow_ms: int = 2000,
    interval_s: float = 2.0,
) -> dict[str, Any]:
    """One tenant whose every Graph call takes ``slow_ms``, kept busy, and ``count - 1``
    others, each making a change every ``interval_s`` (their arrivals spread evenly): the
    others' latency from the change requested and verified to its Applied event read from
    Kafka. ``slow_ms`` 0 gives the same load with no slow tenant, to compare."""
    tenants = [seed(emulator, 5) for _ in range(count)]
    slow, fast = tenants[0], tenants[1:]
    kafka = KafkaSettings(
        bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"h{uuid4().hex[:8]}."
    )
    await ensure_topics(kafka)
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "DATABASE_URL": await create_database(infra.database_url),
    }
    settings = {
        **emulated_microsoft(emulator)["intune-writer"],
        "POLL_SECONDS": "0.5",
        "FILTER_READ_INTERVAL_SECONDS": "3600",
    }
    with emulator.client() as control:
        rule = control.post(
            "/_emulator/faults",
            json={"path": "^/(beta|v1.0)/", "latency_ms": slow_ms, "tenant": str(slow.id)},
        ).json()
    latencies: list[float] = []
    try:
        async with (
            Outcomes(kafka).tailing() as outcomes,
            contextlib.asynccontextmanager(writers)(1, workdir, environment, settings),
        ):
            await publish(kafka, [enabled(t) for t in tenants])
            producer = AIOKafkaProducer(**producer_kwargs(kafka, "bench-head-of-line"))
            await producer.start()

            async def keep_slow_busy() -> None:
                for revision in range(1, 1000):
                    await publish(kafka, changes(slow, revision), producer)
                    await asyncio.sleep(2.0)  # pacing the load, not synchronisation

            started_at: dict[UUID, float] = {}

            async def paced(tenant: Tenant, offset: float) -> None:
                """A change every ``interval_s``, whatever the earlier ones are doing (arrivals
                as users make them, not one waiting for the other)."""
                await asyncio.sleep(offset)  # pacing the load, not synchronisation
                for revision in range(1, rounds + 1):
                    app = tenant.apps[revision % len(tenant.apps)]
                    one = Tenant(tenant.id, tenant.admin, tenant.group, [app])
                    events = changes(one, revision=revision // len(tenant.apps) + 2)
                    started_at[events[0].correlation_id] = time.monotonic()
                    await publish(kafka, events, producer)
                    await asyncio.sleep(interval_s)  # pacing the load, not synchronisation

            busy = asyncio.create_task(keep_slow_busy())
            try:
                # warm-up, measured apart: each tenant's first change (its first token, its
                # apps found by their marker), every fast tenant at once
                warm = [e for t in fast for e in changes(t)]
                warm_started = time.monotonic()
                await publish(kafka, warm, producer)

                def warmed() -> bool:
                    return all(e.correlation_id in outcomes.seen_at for e in warm)

                await eventually(warmed, within=120, what="the warm-up applied")
                warm_up = latency_summary(
                    [outcomes.seen_at[e.correlation_id] - warm_started for e in warm[::2]]
                )
                await asyncio.gather(
                    *(paced(t, interval_s * n / len(fast)) for n, t in enumerate(fast))
                )

                def all_applied() -> bool:
                    return all(change in outcomes.seen_at for change in started_at)

                await eventually(all_applied, within=120, what="every fast change applied")
                latencies.extend(outcomes.seen_at[c] - at for c, at in started_at.items())
            finally:
                busy.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await busy
                await producer.stop()
            slow_applied = sum(1 for e in outcomes.applied.values() if e.tenant_id == slow.id)
            hops = await writer_hops(environment["DATABASE_URL"], [t.id for t in fast])
    finally:
        with emulator.client() as control:
            control.delete("/_emulator/faults")
    del rule
    return {
        "fast_tenants": len(fast),
        "changes_measured": len(latencies),
        "slow_tenant_latency_per_call_ms": slow_ms,
        "fast_tenant_change_every_s": interval_s,
        "fast_changes_per_s": round(len(fast) / interval_s, 1),
        "slow_tenant_changes_applied_meanwhile": slow_applied,
        "verified_to_applied": latency_summary(latencies),
        "warm_up_first_change_per_app": warm_up,
        "writer_hops": hops,
    }


WRITER_HOPS = """
SELECT i.processed_at AS received, o.created_at AS written, o.published_at AS published
FROM intune_writer.outbox o
JOIN intune_writer.inbox i
  ON i.event_id = convert_from(o.value, 'UTF8')::jsonb ->> 'causation_id'
 AND i.consumer = 'intune-writer.deployments'
WHERE o.topic LIKE '%tenantflow.deployments'
  AND (convert_from(o.value, 'UTF8')::jsonb ->> 'tenant_id')::uuid = ANY($1::uuid[])
"""


async def writer_hops(database_url: str, tenants: list[UUID]) -> dict[str, dict[str, float]]:
    """Where the writer's time goes, from its inbox and outbox (each the start of its
    transaction): from ingesting the verification to recording the write, then to publishing
    the Applied event."""
    connection = await asyncpg.connect(database_url.replace("+asyncpg", ""))
    try:
        rows = await connection.fetch(WRITER_HOPS, tenants)
    finally:
        await connection.close()
    return {
        "ingest_to_write_recorded": latency_summary(
            [(r["written"] - r["received"]).total_seconds() for r in rows]
        ),
        "recorded_to_published": latency_summary(
            [(r["published"] - r["written"]).total_seconds() for r in rows]
        ),
    }


if __name__ == "__main__":
    main()
