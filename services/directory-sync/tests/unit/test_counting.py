"""Counts moved by an incremental sync's membership changes, through nested groups."""

from __future__ import annotations

from uuid import UUID

import pytest

from tenantflow.directory_sync.counting import Counts, MemberChange, count_changes

pytestmark = pytest.mark.unit

EVERYONE, SALES, PILOTS, OTHER = (UUID(int=n) for n in range(1, 5))
# Pilots is nested in Sales, Sales in Everyone; Other stands alone
ANCESTORS = {PILOTS: {SALES, EVERYONE}, SALES: {EVERYONE}}


def change(
    before: set[UUID], after: set[UUID], kind: str = "user", **existence: bool
) -> MemberChange:
    return MemberChange(kind, frozenset(before), frozenset(after), **existence)


def test_a_member_added_deep_reaches_every_group_above() -> None:
    moved = count_changes([change(set(), {PILOTS})], ANCESTORS)
    assert moved == {
        PILOTS: Counts(direct_users=1, transitive_users=1),
        SALES: Counts(transitive_users=1),
        EVERYONE: Counts(transitive_users=1),
    }


def test_a_member_already_reached_by_another_path_moves_no_transitive_count() -> None:
    # in Sales directly, now in Pilots too: Sales and Everyone reached it already
    moved = count_changes([change({SALES}, {SALES, PILOTS}, kind="device")], ANCESTORS)
    assert moved == {PILOTS: Counts(direct_devices=1, transitive_devices=1)}


def test_leaving_one_path_of_two_keeps_the_member_counted_above() -> None:
    moved = count_changes([change({SALES, PILOTS}, {SALES})], ANCESTORS)
    assert moved == {PILOTS: Counts(direct_users=-1, transitive_users=-1)}


def test_a_soft_deleted_member_stops_counting_and_counts_again_when_restored() -> None:
    deleted = count_changes(
        [change({PILOTS, OTHER}, {PILOTS, OTHER}, exists_after=False)], ANCESTORS
    )
    restored = count_changes([change({PILOTS}, {PILOTS}, existed_before=False)], ANCESTORS)
    assert deleted[EVERYONE] == Counts(transitive_users=-1)
    assert deleted[OTHER] == Counts(direct_users=-1, transitive_users=-1)
    assert restored[PILOTS] == Counts(direct_users=1, transitive_users=1)
    assert restored[SALES] == Counts(transitive_users=1)


def test_nothing_changed_moves_nothing() -> None:
    assert count_changes([change({PILOTS}, {PILOTS})], ANCESTORS) == {}


def test_a_cycle_in_the_ancestry_counts_each_group_once() -> None:
    a, b = UUID(int=10), UUID(int=11)
    moved = count_changes([change(set(), {a})], {a: {b, a}, b: {a, b}})
    assert moved == {
        a: Counts(direct_users=1, transitive_users=1),
        b: Counts(transitive_users=1),
    }
