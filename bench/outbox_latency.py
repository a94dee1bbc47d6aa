"""Outbox relay latency: from the commit of a state change to its delivery to a consumer.

Each event is committed in its own transaction (the outbox row with it), the relay wakes on the
NOTIFY, publishes with acks=all and idempotence, and a consumer with an inbox handles it. The
figure is handler start minus commit return, per event, on real Kafka and PostgreSQL (durable:
fsync on). Prints the figures and writes JSON to bench/results/.

    uv run python bench/outbox_latency.py [--events 1000] [--rate 200]
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
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from pydantic import SecretStr

from tenantflow.bus.consumer import HandlerContext
from tenantflow.bus.db import transaction
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.bus.settings import DatabaseSettings, KafkaSettings
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.events import TenantLinkRequested
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.infra import LocalInfra

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "libs/bus/tests/integration/migrations"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))
    return ordered[index]


async def measure(infra: LocalInfra, events: int, rate: float, warmup: int) -> dict[str, Any]:
    runtime = ServiceRuntime(
        service="bench",
        schema=f"bench_{uuid4().hex[:8]}",
        migrations=MIGRATIONS,
        kafka=KafkaSettings(bootstrap_servers=infra.bootstrap_servers),
        database=DatabaseSettings(url=SecretStr(infra.database_url)),
    )
    committed: dict[str, float] = {}
    delivered: dict[str, float] = {}
    done = asyncio.Event()
    consumer = runtime.consumer("bench", Topic.TENANTS)

    @consumer.handles(TenantLinkRequested)
    async def handle(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        delivered.setdefault(ctx.event_id, time.perf_counter())
        if len(delivered) >= warmup + events:
            done.set()

    await runtime.start()
    try:
        tenants = [uuid4() for _ in range(50)]
        interval = 1.0 / rate
        started = time.perf_counter()
        for index in range(warmup + events):
            tenant: UUID = tenants[index % len(tenants)]
            event = TenantLinkRequested(
                tenant_id=tenant,
                actor=UserActor(tenant_id=tenant, object_id=uuid4()),
                correlation_id=uuid4(),
            )
            async with transaction(runtime.sessions) as session:
                envelope = await runtime.outbox.add(session, event)
            committed[envelope.id] = time.perf_counter()
            pause = started + (index + 1) * interval - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)  # pacing the load, not synchronisation
        await asyncio.wait_for(done.wait(), timeout=120)
    finally:
        await runtime.stop()
    measured = list(committed)[warmup:]  # the first ones warm up the JIT, caches and pools
    latencies_ms = [(delivered[key] - committed[key]) * 1000 for key in measured]
    return {
        "benchmark": "outbox_relay_commit_to_consumer",
        "events": events,
        "warmup_events": warmup,
        "rate_per_s": rate,
        "median_ms": round(statistics.median(latencies_ms), 2),
        "p95_ms": round(percentile(latencies_ms, 0.95), 2),
        "p99_ms": round(percentile(latencies_ms, 0.99), 2),
        "max_ms": round(max(latencies_ms), 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="events committed per second")
    parser.add_argument("--warmup", type=int, default=200, help="events sent first, not counted")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tenantflow-bench-") as workdir:
        infra = LocalInfra(workdir=Path(workdir), durable=True, bound_to_parent=True)
        infra.start()
        try:
            result = asyncio.run(measure(infra, args.events, args.rate, args.warmup))
        finally:
            infra.stop()
    if infra.timings.kafka_start_s is not None:
        result["kafka_broker_start_s"] = round(infra.timings.kafka_start_s, 2)
    print(
        f"outbox relay, commit -> consumer, {result['events']} events at {args.rate:.0f}/s: "
        f"median {result['median_ms']} ms, p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms, "
        f"max {result['max_ms']} ms"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "outbox_latency.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
