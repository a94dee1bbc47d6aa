"""Deployments end to end: portal-api, consent, directory-sync and intune-writer as processes, on
real Kafka and PostgreSQL, against the emulated Entra ID and Graph. A tenant is linked and Intune
writing activated through the API; its groups and assignment filters reach the portal from
Graph; an operator's change is validated against them and verified by consent; a change by a
user the tenant does not allow, or after the Intune writer's consent was revoked, is rejected
with the reason on the change's timeline. An accepted change is applied by the writer: Intune holds
exactly the desired set, and the portal shows the change applied."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from tenantflow.audit import cli
from tenantflow.bus.settings import KafkaSettings
from tenantflow.contracts.envelope import decode
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.services import emulated_microsoft, service_process
from tenantflow.devinfra.testing import create_database, eventually, read_topic
from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.e2e

ADMIN, OPERATOR = "Tenantflow.Admin", "Tenantflow.Operator"
WRITER_PERMISSIONS = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementConfiguration.Read.All",
    "Organization.Read.All",
]
APP = "company-portal"


@dataclass
class Stack:
    portal: str
    emulator: RunningEmulator
    kafka: KafkaSettings
    database_url: str
    """The services' database (each has its schema in it)."""

    def client(self, tenant: UUID, user: UUID, *roles: str) -> httpx.AsyncClient:
        token = self.emulator.user_token(tenant, user, *roles)
        return httpx.AsyncClient(base_url=self.portal, headers={"authorization": f"Bearer {token}"})


@pytest.fixture(scope="module")
async def stack(
    infra: RunningInfra, emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    logs = tmp_path_factory.mktemp("deployments")
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": f"x{uuid4().hex[:8]}.",
        "DATABASE_URL": await create_database(infra.database_url),
    }
    microsoft = emulated_microsoft(emulator)
    settings = {
        "portal-api": {
            **microsoft["portal-api"],
            "USER_REQUESTS_PER_MINUTE": "1000000",
            "TENANT_REQUESTS_PER_MINUTE": "1000000",
        },
        # every change re-checks the tenant's consent (its last check is always older than
        # 1 ms): a revocation is seen by the next change, however soon after activation
        "consent": {
            **microsoft["consent"],
            "CONSENT_MAX_AGE_SECONDS": "0.001",
            "CHANGE_CHECK_POLL_SECONDS": "0.2",
        },
        "directory-sync": {**microsoft["directory-sync"], "POLL_SECONDS": "0.2"},
        "intune-writer": {**microsoft["intune-writer"], "POLL_SECONDS": "0.2"},
    }
    async with (
        service_process("consent", logs / "consent.log", environment, settings["consent"]),
        service_process(
            "directory-sync", logs / "sync.log", environment, settings["directory-sync"]
        ),
        service_process(
            "intune-writer", logs / "writer.log", environment, settings["intune-writer"]
        ),
        service_process(
            "portal-api", logs / "portal.log", environment, settings["portal-api"]
        ) as portal,
    ):
        yield Stack(
            portal.url,
            emulator,
            KafkaSettings(
                bootstrap_servers=infra.bootstrap_servers,
                topic_prefix=environment["KAFKA_TOPIC_PREFIX"],
            ),
            environment["DATABASE_URL"],
        )


@dataclass
class Tenant:
    id: UUID
    admin: UUID
    """A Global Administrator: links and activates."""
    operator: UUID
    """Assigned to the directory connector: allowed to change deployments."""
    stranger: UUID
    """Neither: the tenant does not allow them, whatever their portal role."""
    groups: list[UUID]
    windows_filter: UUID
    ios_filter: UUID


