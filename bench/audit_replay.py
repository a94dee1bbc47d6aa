"""The audit replay: tenantflow-audit over a log of 1,000,000 events across 500 tenants.

The bench writes the log first, as the services would have (real Kafka, KRaft): per tenant a
link requested and verified, Intune writing requested and enabled, then deployment changes of
20 apps, each requested (portal-api), verified (consent) and applied (intune-writer), with
CloudEvents headers and each producer's audit chain, dated over 30 days in order. Then it runs
the tool as an auditor does, each run a new process (start-up and imports included):

- ``state --at <end>`` for every tenant: the whole log read from Kafka into the state
  reconstruction; the figure is events per second end to end, and the process's peak RSS;
- ``state --tenant T --at <middle>`` for a few tenants: one tenant's state at a moment (it
  reads that tenant's partitions only).

Each run's result is checked against what the generator wrote (the applied assignments of
every deployment of sampled tenants), so a fast wrong answer fails the bench. Medians over
``--runs``; prints the figures and writes bench/results/audit_replay.json.

    uv run python bench/audit_replay.py [--events 1000000] [--tenants 500] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from aiokafka import AIOKafkaProducer

from tenantflow.bus.clients import producer_kwargs
from tenantflow.bus.settings import KafkaSettings
from tenantflow.bus.topics import ensure_topics
from tenantflow.contracts.chain import GENESIS
from tenantflow.contracts.common import EventPayload, ServiceActor, UserActor
from tenantflow.contracts.envelope import Envelope
from tenantflow.contracts.events import (
    CatalogApp,
    DeploymentChangeApplied,
    DeploymentChangeRequested,
    DeploymentChangeVerified,
    DesiredAssignment,
    IntuneWritingActivationRequested,
    IntuneWritingEnabled,
    LinkAuthorization,
    TenantLinkRequested,
    TenantLinkVerified,
)
from tenantflow.devinfra.infra import LocalInfra

ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 10, 1, tzinfo=UTC)
SPAN = timedelta(days=30)
APPS = [f"app-{n:02}" for n in range(20)]
CONSENT, WRITER = ServiceActor(service="consent"), ServiceActor(service="intune-writer")
MEASURE = """
import resource, sys
from tenantflow.audit.cli import main
code = main(sys.argv[1:])
sys.stderr.write(f"peak_rss_kb {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}\\n")
sys.exit(code)
"""
"""The tool as its console script runs it, reporting its own peak RSS as it ends."""


@dataclass
class Tenant:
    id: UUID
    user: UserActor
    groups: list[UUID]
    heads: dict[str, tuple[int, str]] = field(default_factory=dict)
    """Each producer's chain for this tenant: (seq, head hash)."""
    desired: dict[str, list[DesiredAssignment]] = field(default_factory=dict)
    revision: dict[str, int] = field(default_factory=dict)
    applied_at_middle: dict[str, list[str]] | None = None
    """What the tenant's apps held at the middle moment (group ids written)."""

    def held(self) -> dict[str, list[str]]:
        return {
            app: [str(a.target.group_id) for a in desired] for app, desired in self.desired.items()
        }

    def envelope(self, data: EventPayload, source: str, at: datetime) -> Envelope[EventPayload]:
        seq, head = self.heads.get(source, (0, GENESIS))
        envelope = Envelope(data=data, source=f"/tenantflow/{source}", time=at).chained(
            head, seq + 1
        )
        self.heads[source] = (seq + 1, envelope.chain.hash)  # type: ignore[union-attr]
        return envelope


@cache
def assignment(group: UUID, intent: str) -> DesiredAssignment:
    return DesiredAssignment.model_validate(
        {"target": {"kind": "group", "group_id": str(group)}, "intent": intent}
    )


@cache
def catalog_app(app: str) -> CatalogApp:
    return CatalogApp.model_validate(
        {
            "catalog_id": app,
            "display_name": app,
            "publisher": "Bench",
            "package_identifier": f"Bench.{app}",
            "run_as_account": "system",
        }
    )


