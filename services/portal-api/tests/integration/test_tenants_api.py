"""/v1/tenants on real PostgreSQL and Kafka with tokens from the emulated Entra ID; consent's side
is played by publishing its result events, so each rule of the API is tested on its own."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import jsonschema
import pytest
from portal_kit import (
    ADMIN,
    GATEWAY,
    READER,
    User,
    api,
    link_requests,
    outbox_of,
    publish,
    rebuilt_equal,
    request_link,
    running_portal,
    until,
)
from sqlalchemy import delete, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col

from tenantflow.bus.db import transaction
from tenantflow.contracts.common import ServiceActor, UserActor
from tenantflow.contracts.events import (
    ConsentRevoked,
    DeadLettered,
    EnterpriseApp,
    IntuneWritingActivationRequested,
    IntuneWritingEnabled,
    TenantLinkVerified,
    VerificationFailure,
)
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import create_database, eventually
from tenantflow.emulator.testing import RunningEmulator
from tenantflow.portal_api.bootstrap import Portal
from tenantflow.portal_api.models import Account, TenantLink, TenantTrack, Track

pytestmark = pytest.mark.integration


# --- linking and reading -----------------------------------------------------------------------


async def test_a_repeat_while_pending_returns_the_same_request(
    portal: Portal, user: User, admin_token: str
) -> None:
    async with api(portal, admin_token) as client:
        first = await client.post("/v1/tenants", json={"tenant_id": str(user.tenant)})
        again = await client.post("/v1/tenants", json={"tenant_id": str(user.tenant)})
    assert first.status_code == again.status_code == 202
    assert again.json() == first.json()
    assert first.headers["location"] == f"http://portal.internal/v1/tenants/{user.tenant}"
    assert first.headers["etag"] == again.headers["etag"]
    assert first.headers["retry-after"] == "1"  # when to poll Location
    assert first.json()["requested_by"] == {
        "tenant_id": str(user.tenant),
        "object_id": str(user.id),
        "name": "Ada",
    }
    [requested] = await link_requests(portal, user.tenant)
    assert requested.data.actor == UserActor(
        tenant_id=user.tenant, object_id=user.id, display_name="Ada"
    )


async def test_verdicts_are_applied_once_and_only_for_the_current_request(
    portal: Portal, user: User, admin_token: str
) -> None:
    async with api(portal, admin_token) as client:
        requested = await request_link(portal, client, user)
        common = {"tenant_id": user.tenant, "actor": requested.data.actor}
        verified = {
            "display_name": "Contoso",
            "default_domain": "contoso.example",
            "granted_permissions": ["Directory.Read.All"],
            "authorized_by": "global_administrator",
        }
        stale = TenantLinkVerified(**common, correlation_id=uuid4(), **verified)
        current = TenantLinkVerified(
            **common, correlation_id=requested.data.correlation_id, **verified
        )
        for event in (stale, current, current):
            await publish(portal, event)

        await until(client, user, "linked")
        consumer = portal.runtime.consumers[0]
        await eventually(lambda: sum(consumer.stats.values()) >= 3, what="all three consumed")
        body = (await client.get(f"/v1/tenants/{user.tenant}")).json()
        etag = (await client.get(f"/v1/tenants/{user.tenant}")).headers["etag"]
    assert body["display_name"] == "Contoso"
    assert etag == '"2"'  # requested (1), verified once (2): the stale one and the copy did nothing


async def test_a_request_consent_gave_up_on_ends_rejected(
    portal: Portal, user: User, admin_token: str
) -> None:
    async with api(portal, admin_token) as client:
        requested = await request_link(portal, client, user)
        await publish(
            portal,
            DeadLettered(
                tenant_id=user.tenant,
                actor=ServiceActor(service="consent"),
                correlation_id=requested.data.correlation_id,
                causation_id=requested.id,
                consumer="consent.requests",
                error_type="KeyError",
                error="'value'",
                attempts=5,
                original_topic="tenantflow.tenants",
                original_partition=0,
                original_offset=0,
                original_key=str(user.tenant),
                original_headers=[],
                original_value_base64="",
            ),
        )

        body = await until(client, user, "rejected")
    assert body["reason"] == "verification_failed"
    assert "KeyError" in body["message"]


async def test_revocation_of_the_writer_shows_on_intune_writing(
    portal: Portal, user: User, admin_token: str
) -> None:
    async with api(portal, admin_token) as client:
        requested = await request_link(portal, client, user)
        await publish(
            portal,
            TenantLinkVerified(
                tenant_id=user.tenant,
                actor=requested.data.actor,
                correlation_id=requested.data.correlation_id,
                display_name="Contoso",
                default_domain=None,
                granted_permissions=["Directory.Read.All"],
                authorized_by="global_administrator",  # type: ignore[arg-type]
            ),
        )

        await until(client, user, "linked")
        activation = await client.post(f"/v1/tenants/{user.tenant}/intune")
        assert activation.status_code == 202
        async with portal.runtime.sessions() as session:
            intune = (
                await session.exec(
                    select(TenantTrack).where(
                        TenantTrack.tenant_id == user.tenant,
                        TenantTrack.track == Track.INTUNE_WRITING,
                    )
                )
            ).scalar_one()
        assert intune.change_id is not None
        await publish(
            portal,
            IntuneWritingEnabled(
                tenant_id=user.tenant,
                actor=requested.data.actor,
                correlation_id=intune.change_id,
                granted_permissions=["DeviceManagementApps.ReadWrite.All"],
            ),
        )
        await until(client, user, "enabled", intune=True)
        await publish(
            portal,
            ConsentRevoked(
                tenant_id=user.tenant,
                actor=ServiceActor(service="consent"),
                correlation_id=uuid4(),
                app=EnterpriseApp.INTUNE_WRITER,
                reason=VerificationFailure.PERMISSION_MISSING,
                detail="Admin consent lacks DeviceManagementApps.ReadWrite.All.",
                missing_permissions=["DeviceManagementApps.ReadWrite.All"],
                detected_by="scheduled_check",
            ),
        )
        body = await until(client, user, "revoked", intune=True)
    assert body["status"] == "linked"
    assert body["intune_writing"]["reason"] == "permission_missing"
    assert body["intune_writing"]["missing_permissions"] == ["DeviceManagementApps.ReadWrite.All"]


async def test_pages_walk_every_reachable_tenant_once(
    portal: Portal, user: User, admin_token: str
) -> None:
    # an account owning several tenants (a managed-service provider's, in a later issue)
    account = uuid4()
    owned = sorted(uuid4() for _ in range(5))
    now = datetime.now(UTC)
    async with transaction(portal.runtime.sessions) as session:
        await session.exec(insert(Account).values(id=account, home_tenant_id=user.tenant))
        for tenant in owned:
            await session.exec(
                insert(TenantLink).values(account_id=account, tenant_id=tenant, version=1)
            )
            await session.flush()
            session.add_all(
                [
                    TenantTrack(
                        account_id=account,
                        tenant_id=tenant,
                        track=Track.LINK,
                        status="linked",
                        change_id=uuid4(),
                        requested_by_tenant_id=user.tenant,
                        requested_by_object_id=user.id,
                        requested_at=now,
                    ),
                    TenantTrack(
                        account_id=account,
                        tenant_id=tenant,
                        track=Track.INTUNE_WRITING,
                        status="off",
                    ),
                ]
            )
    seen: list[str] = []
    try:
        async with api(portal, user.token(READER)) as client:
            page = await client.get("/v1/tenants", params={"limit": 2})
            while True:
                assert page.status_code == 200, page.text
                seen += [item["tenant_id"] for item in page.json()["items"]]
                cursor = page.json()["next_cursor"]
                if cursor is None:
                    assert "link" not in page.headers
                    break
                assert page.headers["link"].endswith('rel="next"')
                page = await client.get(page.headers["link"].split(">")[0].lstrip("<"))
            bad_cursor = await client.get("/v1/tenants", params={"cursor": "%%%"})
    finally:  # made here, not by requests on the log: the rebuild at the end would lack them
        async with transaction(portal.runtime.sessions) as session:
            await session.exec(delete(TenantLink).where(col(TenantLink.account_id) == account))
            await session.exec(delete(Account).where(col(Account.id) == account))
    assert seen == [str(t) for t in owned]
    assert bad_cursor.status_code == 400


# --- the HTTP rules ----------------------------------------------------------------------------


async def test_roles_decide_who_may_write(portal: Portal, user: User) -> None:
    async with api(portal, user.token(READER)) as reader, api(portal, user.token()) as nobody:
        refused = await reader.post("/v1/tenants", json={"tenant_id": str(user.tenant)})
        listing = await reader.get("/v1/tenants")
        no_role = await nobody.get("/v1/tenants")
    assert refused.status_code == 403
    assert refused.json()["type"] == "https://tenantflow.dev/problems/forbidden"
    assert listing.status_code == 200
    assert no_role.status_code == 403


async def test_media_types_and_bodies(portal: Portal, user: User, admin_token: str) -> None:
    async with api(portal, admin_token) as client:
        as_text = await client.post(
            "/v1/tenants", content=str(user.tenant), headers={"content-type": "text/plain"}
        )
        broken = await client.post(
            "/v1/tenants", content=b"{not json", headers={"content-type": "application/json"}
        )
        not_a_guid = await client.post("/v1/tenants", json={"tenant_id": "contoso"})
    assert (as_text.status_code, broken.status_code, not_a_guid.status_code) == (415, 400, 422)
    for answer in (as_text, broken, not_a_guid):
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["request_id"] == answer.headers["x-request-id"]


async def test_preconditions(portal: Portal, user: User, admin_token: str) -> None:
    async with api(portal, admin_token) as client:
        created = await client.post("/v1/tenants", json={"tenant_id": str(user.tenant)})
        path = f"/v1/tenants/{user.tenant}"
        etag = created.headers["etag"]
        not_modified = await client.get(path, headers={"if-none-match": etag})
        not_linked_yet = await client.post(f"{path}/intune")
        without = await client.delete(path)
        stale = await client.delete(path, headers={"if-match": '"999"'})
        unlinked = await client.delete(path, headers={"if-match": etag})
        again = await client.delete(path, headers={"if-match": unlinked.headers["etag"]})
    assert not_modified.status_code == 304
    assert not_linked_yet.status_code == 409
    assert without.status_code == 428
    assert stale.status_code == 412
    assert stale.json()["current_etag"] == etag
    assert unlinked.status_code == 202
    assert unlinked.json()["status"] == "unlinked"
    assert again.status_code == 200


async def test_forwarded_headers_count_only_from_the_gateway(
    portal: Portal, user: User, admin_token: str
) -> None:
    forwarded = {"x-forwarded-proto": "https", "x-forwarded-host": "portal.example.com"}
    body = {"tenant_id": str(user.tenant)}
    async with api(portal, admin_token, peer=GATEWAY) as gateway:
        through_gateway = await gateway.post("/v1/tenants", json=body, headers=forwarded)
    async with api(portal, admin_token, peer="203.0.113.9") as stranger:
        direct = await stranger.post("/v1/tenants", json=body, headers=forwarded)
    location = f"/v1/tenants/{user.tenant}"
    assert through_gateway.headers["location"] == f"https://portal.example.com{location}"
    assert direct.headers["location"] == f"http://portal.internal{location}"


async def test_rate_limits_answer_429_with_retry_after(
    infra: RunningInfra, emulator: RunningEmulator, user: User
) -> None:
    async with running_portal(
        infra,
        emulator,
        await create_database(infra.database_url),  # its own: a portal of its own limits
        user_requests_per_minute=3,
        tenant_requests_per_minute=5,
    ) as portal:
        async with api(portal, user.token(ADMIN)) as client:
            by_user = [(await client.get("/v1/tenants")).status_code for _ in range(4)]
            limited = await client.get("/v1/tenants")
        other = User(emulator)
        path = f"/v1/tenants/{other.tenant}"
        async with api(portal, other.token(ADMIN)) as admin:
            await admin.post("/v1/tenants", json={"tenant_id": str(other.tenant)})
            for _ in range(2):
                assert (await admin.get(path)).status_code == 200
        # the tenant's budget is shared by everyone acting on it
        async with api(portal, other.token(READER, colleague=True)) as colleague:
            on_tenant = [await colleague.get(path) for _ in range(3)]
    assert by_user == [200, 200, 200, 429]
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 20
    assert limited.json()["type"] == "https://tenantflow.dev/problems/rate-limited"
    assert [answer.status_code for answer in on_tenant] == [200, 200, 429]
    assert "tenant" in on_tenant[-1].json()["detail"]
    assert on_tenant[-1].headers["retry-after"]


async def test_strangers_cannot_spend_a_tenants_budget(
    infra: RunningInfra, emulator: RunningEmulator, user: User
) -> None:
    async with running_portal(
        infra,
        emulator,
        await create_database(infra.database_url),
        user_requests_per_minute=50,
        tenant_requests_per_minute=3,
    ) as portal:
        victim = f"/v1/tenants/{user.tenant}"
        async with api(portal, user.token(ADMIN)) as admin:
            await admin.post("/v1/tenants", json={"tenant_id": str(user.tenant)})
        attacker = User(emulator)
        async with api(portal, attacker.token(ADMIN)) as stranger:
            probes = [
                await stranger.get(victim),
                await stranger.post(f"{victim}/intune"),
                await stranger.delete(victim, headers={"if-match": "*"}),
                await stranger.post("/v1/tenants", json={"tenant_id": str(user.tenant)}),
            ] + [await stranger.get(victim) for _ in range(20)]
        async with api(portal, user.token(ADMIN)) as admin:
            answers = [(await admin.get(victim)).status_code for _ in range(2)]
        # the stranger's requests count against the stranger alone
        async with api(portal, attacker.token(ADMIN)) as stranger:
            for _ in range(30):
                last = await stranger.get(victim)
                if last.status_code == 429:
                    break
    assert {probe.status_code for probe in probes} == {404}
    assert answers == [200, 200]  # the link POST spent one of three
    assert last.status_code == 429
    assert "user" in last.json()["detail"]


async def test_a_body_over_the_limit_is_413_before_anything_else(
    portal: Portal, user: User, admin_token: str
) -> None:
    body = b'{"tenant_id": "' + str(user.tenant).encode() + b'", "x": "' + b"x" * (20 << 20) + b'"}'
    async with api(portal, admin_token) as client:
        refused = await client.post(
            "/v1/tenants", content=body, headers={"content-type": "application/json"}
        )
    async with api(portal) as anonymous:
        unauthenticated = await anonymous.post(
            "/v1/tenants", content=body, headers={"content-type": "application/json"}
        )
    for response in (refused, unauthenticated):
        assert response.status_code == 413
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["max_bytes"] == portal.settings.max_body_bytes
    assert await link_requests(portal, user.tenant) == []


async def test_every_error_answer_is_what_the_openapi_document_says(
    portal: Portal, user: User, admin_token: str
) -> None:
    json_body = {"content-type": "application/json"}
    path = f"/v1/tenants/{user.tenant}"
    async with api(portal, admin_token) as client:
        document = (await client.get("/openapi.json")).json()
        await client.post("/v1/tenants", json={"tenant_id": str(user.tenant)})
        etag = (await client.get(path)).headers["etag"]
        answers = {
            ("post", "/v1/tenants"): [
                await client.post("/v1/tenants", content=b'{"tenant_id": ', headers=json_body),
                await client.post("/v1/tenants", content=b"tenant_id=x"),
                await client.post("/v1/tenants", json={"tenant_id": "x", "extra": 1}),
                await client.post("/v1/tenants", json={"tenant_id": str(uuid4())}),
                await client.post("/v1/tenants", content=b"[" * (2 << 20), headers=json_body),
            ],
            ("get", "/v1/tenants"): [
                await client.get("/v1/tenants", params={"limit": 0}),
                await client.get("/v1/tenants", params={"cursor": "!!"}),
            ],
            ("get", "/v1/tenants/{tenant_id}"): [await client.get(f"/v1/tenants/{uuid4()}")],
            ("post", "/v1/tenants/{tenant_id}/intune"): [
                await client.post(f"{path}/intune"),
                await client.post(f"{path}/intune", headers={"if-match": '"0"'}),
            ],
            ("delete", "/v1/tenants/{tenant_id}"): [
                await client.delete(path),
                await client.delete(path, headers={"if-match": '"0"'}),
            ],
        }
    async with api(portal) as anonymous:
        answers[("get", "/v1/tenants")].append(await anonymous.get("/v1/tenants"))
    async with api(portal, user.token(READER)) as reader:
        answers[("delete", "/v1/tenants/{tenant_id}")].append(
            await reader.delete(path, headers={"if-match": etag})
        )
    assert "HTTPValidationError" not in document["components"]["schemas"]
    seen = set()
    for (method, template), responses in answers.items():
        documented = document["paths"][template][method]["responses"]
        for response in responses:
            seen.add(response.status_code)
            status = str(response.status_code)
            assert status in documented, f"{method} {template}: {status} is not documented"
            [(media_type, content)] = documented[status]["content"].items()
            assert response.headers["content-type"] == media_type == "application/problem+json"
            schema = {**content["schema"], "components": document["components"]}
            jsonschema.validate(response.json(), schema)
    assert seen == {400, 401, 403, 404, 409, 412, 413, 415, 422, 428}


async def test_one_account_per_home_tenant(portal: Portal, user: User, admin_token: str) -> None:
    async with api(portal, admin_token) as client:
        await client.post("/v1/tenants", json={"tenant_id": str(user.tenant)})
        await client.get("/v1/tenants")
        await client.post("/v1/tenants", json={"tenant_id": str(user.tenant)})
    async with portal.runtime.sessions() as session:
        accounts = await session.scalar(
            select(func.count()).select_from(Account).where(Account.home_tenant_id == user.tenant)
        )
    assert accounts == 1


async def test_intune_writing_as_source_of_truth_is_asked_for_and_switched_by_asking_again(
    portal: Portal, user: User, admin_token: str
) -> None:
    async with api(portal, admin_token) as client:
        requested = await request_link(portal, client, user)
        await publish(
            portal,
            TenantLinkVerified(
                tenant_id=user.tenant,
                actor=requested.data.actor,
                correlation_id=requested.data.correlation_id,
                display_name="Contoso",
                default_domain=None,
                granted_permissions=["Directory.Read.All"],
                authorized_by="global_administrator",  # type: ignore[arg-type]
            ),
        )
        await until(client, user, "linked")
        path = f"/v1/tenants/{user.tenant}/intune"
        first = await client.post(path, json={"assignments_source_of_truth": True})
        unknown = await client.post(path, json={"source_of_truth": True})

        async def intune_change() -> TenantTrack:
            async with portal.runtime.sessions() as session:
                return (
                    await session.exec(
                        select(TenantTrack).where(
                            TenantTrack.tenant_id == user.tenant,
                            TenantTrack.track == Track.INTUNE_WRITING,
                        )
                    )
                ).scalar_one()

        pending = await intune_change()
        await publish(
            portal,
            IntuneWritingEnabled(
                tenant_id=user.tenant,
                actor=requested.data.actor,
                correlation_id=pending.change_id,  # type: ignore[arg-type]
                granted_permissions=["DeviceManagementApps.ReadWrite.All"],
                assignments_source_of_truth=True,
            ),
        )
        enabled = await until(client, user, "enabled", intune=True)
        same = await client.post(path, json={"assignments_source_of_truth": True})
        switched = await client.post(path)  # the default: keep assignments made elsewhere
        again = await intune_change()
    assert first.status_code == 202
    assert unknown.status_code == 422
    assert pending.assignments_source_of_truth is True
    assert enabled["intune_writing"]["assignments_source_of_truth"] is True
    assert same.status_code == 200  # nothing to do
    assert switched.status_code == 202
    assert switched.json()["intune_writing"]["status"] == "pending"
    assert switched.json()["intune_writing"]["assignments_source_of_truth"] is False
    assert again.change_id != pending.change_id
    sent = await outbox_of(portal, user.tenant, IntuneWritingActivationRequested)
    assert [e.assignments_source_of_truth for e in sent] == [True, False]


async def test_the_read_models_rebuilt_from_the_log_equal_the_portals_database(
    portal: Portal, database_url: str
) -> None:
    """Whatever this module's tests did, the portal's read models (accounts, links and their
    tracks, deployments, changes, the audit page) rebuilt from the event log alone are its
    database's, row for row. Last in the module: it covers all the rest."""
    await rebuilt_equal(portal, database_url)
