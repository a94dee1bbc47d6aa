"""Outbox relay latency: from the commit of a state change to its delivery to a consumer; and
one consumer instance's saturation throughput.

Two services, two processes, as in production: a producing service commits events one per
transaction (the outbox row with its state change) and its relay publishes them (woken by NOTIFY,
acks=all, idempotent producer); a consuming service handles them through its inbox. The figure is
handler start minus commit return, per event, both read from the same monotonic clock, on real
Kafka and PostgreSQL (fsync on). Prints the figures and writes JSON to bench/results/.

Saturation: ``--saturation`` events (20,000) are put on the topic first, across 50 tenants;
then one consumer instance handles them all, each through its inbox with a follow-up event
stored in its outbox, as real consumers do. The figure is events handled per second, from the
first handled to the last.

    uv run python bench/outbox_latency.py [--events 1000] [--rate 100] [--warmup 200]
                                          [--saturation 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from uuid import uuid4

from aiokafka import AIOKafkaProducer
from pydantic import SecretStr

from tenantflow.bus.clients import producer_kwargs
from tenantflow.bus.consumer import HandlerContext
from tenantflow.bus.db import transaction
from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.bus.settings import DatabaseSettings, KafkaSettings
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.envelope import Envelope
from tenantflow.contracts.events import TenantLinkRequested, TenantUnlinked
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.infra import LocalInfra

ROOT = Path(__file__).resolve().parents[1]
MIGRATIONS = ROOT / "libs/bus/tests/integration/migrations"
TENANTS = 50


def _same(event: TenantLinkRequested) -> dict[str, Any]:
    return {
        "tenant_id": event.tenant_id,
        "actor": event.actor,
        "correlation_id": event.correlation_id,
    }


def runtime(service: str, bootstrap: str, database_url: str) -> ServiceRuntime:
    return ServiceRuntime(
        service=service,
        schema=f"bench_{service}_{uuid4().hex[:8]}",
        migrations=MIGRATIONS,
        kafka=KafkaSettings(bootstrap_servers=bootstrap),
        database=DatabaseSettings(url=SecretStr(database_url)),
        create_topics=False,
    )


async def produce(bootstrap: str, database_url: str, total: int, rate: float, out: Path) -> None:
    """The producing service: one transaction per event, paced at ``rate`` per second."""
    producer = runtime("producer", bootstrap, database_url)
    await producer.start()
    committed: dict[str, int] = {}
    tenants = [uuid4() for _ in range(TENANTS)]
    try:
        started = time.monotonic()
        for index in range(total):
            tenant = tenants[index % TENANTS]
            event = TenantLinkRequested(
                tenant_id=tenant,
                actor=UserActor(tenant_id=tenant, object_id=uuid4()),
                correlation_id=uuid4(),
            )
            async with transaction(producer.sessions) as session:
                envelope = await producer.outbox.add(session, event)
            committed[envelope.id] = time.monotonic_ns()
            pause = started + (index + 1) / rate - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)  # pacing the load, not synchronisation
        await asyncio.to_thread(out.write_text, json.dumps(committed))
        await asyncio.to_thread(sys.stdin.read)  # keep the relay up until the consumer is done
    finally:
        await producer.stop()


async def consume(infra: LocalInfra, events: int, rate: float, warmup: int) -> dict[str, Any]:
    consumer_service = runtime("consumer", infra.bootstrap_servers, infra.database_url)
    delivered: dict[str, int] = {}
    done = asyncio.Event()
    consumer = consumer_service.consumer("bench", Topic.TENANTS)

    @consumer.handles(TenantLinkRequested)
    async def handle(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        delivered.setdefault(ctx.event_id, time.monotonic_ns())
        if len(delivered) >= warmup + events:
            done.set()

    await consumer_service.start()
    with tempfile.NamedTemporaryFile(suffix=".json") as committed_file:
        producer = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--produce",
            infra.bootstrap_servers,
            infra.database_url,
            str(warmup + events),
            str(rate),
            committed_file.name,
            stdin=asyncio.subprocess.PIPE,
        )
        try:
            await asyncio.wait_for(done.wait(), timeout=60 + (warmup + events) / rate * 3)
        finally:
            assert producer.stdin is not None
            producer.stdin.close()
            await producer.wait()
            await consumer_service.stop()
        committed: dict[str, int] = json.loads(
            await asyncio.to_thread(Path(committed_file.name).read_text)
        )
    measured = list(committed)[warmup:]  # the first ones warm up the JIT, caches and pools
    latencies_ms = [(delivered[key] - committed[key]) / 1e6 for key in measured]
    ordered = sorted(latencies_ms)

    def percentile(share: float) -> float:
        return round(ordered[min(len(ordered) - 1, round(share * len(ordered)) - 1)], 2)

    return {
        "benchmark": "outbox_relay_commit_to_consumer",
        "events": events,
        "warmup_events": warmup,
        "rate_per_s": rate,
        "median_ms": round(statistics.median(latencies_ms), 2),
        "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99),
        "max_ms": round(max(latencies_ms), 2),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


async def saturate(infra: LocalInfra, events: int) -> dict[str, Any]:
    """One consumer instance working through ``events`` that are all there before it starts."""
    service = runtime("saturated", infra.bootstrap_servers, infra.database_url)
    tenants = [uuid4() for _ in range(TENANTS)]
    backlog = [
        TenantLinkRequested(
            tenant_id=tenants[n % TENANTS],
            actor=UserActor(tenant_id=tenants[n % TENANTS], object_id=uuid4()),
            correlation_id=uuid4(),
        )
        for n in range(events)
    ]
    producer = AIOKafkaProducer(**producer_kwargs(service.kafka, "bench-backlog"))
    await producer.start()
    try:
        sent = []
        for event in backlog:
            envelope = Envelope(data=event, source="/tenantflow/bench")
            sent.append(
                await producer.send(
                    service.kafka.topic_prefix + envelope.topic,
                    envelope.value(),
                    key=envelope.key,
                    headers=envelope.headers(),
                )
            )
        await asyncio.gather(*sent)
    finally:
        await producer.stop()

    handled: list[int] = []
    done = asyncio.Event()
    consumer = service.consumer("saturation", Topic.TENANTS)

    @consumer.handles(TenantLinkRequested)
    async def handle(event: TenantLinkRequested, ctx: HandlerContext) -> None:
        await ctx.emit(TenantUnlinked(**_same(event)))
        ctx.after_commit(lambda: handled.append(time.monotonic_ns()))

    def finished() -> None:
        if len(handled) >= events:
            done.set()

    started = time.monotonic_ns()
    await service.start()
    try:
        while not done.is_set():
            finished()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.2)
            if time.monotonic_ns() - started > 300e9:
                raise TimeoutError(f"{len(handled)} of {events} handled in 300 s")
    finally:
        await service.stop()
    seconds = (max(handled) - min(handled)) / 1e9
    return {
        "benchmark": "consumer_saturation",
        "events": events,
        "events_per_s": round(events / seconds),
        "seconds": round(seconds, 2),
        "polls_in_one_transaction": consumer.polls_together,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--produce":
        bootstrap, database_url, total, rate, out = sys.argv[2:7]
        asyncio.run(produce(bootstrap, database_url, int(total), float(rate), Path(out)))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=100.0, help="events committed per second")
    parser.add_argument("--warmup", type=int, default=200, help="events sent first, not counted")
    parser.add_argument("--saturation", type=int, default=20_000, help="backlog for throughput")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tenantflow-bench-") as workdir:
        infra = LocalInfra(workdir=Path(workdir), durable=True, bound_to_parent=True)
        infra.start()
        try:
            result = asyncio.run(consume(infra, args.events, args.rate, args.warmup))
            saturation = asyncio.run(saturate(infra, args.saturation))
        finally:
            infra.stop()
    print(
        f"outbox relay, commit -> consumer, {result['events']} events at {args.rate:.0f}/s: "
        f"median {result['median_ms']} ms, p95 {result['p95_ms']} ms, p99 {result['p99_ms']} ms, "
        f"max {result['max_ms']} ms"
    )
    print(
        f"one consumer instance, saturated: {saturation['events_per_s']} events/s "
        f"({saturation['events']} events in {saturation['seconds']} s, "
        f"{saturation['polls_in_one_transaction']} polls each in one transaction)"
    )
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / f"outbox_latency_{args.rate:g}_per_s.json").write_text(
        json.dumps(result, indent=2) + "\n"
    )
    (results / "consumer_saturation.json").write_text(json.dumps(saturation, indent=2) + "\n")


if __name__ == "__main__":
    main()
