"""The writer applies verified deployment changes to the emulator's Intune, on real Kafka and
PostgreSQL: it creates the app once (found by its marker after a crash), writes the whole set,
keeps or replaces assignments made outside tenantflow, coalesces waiting changes, and keeps a
parked tenant's changes until it is enabled again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from uuid import UUID, uuid4

import pytest
from writer_kit import (
    change,
    enabled,
    fresh_bus,
    group,
    intune_apps,
    outcomes,
    running_writer,
    seed_tenant,
    targets,
    writer_settings,
)

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.events import (
    ConsentRevoked,
    DeploymentChangeApplied,
    DeploymentChangeSuperseded,
    EnterpriseApp,
    VerificationFailure,
)
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import eventually, publish
from tenantflow.emulator.testing import RunningEmulator
from tenantflow.intune_writer.graph import marker
from tenantflow.intune_writer.models import Deployment, TenantState, WriterTenant
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
    await publish(
        runtime.kafka,
        enabled(tenant, admin),
        ConsentRevoked(
            tenant_id=tenant,
            actor=UserActor(tenant_id=tenant, object_id=admin),
            correlation_id=uuid4(),
            app=EnterpriseApp.INTUNE_WRITER,
            reason=VerificationFailure.ADMIN_CONSENT_MISSING,
            detail="gone",
            detected_by="scheduled_check",
        ),
    )

    async def parked() -> bool:
        async with runtime.sessions() as session:
            row = await session.get(WriterTenant, tenant)
            return row is not None and row.state == TenantState.PARKED

    await eventually(parked, what="the tenant parked")
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


def add_foreign(emulator: RunningEmulator, tenant: UUID, group_id: UUID) -> None:
    """An admin assigns the app in the Intune console: another client, straight to Graph."""
    [app] = intune_apps(emulator, tenant)
    with emulator.graph("intune-writer", str(tenant)) as graph:
        response = graph.post(
            f"/beta/deviceAppManagement/mobileApps/{app['id']}/assignments",
            json={
                "intent": "required",
                "target": {
                    "@odata.type": "#microsoft.graph.groupAssignmentTarget",
                    "groupId": str(group_id),
                },
            },
        )
    assert response.status_code == 201, response.text