def tenant_events(tenant: Tenant, step: int, at: datetime) -> list[Envelope[EventPayload]]:
    """The events of ``tenant`` at ``step``: the link and activation first, then one change
    (requested, verified, applied) per step."""
    user = tenant.user
    if step == 0:
        link = uuid4()
        intune = uuid4()
        return [
            tenant.envelope(
                TenantLinkRequested(tenant_id=tenant.id, actor=user, correlation_id=link),
                "portal-api",
                at,
            ),
            tenant.envelope(
                TenantLinkVerified(
                    tenant_id=tenant.id,
                    actor=user,
                    correlation_id=link,
                    display_name="Bench tenant",
                    default_domain="bench.example",
                    granted_permissions=["Directory.Read.All"],
                    authorized_by=LinkAuthorization.GLOBAL_ADMINISTRATOR,
                ),
                "consent",
                at,
            ),
            tenant.envelope(
                IntuneWritingActivationRequested(
                    tenant_id=tenant.id, actor=user, correlation_id=intune
                ),
                "portal-api",
                at,
            ),
            tenant.envelope(
                IntuneWritingEnabled(
                    tenant_id=tenant.id,
                    actor=user,
                    correlation_id=intune,
                    granted_permissions=["DeviceManagementApps.ReadWrite.All"],
                ),
                "consent",
                at,
            ),
        ]
    app = APPS[step % len(APPS)]
    revision = tenant.revision.get(app, 0) + 1
    previous = tenant.desired.get(app, [])
    desired = [
        assignment(tenant.groups[(step + n) % len(tenant.groups)], intent)
        for n, intent in enumerate(("required", "available", "uninstall")[: 1 + step % 3])
    ]
    tenant.revision[app], tenant.desired[app] = revision, desired
    change = uuid4()
    same = {"tenant_id": tenant.id, "correlation_id": change, "app": app, "revision": revision}
    return [
        tenant.envelope(
            DeploymentChangeRequested(
                **same,
                actor=user,
                catalog_app=catalog_app(app),
                replaces_revision=revision - 1,
                operation="replace",
                desired_assignments=desired,
                previous_assignments=previous,
                actor_name="Bench Admin",
            ),
            "portal-api",
            at,
        ),
        tenant.envelope(DeploymentChangeVerified(**same, actor=user), "consent", at),
        tenant.envelope(
            DeploymentChangeApplied(
                **same,
                actor=WRITER,
                intune_app_id=uuid4(),
                assignments_before=previous,
                written_assignments=desired,
                unchanged=False,
                graph_request_ids=[str(uuid4())],
                applied_at=at,
            ),
            "intune-writer",
            at,
        ),
    ]


async def write_log(
    settings: KafkaSettings, tenants: list[Tenant], events: int, middle: datetime
) -> dict[str, Any]:
    """At least ``events`` events across ``tenants`` (whole steps), in time order."""
    await ensure_topics(settings)
    producer = AIOKafkaProducer(
        **{
            **producer_kwargs(settings, "bench-audit-writer"),
            # test data loaded fast: leader acknowledgement only, bigger batches
            "acks": 1,
            "enable_idempotence": False,
            "linger_ms": 50,
            "max_batch_size": 1 << 20,
        }
    )
    await producer.start()
    written, steps = 0, 1 + -(-(events // len(tenants) - 4) // 3)
    started = time.perf_counter()
    try:
        pending: list[asyncio.Future[Any]] = []
        for step in range(steps):
            at = T0 + SPAN * step / steps
            for n, tenant in enumerate(tenants):
                moment = at + timedelta(milliseconds=n)
                if moment > middle and tenant.applied_at_middle is None:
                    tenant.applied_at_middle = tenant.held()
                for envelope in tenant_events(tenant, step, moment):
                    pending.append(
                        await producer.send(
                            settings.topic_prefix + envelope.topic,
                            envelope.value(),
                            key=envelope.key,
                            headers=envelope.headers(),
                            timestamp_ms=int(envelope.time.timestamp() * 1000),
                        )
                    )
                    written += 1
            if len(pending) > 20_000:
                await asyncio.gather(*pending)
                pending.clear()
                print(f"  written {written:,} events", file=sys.stderr)
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return {"events": written, "seconds": round(time.perf_counter() - started, 1)}


def write_share(
    settings: KafkaSettings, tenants: list[Tenant], events: int, middle: datetime
) -> tuple[int, list[Tenant]]:
    """One writer process's part: its tenants' events; the tenants as written."""
    return asyncio.run(write_log(settings, tenants, events, middle))["events"], tenants


def run_tool(environment: dict[str, str], *argv: str) -> tuple[float, float, str]:
    """One run of the tool: wall seconds (process start to exit), peak RSS in MB, output."""
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, *argv, "--no-progress"],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"tenantflow-audit {argv} failed: {done.stderr[-2000:]}")
    rss_kb = int(done.stderr.rsplit("peak_rss_kb ", 1)[1].split()[0])
    return seconds, round(rss_kb / 1024, 1), done.stdout


