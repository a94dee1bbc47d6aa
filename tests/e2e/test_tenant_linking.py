"""Linking a tenant end to end: portal-api and consent as processes, on real Kafka and PostgreSQL,
against the emulated Entra ID and Microsoft Graph. Every verdict comes from Graph, never from
what the caller claims."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID, uuid4

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tenantflow.bus.settings import KafkaSettings
from tenantflow.contracts.envelope import decode
from tenantflow.contracts.events import TenantUnlinked
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.services import emulated_microsoft, service_process
from tenantflow.devinfra.testing import create_database, eventually, read_topic
from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.e2e

ADMIN = "Tenantflow.Admin"
CONNECTOR_PERMISSIONS = ["Directory.Read.All"]
WRITER_PERMISSIONS = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementConfiguration.Read.All",
    "Organization.Read.All",
]


@dataclass
class Stack:
    portal: str
    database_url: str
    kafka: KafkaSettings
    emulator: RunningEmulator

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.AsyncClient(base_url=self.portal, headers=headers)


@pytest.fixture(scope="module")
async def stack(
    infra: RunningInfra, emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    logs = tmp_path_factory.mktemp("linking")
    database_url = await create_database(infra.database_url)
    kafka = KafkaSettings(
        bootstrap_servers=infra.bootstrap_servers, topic_prefix=f"e{uuid4().hex[:8]}."
    )
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "DATABASE_URL": database_url,
    }
    microsoft = emulated_microsoft(emulator)
    consent_settings = {
        **microsoft["consent"],
        "RECHECK_INTERVAL_SECONDS": "1",
        "RECHECK_POLL_SECONDS": "0.2",
    }
    portal_settings = {
        **microsoft["portal-api"],
        # the tests poll every 20 ms; rate limits have their own tests
        "USER_REQUESTS_PER_MINUTE": "1000000",
        "TENANT_REQUESTS_PER_MINUTE": "1000000",
    }
    async with (
        service_process("consent", logs / "consent.log", environment, consent_settings),
        service_process("portal-api", logs / "portal.log", environment, portal_settings) as portal,
    ):
        yield Stack(portal.url, database_url, kafka, emulator)


@dataclass
class Tenant:
    id: UUID
    admin: UUID
    """A Global Administrator."""
    assigned: UUID
    """Assigned to the directory connector directly."""
    via_group: UUID
    """Assigned to it through a group."""
    plain: UUID
    """Neither."""
    eligible: UUID
    """Only eligible for Global Administrator (Privileged Identity Management), not active."""


def seed(
    emulator: RunningEmulator,
    consents: dict[str, list[str]],
    disabled: tuple[str, ...] = (),
) -> Tenant:
    tenant = Tenant(uuid4(), uuid4(), uuid4(), uuid4(), uuid4(), uuid4())
    group = uuid4()

    def user(object_id: UUID, name: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": str(object_id),
            "display_name": name,
            "user_principal_name": f"{name.lower()}@contoso.example",
            **extra,
        }

    emulator.seed(
        {
            "id": str(tenant.id),
            "display_name": "Contoso",
            "verified_domains": ["contoso.example"],
            "users": [
                user(tenant.admin, "Admin", directory_roles=["Global Administrator"]),
                user(tenant.assigned, "Assigned"),
                user(tenant.via_group, "Member"),
                user(tenant.plain, "Plain"),
                user(tenant.eligible, "Eligible", eligible_roles=["Global Administrator"]),
            ],
            "groups": [
                {
                    "id": str(group),
                    "display_name": "Portal users",
                    "members": [str(tenant.via_group)],
                }
            ],
            "enterprise_apps": [
                {
                    "app_id": emulator.apps[app]["client_id"],
                    "permissions": permissions,
                    "assigned_principals": (
                        [str(tenant.assigned), str(group)] if app == "directory-connector" else []
                    ),
                    "account_enabled": app not in disabled,
                }
                for app, permissions in consents.items()
            ],
        }
    )
    return tenant


async def settled(client: httpx.AsyncClient, tenant: UUID, field: str = "status") -> dict[str, Any]:
    """The tenant once ``field`` (status, or intune_writing.status) is no longer pending."""
    body: dict[str, Any] = {}

    async def decided() -> bool:
        nonlocal body
        response = await client.get(f"/v1/tenants/{tenant}")
        assert response.status_code == 200, response.text
        body = response.json()
        value = body["intune_writing"]["status"] if field == "intune" else body[field]
        return bool(value != "pending")

    await eventually(decided, within=30, what=f"{tenant} {field} decided")
    return body


async def until_revoked(stack: Stack, tenant: Tenant) -> dict[str, Any]:
    """The tenant once a re-check revoked its link."""
    token = stack.emulator.user_token(tenant.id, tenant.admin, ADMIN)
    async with stack.client(token) as client:
        revoked: dict[str, Any] = {}

        async def is_revoked() -> bool:
            nonlocal revoked
            revoked = (await client.get(f"/v1/tenants/{tenant.id}")).json()
            return bool(revoked["status"] == "revoked")

        await eventually(is_revoked, within=30, what="revoked after a re-check")
    return revoked


async def link(stack: Stack, tenant: UUID, user: UUID) -> tuple[httpx.Response, dict[str, Any]]:
    async with stack.client(stack.emulator.user_token(tenant, user, ADMIN)) as client:
        response = await client.post("/v1/tenants", json={"tenant_id": str(tenant)})
        assert response.status_code == 202, response.text
        return response, await settled(client, tenant)


# --- who may link ------------------------------------------------------------------------------


async def test_a_global_administrator_links(stack: Stack) -> None:
    tenant = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    response, body = await link(stack, tenant.id, tenant.admin)
    accepted = response.json()
    assert accepted["status"] == "pending"
    assert response.headers["location"] == f"{stack.portal}/v1/tenants/{tenant.id}"
    assert accepted["requested_by"]["object_id"] == str(tenant.admin)
    assert body["status"] == "linked"
    assert body["authorized_by"] == "global_administrator"
    assert body["display_name"] == "Contoso"
    assert body["default_domain"] == "contoso.example"
    assert body["intune_writing"]["status"] == "off"


@pytest.mark.parametrize(
    ("who", "authorized_by"),
    [("assigned", "app_assignment"), ("via_group", "app_assignment_through_group")],
)
async def test_a_user_assigned_to_the_connector_links(
    stack: Stack, who: str, authorized_by: str
) -> None:
    tenant = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    _, body = await link(stack, tenant.id, getattr(tenant, who))
    assert body["status"] == "linked"
    assert body["authorized_by"] == authorized_by


async def test_a_plain_user_is_rejected(stack: Stack) -> None:
    tenant = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    _, body = await link(stack, tenant.id, tenant.plain)
    assert body["status"] == "rejected"
    assert body["reason"] == "user_not_authorized"
    assert body["message"]


async def test_an_eligible_global_administrator_is_refused_until_activated(
    stack: Stack,
) -> None:
    tenant = seed(
        stack.emulator,
        {"directory-connector": [*CONNECTOR_PERMISSIONS, "RoleEligibilitySchedule.Read.Directory"]},
    )
    _, refused = await link(stack, tenant.id, tenant.eligible)
    assert refused["status"] == "rejected"
    assert refused["reason"] == "user_not_authorized"
    assert "only eligible for the Global Administrator role" in refused["message"]
    assert "Activate the Global Administrator role first" in refused["message"]
    stack.emulator.change_directory(
        tenant.id,
        {"op": "activate_role", "user_id": str(tenant.eligible), "role": "Global Administrator"},
    ).raise_for_status()
    _, linked = await link(stack, tenant.id, tenant.eligible)
    assert linked["status"] == "linked"
    assert linked["authorized_by"] == "global_administrator"


async def test_a_disabled_connector_is_rejected_not_retried(stack: Stack) -> None:
    tenant = seed(
        stack.emulator,
        {"directory-connector": CONNECTOR_PERMISSIONS},
        disabled=("directory-connector",),
    )
    _, body = await link(stack, tenant.id, tenant.admin)
    assert body["status"] == "rejected"
    assert body["reason"] == "app_disabled"
    assert "AADSTS7000112" in body["message"]
    assert body["retrying"] is False


async def test_no_consent_is_rejected_with_the_admin_consent_url(stack: Stack) -> None:
    tenant = seed(stack.emulator, {})
    _, body = await link(stack, tenant.id, tenant.admin)
    assert body["status"] == "rejected"
    assert body["reason"] == "admin_consent_missing"
    connector = stack.emulator.apps["directory-connector"]["client_id"]
    assert body["admin_consent_url"].startswith(
        f"{stack.emulator.url}/{tenant.id}/v2.0/adminconsent"
    )
    assert f"client_id={connector}" in body["admin_consent_url"]


async def test_consent_without_a_required_permission_names_it(stack: Stack) -> None:
    tenant = seed(stack.emulator, {"directory-connector": ["User.Read.All"]})
    _, body = await link(stack, tenant.id, tenant.admin)
    assert body["status"] == "rejected"
    assert body["reason"] == "permission_missing"
    assert body["missing_permissions"] == ["Directory.Read.All"]


async def test_a_transient_failure_shows_retrying_then_links(stack: Stack) -> None:
    tenant = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    with stack.emulator.client() as control:
        control.post(
            "/_emulator/faults", json={"path": f"^/{tenant.id}/oauth2/v2.0/token$", "status": 503}
        ).raise_for_status()
    token = stack.emulator.user_token(tenant.id, tenant.admin, ADMIN)
    try:
        async with stack.client(token) as client:
            assert (
                await client.post("/v1/tenants", json={"tenant_id": str(tenant.id)})
            ).status_code == 202

            async def retrying() -> bool:
                body = (await client.get(f"/v1/tenants/{tenant.id}")).json()
                assert body["status"] == "pending", body
                return bool(body["retrying"])

            await eventually(retrying, within=30, what="retrying shown")
    finally:
        with stack.emulator.client() as control:
            control.delete("/_emulator/faults").raise_for_status()
    async with stack.client(token) as client:
        body = await settled(client, tenant.id)
    assert body["status"] == "linked"
    assert body["retrying"] is False


# --- continuous verification -------------------------------------------------------------------


async def test_revoked_consent_shows_revoked_after_a_recheck(stack: Stack) -> None:
    tenant = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    _, body = await link(stack, tenant.id, tenant.admin)
    assert body["status"] == "linked"
    connector = stack.emulator.apps["directory-connector"]["client_id"]
    with stack.emulator.client() as control:
        control.delete(f"/_emulator/tenants/{tenant.id}/consents/{connector}").raise_for_status()
    revoked = await until_revoked(stack, tenant)
    assert revoked["reason"] == "admin_consent_missing"
    assert f"client_id={connector}" in revoked["admin_consent_url"]


async def test_a_connector_disabled_after_linking_shows_revoked(stack: Stack) -> None:
    tenant = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    _, body = await link(stack, tenant.id, tenant.admin)
    assert body["status"] == "linked"
    connector = stack.emulator.apps["directory-connector"]["client_id"]
    stack.emulator.change_directory(
        tenant.id, {"op": "set_app_enabled", "app_id": connector, "account_enabled": False}
    ).raise_for_status()
    revoked = await until_revoked(stack, tenant)
    assert revoked["reason"] == "app_disabled"


# --- Intune writing ----------------------------------------------------------------------------


async def test_intune_writing_with_the_writer_app_consented(stack: Stack) -> None:
    tenant = seed(
        stack.emulator,
        {"directory-connector": CONNECTOR_PERMISSIONS, "intune-writer": WRITER_PERMISSIONS},
    )
    await link(stack, tenant.id, tenant.admin)
    async with stack.client(stack.emulator.user_token(tenant.id, tenant.admin, ADMIN)) as client:
        response = await client.post(f"/v1/tenants/{tenant.id}/intune")
        assert response.status_code == 202, response.text
        assert response.json()["intune_writing"]["status"] == "pending"
        body = await settled(client, tenant.id, "intune")
    assert body["intune_writing"]["status"] == "enabled"
    assert body["intune_writing"]["requested_by"]["object_id"] == str(tenant.admin)


async def test_intune_writing_without_the_writer_app_is_rejected(stack: Stack) -> None:
    tenant = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    await link(stack, tenant.id, tenant.admin)
    async with stack.client(stack.emulator.user_token(tenant.id, tenant.admin, ADMIN)) as client:
        assert (await client.post(f"/v1/tenants/{tenant.id}/intune")).status_code == 202
        body = await settled(client, tenant.id, "intune")
    writer = stack.emulator.apps["intune-writer"]["client_id"]
    assert body["status"] == "linked"
    assert body["intune_writing"]["status"] == "rejected"
    assert body["intune_writing"]["reason"] == "admin_consent_missing"
    assert f"client_id={writer}" in body["intune_writing"]["admin_consent_url"]


async def test_intune_writing_with_the_writer_app_disabled_is_rejected(stack: Stack) -> None:
    tenant = seed(
        stack.emulator,
        {"directory-connector": CONNECTOR_PERMISSIONS, "intune-writer": WRITER_PERMISSIONS},
        disabled=("intune-writer",),
    )
    await link(stack, tenant.id, tenant.admin)
    async with stack.client(stack.emulator.user_token(tenant.id, tenant.admin, ADMIN)) as client:
        assert (await client.post(f"/v1/tenants/{tenant.id}/intune")).status_code == 202
        body = await settled(client, tenant.id, "intune")
    assert body["status"] == "linked"
    assert body["intune_writing"]["status"] == "rejected"
    assert body["intune_writing"]["reason"] == "app_disabled"
    assert body["intune_writing"]["retrying"] is False


# --- unlink ------------------------------------------------------------------------------------


async def test_unlink_stops_the_checks_and_purges(stack: Stack) -> None:
    tenant = seed(
        stack.emulator,
        {"directory-connector": CONNECTOR_PERMISSIONS, "intune-writer": WRITER_PERMISSIONS},
    )
    await link(stack, tenant.id, tenant.admin)
    engine = create_async_engine(stack.database_url)
    consent_rows = text("SELECT count(*) FROM consent.linked_tenants WHERE tenant_id = :t")
    try:
        async with engine.connect() as db:
            assert await db.scalar(consent_rows, {"t": tenant.id}) == 1
        token = stack.emulator.user_token(tenant.id, tenant.admin, ADMIN)
        async with stack.client(token) as client:
            current = await client.get(f"/v1/tenants/{tenant.id}")
            unlinked = await client.delete(
                f"/v1/tenants/{tenant.id}", headers={"if-match": current.headers["etag"]}
            )
            assert unlinked.status_code == 202, unlinked.text
            assert unlinked.json()["status"] == "unlinked"
            assert unlinked.json()["display_name"] is None
            assert unlinked.json()["intune_writing"]["status"] == "off"

            async def purged() -> bool:
                async with engine.connect() as db:
                    return await db.scalar(consent_rows, {"t": tenant.id}) == 0

            await eventually(purged, within=30, what="consent forgot the tenant")
            assert (await client.get(f"/v1/tenants/{tenant.id}")).json()["status"] == "unlinked"
    finally:
        await engine.dispose()
    # published before consent could forget the tenant, so on the topic by now
    records = await read_topic(stack.kafka, Topic.TENANTS, count=1, within=30)
    unlinks = [
        decode(r.headers, r.value)
        for r in records
        if r.key == str(tenant.id).encode()
        and dict(r.headers).get("ce_type") == TenantUnlinked.event_type.encode()
    ]
    assert len(unlinks) == 1
    assert unlinks[0].data.actor.object_id == tenant.admin  # type: ignore[union-attr]


# --- security ----------------------------------------------------------------------------------


def _forged(kid: str, algorithm: str, key: Any, claims: dict[str, Any]) -> str:
    return jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})


def _claims(stack: Stack, tenant: Tenant) -> dict[str, Any]:
    now = int(time.time())
    return {
        "aud": stack.emulator.apps["portal-api"]["client_id"],
        "iss": f"https://login.microsoftonline.com/{tenant.id}/v2.0",
        "tid": str(tenant.id),
        "oid": str(tenant.admin),
        "roles": [ADMIN],
        "iat": now,
        "nbf": now,
        "exp": now + 3600,
    }


def _b64(value: bytes) -> str:
    return base64.urlsafe_b64encode(value).decode().rstrip("=")


def _unsigned(claims: dict[str, Any], kid: str, algorithm: str, key: bytes | None = None) -> str:
    """Tokens PyJWT rightly refuses to make (alg none, HS256 keyed with a public key), made the
    way an attacker would."""
    header = _b64(json.dumps({"alg": algorithm, "typ": "JWT", "kid": kid}).encode())
    payload = _b64(json.dumps(claims).encode())
    if key is None:
        return f"{header}.{payload}."
    signature = hmac.new(key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(signature)}"


@pytest.mark.parametrize(
    "case",
    [
        "expired",
        "not_yet_valid",
        "wrong_audience",
        "wrong_issuer",
        "another_tenants_issuer",
        "unknown_key",
        "alg_none",
        "hs256_with_the_public_key",
        "missing",
    ],
)
async def test_unacceptable_tokens_get_401(stack: Stack, case: str) -> None:
    tenant = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    emulator = stack.emulator
    with emulator.client() as control:
        jwk = control.get("/common/discovery/v2.0/keys").json()["keys"][0]
    claims = _claims(stack, tenant)
    token: str | None
    if case == "expired":
        token = emulator.user_token(tenant.id, tenant.admin, ADMIN, lifetime_seconds=-600)
    elif case == "not_yet_valid":
        token = emulator.user_token(tenant.id, tenant.admin, ADMIN, not_before_in_seconds=900)
    elif case == "wrong_audience":
        audience = emulator.apps["intune-writer"]["client_id"]
        token = emulator.user_token(tenant.id, tenant.admin, ADMIN, audience=audience)
    elif case == "wrong_issuer":
        issuer = f"https://evil.example/{tenant.id}/v2.0"
        token = emulator.user_token(tenant.id, tenant.admin, ADMIN, issuer=issuer)
    elif case == "another_tenants_issuer":
        issuer = f"https://login.microsoftonline.com/{uuid4()}/v2.0"
        token = emulator.user_token(tenant.id, tenant.admin, ADMIN, issuer=issuer)
    elif case == "unknown_key":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = _forged("not-a-published-kid", "RS256", key, claims)
    elif case == "alg_none":
        token = _unsigned(claims, jwk["kid"], "none")
    elif case == "hs256_with_the_public_key":
        public = jwt.PyJWK(jwk, algorithm="RS256").key
        pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        token = _unsigned(claims, jwk["kid"], "HS256", pem)
    else:
        token = None
    async with stack.client(token) as client:
        response = await client.post("/v1/tenants", json={"tenant_id": str(tenant.id)})
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["type"] == "https://tenantflow.dev/problems/unauthenticated"


async def test_a_user_of_another_tenant_gets_404(stack: Stack) -> None:
    linked = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    await link(stack, linked.id, linked.admin)
    other = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    token = stack.emulator.user_token(other.id, other.admin, ADMIN)
    async with stack.client(token) as client:
        path = f"/v1/tenants/{linked.id}"
        answers = [
            await client.get(path),
            await client.post(f"{path}/intune"),
            await client.delete(path, headers={"if-match": "*"}),
            await client.post("/v1/tenants", json={"tenant_id": str(linked.id)}),
        ]
        never_linked = await client.get(f"/v1/tenants/{uuid4()}")
        listing = (await client.get("/v1/tenants")).json()
    assert [answer.status_code for answer in answers] == [404, 404, 404, 404]
    # the same answer as for a tenant nobody linked: nothing to probe
    assert never_linked.status_code == 404
    assert {a.json()["type"] for a in [*answers, never_linked]} == {
        "https://tenantflow.dev/problems/not-found"
    }
    assert str(linked.id) not in {item["tenant_id"] for item in listing["items"]}


async def test_unknown_body_fields_are_refused(stack: Stack) -> None:
    tenant = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    token = stack.emulator.user_token(tenant.id, tenant.admin, ADMIN)
    async with stack.client(token) as client:
        response = await client.post(
            "/v1/tenants", json={"tenant_id": str(tenant.id), "status": "linked"}
        )
        listing = (await client.get("/v1/tenants")).json()
    assert response.status_code == 422
    assert response.json()["errors"][0]["location"] == ["body", "status"]
    assert listing["items"] == []


async def _body(total: int) -> AsyncIterator[bytes]:
    yield b'{"tenant_id": "' + str(uuid4()).encode() + b'", "pad": "'
    for _ in range(total // 65536):
        yield b"x" * 65536
    yield b'"}'


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
async def test_a_huge_body_is_413_over_the_wire(stack: Stack, framing: str) -> None:
    tenant = seed(stack.emulator, {"directory-connector": CONNECTOR_PERMISSIONS})
    token = stack.emulator.user_token(tenant.id, tenant.admin, ADMIN)
    size = 20 << 20
    async with stack.client(token) as client:
        if framing == "chunked":
            response = await client.post(
                "/v1/tenants", content=_body(size), headers={"content-type": "application/json"}
            )
        else:
            body = b"".join([chunk async for chunk in _body(size)])
            response = await client.post(
                "/v1/tenants", content=body, headers={"content-type": "application/json"}
            )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
