"""The pure part of a sync: reading a delta page (Graph's wire format). Counting through nested
groups runs in PostgreSQL and is tested there (integration tier)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from tenantflow.directory_sync.delta import read_page

pytestmark = pytest.mark.unit

USER, DEVICE, GROUP = "#microsoft.graph.user", "#microsoft.graph.device", "#microsoft.graph.group"


def test_a_groups_members_split_over_entries_in_any_order_merge() -> None:
    group, a, b, c = uuid4(), uuid4(), uuid4(), uuid4()
    entry = {"id": str(group), "displayName": "Sales", "securityEnabled": True}
    changes = read_page(
        "groups",
        [
            {**entry, "members@delta": [{"@odata.type": USER, "id": str(a)}]},
            {"id": str(uuid4()), "displayName": "Other"},
            {
                **entry,
                "members@delta": [
                    {"@odata.type": DEVICE, "id": str(b)},
                    {"@odata.type": USER, "id": str(a), "@removed": {"reason": "deleted"}},
                    {"@odata.type": "#microsoft.graph.servicePrincipal", "id": str(c)},
                ],
            },
        ],
    )
    assert changes.upserts[group]["display_name"] == "Sales"
    assert changes.members_added == {(group, b): "device"}  # the service principal is not kept
    assert changes.members_removed == {(group, a): "user"}  # the later word wins


def test_removed_objects_soft_or_permanent_leave_and_a_restored_one_comes_back() -> None:
    soft, hard, back = uuid4(), uuid4(), uuid4()
    changes = read_page(
        "users",
        [
            {"id": str(soft), "@removed": {"reason": "changed"}},
            {"id": str(hard), "@removed": {"reason": "deleted"}},
            {"id": str(back), "@removed": {"reason": "changed"}},
            {"id": str(back), "displayName": "Back", "userPrincipalName": "b@x.example"},
        ],
    )
    assert changes.removed == {soft, hard}
    assert changes.upserts == {back: {"display_name": "Back", "user_principal_name": "b@x.example"}}
    assert changes.count == 3


def test_a_dynamic_group_and_a_devices_attributes() -> None:
    group, device = uuid4(), uuid4()
    groups = read_page(
        "groups", [{"id": str(group), "displayName": "D", "groupTypes": ["DynamicMembership"]}]
    )
    devices = read_page(
        "devices",
        [{"id": str(device), "displayName": "PC", "operatingSystem": "iOS", "isManaged": False}],
    )
    assert groups.upserts[group]["dynamic"] is True
    assert devices.upserts[device] == {
        "display_name": "PC",
        "operating_system": "iOS",
        "is_managed": False,
    }
