"""/v1/tenants/{id}/deployments, /v1/changes and /v1/catalog on real PostgreSQL and Kafka.

Consent, directory-sync and the writer are played by publishing their events, so each rule of
the API is tested on its own; tests/e2e runs them for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from portal_kit import (
    ADMIN,
    CONSENT,
    READER,
    WINDOWS,
    User,
    api,
    outbox_of,
    publish,
    ready_tenant,
    rebuilt_equal,
    running_portal,
)

from tenantflow.contracts.events import (
    AssignmentFilter,
    DeadLettered,
    DeploymentChangeApplied,
    DeploymentChangeFailed,
    DeploymentChangeRejected,
    DeploymentChangeRequested,
    DeploymentChangeSuperseded,
    DeploymentChangeVerified,
    DeploymentRejectionReason,
    DesiredAssignment,
    GraphError,
)
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import eventually
from tenantflow.emulator.testing import RunningEmulator
from tenantflow.portal_api.bootstrap import Portal

pytestmark = pytest.mark.integration

OPERATOR, AUDITOR, CATALOG_ADMIN = (
    "Tenantflow.Operator",
    "Tenantflow.Auditor",
    "Tenantflow.CatalogAdmin",
)
APP = "company-portal"
WINDOWS_FILTER = AssignmentFilter(filter_id=uuid4(), display_name="Windows 11", platform=WINDOWS)
IOS_FILTER = AssignmentFilter(filter_id=uuid4(), display_name="iPhones", platform="iOS")
CREATE = {"if-none-match": "*"}


def group(group_id: UUID, intent: str = "required", **fields: Any) -> dict[str, Any]:
    return {"target": {"kind": "group", "group_id": str(group_id)}, "intent": intent, **fields}


def excluded(group_id: UUID) -> dict[str, Any]:
    return {"target": {"kind": "exclusion_group", "group_id": str(group_id)}, "intent": "required"}


class Tenant:
    """A user's linked tenant with Intune writing on, its groups, and a client as that user."""

    def __init__(self, portal: Portal, user: User, client: httpx.AsyncClient, groups: list[UUID]):
        self.portal, self.user, self.client, self.groups = portal, user, client, groups
        self.path = f"/v1/tenants/{user.tenant}/deployments"

    async def put(
        self, assignments: list[dict[str, Any]], headers: dict[str, str], **params: Any
    ) -> httpx.Response:
        return await self.client.put(
            f"{self.path}/{APP}", json={"assignments": assignments}, headers=headers, params=params
        )

    async def requests(self) -> list[DeploymentChangeRequested]:
        return await outbox_of(self.portal, self.user.tenant, DeploymentChangeRequested)

    async def change(self, response: httpx.Response) -> dict[str, Any]:
        answer = await self.client.get(response.headers["location"])
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


@pytest.fixture
async def tenant(portal: Portal, user: User) -> AsyncIterator[Tenant]:
    async with api(portal, user.token(ADMIN)) as client:
        groups = await ready_tenant(
            portal, client, user, groups=25, filters=[WINDOWS_FILTER, IOS_FILTER]
        )
        yield Tenant(portal, user, client, groups)


async def settled(tenant: Tenant, response: httpx.Response, status: str) -> dict[str, Any]:
    body: dict[str, Any] = {}

    async def reached() -> bool:
        nonlocal body
        body = await tenant.change(response)
        return body["status"] == status

    await eventually(reached, what=f"the change {status}")
    return body


# --- create, update, append, remove, delete ----------------------------------------------------


