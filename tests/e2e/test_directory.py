"""The directory end to end: consent, directory-sync and portal-api as processes, on real Kafka
and PostgreSQL, against the emulated Graph. A linked tenant's groups appear in the portal with
their counts; a resync never shrinks what readers see; a sync process killed with SIGKILL
mid-sync is completed by the next one; Graph's 429s are honoured and the sync still converges."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.services import emulated_microsoft, service_process
from tenantflow.devinfra.testing import create_database, eventually
from tenantflow.emulator.seeds import synthetic_tenant
from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.e2e

ADMIN = "Tenantflow.Admin"


@dataclass
class Stack:
    portal: str
    emulator: RunningEmulator
    environment: dict[str, str]
    sync_settings: dict[str, str]
    logs: Path

    def client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.portal, headers={"authorization": f"Bearer {token}"})

    def directory_sync(self, name: str = "directory-sync") -> Any:
        return service_process(
            "directory-sync", self.logs / f"{name}.log", self.environment, self.sync_settings
        )


@pytest.fixture(scope="module")
async def stack(
    infra: RunningInfra, emulator: RunningEmulator, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    logs = tmp_path_factory.mktemp("directory")
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "KAFKA_TOPIC_PREFIX": f"d{uuid4().hex[:8]}.",
        "DATABASE_URL": await create_database(infra.database_url),
    }
    microsoft = emulated_microsoft(emulator)
    portal_settings = {
        **microsoft["portal-api"],
        "USER_REQUESTS_PER_MINUTE": "1000000",
        "TENANT_REQUESTS_PER_MINUTE": "1000000",
    }
    sync_settings = {
        **microsoft["directory-sync"],
        "POLL_SECONDS": "0.2",
        "LEASE_SECONDS": "3",  # a killed replica's tenants are taken over after this
        "HOLD_THROTTLED_SECONDS": "1",  # longer throttling pauses the sync (a third of the lease)
    }
    async with (
        service_process("consent", logs / "consent.log", environment, microsoft["consent"]),
        service_process("portal-api", logs / "portal.log", environment, portal_settings) as portal,
    ):
        yield Stack(portal.url, emulator, environment, sync_settings, logs)


@dataclass
class Tenant:
    id: UUID
    token: str
    seed: dict[str, Any]

    def truth(self) -> dict[str, tuple[str, int, int]]:
        """Each group's name and transitive user and device counts, from the seed."""
        groups = {g["id"]: g for g in self.seed["groups"]}
        users = {u["id"] for u in self.seed["users"]}
        devices = {d["id"] for d in self.seed["devices"]}
        found = {}
        for group_id, group in groups.items():
            seen, pending, members = {group_id}, [group_id], set()
            while pending:
                for member in groups[pending.pop()]["members"]:
                    if member in groups and member not in seen:
                        seen.add(member)
                        pending.append(member)
                    members.add(member)
            found[group_id] = (group["display_name"], len(members & users), len(members & devices))
        return found


def seed(emulator: RunningEmulator, users: int, groups: int, devices: int) -> Tenant:
    tenant = uuid4()
    document = synthetic_tenant(
        tenant, "Northwind", f"t{tenant.hex[:8]}.example", users, groups, devices
    )
    document["enterprise_apps"] = [
        {
            "app_id": emulator.apps["directory-connector"]["client_id"],
            "permissions": ["Directory.Read.All"],
        }
    ]
    emulator.seed(document)
    admin = document["users"][0]["id"]  # a Global Administrator
    return Tenant(tenant, emulator.user_token(tenant, admin, ADMIN), document)


async def link(stack: Stack, tenant: Tenant) -> None:
    async with stack.client(tenant.token) as client:
        answer = await client.post("/v1/tenants", json={"tenant_id": str(tenant.id)})
        assert answer.status_code == 202, answer.text

        async def linked() -> bool:
            status = (await client.get(f"/v1/tenants/{tenant.id}")).json()["status"]
            return bool(status == "linked")

        await eventually(linked, within=60, what="linked")


