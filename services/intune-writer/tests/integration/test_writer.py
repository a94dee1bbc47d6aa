"""The writer applies verified deployment changes to the emulator's Intune, on real Kafka and
PostgreSQL: it creates the app once (found by its marker after a crash), writes the whole set,
keeps or replaces assignments made outside tenantflow, coalesces waiting changes, and keeps a
parked tenant's changes until it is enabled again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest
from sqlmodel import col, select
from writer_kit import (
    change,
    enabled,
    fresh_bus,
    group,
    intune_apps,
    outcomes,
    park,
    running_writer,
    seed_tenant,
    targets,
    writer_settings,
)

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.events import (
    DeploymentChangeApplied,
    DeploymentChangeSuperseded,
)
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import eventually, publish
from tenantflow.emulator.testing import RunningEmulator
from tenantflow.intune_writer.graph import marker
from tenantflow.intune_writer.models import Deployment
from tenantflow.intune_writer.scheduler import Scheduler

pytestmark = pytest.mark.integration


@pytest.fixture
async def writer(
    infra: RunningInfra, emulator: RunningEmulator
) -> AsyncIterator[tuple[ServiceRuntime, Scheduler]]:
    kafka, database = await fresh_bus(infra.bootstrap_servers, infra.database_url)
    async with running_writer(writer_settings(emulator, kafka, database)) as running:
        yield running


async def test_an_app_is_created_once_then_its_whole_set_updated_appended_and_removed(
    writer: tuple[ServiceRuntime, Scheduler], emulator: RunningEmulator
) -> None:
    runtime, _ = writer
    tenant, admin = seed_tenant(emulator)
    a, b, c = uuid4(), uuid4(), uuid4()
    first = change(tenant, admin, 1, [group(a)])
    await publish(runtime.kafka, enabled(tenant, admin), *first)
    applied = (await outcomes(runtime.kafka, first[:1]))[first[0].correlation_id]
    assert isinstance(applied, DeploymentChangeApplied)
    [app] = intune_apps(emulator, tenant)
    assert applied.intune_app_id == UUID(app["id"])
    assert marker(tenant, "7zip") in app["notes"]
    assert (app["packageIdentifier"], app["installExperience"]["runAsAccount"]) == (
        "7zip.7zip",
        "system",
    )
    assert targets(app) == {str(a): "required"}
    assert applied.graph_request_ids
    assert not applied.unchanged

    second = change(tenant, admin, 2, [group(a), group(b, "available")])
    third = change(tenant, admin, 3, [group(a), group(b, "available"), group(c, "uninstall")])
    await publish(runtime.kafka, *second)
    await outcomes(runtime.kafka, second[:1])
    await publish(runtime.kafka, *third)
    result = (await outcomes(runtime.kafka, third[:1]))[third[0].correlation_id]
    assert isinstance(result, DeploymentChangeApplied)
    [app] = intune_apps(emulator, tenant)
    assert targets(app) == {str(a): "required", str(b): "available", str(c): "uninstall"}
    assert {x.target.group_id for x in result.assignments_before} == {a, b}

    same = change(tenant, admin, 4, [group(a), group(b, "available"), group(c, "uninstall")])
    await publish(runtime.kafka, *same)
    unchanged = (await outcomes(runtime.kafka, same[:1]))[same[0].correlation_id]
    assert isinstance(unchanged, DeploymentChangeApplied)
    assert unchanged.unchanged
    assert unchanged.graph_request_ids == []

    removal = change(tenant, admin, 5, [], remove_app=True)
    await publish(runtime.kafka, *removal)
    removed = (await outcomes(runtime.kafka, removal[:1]))[removal[0].correlation_id]
    assert isinstance(removed, DeploymentChangeApplied)
    assert removed.intune_app_id is None
    assert intune_apps(emulator, tenant) == []


async def test_an_app_created_before_a_crash_is_found_by_its_marker_not_created_again(
    writer: tuple[ServiceRuntime, Scheduler], emulator: RunningEmulator
) -> None:
    runtime, _ = writer
    tenant = uuid4()
    # what a writer that died between Graph's create and its own commit left behind
    left_behind = {
        "id": str(uuid4()),
        "display_name": "7-Zip (renamed by an admin)",
        "properties": {
            "packageIdentifier": "7zip.7zip",
            "installExperience": {"runAsAccount": "system"},
            "notes": f"Deployed by tenantflow; keep this line: {marker(tenant, '7zip')}",
        },
    }
    decoy = {"id": str(uuid4()), "display_name": "7zip", "properties": {"notes": "not ours"}}
    tenant, admin = seed_tenant(emulator, [left_behind, decoy], tenant=tenant)
    first = change(tenant, admin, 1, [group(uuid4())])
    await publish(runtime.kafka, enabled(tenant, admin), *first)
    applied = (await outcomes(runtime.kafka, first[:1]))[first[0].correlation_id]
    assert isinstance(applied, DeploymentChangeApplied)
    assert applied.intune_app_id == UUID(left_behind["id"])
    assert len(intune_apps(emulator, tenant)) == 2


async def test_assignments_made_outside_tenantflow_are_kept(
    writer: tuple[ServiceRuntime, Scheduler], emulator: RunningEmulator
) -> None:
    runtime, _ = writer
    tenant, admin = seed_tenant(emulator)
    ours, theirs = uuid4(), uuid4()
    first = change(tenant, admin, 1, [group(ours)])
    await publish(runtime.kafka, enabled(tenant, admin), *first)
    await outcomes(runtime.kafka, first[:1])
    add_foreign(emulator, tenant, theirs)

    second = change(tenant, admin, 2, [group(ours, "available")])
    await publish(runtime.kafka, *second)
    applied = (await outcomes(runtime.kafka, second[:1]))[second[0].correlation_id]
    assert isinstance(applied, DeploymentChangeApplied)
    [app] = intune_apps(emulator, tenant)
    assert targets(app) == {str(ours): "available", str(theirs): "required"}
    assert [a.target.group_id for a in applied.kept_foreign_assignments] == [theirs]
    assert applied.replaced_foreign_assignments == []


async def test_as_source_of_truth_it_replaces_foreign_assignments_and_reports_them(
    writer: tuple[ServiceRuntime, Scheduler], emulator: RunningEmulator
) -> None:
    runtime, _ = writer
    tenant, admin = seed_tenant(emulator)
    ours, theirs = uuid4(), uuid4()
    first = change(tenant, admin, 1, [group(ours)])
    await publish(runtime.kafka, enabled(tenant, admin, source_of_truth=True), *first)
    await outcomes(runtime.kafka, first[:1])
    add_foreign(emulator, tenant, theirs)

    second = change(tenant, admin, 2, [group(ours)])
    await publish(runtime.kafka, *second)
    applied = (await outcomes(runtime.kafka, second[:1]))[second[0].correlation_id]
    assert isinstance(applied, DeploymentChangeApplied)
    assert not applied.unchanged
    [app] = intune_apps(emulator, tenant)
    assert targets(app) == {str(ours): "required"}
    assert [a.target.group_id for a in applied.replaced_foreign_assignments] == [theirs]


async def test_changes_waiting_while_parked_are_kept_then_coalesced_into_the_newest(
    writer: tuple[ServiceRuntime, Scheduler], emulator: RunningEmulator
) -> None:
    runtime, _ = writer
    tenant, admin = seed_tenant(emulator)
    await park(runtime, tenant, admin)
    a, b = uuid4(), uuid4()
    waiting = [change(tenant, admin, n, [group(a)] + [group(b)] * (n == 3)) for n in (1, 2, 3)]
    await publish(runtime.kafka, *(event for pair in waiting for event in pair))

    async def all_verified_ingested() -> bool:
        async with runtime.sessions() as session:
            row = await session.get(Deployment, (tenant, "7zip"))
            return row is not None and row.desired_revision == 3

    await eventually(all_verified_ingested, what="the three changes stored")
    assert intune_apps(emulator, tenant) == []  # nothing written while parked

    await publish(runtime.kafka, enabled(tenant, admin))
    results = await outcomes(runtime.kafka, [requested for requested, _ in waiting])
    first, second, third = (results[r.correlation_id] for r, _ in waiting)
    assert isinstance(third, DeploymentChangeApplied)
    for older in (first, second):
        assert isinstance(older, DeploymentChangeSuperseded)
        assert older.superseded_by_revision == 3
    [app] = intune_apps(emulator, tenant)
    assert targets(app) == {str(a): "required", str(b): "required"}
    with emulator.client() as client:
        log = client.get("/_emulator/requests", params={"tenant": str(tenant)}).json()
    assigns = [e for e in log if e["method"] == "POST" and e["path"].endswith("/assign")]
    assert len(assigns) == 1


def add_foreign(
    emulator: RunningEmulator, tenant: UUID, group_id: UUID, app_id: str | None = None
) -> None:
    """An admin assigns the app in the Intune console: another client, straight to Graph."""
    if app_id is None:
        [app] = intune_apps(emulator, tenant)
        app_id = app["id"]
    with emulator.graph("intune-writer", str(tenant)) as graph:
        response = graph.post(
            f"/beta/deviceAppManagement/mobileApps/{app_id}/assignments",
            json={
                "intent": "required",
                "target": {
                    "@odata.type": "#microsoft.graph.groupAssignmentTarget",
                    "groupId": str(group_id),
                },
            },
        )
    assert response.status_code == 201, response.text


async def test_a_tenant_served_round_after_round_writes_each_change_once(
    infra: RunningInfra, emulator: RunningEmulator
) -> None:
    """Rounds of three: each round is recorded, then the next taken in the same transaction;
    none takes again what the one before it applied."""
    kafka, database = await fresh_bus(infra.bootstrap_servers, infra.database_url)
    settings = writer_settings(emulator, kafka, database, changes_per_round=3)
    async with running_writer(settings) as (runtime, _):
        tenant, admin = seed_tenant(emulator)
        await park(runtime, tenant, admin)
        audience = uuid4()
        waiting = [change(tenant, admin, 1, [group(audience)], app=f"app-{n}") for n in range(8)]
        await publish(runtime.kafka, *(event for pair in waiting for event in pair))

        async def all_ingested() -> bool:
            async with runtime.sessions() as session:
                rows = await session.exec(
                    select(Deployment).where(col(Deployment.tenant_id) == tenant)
                )
                return len(rows.all()) == len(waiting)

        await eventually(all_ingested, what="the eight changes stored")
        await publish(runtime.kafka, enabled(tenant, admin))
        results = await outcomes(runtime.kafka, [requested for requested, _ in waiting])

    assert all(isinstance(r, DeploymentChangeApplied) and not r.unchanged for r in results.values())
    assert len(intune_apps(emulator, tenant)) == len(waiting)
    with emulator.client() as client:
        log = client.get("/_emulator/requests", params={"tenant": str(tenant)}).json()
    assigns = [e["path"] for e in log if e["method"] == "POST" and e["path"].endswith("/assign")]
    assert len(assigns) == len(set(assigns)) == len(waiting)
    creates = [e for e in log if e["method"] == "POST" and e["path"].endswith("/mobileApps")]
    assert len(creates) == len(waiting)  # no app taken twice, none created twice
    # a round reads its apps in batches: apps it just created hold nothing, and are not read
    reads = [e["path"] for e in log if e["method"] == "GET" and e["path"].endswith("/assignments")]
    assert len(reads) == len(set(reads))


async def test_a_round_of_many_reads_its_apps_in_batches_keeps_foreign_and_skips_unchanged(
    writer: tuple[ServiceRuntime, Scheduler], emulator: RunningEmulator
) -> None:
    """Five apps already in Intune (tenantflow's marker on them), changed while the tenant
    was parked: one round reads the five in a JSON batch, keeps what admins assigned, and
    writes nothing for the app that already holds its desired set."""
    runtime, _ = writer
    tenant = uuid4()
    names = [f"app-{n}" for n in range(5)]
    existing = [
        {
            "id": str(uuid4()),
            "display_name": name,
            "properties": {
                "packageIdentifier": f"Test.{name}",
                "installExperience": {"runAsAccount": "system"},
                "notes": f"Deployed by tenantflow; keep this line: {marker(tenant, name)}",
            },
        }
        for name in names
    ]
    tenant, admin = seed_tenant(emulator, existing, tenant=tenant)
    ours, theirs, already = uuid4(), uuid4(), uuid4()
    for app in existing[:3]:
        add_foreign(emulator, tenant, theirs, app["id"])
    add_foreign(emulator, tenant, already, existing[4]["id"])
    await park(runtime, tenant, admin)
    waiting = [change(tenant, admin, 1, [group(ours)], app=name) for name in names[:4]]
    waiting.append(change(tenant, admin, 1, [group(already)], app=names[4]))
    await publish(runtime.kafka, *(event for pair in waiting for event in pair))

    async def all_verified_ingested() -> bool:
        # the tenants topic is not ordered with the deployments topic: enabled before all
        # five are stored, the writer would serve them in more than one round
        async with runtime.sessions() as session:
            stored = await session.exec(
                select(Deployment).where(col(Deployment.tenant_id) == tenant)
            )
            return len(stored.all()) == len(names)

    await eventually(all_verified_ingested, what="the five changes stored")
    await publish(runtime.kafka, enabled(tenant, admin))
    results = await outcomes(runtime.kafka, [requested for requested, _ in waiting])

    by_app = {r.app: r for r in results.values()}
    assert all(isinstance(r, DeploymentChangeApplied) for r in by_app.values())
    held = {app["displayName"]: targets(app) for app in intune_apps(emulator, tenant)}
    for name in names[:3]:
        assert held[name] == {str(ours): "required", str(theirs): "required"}
    assert held[names[3]] == {str(ours): "required"}
    assert held[names[4]] == {str(already): "required"}
    unchanged = by_app[names[4]]
    assert isinstance(unchanged, DeploymentChangeApplied)
    assert unchanged.unchanged
    with emulator.client() as client:
        log = client.get("/_emulator/requests", params={"tenant": str(tenant)}).json()
    reads = [e for e in log if e["method"] == "GET" and e["path"].endswith("/assignments")]
    assert sorted(e["path"].split("/")[-2] for e in reads) == sorted(a["id"] for a in existing)
    assert all(e["in_batch"] for e in reads)
    assigns = [e["path"] for e in log if e["method"] == "POST" and e["path"].endswith("/assign")]
    assert existing[4]["id"] not in "".join(assigns)
    assert len(assigns) == 4