async def test_create_then_update_carries_the_whole_set_and_the_revision_replaced(
    tenant: Tenant,
) -> None:
    first = [group(tenant.groups[0]), excluded(tenant.groups[1])]
    created = await tenant.put(first, CREATE)
    assert created.status_code == 202, created.text
    assert created.headers["etag"] == '"1"'
    change_id = created.json()["latest_change"]["id"]
    assert created.headers["location"].endswith(f"/v1/changes/{change_id}")

    second = [*first, group(tenant.groups[2], "available")]
    updated = await tenant.put(second, {"if-match": '"1"'})
    assert updated.status_code == 202, updated.text
    assert updated.headers["etag"] == '"2"'

    [one, two] = await tenant.requests()
    assert (one.revision, one.replaces_revision, one.operation) == (1, 0, "replace")
    assert one.desired_assignments == [DesiredAssignment.model_validate(a) for a in first]
    assert (two.revision, two.replaces_revision) == (2, 1)
    assert two.desired_assignments == [DesiredAssignment.model_validate(a) for a in second]
    assert two.previous_assignments == one.desired_assignments
    assert one.catalog_app.package_identifier == "9WZDNCRFJ3PZ"
    assert str(two.correlation_id) == updated.json()["latest_change"]["id"]

    read = await tenant.client.get(f"{tenant.path}/{APP}")
    assert read.headers["etag"] == '"2"'
    assert read.json()["desired_assignments"] == [
        DesiredAssignment.model_validate(a).model_dump(mode="json") for a in second
    ]
    assert (read.json()["status"], read.json()["in_sync"]) == ("requested", False)


async def test_the_same_set_again_is_not_a_new_revision(tenant: Tenant) -> None:
    await tenant.put([group(tenant.groups[0])], CREATE)
    again = await tenant.put([group(tenant.groups[0])], {"if-match": '"1"'})
    assert again.status_code == 200
    assert again.headers["etag"] == '"1"'
    assert len(await tenant.requests()) == 1


async def test_append_and_remove_single_assignments_resolve_into_the_whole_set(
    tenant: Tenant,
) -> None:
    path = f"{tenant.path}/{APP}"
    await tenant.put([group(tenant.groups[0]), group(tenant.groups[1])], CREATE)
    appended = await tenant.client.patch(
        path,
        json={"operations": [{"op": "add", "assignment": group(tenant.groups[2], "uninstall")}]},
        headers={"if-match": '"1"'},
    )
    assert appended.status_code == 202, appended.text
    removed = await tenant.client.patch(
        path,
        json={
            "operations": [
                {"op": "remove", "target": {"kind": "group", "group_id": str(tenant.groups[0])}}
            ]
        },
        headers={"if-match": '"2"'},
    )
    assert removed.status_code == 202, removed.text
    absent = await tenant.client.patch(
        path,
        json={"operations": [{"op": "remove", "target": {"kind": "all_users"}}]},
        headers={"if-match": '"3"'},
    )
    twice = await tenant.client.patch(
        path,
        json={"operations": [{"op": "add", "assignment": group(tenant.groups[1])}]},
        headers={"if-match": '"3"'},
    )
    assert absent.status_code == twice.status_code == 422
    assert absent.json()["errors"][0]["type"] == "not_assigned"
    assert twice.json()["errors"][0]["type"] == "duplicate_target"

    _, append, remove = await tenant.requests()
    assert append.operation == remove.operation == "patch"
    # the writer is always handed the whole set, never the delta
    assert [a.target.group_id for a in append.desired_assignments] == tenant.groups[:3]
    assert [a.target.group_id for a in remove.desired_assignments] == tenant.groups[1:3]


async def test_delete_removes_every_assignment_and_keeps_the_app_unless_asked(
    tenant: Tenant,
) -> None:
    path = f"{tenant.path}/{APP}"
    await tenant.put([group(tenant.groups[0])], CREATE)
    without_version = await tenant.client.delete(path)
    assert without_version.status_code == 428
    deleted = await tenant.client.delete(path, headers={"if-match": '"1"'})
    assert deleted.status_code == 202
    assert (deleted.json()["removed"], deleted.json()["desired_assignments"]) == (True, [])
    listed = (await tenant.client.get(tenant.path)).json()["items"]
    with_removed = (await tenant.client.get(tenant.path, params={"include_removed": True})).json()
    recreated = await tenant.put([group(tenant.groups[1])], CREATE)
    removal_with_app = await tenant.client.delete(
        path, headers={"if-match": recreated.headers["etag"]}, params={"remove_app": True}
    )
    assert removal_with_app.status_code == 202
    assert listed == []
    assert [d["app"] for d in with_removed["items"]] == [APP]
    assert recreated.headers["etag"] == '"3"'  # revisions never restart
    _, remove, _, remove_app = await tenant.requests()
    assert (remove.operation, remove.desired_assignments, remove.remove_app) == (
        "remove",
        [],
        False,
    )
    assert remove_app.remove_app