async def ready(stack: Stack) -> Tenant:
    """A seeded tenant, linked, with Intune writing enabled, its directory and filters read."""
    emulator = stack.emulator
    tenant = Tenant(
        uuid4(), uuid4(), uuid4(), uuid4(), [uuid4() for _ in range(3)], uuid4(), uuid4()
    )
    domain = f"t{tenant.id.hex[:10]}.example"

    def user(user_id: UUID, name: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": str(user_id),
            "display_name": name,
            "user_principal_name": f"{name}@{domain}",
            **extra,
        }

    emulator.seed(
        {
            "id": str(tenant.id),
            "display_name": "Contoso",
            "verified_domains": [domain],
            "users": [
                user(tenant.admin, "admin", directory_roles=["Global Administrator"]),
                user(tenant.operator, "operator"),
                user(tenant.stranger, "stranger"),
            ],
            "groups": [
                {"id": str(g), "display_name": f"Group {n}", "members": [str(tenant.operator)]}
                for n, g in enumerate(tenant.groups)
            ],
            "enterprise_apps": [
                {
                    "app_id": emulator.apps["directory-connector"]["client_id"],
                    "permissions": ["Directory.Read.All"],
                    "assigned_principals": [str(tenant.operator)],
                },
                {
                    "app_id": emulator.apps["intune-writer"]["client_id"],
                    "permissions": WRITER_PERMISSIONS,
                },
            ],
            "assignment_filters": [
                {"id": str(tenant.windows_filter), "display_name": "Windows 11"},
                {"id": str(tenant.ios_filter), "display_name": "iPhones", "platform": "iOS"},
            ],
        }
    )
    path = f"/v1/tenants/{tenant.id}"
    async with stack.client(tenant.id, tenant.admin, ADMIN) as admin:
        assert (
            await admin.post("/v1/tenants", json={"tenant_id": str(tenant.id)})
        ).status_code == 202

        async def field(getter: str, wanted: str) -> bool:
            body = (await admin.get(path)).json()
            return bool(
                (body["intune_writing"] if getter == "intune" else body)["status"] == wanted
            )

        await eventually(lambda: field("link", "linked"), within=30, what="linked")
        assert (await admin.post(f"{path}/intune")).status_code == 202
        await eventually(lambda: field("intune", "enabled"), within=30, what="intune writing")

        async def read_models() -> bool:
            directory = (await admin.get(f"{path}/directory")).json()
            filters = (await admin.get(f"{path}/assignment-filters")).json()
            return directory["status"] == "synced" and len(filters["items"]) == 2

        await eventually(read_models, within=60, what="directory and filters in the portal")
    return tenant


async def change_status(
    client: httpx.AsyncClient, location: str, wanted: set[str]
) -> dict[str, Any]:
    body: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal body
        body = (await client.get(location)).json()
        return body["status"] in wanted

    await eventually(reached, within=30, what=f"the change {wanted}")
    return body


async def test_an_operators_change_is_validated_against_graph_data_and_verified(
    stack: Stack,
) -> None:
    tenant = await ready(stack)
    deployment = f"/v1/tenants/{tenant.id}/deployments/{APP}"
    required = {
        "target": {"kind": "group", "group_id": str(tenant.groups[0])},
        "intent": "required",
        "filter": {"filter_id": str(tenant.windows_filter), "mode": "include"},
    }
    async with stack.client(tenant.id, tenant.operator, OPERATOR) as operator:
        wrong_platform = await operator.put(
            deployment,
            json={
                "assignments": [
                    {**required, "filter": {"filter_id": str(tenant.ios_filter), "mode": "include"}}
                ]
            },
            headers={"if-none-match": "*"},
        )
        created = await operator.put(
            deployment,
            json={
                "assignments": [
                    required,
                    {
                        "target": {"kind": "exclusion_group", "group_id": str(tenant.groups[1])},
                        "intent": "required",
                    },
                ]
            },
            headers={"if-none-match": "*"},
        )
        assert created.status_code == 202, created.text
        change = await change_status(
            operator, created.headers["location"], {"applied", "failed", "rejected"}
        )
        shown = (await operator.get(deployment)).json()
    assert wrong_platform.status_code == 422
    assert wrong_platform.json()["errors"][0]["type"] == "filter_platform"
    assert change["status"] == "applied", change
    assert [step["status"] for step in change["timeline"]] == ["requested", "verified", "applied"]
    assert change["requested_by"]["object_id"] == str(tenant.operator)

    # Intune holds the app, created once, with exactly the desired set
    with stack.emulator.client() as control:
        [app] = control.get(f"/_emulator/tenants/{tenant.id}").json()["intune_apps"]
    assert shown["intune_app_id"] == app["id"]
    held = {
        (a["target"]["@odata.type"], a["target"]["groupId"]): (
            a["intent"],
            a["target"]["deviceAndAppManagementAssignmentFilterId"],
            a["target"]["deviceAndAppManagementAssignmentFilterType"],
        )
        for a in app["assignments"]
    }
    assert held == {
        ("#microsoft.graph.groupAssignmentTarget", str(tenant.groups[0])): (
            "required",
            str(tenant.windows_filter),
            "include",
        ),
        ("#microsoft.graph.exclusionGroupAssignmentTarget", str(tenant.groups[1])): (
            "required",
            None,
            "none",
        ),
    }


