"""The pure parts of a sync: reading a delta page (Graph's wire format) and counting what a
group reaches through nested groups."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from tenantflow.directory_sync.counting import Counts, transitive_counts
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
    assert changes.members_removed == {(group, a)}  # the later word wins


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


def test_transitive_counts_follow_nesting_once_per_member() -> None:
    everyone, sales, pilots = "everyone", "sales", "pilots"
    counts = transitive_counts(
        [everyone, sales, pilots],
        subgroups={everyone: [sales, pilots], sales: [pilots]},
        users={sales: {"u1", "u2"}, pilots: {"u2", "u3"}},
        devices={pilots: {"d1"}},
    )
    assert counts[everyone] == Counts(0, 0, 3, 1)
    assert counts[sales] == Counts(2, 0, 3, 1)
    assert counts[pilots] == Counts(2, 1, 2, 1)


def test_a_cycle_ends_and_counts_each_member_once() -> None:
    a, b, c = UUID(int=1), UUID(int=2), UUID(int=3)
    counts = transitive_counts(
        [a, b, c],
        subgroups={a: [b], b: [c], c: [a]},
        users={a: {UUID(int=10)}, b: {UUID(int=11)}, c: {UUID(int=10)}},
        devices={},
    )
    assert {group: found.transitive_users for group, found in counts.items()} == {a: 2, b: 2, c: 2}


def test_a_group_that_nests_itself_and_an_unknown_group() -> None:
    counts = transitive_counts(["g"], {"g": ["g", "unknown"]}, {"g": {"u"}}, {})
    assert counts["g"] == Counts(1, 0, 1, 0)