async def test_deployments_are_listed_a_page_at_a_time(tenant: Tenant) -> None:
    apps = ["company-portal", "microsoft-to-do", "powertoys", "vlc"]
    for app in apps:
        answer = await tenant.client.put(
            f"{tenant.path}/{app}",
            json={"assignments": [group(tenant.groups[0])]},
            headers=CREATE,
        )
        assert answer.status_code == 202, answer.text
    seen: list[str] = []
    page = await tenant.client.get(tenant.path, params={"limit": 3})
    while True:
        assert page.status_code == 200, page.text
        seen += [item["app"] for item in page.json()["items"]]
        if page.json()["next_cursor"] is None:
            break
        page = await tenant.client.get(page.headers["link"].split(">")[0].lstrip("<"))
    assert seen == apps
    assert (await tenant.client.get(tenant.path, params={"cursor": "%%%"})).status_code == 400


# --- validation: refused before anything is stored ---------------------------------------------


async def test_each_rule_is_a_422_naming_the_item_and_nothing_is_stored(tenant: Tenant) -> None:
    ghost = uuid4()
    cases = {
        "group_not_found": [group(tenant.groups[0]), group(ghost)],
        "filter_not_found": [
            group(tenant.groups[0], filter={"filter_id": str(uuid4()), "mode": "include"})
        ],
        "filter_platform": [
            group(
                tenant.groups[0], filter={"filter_id": str(IOS_FILTER.filter_id), "mode": "include"}
            )
        ],
        "duplicate_target": [group(tenant.groups[0]), group(tenant.groups[0], "available")],
        "included_and_excluded": [group(tenant.groups[0]), excluded(tenant.groups[0])],
        "intent_not_supported": [group(tenant.groups[0], "availableWithoutEnrollment")],
        "setting_not_supported": [
            group(tenant.groups[0], "available", settings={"deadline": "2026-12-01T00:00:00Z"})
        ],
    }
    for expected, assignments in cases.items():
        refused = await tenant.put(assignments, CREATE)
        assert refused.status_code == 422, (expected, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
        types = [error["type"] for error in refused.json()["errors"]]
        assert types == [expected], (expected, types)
    missing = (await tenant.put(cases["group_not_found"], CREATE)).json()
    assert str(ghost) in missing["detail"]
    assert missing["errors"][0]["location"] == ["body", "assignments", "1", "target", "group_id"]
    assert await tenant.requests() == []
    assert (await tenant.client.get(f"{tenant.path}/{APP}")).status_code == 404


async def test_a_tenant_whose_directory_never_synced_is_told_so(
    portal: Portal, emulator: RunningEmulator
) -> None:
    user = User(emulator)
    async with api(portal, user.token(ADMIN)) as client:
        await ready_tenant(portal, client, user, sync=False)
        refused = await client.put(
            f"/v1/tenants/{user.tenant}/deployments/{APP}",
            json={"assignments": [group(uuid4())]},
            headers=CREATE,
        )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["type"] == "directory_not_synced"
    assert "first sync" in refused.json()["detail"]


async def test_an_unknown_app_and_a_bad_body_are_refused(tenant: Tenant) -> None:
    unknown = await tenant.client.put(
        f"{tenant.path}/not-in-catalog", json={"assignments": []}, headers=CREATE
    )
    bad_id = await tenant.client.put(
        f"{tenant.path}/Not_An_Id", json={"assignments": []}, headers=CREATE
    )
    no_group = await tenant.put([{"target": {"kind": "group"}, "intent": "required"}], CREATE)
    assert unknown.status_code == 404
    assert bad_id.status_code == no_group.status_code == 422


# --- the blast-radius guard --------------------------------------------------------------------


async def test_large_removals_and_broad_targets_need_confirmation(tenant: Tenant) -> None:
    many = [group(g) for g in tenant.groups[:22]]
    created = await tenant.put(many, CREATE)
    assert created.status_code == 202
    wipe = await tenant.put([group(tenant.groups[22])], {"if-match": '"1"'})
    assert wipe.status_code == 409
    assert "remove 22 assignments" in wipe.json()["detail"]
    assert len(wipe.json()["would_remove"]) == 22
    everyone = await tenant.put(
        [*many, {"target": {"kind": "all_users"}, "intent": "available"}], {"if-match": '"1"'}
    )
    assert everyone.status_code == 409
    assert "all users" in everyone.json()["detail"]
    assert len(await tenant.requests()) == 1

    confirmed = await tenant.put([group(tenant.groups[22])], {"if-match": '"1"'}, confirm=True)
    assert confirmed.status_code == 202
    [_, wiped] = await tenant.requests()
    assert wiped.confirmed
    # removing 20 is under the guard
    assert (await tenant.put(many[:2], {"if-match": '"2"'})).status_code == 202


async def test_a_dry_run_answers_what_would_happen_and_changes_nothing(tenant: Tenant) -> None:
    many = [group(g) for g in tenant.groups[:22]]
    await tenant.put(many, CREATE)
    plan = await tenant.put([group(tenant.groups[22])], {"if-match": '"1"'}, dry_run=True)
    bad = await tenant.put([group(uuid4())], {"if-match": '"1"'}, dry_run=True)
    stale = await tenant.put(many, {"if-match": '"9"'}, dry_run=True)
    removal = await tenant.client.delete(
        f"{tenant.path}/{APP}", headers={"if-match": '"1"'}, params={"dry_run": True}
    )
    assert plan.status_code == 200, plan.text
    body = plan.json()
    assert (len(body["would_remove"]), len(body["would_add"]), body["needs_confirmation"]) == (
        22,
        1,
        True,
    )
    assert "remove 22 assignments" in body["explanation"]
    assert bad.status_code == 422  # validated like the real change
    assert stale.status_code == 412
    assert (removal.status_code, len(removal.json()["would_remove"])) == (200, 22)
    assert len(await tenant.requests()) == 1  # nothing stored, nothing sent on
    assert (await tenant.client.get(f"{tenant.path}/{APP}")).headers["etag"] == '"1"'


# --- versions and races ------------------------------------------------------------------------


async def test_preconditions(tenant: Tenant) -> None:
    assert (await tenant.put([group(tenant.groups[0])], {})).status_code == 428
    assert (await tenant.put([], {"if-match": '"1"'})).status_code == 412  # nothing to match
    await tenant.put([group(tenant.groups[0])], CREATE)
    again = await tenant.put([group(tenant.groups[1])], CREATE)
    stale = await tenant.put([group(tenant.groups[1])], {"if-match": '"7"'})
    assert again.status_code == stale.status_code == 412
    assert stale.json()["current_etag"] == '"1"'
    read = await tenant.client.get(f"{tenant.path}/{APP}", headers={"if-none-match": '"1"'})
    assert read.status_code == 304


async def test_two_users_racing_on_one_version_exactly_one_wins(
    tenant: Tenant, portal: Portal
) -> None:
    await tenant.put([group(tenant.groups[0])], CREATE)
    async with api(portal, tenant.user.token(OPERATOR, colleague=True)) as colleague:
        answers = await asyncio.gather(
            tenant.put([group(tenant.groups[1])], {"if-match": '"1"'}),
            colleague.put(
                f"{tenant.path}/{APP}",
                json={"assignments": [group(tenant.groups[2])]},
                headers={"if-match": '"1"'},
            ),
        )
    assert sorted(answer.status_code for answer in answers) == [202, 412]
    assert [r.revision for r in await tenant.requests()] == [1, 2]


# --- the change timeline -----------------------------------------------------------------------


async def test_the_timeline_follows_consent_and_the_writer(tenant: Tenant) -> None:
    created = await tenant.put([group(tenant.groups[0])], CREATE)
    [requested] = await tenant.requests()
    same = {
        "tenant_id": requested.tenant_id,
        "actor": requested.actor,
        "correlation_id": requested.correlation_id,
        "app": APP,
        "revision": 1,
    }
    await publish(tenant.portal, DeploymentChangeVerified(**same))
    await settled(tenant, created, "verified")
    applied = DeploymentChangeApplied(
        **same,
        intune_app_id=uuid4(),
        assignments_before=[],
        written_assignments=requested.desired_assignments,
        unchanged=False,
        graph_request_ids=["req-1", "req-2"],
        applied_at="2026-11-24T10:00:00Z",  # type: ignore[arg-type]
    )
    await publish(tenant.portal, applied)
    await publish(tenant.portal, applied)  # a redelivery changes nothing
    body = await settled(tenant, created, "applied")
    assert [step["status"] for step in body["timeline"]] == ["requested", "verified", "applied"]
    assert body["graph_request_ids"] == ["req-1", "req-2"]
    assert body["requested_by"]["object_id"] == str(tenant.user.id)
    deployment = (await tenant.client.get(f"{tenant.path}/{APP}")).json()
    assert (deployment["in_sync"], deployment["intune_app_id"]) == (
        True,
        str(applied.intune_app_id),
    )


async def test_rejected_failed_and_superseded_changes_say_why(tenant: Tenant) -> None:
    rejected = await tenant.put([group(tenant.groups[0])], CREATE)
    failed = await tenant.put([group(tenant.groups[1])], {"if-match": '"1"'})
    superseded = await tenant.put([group(tenant.groups[2])], {"if-match": '"2"'})
    newest = await tenant.put([group(tenant.groups[3])], {"if-match": '"3"'})
    one, two, three, four = await tenant.requests()

    def same(event: DeploymentChangeRequested) -> dict[str, Any]:
        return {
            "tenant_id": event.tenant_id,
            "actor": CONSENT,
            "correlation_id": event.correlation_id,
            "app": APP,
            "revision": event.revision,
        }

    await publish(
        tenant.portal,
        DeploymentChangeRejected(
            **same(one),
            reason=DeploymentRejectionReason.INTUNE_WRITING_NOT_ENABLED,
            detail="Intune writing was revoked.",
        ),
    )
    await publish(tenant.portal, DeploymentChangeVerified(**same(two)))
    await publish(
        tenant.portal,
        DeploymentChangeFailed(
            **same(two),
            reason="graph_error",
            detail="Graph answered 400.",
            retryable=False,
            graph_error=GraphError(status=400, code="BadRequest", message="not assignable"),
            graph_request_ids=["req-9"],
        ),
    )
    await publish(
        tenant.portal,
        DeploymentChangeSuperseded(
            **same(three), superseded_by_revision=4, superseded_by_change=four.correlation_id
        ),
    )
    no = await settled(tenant, rejected, "rejected")
    broken = await settled(tenant, failed, "failed")
    replaced = await settled(tenant, superseded, "superseded")
    assert (no["reason"], no["detail"]) == (
        "intune_writing_not_enabled",
        "Intune writing was revoked.",
    )
    assert broken["graph_error"]["code"] == "BadRequest"
    assert broken["timeline"][-1]["graph_request_ids"] == ["req-9"]
    assert replaced["superseded_by"] == str(four.correlation_id)
    assert newest.status_code == 202


async def test_a_change_consent_gave_up_on_ends_rejected(tenant: Tenant) -> None:
    created = await tenant.put([group(tenant.groups[0])], CREATE)
    [requested] = await tenant.requests()
    await publish(
        tenant.portal,
        DeadLettered(
            tenant_id=requested.tenant_id,
            actor=CONSENT,
            correlation_id=requested.correlation_id,
            consumer="consent.changes",
            error_type="KeyError",
            error="boom",
            attempts=5,
            original_topic="tenantflow.deployments",
            original_partition=0,
            original_offset=0,
            original_key=str(requested.tenant_id),
            original_headers=[],
            original_value_base64="",
        ),
    )
    body = await settled(tenant, created, "rejected")
    assert body["reason"] == "verification_failed"
    assert "KeyError" in body["detail"]


# --- who may do what ---------------------------------------------------------------------------


async def test_only_admins_and_operators_change_and_only_their_account_sees(
    tenant: Tenant, portal: Portal, emulator: RunningEmulator
) -> None:
    created = await tenant.put([group(tenant.groups[0])], CREATE)
    path = f"{tenant.path}/{APP}"
    async with api(portal, tenant.user.token(READER, AUDITOR, colleague=True)) as reader:
        refused = await reader.put(path, json={"assignments": []}, headers={"if-match": '"1"'})
        read = await reader.get(path)
        change = await reader.get(created.headers["location"])
    stranger = User(emulator)
    async with api(portal, stranger.token(ADMIN)) as other:
        probes = [
            await other.get(path),
            await other.get(tenant.path),
            await other.get(created.headers["location"]),
            await other.put(path, json={"assignments": []}, headers={"if-match": '"1"'}),
            await other.get("/v1/changes/not-a-uuid"),
        ]
    assert refused.status_code == 403
    assert read.status_code == change.status_code == 200
    assert [probe.status_code for probe in probes] == [404] * 5


async def test_changes_need_a_linked_tenant_with_intune_writing(portal: Portal, user: User) -> None:
    async with api(portal, user.token(ADMIN)) as client:
        await client.post("/v1/tenants", json={"tenant_id": str(user.tenant)})
        pending = await client.put(
            f"/v1/tenants/{user.tenant}/deployments/{APP}",
            json={"assignments": []},
            headers=CREATE,
        )
    assert pending.status_code == 409
    assert "pending" in pending.json()["detail"]


# --- the catalog -------------------------------------------------------------------------------


async def test_the_catalog_is_seeded_and_changed_by_the_providers_catalog_admins_only(
    infra: RunningInfra, emulator: RunningEmulator, database_url: str
) -> None:
    provider, customer = User(emulator), User(emulator)
    app = {
        "package_identifier": "Contoso.Tool",
        "display_name": "Contoso Tool",
        "publisher": "Contoso",
        "run_as_account": "system",
    }
    path = f"/v1/catalog/apps/contoso-tool-{uuid4().hex[:6]}"
    async with running_portal(
        infra, emulator, database_url, provider_tenant_id=provider.tenant
    ) as portal:
        async with api(portal, customer.token(ADMIN, CATALOG_ADMIN)) as outsider:
            listing = (await outsider.get("/v1/catalog/apps", params={"limit": 200})).json()
            self_granted = await outsider.put(path, json=app, headers=CREATE)
        async with api(portal, provider.token(CATALOG_ADMIN)) as admin:
            added = await admin.put(path, json=app, headers=CREATE)
            renamed = await admin.put(
                path, json={**app, "display_name": "Contoso Tool 2"}, headers={"if-match": '"1"'}
            )
            repackaged = await admin.put(
                path,
                json={**app, "package_identifier": "Contoso.Other"},
                headers={"if-match": '"2"'},
            )
            bad = await admin.put(
                path, json={**app, "package_identifier": "no spaces allowed"}, headers=CREATE
            )
            tenants = await admin.get("/v1/tenants")
    ids = [item["id"] for item in listing["items"]]
    assert {"company-portal", "windows-terminal", "powertoys"} <= set(ids)
    assert self_granted.status_code == 403
    assert added.status_code == 201
    assert (renamed.status_code, renamed.json()["display_name"]) == (200, "Contoso Tool 2")
    assert repackaged.status_code == 409
    assert bad.status_code == 422
    assert tenants.status_code == 403  # the catalog role reaches no tenant


async def test_the_read_models_rebuilt_from_the_log_equal_the_portals_database(
    portal: Portal, database_url: str
) -> None:
    """Whatever this module's tests did, the portal's read models (accounts, links and their
    tracks, deployments, changes, the audit page) rebuilt from the event log alone are its
    database's, row for row. Last in the module: it covers all the rest."""
    await rebuilt_equal(portal, database_url)