async def test_a_user_the_tenant_does_not_allow_is_rejected_by_consent(stack: Stack) -> None:
    tenant = await ready(stack)
    async with stack.client(tenant.id, tenant.stranger, OPERATOR) as stranger:
        accepted = await stranger.put(
            f"/v1/tenants/{tenant.id}/deployments/{APP}",
            json={
                "assignments": [
                    {
                        "target": {"kind": "group", "group_id": str(tenant.groups[0])},
                        "intent": "available",
                    }
                ]
            },
            headers={"if-none-match": "*"},
        )
        assert accepted.status_code == 202, accepted.text
        change = await change_status(
            stranger, accepted.headers["location"], {"verified", "rejected"}
        )
    assert (change["status"], change["reason"]) == ("rejected", "actor_not_allowed")
    assert "Global Administrator" in change["detail"]


async def test_after_the_writers_consent_is_revoked_a_change_is_rejected_with_the_reason(
    stack: Stack,
) -> None:
    tenant = await ready(stack)
    writer = stack.emulator.apps["intune-writer"]["client_id"]
    with stack.emulator.client() as control:
        control.delete(f"/_emulator/tenants/{tenant.id}/consents/{writer}").raise_for_status()
    async with stack.client(tenant.id, tenant.operator, OPERATOR) as operator:
        accepted = await operator.put(
            f"/v1/tenants/{tenant.id}/deployments/{APP}",
            json={
                "assignments": [
                    {
                        "target": {"kind": "group", "group_id": str(tenant.groups[2])},
                        "intent": "required",
                    }
                ]
            },
            headers={"if-none-match": "*"},
        )
        assert accepted.status_code == 202, accepted.text
        change = await change_status(
            operator, accepted.headers["location"], {"verified", "rejected"}
        )
        assert (change["status"], change["reason"]) == ("rejected", "intune_writing_not_enabled")

        async def revoked() -> bool:
            body = (await operator.get(f"/v1/tenants/{tenant.id}")).json()
            return bool(body["intune_writing"]["status"] == "revoked")

        # consent's check found the revocation and said so on the tenants topic too
        await eventually(revoked, within=30, what="Intune writing revoked in the portal")
        refused = await operator.put(
            f"/v1/tenants/{tenant.id}/deployments/{APP}",
            json={"assignments": []},
            headers={"if-match": accepted.headers["etag"]},
        )
    # the portal knows now: the next change is refused before it is stored
    assert refused.status_code == 409


def intune_held(stack: Stack, tenant: Tenant) -> set[tuple[str, str]]:
    """(group id, intent) of every assignment of the tenant's one app in the emulator."""
    with stack.emulator.client() as control:
        apps = control.get(f"/_emulator/tenants/{tenant.id}").json()["intune_apps"]
    return {(a["target"]["groupId"], a["intent"]) for app in apps for a in app["assignments"]}


