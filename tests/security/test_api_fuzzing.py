"""The portal API under schemathesis, with the tokens of users of two tenants.

portal-api and consent run as processes on real Kafka and PostgreSQL, against the emulator with
the demo tenants: Contoso linked (consented), Fabrikam's link refused (no consent). Schemathesis
generates requests for every operation of /openapi.json, valid and invalid, as each tenant's
admin. Every answer must be no 5xx, of a documented status and content type, and conform to the
documented schema; and no answer to one tenant's user may carry the other tenant's id unless
the request named it (a problem's ``instance`` echoes the path asked for).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.services import emulated_microsoft, service_process
from tenantflow.devinfra.testing import eventually
from tenantflow.emulator.seeds import demo_tenants
from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.e2e

EXAMPLES_PER_OPERATION = 25
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture
async def portal(
    infra: RunningInfra, emulator: RunningEmulator, tmp_path: Path
) -> AsyncIterator[tuple[str, dict[str, dict[str, str]]]]:
    """The portal's URL, and each tenant's admin's headers, once Contoso is linked and
    Fabrikam's link refused."""
    contoso, fabrikam = demo_tenants()
    for document in (contoso, fabrikam):
        emulator.seed(document)
    environment = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.bootstrap_servers,
        "DATABASE_URL": infra.database_url,
    }
    microsoft = emulated_microsoft(emulator)
    unlimited = {"USER_REQUESTS_PER_MINUTE": "1000000", "TENANT_REQUESTS_PER_MINUTE": "1000000"}
    async with (
        service_process("consent", tmp_path / "consent.log", environment, microsoft["consent"]),
        service_process(
            "portal-api", tmp_path / "portal.log", environment, microsoft["portal-api"] | unlimited
        ) as running,
    ):
        headers = {
            tenant["id"]: {
                "authorization": "Bearer "
                + emulator.user_token(tenant["id"], tenant["users"][0]["id"], "Tenantflow.Admin")
            }
            for tenant in (contoso, fabrikam)
        }
        async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
            for tenant, wanted in ((contoso, "linked"), (fabrikam, "rejected")):
                auth = headers[tenant["id"]]
                await client.post("/v1/tenants", json={"tenant_id": tenant["id"]}, headers=auth)

                async def settled(tenant: dict[str, Any] = tenant, wanted: str = wanted) -> bool:
                    answer = await client.get(
                        f"/v1/tenants/{tenant['id']}", headers=headers[tenant["id"]]
                    )
                    return answer.status_code == 200 and answer.json()["status"] == wanted

                await eventually(settled, within=60, what=f"{tenant['display_name']} {wanted}")
        yield running.url, headers


async def test_every_operation_as_each_tenant(
    portal: tuple[str, dict[str, dict[str, str]]],
) -> None:
    url, headers = portal
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    (first, second) = headers
    statuses: Counter[int] = Counter()
    crossed = [0]
    """Requests made for the other tenant's data (its id in the path)."""

    def exercise(tenant: str, other: str) -> None:
        for operation in operations:

            @given(case=operation.as_strategy(), aim_at_other=st.booleans())
            @settings(
                max_examples=EXAMPLES_PER_OPERATION,
                deadline=None,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def call(case: schemathesis.Case, aim_at_other: bool) -> None:
                targets_other = aim_at_other and "tenant_id" in (case.path_parameters or {})
                if targets_other:  # as an attacker would: the other tenant's id in the path
                    case.path_parameters["tenant_id"] = other
                response = case.call(base_url=url, headers=headers[tenant], timeout=30)
                statuses[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)
                if targets_other:
                    assert response.status_code in (400, 403, 404, 405, 409, 412, 415, 422, 428), (
                        f"{case.method} {case.formatted_path} as {tenant}: {response.status_code}"
                    )
                    crossed[0] += 1
                asked = f"{case.formatted_path} {case.path_parameters} {case.query} {case.body}"
                if other not in asked:
                    assert other not in response.text, (
                        f"{case.method} {case.formatted_path} as {tenant} returned {other}'s id"
                    )

            call()

    exercise(first, second)
    exercise(second, first)
    print(  # the counts, for the record (pytest -s shows them)
        f"schemathesis: {len(operations)} operations, {sum(statuses.values())} requests as the "
        f"admins of two tenants, {crossed[0]} aimed at the other tenant; statuses "
        f"{dict(sorted(statuses.items()))}"
    )
    assert statuses[200] > 0, statuses  # the generated requests reached the API's logic
    assert crossed[0] > 50, crossed
    assert not [status for status in statuses if status >= 500], statuses
