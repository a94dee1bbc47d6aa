"""The shared Graph client against the emulated Entra ID and Graph, over HTTPS: delta rounds,
a resync asked for, and a refusal reported."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import pytest

from tenantflow.emulator.testing import RunningEmulator
from tenantflow.graph.batch import BatchRequest, batch
from tenantflow.graph.client import GraphClient
from tenantflow.graph.credentials import AppCredentials
from tenantflow.graph.errors import ResyncNeeded, TokenRefused

pytestmark = pytest.mark.integration


@pytest.fixture
async def graph(emulator: RunningEmulator) -> AsyncIterator[GraphClient]:
    client = GraphClient(emulator.url, emulator.url, emulator.ca, backoff_s=0.01)
    yield client
    await client.close()


def connector(emulator: RunningEmulator) -> AppCredentials:
    app = emulator.apps["directory-connector"]
    return AppCredentials(UUID(app["client_id"]), app["client_secret"])


def seed(emulator: RunningEmulator, users: int) -> UUID:
    tenant = uuid4()
    emulator.seed(
        {
            "id": str(tenant),
            "display_name": "Contoso",
            "verified_domains": [f"t{tenant.hex[:8]}.example"],
            "users": [
                {"display_name": f"U{n}", "user_principal_name": f"u{n}@c.example"}
                for n in range(users)
            ],
            "enterprise_apps": [
                {
                    "app_id": emulator.apps["directory-connector"]["client_id"],
                    "permissions": ["Directory.Read.All"],
                }
            ],
        }
    )
    return tenant


async def read_round(graph: GraphClient, token: str, start: str) -> tuple[list[Any], str]:
    delta_round = graph.delta_round(token, start, {"$select": "id,displayName"})
    entries = [entry async for page in delta_round for entry in page["value"]]
    assert delta_round.delta_link is not None
    return entries, delta_round.delta_link


async def test_delta_rounds_page_to_a_deltalink_and_resync_when_asked(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    tenant = seed(emulator, 150)  # two pages
    token = await graph.token(connector(emulator), str(tenant))
    full, delta_link = await read_round(graph, token, "/v1.0/users/delta")
    assert len(full) == 150
    assert urlsplit(delta_link).netloc == urlsplit(emulator.url).netloc
    emulator.change_directory(
        tenant,
        {"op": "add_user", "user": {"display_name": "New", "user_principal_name": "n@c.example"}},
    ).raise_for_status()
    changes, delta_link = await read_round(graph, token, delta_link)
    assert [entry["displayName"] for entry in changes] == ["New"]

    with emulator.client() as control:
        control.post(f"/_emulator/tenants/{tenant}/delta/invalidate").raise_for_status()
    with pytest.raises(ResyncNeeded) as caught:
        await read_round(graph, token, delta_link)
    assert caught.value.location is not None
    again, _ = await read_round(graph, token, caught.value.location)
    assert len(again) == 151


async def test_a_missing_consent_is_reported(emulator: RunningEmulator) -> None:
    reported: list[tuple[UUID, UUID, int | None, str]] = []

    async def report(tenant: UUID, app: UUID, status: int | None, code: str, _: str) -> None:
        reported.append((tenant, app, status, code))

    tenant, _ = emulator.seed_tenant_with_admin({})
    graph = GraphClient(emulator.url, emulator.url, emulator.ca, report_denied=report)
    try:
        with pytest.raises(TokenRefused):
            await graph.token(connector(emulator), str(tenant))
    finally:
        await graph.close()
    assert reported == [(tenant, connector(emulator).client_id, None, "AADSTS700016")]


async def test_a_batch_of_reads_against_the_emulator(
    emulator: RunningEmulator, graph: GraphClient
) -> None:
    tenant = seed(emulator, 25)
    token = await graph.token(connector(emulator), str(tenant))
    users = await graph.read_all(token, "/v1.0/users", {"$select": "id"})
    requests = [BatchRequest(user["id"], "GET", f"/users/{user['id']}") for user in users]
    requests.append(BatchRequest("missing", "GET", f"/users/{uuid4()}"))
    answers = await batch(graph, token, requests)
    assert {answers[user["id"]].body["id"] for user in users} == {u["id"] for u in users}
    assert answers["missing"].status == 404
