"""consent verifies deployment changes on real Kafka, PostgreSQL and the emulated Entra ID and
Graph: from what it knows when nothing is in doubt (no Graph call), after a Graph check when the
actor or the tenant's consent is in doubt, in the order the changes were requested."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import UUID, uuid4

import pytest
from consent_kit import publish, request, results, running_consent

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.consent.models import LinkedTenant
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.envelope import Envelope
from tenantflow.contracts.events import (
    CatalogApp,
    DeploymentChangeRejected,
    DeploymentChangeRequested,
    DeploymentChangeVerified,
    EventPayload,
    IntuneWritingActivationRequested,
    IntuneWritingEnabled,
    TenantLinkRequested,
    TenantLinkVerified,
    TenantUnlinked,
)
from tenantflow.contracts.topics import Topic
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import eventually
from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration

WRITER = [
    "DeviceManagementApps.ReadWrite.All",
    "DeviceManagementManagedDevices.Read.All",
    "DeviceManagementConfiguration.Read.All",
    "Organization.Read.All",
]
APP = CatalogApp(
    catalog_id="company-portal",
    package_identifier="9WZDNCRFJ3PZ",
    display_name="Company Portal",
    publisher="Microsoft Corporation",
    run_as_account="system",
)


class Tenant:
    """An emulated tenant: a Global Administrator, a user assigned to the directory connector,
    a user with no right on it; both enterprise apps consented."""

    def __init__(self, emulator: RunningEmulator) -> None:
        self.id, self.admin, self.assigned, self.plain = uuid4(), uuid4(), uuid4(), uuid4()
        domain = f"t{self.id.hex[:12]}.example"

        def user(user_id: UUID, name: str, **fields: object) -> dict[str, object]:
            return {
                "id": str(user_id),
                "display_name": name,
                "user_principal_name": f"{name.lower()}@{domain}",
                **fields,
            }

        emulator.seed(
            {
                "id": str(self.id),
                "display_name": "Contoso",
                "verified_domains": [domain],
                "users": [
                    user(self.admin, "Admin", directory_roles=["Global Administrator"]),
                    user(self.assigned, "Operator"),
                    user(self.plain, "Guest"),
                ],
                "enterprise_apps": [
                    {
                        "app_id": emulator.apps["directory-connector"]["client_id"],
                        "permissions": ["Directory.Read.All"],
                        "assigned_principals": [str(self.assigned)],
                    },
                    {"app_id": emulator.apps["intune-writer"]["client_id"], "permissions": WRITER},
                ],
            }
        )


@pytest.fixture
async def consent(
    infra: RunningInfra, emulator: RunningEmulator, database_url: str
) -> AsyncIterator[ServiceRuntime]:
    async with running_consent(
        infra, emulator, database_url, change_check_poll_seconds=0.2
    ) as runtime:
        yield runtime


async def linked(consent: ServiceRuntime, emulator: RunningEmulator, intune: bool = True) -> Tenant:
    """A tenant linked by its Global Administrator, with Intune writing enabled by them."""
    tenant = Tenant(emulator)
    await request(consent, TenantLinkRequested, tenant.id, tenant.admin)
    wanted = [TenantLinkVerified]
    if intune:
        [verdict] = await results(consent, Topic.TENANTS, 1)
        assert isinstance(verdict.data, TenantLinkVerified), verdict.data
        await request(consent, IntuneWritingActivationRequested, tenant.id, tenant.admin)
        wanted.append(IntuneWritingEnabled)
    found = await results(consent, Topic.TENANTS, 2 * len(wanted) - 1)
    assert [
        type(e.data)
        for e in found
        if not isinstance(e.data, TenantLinkRequested | IntuneWritingActivationRequested)
    ] == wanted
    return tenant


def user_actor(tenant: Tenant, user: UUID) -> UserActor:
    """The user as the portal names them: with their display name when they asked."""
    return UserActor(tenant_id=tenant.id, object_id=user, display_name=f"User {user.hex[:6]}")


async def change(consent: ServiceRuntime, tenant: Tenant, user: UUID, revision: int = 1) -> UUID:
    """A deployment change by ``user``, as the portal publishes it; its change id."""
    change_id = uuid4()
    await publish(
        consent,
        DeploymentChangeRequested(
            tenant_id=tenant.id,
            actor=user_actor(tenant, user),
            correlation_id=change_id,
            app=APP.catalog_id,
            revision=revision,
            catalog_app=APP,
            replaces_revision=revision - 1,
            operation="replace",
            desired_assignments=[],
        ),
    )
    return change_id


async def verdicts_of(consent: ServiceRuntime, count: int) -> list[Envelope[EventPayload]]:
    """The first ``count`` verdicts on the deployments topic, requests left out."""
    records = await results(consent, Topic.DEPLOYMENTS, 2 * count - 1)
    return [e for e in records if not isinstance(e.data, DeploymentChangeRequested)]


def graph_calls(emulator: RunningEmulator, tenant: Tenant, since: str) -> list[object]:
    with emulator.client() as control:
        entries: list[object] = control.get(
            "/_emulator/requests", params={"tenant": str(tenant.id), "since": since}
        ).json()
    return entries


async def test_a_change_nothing_is_in_doubt_about_is_verified_without_graph(
    consent: ServiceRuntime, emulator: RunningEmulator
) -> None:
    tenant = await linked(consent, emulator)
    since = datetime.now(UTC).isoformat()
    change_id = await change(consent, tenant, tenant.admin)
    [verdict] = await verdicts_of(consent, 1)
    assert isinstance(verdict.data, DeploymentChangeVerified)
    assert (verdict.data.correlation_id, verdict.data.revision) == (change_id, 1)
    assert verdict.data.actor == user_actor(tenant, tenant.admin)
    assert graph_calls(emulator, tenant, since) == []


async def test_without_intune_writing_the_change_is_rejected_with_the_reason(
    consent: ServiceRuntime, emulator: RunningEmulator
) -> None:
    tenant = await linked(consent, emulator, intune=False)
    await change(consent, tenant, tenant.admin)
    [verdict] = await verdicts_of(consent, 1)
    assert isinstance(verdict.data, DeploymentChangeRejected)
    assert verdict.data.reason == "intune_writing_not_enabled"


async def test_an_unknown_actor_is_checked_with_graph_then_allowed_or_refused(
    consent: ServiceRuntime, emulator: RunningEmulator
) -> None:
    tenant = await linked(consent, emulator)
    since = datetime.now(UTC).isoformat()
    refused = await change(consent, tenant, tenant.plain)
    allowed = await change(consent, tenant, tenant.assigned, revision=2)
    trusted = await change(consent, tenant, tenant.admin, revision=3)
    verdicts = await verdicts_of(consent, 3)
    # in the order requested, though only the first two needed Graph
    assert [v.data.correlation_id for v in verdicts] == [refused, allowed, trusted]
    no, yes, known = (v.data for v in verdicts)
    assert isinstance(no, DeploymentChangeRejected)
    assert no.reason == "actor_not_allowed"
    assert "neither an active Global Administrator" in no.detail
    assert isinstance(yes, DeploymentChangeVerified)
    assert isinstance(known, DeploymentChangeVerified)
    # judged after a wait in pending_changes: each verdict names its user as they asked
    assert [v.actor for v in (no, yes, known)] == [
        user_actor(tenant, user) for user in (tenant.plain, tenant.assigned, tenant.admin)
    ]
    assert graph_calls(emulator, tenant, since) != []
    # the assigned user is known now: their next change needs no Graph call
    since = datetime.now(UTC).isoformat()
    await change(consent, tenant, tenant.assigned, revision=4)
    *_, again = await verdicts_of(consent, 4)
    assert isinstance(again.data, DeploymentChangeVerified)
    assert graph_calls(emulator, tenant, since) == []


async def test_after_unlinking_changes_are_rejected(
    consent: ServiceRuntime, emulator: RunningEmulator
) -> None:
    tenant = await linked(consent, emulator)
    await publish(
        consent,
        TenantUnlinked(
            tenant_id=tenant.id,
            actor=UserActor(tenant_id=tenant.id, object_id=tenant.admin),
            correlation_id=uuid4(),
        ),
    )

    async def forgotten() -> bool:
        async with consent.sessions() as session:
            return await session.get(LinkedTenant, tenant.id) is None

    # the unlink and the change travel on different topics: the change comes after, here
    await eventually(forgotten, what="consent forgot the tenant")
    await change(consent, tenant, tenant.admin)
    [verdict] = await verdicts_of(consent, 1)
    assert isinstance(verdict.data, DeploymentChangeRejected)
    assert verdict.data.reason == "tenant_not_linked"


async def test_a_tenant_not_checked_recently_is_checked_before_the_verdict(
    infra: RunningInfra, emulator: RunningEmulator, database_url: str
) -> None:
    async with running_consent(
        infra, emulator, database_url, consent_max_age_seconds=0.01, change_check_poll_seconds=0.2
    ) as consent:
        tenant = await linked(consent, emulator)
        writer = emulator.apps["intune-writer"]["client_id"]
        with emulator.client() as control:
            control.delete(f"/_emulator/tenants/{tenant.id}/consents/{writer}").raise_for_status()
        await change(consent, tenant, tenant.admin)
        [verdict] = await verdicts_of(consent, 1)
    assert isinstance(verdict.data, DeploymentChangeRejected)
    assert verdict.data.reason == "intune_writing_not_enabled"
