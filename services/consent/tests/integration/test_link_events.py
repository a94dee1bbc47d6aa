"""consent on the bus: a link request in, a verdict out, on real Kafka, PostgreSQL and the
emulated Entra ID and Graph."""

from __future__ import annotations

from uuid import uuid4

import pytest
from consent_kit import publish, request, running_consent, verdicts

from tenantflow.bus.runtime import ServiceRuntime
from tenantflow.consent.models import LinkedTenant
from tenantflow.contracts.common import ServiceActor
from tenantflow.contracts.events import (
    ConsentRevoked,
    EnterpriseApp,
    GraphAccessDenied,
    IntuneWritingActivationRequested,
    IntuneWritingRejected,
    TenantLinkRejected,
    TenantLinkRequested,
    TenantLinkVerified,
)
from tenantflow.devinfra.pytest_plugin import RunningInfra
from tenantflow.devinfra.testing import eventually
from tenantflow.emulator.testing import RunningEmulator

pytestmark = pytest.mark.integration


async def test_a_global_administrator_links(
    consent: ServiceRuntime, emulator: RunningEmulator
) -> None:
    tenant, admin = emulator.seed_tenant_with_admin({"directory-connector": ["Directory.Read.All"]})
    change = uuid4()
    request_id = await request(consent, TenantLinkRequested, tenant, admin, change)
    [verdict] = await verdicts(consent, 1)
    assert isinstance(verdict.data, TenantLinkVerified)
    assert verdict.data.correlation_id == change
    assert verdict.data.causation_id == request_id
    assert verdict.data.authorized_by == "global_administrator"
    assert verdict.source == "/tenantflow/consent"


async def test_no_consent_is_rejected_with_the_url(
    consent: ServiceRuntime, emulator: RunningEmulator
) -> None:
    tenant, admin = emulator.seed_tenant_with_admin({})
    await request(consent, TenantLinkRequested, tenant, admin)
    [verdict] = await verdicts(consent, 1)
    assert isinstance(verdict.data, TenantLinkRejected)
    assert verdict.data.reason == "admin_consent_missing"
    assert verdict.data.admin_consent_url is not None


async def test_intune_activation_without_the_writer_app(
    consent: ServiceRuntime, emulator: RunningEmulator
) -> None:
    tenant, admin = emulator.seed_tenant_with_admin({"directory-connector": ["Directory.Read.All"]})
    await request(consent, IntuneWritingActivationRequested, tenant, admin)
    [verdict] = await verdicts(consent, 1)
    assert isinstance(verdict.data, IntuneWritingRejected)
    assert verdict.data.reason == "admin_consent_missing"


async def test_a_reported_denial_rechecks_at_once_and_revokes(
    consent: ServiceRuntime, emulator: RunningEmulator
) -> None:
    tenant, admin = emulator.seed_tenant_with_admin({"directory-connector": ["Directory.Read.All"]})
    await request(consent, TenantLinkRequested, tenant, admin)
    [verdict] = await verdicts(consent, 1)
    assert isinstance(verdict.data, TenantLinkVerified)
    connector = emulator.apps["directory-connector"]["client_id"]
    with emulator.client() as control:
        control.delete(f"/_emulator/tenants/{tenant}/consents/{connector}").raise_for_status()
    change = uuid4()
    denial_id = await publish(
        consent,
        GraphAccessDenied(
            tenant_id=tenant,
            actor=ServiceActor(service="directory-sync"),
            correlation_id=change,
            app=EnterpriseApp.DIRECTORY_CONNECTOR,
            status=401,
            error_code="AADSTS700016",
            detail="Application not found in the directory.",
        ),
    )
    *_, revoked = await verdicts(consent, 3)
    assert isinstance(revoked.data, ConsentRevoked)
    assert revoked.data.detected_by == "reported_failure"
    assert revoked.data.reason == "admin_consent_missing"
    assert revoked.data.correlation_id == change
    assert revoked.data.causation_id == denial_id
    assert revoked.data.admin_consent_url is not None


async def test_a_scheduled_recheck_waits_out_an_outage_then_notices_revocation(
    infra: RunningInfra, emulator: RunningEmulator, database_url: str
) -> None:
    tenant, admin = emulator.seed_tenant_with_admin({"directory-connector": ["Directory.Read.All"]})
    async with running_consent(
        infra, emulator, database_url, recheck_interval_seconds=0.5, recheck_poll_seconds=0.1
    ) as consent:
        await request(consent, TenantLinkRequested, tenant, admin)
        [verdict] = await verdicts(consent, 1)
        assert isinstance(verdict.data, TenantLinkVerified)
        with emulator.client() as control:
            outage = control.post(
                "/_emulator/faults",
                json={"path": f"^/{tenant}/oauth2/v2.0/token$", "status": 503},
            ).json()

            def rechecks_failed() -> bool:
                faults = control.get("/_emulator/faults").json()
                fired = [f["fired"] for f in faults if f["id"] == outage["id"]]
                return bool(fired and fired[0] >= 3)

            await eventually(rechecks_failed, within=30, what="re-checks during the outage")
            async with consent.sessions() as session:
                row = await session.get(LinkedTenant, tenant)
            assert row is not None
            assert row.connector_consented  # an outage is not a revocation
            during = await verdicts(consent, 1)
            assert not [e for e in during if isinstance(e.data, ConsentRevoked)]
            control.delete("/_emulator/faults").raise_for_status()
            connector = emulator.apps["directory-connector"]["client_id"]
            control.delete(f"/_emulator/tenants/{tenant}/consents/{connector}").raise_for_status()
        events = await verdicts(consent, 2)
    revoked = [e.data for e in events if isinstance(e.data, ConsentRevoked)]
    assert len(revoked) == 1, events
    assert revoked[0].detected_by == "scheduled_check"
    assert revoked[0].reason == "admin_consent_missing"
    assert revoked[0].actor == ServiceActor(service="consent")


async def test_a_denial_reported_right_after_a_check_is_checked_soon_not_dropped(
    infra: RunningInfra, emulator: RunningEmulator, database_url: str
) -> None:
    tenant, admin = emulator.seed_tenant_with_admin({"directory-connector": ["Directory.Read.All"]})
    async with running_consent(
        infra, emulator, database_url, reported_recheck_min_seconds=1, recheck_poll_seconds=0.1
    ) as consent:
        await request(consent, TenantLinkRequested, tenant, admin)
        await verdicts(consent, 1)

        def denial() -> GraphAccessDenied:
            return GraphAccessDenied(
                tenant_id=tenant,
                actor=ServiceActor(service="intune-writer"),
                correlation_id=uuid4(),
                app=EnterpriseApp.DIRECTORY_CONNECTOR,
                status=403,
                error_code="Authorization_RequestDenied",
                detail="Insufficient privileges to complete the operation.",
            )

        await publish(consent, denial())  # checked at once: still consented

        async def checked() -> bool:
            async with consent.sessions() as session:
                row = await session.get(LinkedTenant, tenant)
            return row is not None and row.last_checked_at is not None

        await eventually(checked, what="the first report checked")
        connector = emulator.apps["directory-connector"]["client_id"]
        with emulator.client() as control:
            control.delete(f"/_emulator/tenants/{tenant}/consents/{connector}").raise_for_status()
        await publish(consent, denial())  # too soon for another check: scheduled instead
        events = await verdicts(consent, 4)
    revoked = [e.data for e in events if isinstance(e.data, ConsentRevoked)]
    assert len(revoked) == 1
    assert revoked[0].reason == "admin_consent_missing"
