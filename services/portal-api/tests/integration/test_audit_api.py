"""/v1/tenants/{id}/audit on real PostgreSQL and Kafka: the portal's read model of the audit
topics, in time order, filtered and paged, for the Auditor and Admin roles only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from portal_kit import ADMIN, READER, User, api, publish, ready_tenant

from tenantflow.contracts.common import ServiceActor, UserActor
from tenantflow.contracts.events import (
    CatalogApp,
    DeploymentChangeApplied,
    DeploymentChangeRejected,
    DeploymentChangeRequested,
    DeploymentChangeVerified,
    DeploymentRejectionReason,
    DesiredAssignment,
)
from tenantflow.devinfra.testing import eventually
from tenantflow.portal_api.bootstrap import Portal

pytestmark = pytest.mark.integration

AUDITOR, OPERATOR = "Tenantflow.Auditor", "Tenantflow.Operator"
CONSENT, WRITER = ServiceActor(service="consent"), ServiceActor(service="intune-writer")


async def a_change(
    portal: Portal, user: User, by: UUID, name: str, app: str, applied: bool
) -> UUID:
    """A change as the services record it: requested by ``by``, then applied or rejected."""
    change = uuid4()
    common = {"tenant_id": user.tenant, "correlation_id": change, "app": app, "revision": 1}
    desired = [
        DesiredAssignment.model_validate(
            {"target": {"kind": "group", "group_id": str(uuid4())}, "intent": "required"}
        )
    ]
    await publish(
        portal,
        DeploymentChangeRequested(
            **common,
            actor=UserActor(tenant_id=user.tenant, object_id=by, display_name=name),
            catalog_app=CatalogApp.model_validate(
                {
                    "catalog_id": app,
                    "display_name": app,
                    "publisher": "Test",
                    "package_identifier": f"Test.{app}",
                    "run_as_account": "system",
                }
            ),
            replaces_revision=0,
            operation="replace",
            desired_assignments=desired,
        ),
    )
    if not applied:
        await publish(
            portal,
            DeploymentChangeRejected(
                **common,
                actor=CONSENT,
                reason=DeploymentRejectionReason.ACTOR_NOT_ALLOWED,
                detail="not allowed",
            ),
        )
        return change
    await publish(portal, DeploymentChangeVerified(**common, actor=CONSENT))
    await publish(
        portal,
        DeploymentChangeApplied(
            **common,
            actor=WRITER,
            intune_app_id=uuid4(),
            assignments_before=[],
            written_assignments=desired,
            unchanged=False,
            graph_request_ids=["graph-request-1"],
            applied_at=datetime.now(UTC),
        ),
    )
    return change


async def trail(client: httpx.AsyncClient, user: User, **params: Any) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/tenants/{user.tenant}/audit", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_the_audit_trail_lists_who_did_what_in_order_filtered_and_paged(
    portal: Portal, user: User
) -> None:
    async with api(portal, user.token(ADMIN)) as admin:
        await ready_tenant(portal, admin, user, sync=False)
    first = await a_change(portal, user, user.id, "Ada", "7zip", applied=True)
    refused = await a_change(portal, user, user.colleague, "Bo", "vlc", applied=False)
    async with api(portal, user.token(AUDITOR)) as auditor:

        async def complete() -> bool:
            return len(await trail(auditor, user, limit=100)) == 9

        await eventually(complete, what="the nine events in the audit read model")
        events = await trail(auditor, user, limit=100)
        assert [e["event_type"] for e in events] == [
            "tenant.link.requested",
            "tenant.link.verified",
            "tenant.intune_writing.activation_requested",
            "tenant.intune_writing.enabled",
            "deployment.change.requested",
            "deployment.change.verified",
            "deployment.change.applied",
            "deployment.change.requested",
            "deployment.change.rejected",
        ]
        assert events[0]["actor"] == f"user {user.id}"
        assert events[4]["actor_name"] == "Ada"
        assert events[6]["actor"] == "service intune-writer"
        assert "graph-request-1" in events[6]["summary"]
        assert events[6]["topic"] == "tenantflow.deployments"
        assert [e["time"] for e in events] == sorted(e["time"] for e in events)

        bos = await trail(auditor, user, actor=str(user.colleague))
        assert {e["change_id"] for e in bos} == {str(refused)}
        assert [e["event_type"] for e in bos] == [
            "deployment.change.requested",
            "deployment.change.rejected",
        ]
        assert {e["change_id"] for e in await trail(auditor, user, app="7zip")} == {str(first)}
        assert len(await trail(auditor, user, change=str(first))) == 3
        since = events[4]["time"]
        assert len(await trail(auditor, user, since=since)) == 5
        assert len(await trail(auditor, user, until=since)) == 5

        pages, cursor = [], None
        while True:
            response = await auditor.get(
                f"/v1/tenants/{user.tenant}/audit",
                params={"limit": 4, **({"cursor": cursor} if cursor else {})},
            )
            body = response.json()
            pages.append([e["event_id"] for e in body["items"]])
            cursor = body["next_cursor"]
            if cursor is None:
                assert "link" not in response.headers
                break
            assert 'rel="next"' in response.headers["link"]
        assert [len(page) for page in pages] == [4, 4, 1]
        assert [i for page in pages for i in page] == [e["event_id"] for e in events]

        bad = await auditor.get(f"/v1/tenants/{user.tenant}/audit", params={"cursor": "x!"})
        assert bad.status_code == 400
        assert bad.headers["content-type"] == "application/problem+json"
        naive = await auditor.get(
            f"/v1/tenants/{user.tenant}/audit", params={"since": "2026-11-17T14:00:00"}
        )
        assert naive.status_code == 400


async def test_only_auditors_and_admins_of_the_account_read_the_trail(
    portal: Portal, user: User, emulator: Any
) -> None:
    async with api(portal, user.token(ADMIN)) as admin:
        await ready_tenant(portal, admin, user, sync=False)
        assert (await admin.get(f"/v1/tenants/{user.tenant}/audit")).status_code == 200
    for role in (OPERATOR, READER):
        async with api(portal, user.token(role)) as client:
            response = await client.get(f"/v1/tenants/{user.tenant}/audit")
            assert response.status_code == 403, role
    stranger = User(emulator)
    async with api(portal, stranger.token(AUDITOR)) as client:
        assert (await client.get(f"/v1/tenants/{user.tenant}/audit")).status_code == 404
