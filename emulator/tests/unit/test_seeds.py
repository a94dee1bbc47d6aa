"""The demo seed and the synthetic-tenant generator produce valid, stable tenants."""

from __future__ import annotations

import pytest

from tenantflow.emulator.graph_permissions import GLOBAL_ADMINISTRATOR_TEMPLATE
from tenantflow.emulator.seeds import CONTOSO, FABRIKAM, demo_tenants, synthetic_tenant
from tenantflow.emulator.state import SeedTenant, Tenant

pytestmark = pytest.mark.unit


def test_demo_tenants_are_valid_and_stable() -> None:
    first, second = demo_tenants(), demo_tenants()
    assert first == second  # same ids every run
    contoso, fabrikam = (Tenant.from_seed(SeedTenant.model_validate(d)) for d in first)
    assert contoso.id == CONTOSO
    assert fabrikam.id == FABRIKAM
    assert 200 <= len(contoso.users) <= 500
    assert len(contoso.groups) >= 24
    assert any(m in contoso.groups for g in contoso.groups.values() for m in g.members)  # nested
    assert contoso.devices
    assert len(contoso.mobile_apps) >= 3
    assert any(contoso.app_assignments.values())
    assert contoso.assignment_filters
    assert len(contoso.service_principals) == 2  # fully consented
    assert fabrikam.service_principals == {}  # not consented
    admins = [
        u for u in contoso.users.values() if GLOBAL_ADMINISTRATOR_TEMPLATE in u.role_templates()
    ]
    assert len(admins) == 1
    eligible = [
        u
        for u in contoso.users.values()
        if GLOBAL_ADMINISTRATOR_TEMPLATE in u.eligible_role_templates()
    ]
    assert len(eligible) == 1
    assert GLOBAL_ADMINISTRATOR_TEMPLATE not in eligible[0].role_templates()


def test_synthetic_tenant_sizes() -> None:
    document = synthetic_tenant(CONTOSO, "Big", "big.example", users=2000, groups=300, devices=2500)
    tenant = Tenant.from_seed(SeedTenant.model_validate(document))
    assert (len(tenant.users), len(tenant.groups), len(tenant.devices)) == (2000, 300, 2500)