async def audit(stack: Stack, *argv: str) -> tuple[int, str]:
    """tenantflow-audit as an auditor runs it, with the services' KAFKA_* settings."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KAFKA_BOOTSTRAP_SERVERS", stack.kafka.bootstrap_servers)
        patch.setenv("KAFKA_TOPIC_PREFIX", stack.kafka.topic_prefix)
        status = await cli.run(cli.parser().parse_args(list(argv)), out, err)
    return status, out.getvalue()


async def test_the_audit_trail_replays_what_was_done_by_whom_and_what_intune_held(
    stack: Stack,
) -> None:
    """Link, activate, three changes by two users (one rejected), unlink: the replay lists
    exactly that, in order, by whom; its state at moments equals what the emulator's Intune
    held then; the chains of every service are whole."""
    tenant = await ready(stack)
    deployment = f"/v1/tenants/{tenant.id}/deployments/{APP}"
    held: list[tuple[datetime, set[tuple[str, str]]]] = []
    async with (
        stack.client(tenant.id, tenant.operator, OPERATOR) as operator,
        stack.client(tenant.id, tenant.stranger, OPERATOR) as stranger,
        stack.client(tenant.id, tenant.admin, ADMIN) as admin,
    ):
        for who, intent, group, outcome in (
            (operator, "required", tenant.groups[0], "applied"),
            (stranger, "available", tenant.groups[1], "rejected"),
            (operator, "available", tenant.groups[2], "applied"),
        ):
            current = await who.get(deployment)
            precondition = (
                {"if-match": current.headers["etag"]}
                if current.status_code == 200
                else {"if-none-match": "*"}
            )
            target = {"kind": "group", "group_id": str(group)}
            accepted = await who.put(
                deployment,
                json={"assignments": [{"target": target, "intent": intent}]},
                headers=precondition,
            )
            assert accepted.status_code == 202, accepted.text
            change = await change_status(
                who, accepted.headers["location"], {"applied", "failed", "rejected"}
            )
            assert change["status"] == outcome, change
            held.append((datetime.now(UTC), intune_held(stack, tenant)))
        linked = await admin.get(f"/v1/tenants/{tenant.id}")
        unlink = await admin.delete(
            f"/v1/tenants/{tenant.id}", headers={"if-match": linked.headers["etag"]}
        )
        assert unlink.status_code == 202, unlink.text
        assert unlink.json()["status"] == "unlinked"

    async def complete() -> bool:
        _, text = await audit(stack, "timeline", "--tenant", str(tenant.id), "--format", "jsonl")
        return any(
            json.loads(line)["event_type"] == "tenant.unlinked" for line in text.splitlines()
        )

    await eventually(complete, within=30, what="the unlink on the log")
    _, text = await audit(stack, "timeline", "--tenant", str(tenant.id), "--format", "jsonl")
    rows = [json.loads(line) for line in text.splitlines()]
    changes = [
        (
            r["event_type"].removeprefix("deployment.change."),
            r["source"].removeprefix("/tenantflow/"),
            r["actor_object_id"] or r["actor"],
        )
        for r in rows
        if r["event_type"].startswith("deployment.change.")
    ]
    operator, stranger = str(tenant.operator), str(tenant.stranger)
    # who asked stays the actor of consent's verdict; the write is the writer's own act
    assert changes == [
        ("requested", "portal-api", operator),
        ("verified", "consent", operator),
        ("applied", "intune-writer", "service intune-writer"),
        ("requested", "portal-api", stranger),
        ("rejected", "consent", stranger),
        ("requested", "portal-api", operator),
        ("verified", "consent", operator),
        ("applied", "intune-writer", "service intune-writer"),
    ]
    lifecycle = [r["event_type"] for r in rows if r["event_type"].startswith("tenant.")]
    assert [e for e in lifecycle if e != "tenant.verification.deferred"] == [
        "tenant.link.requested",
        "tenant.link.verified",
        "tenant.intune_writing.activation_requested",
        "tenant.intune_writing.enabled",
        "tenant.unlinked",
    ]
    assert rows[0]["actor_object_id"] == str(tenant.admin)

    for at, intune in held:
        _, document = await audit(
            stack, "state", "--tenant", str(tenant.id), "--at", at.isoformat(), "--format", "json"
        )
        [state] = json.loads(document)["deployments"]
        applied = {(a["target"]["group_id"], a["intent"]) for a in state["applied"]}
        assert applied == intune, at

    status, report = await audit(stack, "verify", "--tenant", str(tenant.id))
    assert status == 0, report
    assert " 0 breaks; 3 changes requested, 3 reached an end, 0 did not" in report


async def test_the_portal_rebuilt_from_the_log_equals_its_live_database(stack: Stack) -> None:
    """Last in the module: whatever the tests before did (links, activations, changes applied,
    failed, rejected, superseded, revocations, unlinks), ``tenantflow-audit rebuild`` re-creates
    the portal's read models from the log, in an empty database, equal to the live one row for
    row; a database that is not empty is refused."""
    report = ""

    async def equal() -> bool:
        nonlocal report
        into = await create_database(stack.database_url, "rebuild")
        status, report = await audit(
            stack, "rebuild", "--target", "portal", "--into", into,
            "--compare-with", stack.database_url,
        )  # fmt: skip
        return status == 0

    # the live portal may still be consuming the last results: each try rebuilds anew
    try:
        await eventually(equal, within=60, what="the rebuild equal to the live database")
    except AssertionError:
        raise AssertionError(report) from None
    assert " 0 differ" in report
    compared = int(report.split(" rows compared")[0].rsplit("\n", 1)[-1])
    assert compared > 50  # the module's links, tracks, deployments, changes, audit rows
    status, _ = await audit(stack, "rebuild", "--target", "portal", "--into", stack.database_url)
    assert status == 2  # the live database is not empty: nothing is written to it


async def test_a_change_continues_its_callers_trace_through_every_service(stack: Stack) -> None:
    """W3C trace context with OpenTelemetry: the portal continues the trace of the request's
    traceparent, and each service that handles the change continues it in a span of its own
    (carried by the events' headers through Kafka), up to the change applied."""
    tenant = await ready(stack)
    trace_id, caller_span = uuid4().hex, uuid4().hex[:16]
    async with stack.client(tenant.id, tenant.operator, OPERATOR) as operator:
        created = await operator.put(
            f"/v1/tenants/{tenant.id}/deployments/{APP}",
            json={
                "assignments": [
                    {
                        "target": {"kind": "group", "group_id": str(tenant.groups[2])},
                        "intent": "available",
                    }
                ]
            },
            headers={"if-none-match": "*", "traceparent": f"00-{trace_id}-{caller_span}-01"},
        )
        assert created.status_code == 202, created.text
        change = await change_status(operator, created.headers["location"], {"applied"})
    records = await read_topic(stack.kafka, Topic.DEPLOYMENTS, 3)
    hops = {}
    for record in records:
        envelope = decode(record.headers, record.value)
        if envelope.data.correlation_id == UUID(change["id"]):
            hops[envelope.type.rsplit(".", 1)[-1]] = envelope.traceparent
    assert set(hops) == {"requested", "verified", "applied"}, hops
    for traceparent in hops.values():
        assert traceparent is not None, hops
        version, trace, _, flags = traceparent.split("-")
        assert (version, trace) == ("00", trace_id)
        assert int(flags, 16) & 1, "sampled, as the caller asked"
    # each service's own span: no hop passes the caller's span or another hop's on unchanged
    parents = [traceparent.split("-")[2] for traceparent in hops.values()]
    assert len({caller_span, *parents}) == 4, hops