async def directory(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    answer = await client.get(f"/v1/tenants/{tenant.id}/directory")
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def synced(
    client: httpx.AsyncClient, tenant: Tenant, within: float = 90, **wanted: Any
) -> dict[str, Any]:
    state: dict[str, Any] = {}

    async def done() -> bool:
        nonlocal state
        state = await directory(client, tenant)
        return state["status"] == "synced" and all(state[k] == v for k, v in wanted.items())

    await eventually(done, within=within, what=f"directory synced {wanted}")
    return state


async def all_groups(
    client: httpx.AsyncClient, tenant: Tenant, **params: Any
) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, **({"cursor": cursor} if cursor else {})}
        answer = await client.get(f"/v1/tenants/{tenant.id}/groups", params=query)
        assert answer.status_code == 200, answer.text
        found += answer.json()["items"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            return found


async def test_a_linked_tenants_groups_are_served_with_their_counts(stack: Stack) -> None:
    tenant = seed(stack.emulator, users=300, groups=40, devices=120)
    async with stack.directory_sync():
        await link(stack, tenant)
        async with stack.client(tenant.token) as client:
            state = await synced(client, tenant)
            assert (state["users"], state["groups"], state["devices"]) == (300, 40, 120)
            assert state["last_mode"] == "full"
            assert state["next_sync_at"] is not None
            groups = await all_groups(client, tenant, limit=7)
            truth = tenant.truth()
            assert {
                g["id"]: (g["display_name"], g["transitive_users"], g["transitive_devices"])
                for g in groups
            } == truth
            names = [g["display_name"].casefold() for g in groups]
            assert names == sorted(names)  # by name, page after page
            prefix = groups[0]["display_name"][:4]
            searched = await all_groups(client, tenant, search=prefix.swapcase())
            assert {g["id"] for g in searched} == {
                g
                for g, (name, _, _) in truth.items()
                if name.casefold().startswith(prefix.casefold())
            }
            assert await all_groups(client, tenant, search="%") == []  # a wildcard is literal
            one = groups[3]
            answer = await client.get(f"/v1/tenants/{tenant.id}/groups/{one['id']}")
            assert answer.json() == one
            missing = await client.get(f"/v1/tenants/{tenant.id}/groups/{uuid4()}")
            assert missing.status_code == 404
            assert missing.headers["content-type"] == "application/problem+json"
        stranger = seed(stack.emulator, users=3, groups=1, devices=1)
        async with stack.client(stranger.token) as other:
            answer = await other.get(f"/v1/tenants/{tenant.id}/groups")
            assert answer.status_code == 404  # isolation: another tenant's groups are not found


async def test_a_resync_never_shrinks_what_readers_see(stack: Stack) -> None:
    tenant = seed(stack.emulator, users=400, groups=60, devices=100)
    async with stack.directory_sync():
        await link(stack, tenant)
        async with stack.client(tenant.token) as client:
            await synced(client, tenant)
            with stack.emulator.client() as control:
                control.post(f"/_emulator/tenants/{tenant.id}/delta/invalidate").raise_for_status()
            seen: list[int] = []

            async def read_all_the_time() -> None:
                while True:
                    seen.append(len(await all_groups(client, tenant, limit=500)))

            reader = asyncio.create_task(read_all_the_time())
            try:
                answer = await client.post(f"/v1/tenants/{tenant.id}/directory/sync")
                assert answer.status_code == 202
                assert answer.json()["status"] == "sync_requested"
                await synced(client, tenant, last_mode="full")
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
    assert len(seen) > 3
    assert set(seen) == {60}


async def test_a_sync_killed_mid_way_is_completed_by_the_next_process(stack: Stack) -> None:
    tenant = seed(stack.emulator, users=2500, groups=30, devices=300)
    with stack.emulator.client() as control:  # slow pages: the kill lands mid-sync
        control.post(
            "/_emulator/faults",
            json={"path": "/users/delta", "latency_ms": 150},
        ).raise_for_status()
    try:
        async with stack.directory_sync("killed") as first:
            await link(stack, tenant)

            def pages() -> int:
                with stack.emulator.client() as control:
                    return len(
                        control.get(
                            "/_emulator/requests",
                            params={"tenant": str(tenant.id), "path_prefix": "/v1.0/users/delta"},
                        ).json()
                    )

            await eventually(lambda: pages() >= 5, within=60, what="mid-sync")
            first.process.kill()  # SIGKILL: no cleanup, its lease simply expires
            await first.process.wait()
        assert pages() < 25  # it was mid-way (25 pages of users)
    finally:
        with stack.emulator.client() as control:
            control.delete("/_emulator/faults").raise_for_status()
    async with stack.directory_sync("restarted"), stack.client(tenant.token) as client:
        state = await synced(client, tenant)
        assert (state["users"], state["groups"], state["devices"]) == (2500, 30, 300)
        groups = await all_groups(client, tenant, limit=500)
        assert {
            g["id"]: (g["display_name"], g["transitive_users"], g["transitive_devices"])
            for g in groups
        } == tenant.truth()


async def test_throttled_graph_still_converges(stack: Stack) -> None:
    """Graph's directory limit (Retry-After 1 s: waited out in place) and injected 429s with a
    Retry-After of 2 s (longer than the sync holds: it pauses and is rescheduled). A page
    answered 429 is not asked for again before Retry-After has passed."""
    tenant = seed(stack.emulator, users=600, groups=30, devices=200)
    started = datetime.now(UTC).isoformat()
    with stack.emulator.client() as control:
        control.put(
            "/_emulator/throttling",
            json={"enabled": True, "limits": {"directory_units_large": 5, "directory_window_s": 1}},
        ).raise_for_status()
        control.post(
            "/_emulator/faults",
            json={"path": "/delta", "status": 429, "retry_after": "2", "share": 0.1},
        ).raise_for_status()
    try:
        async with stack.directory_sync():
            await link(stack, tenant)
            async with stack.client(tenant.token) as client:
                state = await synced(client, tenant, within=120)
                assert (state["users"], state["groups"], state["devices"]) == (600, 30, 200)
        with stack.emulator.client() as control:
            # only this test's sync process ran meanwhile; an injected fault names no tenant
            fetches = [
                (datetime.fromisoformat(entry["time"]), entry)
                for entry in control.get("/_emulator/requests", params={"since": started}).json()
                if "/delta" in str(entry["path"])
            ]
        throttled = [(at, entry) for at, entry in fetches if entry["status"] == 429]
        assert {entry["fault"] is None for _, entry in throttled} == {True, False}  # both kinds
        for at, entry in throttled:
            allowed = at + timedelta(seconds=float(entry["retry_after"]))
            page = (entry["path"], entry["query"])
            early = [e for t, e in fetches if at < t < allowed and (e["path"], e["query"]) == page]
            assert not early, (entry, early)  # the page was asked for again before Retry-After
    finally:
        with stack.emulator.client() as control:
            control.put("/_emulator/throttling", json={"enabled": True}).raise_for_status()
            control.delete("/_emulator/faults").raise_for_status()
