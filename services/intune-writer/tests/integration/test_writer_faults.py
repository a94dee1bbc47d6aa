"""The writer when things go wrong, on real Kafka, PostgreSQL and the emulator: Graph storms of
429s and 5xx, a writer killed mid-run, writers added and removed, consent revoked mid-run, and a
throttled tenant beside a healthy one on the same partition."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiokafka.partitioner import DefaultPartitioner
from sqlalchemy import func, select
from writer_kit import (
    change,
    enabled,
    fresh_bus,
    group,
    intune_apps,
    outcomes,
    revoked,
    running_writer,
    seed_tenant,
    targets,
    writer_settings,
)

from tenantflow.contracts.events import (
    DeploymentChangeApplied,
)
from tenantflow.contracts.topics import TOPIC_CONFIGS, Topic
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.services import emulated_microsoft, service_process
from tenantflow.devinfra.testing import eventually, publish
from tenantflow.emulator.testing import RunningEmulator
from tenantflow.intune_writer.graph import marker
from tenantflow.intune_writer.models import Deployment, TenantState, WriterTenant

pytestmark = pytest.mark.integration

WRITE_METHODS = {"POST", "PATCH", "PUT", "DELETE"}


@pytest.fixture
def faults(emulator: RunningEmulator) -> Iterator[list[dict[str, Any]]]:
    """Fault rules to add; every rule is removed when the test ends."""
    rules: list[dict[str, Any]] = []
    yield rules
    with emulator.client() as control:
        control.delete("/_emulator/faults")


def add_faults(emulator: RunningEmulator, *rules: dict[str, Any]) -> None:
    with emulator.client() as control:
        for rule in rules:
            control.post("/_emulator/faults", json=rule).raise_for_status()


def requests_of(emulator: RunningEmulator, tenant: UUID) -> list[dict[str, Any]]:
    with emulator.client() as control:
        entries: list[dict[str, Any]] = control.get(
            "/_emulator/requests", params={"tenant": str(tenant)}
        ).json()
    return entries


def at(entry: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(entry["time"])


def apps_of(count: int) -> list[str]:
    return [f"app-{n}" for n in range(count)]


def each_app_holds(emulator: RunningEmulator, tenant: UUID, wanted: dict[str, UUID]) -> bool:
    """Intune holds exactly one app per catalog app, each assigned to exactly its group."""
    held = intune_apps(emulator, tenant)
    by_marker: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for app in held:
        by_marker[app["notes"].rsplit(" ", 1)[-1]].append(app)
    return all(
        len(by_marker[marker(tenant, name)]) == 1
        and targets(by_marker[marker(tenant, name)][0]) == {str(group_id): "required"}
        for name, group_id in wanted.items()
    ) and len(held) == len(wanted)


async def test_a_storm_of_429s_and_5xx_delays_changes_but_loses_none_and_no_retry_is_early(
    infra: RunningInfra, emulator: RunningEmulator, faults: list[dict[str, Any]]
) -> None:
    tenant, admin = seed_tenant(emulator)
    add_faults(
        emulator,
        {"path": "^/beta/", "share": 0.2, "status": 429, "retry_after": "1", "tenant": str(tenant)},
        {"path": "^/beta/", "share": 0.2, "status": 503, "tenant": str(tenant)},
        {"path": "/assign$", "share": 0.2, "batch_write_429": True, "tenant": str(tenant)},
    )
    kafka, database = await fresh_bus(infra.bootstrap_servers, infra.database_url)
    # one change per round: each call is sent after the answer before it, so the log can tell
    # a retry that came early from one that was already in flight
    settings = writer_settings(
        emulator, kafka, database, changes_per_round=1, retry_initial_seconds=0.1
    )
    wanted = {name: uuid4() for name in apps_of(12)}
    pairs = [change(tenant, admin, 1, [group(g)], app=name) for name, g in wanted.items()]
    async with running_writer(settings):
        await publish(kafka, enabled(tenant, admin), *(e for pair in pairs for e in pair))
        results = await outcomes(kafka, [requested for requested, _ in pairs], within=120)
    assert all(isinstance(r, DeploymentChangeApplied) for r in results.values())
    assert each_app_holds(emulator, tenant, wanted)

    log = sorted(requests_of(emulator, tenant), key=at)
    refused = [e for e in log if e["status"] == 429 and e["retry_after"]]
    failed = [e for e in log if e["status"] == 503]
    assert refused, "the storm never hit"
    assert failed, "no 5xx was injected"
    for entry in refused:
        allowed = at(entry) + timedelta(seconds=float(entry["retry_after"]))
        early = [e for e in log if at(entry) < at(e) < allowed and not e["in_batch"]]
        assert early == [], f"sent before the Retry-After of {entry['path']}: {early}"


async def test_a_writer_killed_mid_run_and_restarted_leaves_intune_as_desired(
    infra: RunningInfra, emulator: RunningEmulator, tmp_path: Path, faults: list[dict[str, Any]]
) -> None:
    tenant, admin = seed_tenant(emulator)
    # each Graph call of this tenant takes 100 ms, so the run is long enough to be cut
    add_faults(emulator, {"path": "^/beta/", "latency_ms": 100, "tenant": str(tenant)})
    kafka, database = await fresh_bus(infra.bootstrap_servers, infra.database_url)
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "DATABASE_URL": database,
    }
    settings = {
        **emulated_microsoft(emulator)["intune-writer"],
        "POLL_SECONDS": "0.2",
        "CHANGES_PER_ROUND": "2",
        "LEASE_SECONDS": "3",
    }
    wanted = {name: uuid4() for name in apps_of(40)}
    pairs = [change(tenant, admin, 1, [group(g)], app=name) for name, g in wanted.items()]
    async with service_process("intune-writer", tmp_path / "first.log", environment, settings) as w:
        await publish(kafka, enabled(tenant, admin), *(e for pair in pairs for e in pair))
        await eventually(
            lambda: len(intune_apps(emulator, tenant)) >= 6, within=60, what="some written"
        )
        os.kill(w.process.pid, signal.SIGKILL)
        await w.process.wait()
    written_before = len(intune_apps(emulator, tenant))
    assert written_before < len(wanted), "the writer finished before it was killed"
    async with service_process("intune-writer", tmp_path / "second.log", environment, settings):
        results = await outcomes(kafka, [requested for requested, _ in pairs], within=120)
    assert all(isinstance(r, DeploymentChangeApplied) for r in results.values())
    assert each_app_holds(emulator, tenant, wanted)  # no duplicate, nothing missing


async def test_writers_added_mid_run_share_tenants_and_never_exceed_a_quota(
    infra: RunningInfra, emulator: RunningEmulator
) -> None:
    tenants = [seed_tenant(emulator) for _ in range(3)]
    kafka, database = await fresh_bus(infra.bootstrap_servers, infra.database_url)
    settings = writer_settings(emulator, kafka, database, changes_per_round=25)
    wanted = {t: {name: uuid4() for name in apps_of(60)} for t, _ in tenants}
    pairs = [
        change(t, admin, 1, [group(g)], app=name)
        for t, admin in tenants
        for name, g in wanted[t].items()
    ]
    async with running_writer(settings), running_writer(settings):
        await publish(kafka, *(enabled(t, admin) for t, admin in tenants))
        await publish(kafka, *(e for pair in pairs for e in pair))
        await eventually(
            lambda: sum(len(intune_apps(emulator, t)) for t, _ in tenants) > 0,
            within=60,
            what="writing started",
        )
        async with running_writer(settings):  # a rebalance, and a third scheduler
            results = await outcomes(kafka, [requested for requested, _ in pairs], within=180)
    assert all(isinstance(r, DeploymentChangeApplied) for r in results.values())
    for t, _ in tenants:
        assert each_app_holds(emulator, t, wanted[t])
        writes = sorted(
            at(e)
            for e in requests_of(emulator, t)
            if e["method"] in WRITE_METHODS and e["status"] != 429 and "/$batch" not in e["path"]
        )
        assert len(writes) >= 120  # each app created, then assigned: over one window's 100
        window = timedelta(seconds=20)
        assert max(sum(1 for w in writes if start <= w < start + window) for start in writes) <= 100


async def test_after_consent_is_revoked_mid_run_nothing_more_is_written_and_changes_wait(
    infra: RunningInfra, emulator: RunningEmulator, faults: list[dict[str, Any]]
) -> None:
    tenant, admin = seed_tenant(emulator)
    add_faults(emulator, {"path": "^/beta/", "latency_ms": 50, "tenant": str(tenant)})
    kafka, database = await fresh_bus(infra.bootstrap_servers, infra.database_url)
    settings = writer_settings(emulator, kafka, database, changes_per_round=1)
    wanted = {name: uuid4() for name in apps_of(40)}
    pairs = [change(tenant, admin, 1, [group(g)], app=name) for name, g in wanted.items()]
    async with running_writer(settings) as (runtime, _):
        await publish(kafka, enabled(tenant, admin), *(e for pair in pairs for e in pair))
        await eventually(
            lambda: len(intune_apps(emulator, tenant)) >= 4, within=60, what="writing started"
        )
        await publish(kafka, revoked(tenant, admin))

        async def parked() -> bool:
            async with runtime.sessions() as session:
                row = await session.get(WriterTenant, tenant)
                return row is not None and row.state == TenantState.PARKED

        await eventually(parked, what="the tenant parked")
        # a round under way when the revocation arrived may finish; nothing starts after it
        settled = datetime.now().astimezone() + timedelta(seconds=1)
        await asyncio.sleep(3)  # an interval in which no write may happen, not a synchronisation
        late = [
            e
            for e in requests_of(emulator, tenant)
            if at(e) > settled and e["method"] in WRITE_METHODS
        ]
        assert late == []
        async with runtime.sessions() as session:
            waiting = await session.scalar(
                select(func.count())
                .select_from(Deployment)
                .where(Deployment.tenant_id == tenant)  # type: ignore[arg-type]
                .where(Deployment.due_at.is_not(None))  # type: ignore[union-attr]
            )
        assert (waiting or 0) > 0  # kept, not dropped

        await publish(kafka, enabled(tenant, admin))  # re-verified
        # promptly: the tenant was handed back when parked, so no lease runs out first and no
        # takeover waits out a window
        results = await outcomes(kafka, [requested for requested, _ in pairs], within=40)
    assert all(isinstance(r, DeploymentChangeApplied) for r in results.values())
    assert each_app_holds(emulator, tenant, wanted)


async def test_a_throttled_tenant_does_not_delay_another_on_its_partition(
    infra: RunningInfra, emulator: RunningEmulator, faults: list[dict[str, Any]]
) -> None:
    throttled, throttled_admin = seed_tenant(emulator)
    healthy, healthy_admin = seed_tenant(emulator, tenant=same_partition_as(throttled))
    add_faults(
        emulator,
        {"path": "^/beta/", "status": 429, "retry_after": "60", "tenant": str(throttled)},
    )
    kafka, database = await fresh_bus(infra.bootstrap_servers, infra.database_url)
    async with running_writer(writer_settings(emulator, kafka, database)):
        slow = change(throttled, throttled_admin, 1, [group(uuid4())])
        fast = change(healthy, healthy_admin, 1, [group(uuid4())])
        await publish(
            kafka, enabled(throttled, throttled_admin), enabled(healthy, healthy_admin), *slow
        )
        await eventually(
            lambda: any(e["status"] == 429 for e in requests_of(emulator, throttled)),
            what="the first tenant throttled",
        )
        await publish(kafka, *fast)  # behind the throttled tenant's change, same partition
        result = await outcomes(kafka, fast[:1], within=10)
        assert isinstance(result[fast[0].correlation_id], DeploymentChangeApplied)
        assert intune_apps(emulator, throttled) == []  # still waiting out its Retry-After


def same_partition_as(tenant: UUID) -> UUID:
    """Another tenant id whose events land on the same deployments partition."""
    partitions = list(range(TOPIC_CONFIGS[Topic.DEPLOYMENTS].partitions))
    partitioner = DefaultPartitioner()
    wanted = partitioner(str(tenant).encode(), partitions, partitions)
    while True:
        other = uuid4()
        if partitioner(str(other).encode(), partitions, partitions) == wanted:
            return other
