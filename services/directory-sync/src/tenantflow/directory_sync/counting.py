"""How an incremental sync's membership changes move the groups' counts (pure, no I/O).

A full sync counts every group in PostgreSQL. An incremental sync changes a few memberships of
a large tenant, whose top groups reach every member: recounting them costs as much as the full
count. Instead, for each user or device whose memberships or existence changed, compare the
groups that reached it before the sync with those that reach it after — a group reaches a member
when the member is in it or in a group nested in it, however deep — and move each count by one.
The nesting itself must be unchanged (a sync that changes nesting recounts the groups above the
change in full); ``ancestors`` maps a group to itself and every group it is nested in.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from uuid import UUID


@dataclass(frozen=True)
class MemberChange:
    """One user's or device's direct groups and existence, before and after the sync."""

    member_type: str
    """user or device."""
    groups_before: frozenset[UUID]
    groups_after: frozenset[UUID]
    existed_before: bool = True
    exists_after: bool = True
    """A soft-deleted user keeps its memberships but reaches no one: it does not count."""


@dataclass
class Counts:
    """A group's counts, or a change of them."""

    direct_users: int = 0
    direct_devices: int = 0
    transitive_users: int = 0
    transitive_devices: int = 0

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.direct_users + other.direct_users,
            self.direct_devices + other.direct_devices,
            self.transitive_users + other.transitive_users,
            self.transitive_devices + other.transitive_devices,
        )


def reaching(groups: Iterable[UUID], ancestors: Mapping[UUID, Iterable[UUID]]) -> set[UUID]:
    """Every group that reaches a member directly in ``groups``."""
    found: set[UUID] = set()
    for group in groups:
        found.add(group)
        found.update(ancestors.get(group, ()))
    return found


def count_changes(
    changes: Iterable[MemberChange], ancestors: Mapping[UUID, Iterable[UUID]]
) -> dict[UUID, Counts]:
    """The change of each group's counts that ``changes`` make."""
    result: dict[UUID, Counts] = defaultdict(Counts)
    for change in changes:
        direct_before = change.groups_before if change.existed_before else frozenset()
        direct_after = change.groups_after if change.exists_after else frozenset()
        before = reaching(direct_before, ancestors)
        after = reaching(direct_after, ancestors)
        kind = "users" if change.member_type == "user" else "devices"
        for group, step in [(g, 1) for g in after - before] + [(g, -1) for g in before - after]:
            counts = result[group]
            setattr(counts, f"transitive_{kind}", getattr(counts, f"transitive_{kind}") + step)
        for group, step in [(g, 1) for g in direct_after - direct_before] + [
            (g, -1) for g in direct_before - direct_after
        ]:
            counts = result[group]
            setattr(counts, f"direct_{kind}", getattr(counts, f"direct_{kind}") + step)
    return dict(result)