def check_state(document: dict[str, Any], expected: dict[str, list[str]]) -> None:
    """The tool's state of a tenant equals what the generator wrote."""
    found = {
        d["app"]: [a["target"]["group_id"] for a in d["applied"] or []]
        for d in document["deployments"]
    }
    if found != expected:
        raise AssertionError(f"state differs from what was written: {found} != {expected}")


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    infra = LocalInfra(workdir=workdir, durable=True, bound_to_parent=True)
    infra.start()
    try:
        settings = KafkaSettings(
            bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"a{uuid4().hex[:8]}."
        )
        tenants = []
        for _ in range(args.tenants):
            tenant_id = uuid4()
            user = UserActor(tenant_id=tenant_id, object_id=uuid4(), display_name="Admin")
            tenants.append(Tenant(tenant_id, user, [uuid4() for _ in range(8)]))
        middle = T0 + SPAN / 2
        started = time.perf_counter()
        # two writers, each half of the tenants: generating events is most of the time
        halves = [tenants[0::2], tenants[1::2]]
        share = [args.events * len(half) // len(tenants) for half in halves]
        with ProcessPoolExecutor(2) as pool:
            written = list(pool.map(write_share, [settings] * 2, halves, share, [middle] * 2))
        tenants = [tenant for _, half in written for tenant in half]
        log = {
            "events": sum(events for events, _ in written),
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(f"log written: {log['events']:,} events in {log['seconds']} s", file=sys.stderr)
        environment = {
            "KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
            "KAFKA_TOPIC_PREFIX": settings.topic_prefix,
        }
        full, one = [], []
        for run in range(args.runs):
            seconds, rss, output = run_tool(environment, "state", "--format", "json")
            documents = {d["tenant_id"]: d for d in json.loads(output)}
            for tenant in tenants[:: max(1, len(tenants) // 10)]:
                check_state(documents[str(tenant.id)], tenant.held())
            full.append({"seconds": seconds, "peak_rss_mb": rss})
            print(
                f"  run {run + 1}: whole log {seconds:.2f} s "
                f"({log['events'] / seconds:,.0f} events/s), peak RSS {rss} MB",
                file=sys.stderr,
            )
            tenant = tenants[(run * 37) % len(tenants)]
            seconds, rss, output = run_tool(
                environment,
                "state",
                "--tenant",
                str(tenant.id),
                "--at",
                middle.isoformat(),
                "--format",
                "json",
            )
            check_state(json.loads(output), tenant.applied_at_middle or tenant.held())
            one.append({"seconds": seconds, "peak_rss_mb": rss})
            print(f"  run {run + 1}: one tenant at the middle {seconds:.2f} s", file=sys.stderr)
    finally:
        infra.stop()
    seconds = statistics.median(r["seconds"] for r in full)
    return {
        "events": log["events"],
        "tenants": args.tenants,
        "log_written_s": log["seconds"],
        "runs": args.runs,
        "whole_log_seconds": [round(r["seconds"], 2) for r in full],
        "whole_log_events_per_s_median": round(log["events"] / seconds),
        "whole_log_peak_rss_mb": [r["peak_rss_mb"] for r in full],
        "whole_log_peak_rss_mb_max": max(r["peak_rss_mb"] for r in full),
        "one_tenant_state_at_seconds": [round(r["seconds"], 2) for r in one],
        "one_tenant_state_at_seconds_median": round(
            statistics.median(r["seconds"] for r in one), 2
        ),
        "one_tenant_peak_rss_mb": [r["peak_rss_mb"] for r in one],
        "targets": {"events_per_s": 50_000, "peak_rss_mb": 300, "state_at_s": 5},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tenantflow-bench-") as workdir:
        result = measure(args, Path(workdir))
    print(
        f"audit replay of {result['events']:,} events / {result['tenants']} tenants: "
        f"{result['whole_log_events_per_s_median']:,} events/s end to end (median of "
        f"{result['runs']}: {result['whole_log_seconds']} s), peak RSS "
        f"{result['whole_log_peak_rss_mb_max']} MB; one tenant's state --at: median "
        f"{result['one_tenant_state_at_seconds_median']} s {result['one_tenant_state_at_seconds']}"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "audit_replay.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
