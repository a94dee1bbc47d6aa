"""How many users and devices a group reaches, directly and through nested groups (pure).

A user in a group nested in the targeted group counts, once however many paths lead to it;
nesting may form cycles (Entra ID refuses most, but a cache read mid-change can hold one), so
each walk remembers the groups it has been through.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True)
class Counts:
    direct_users: int
    direct_devices: int
    transitive_users: int
    transitive_devices: int


def transitive_counts(
    roots: Iterable[K],
    subgroups: Mapping[K, Iterable[K]],
    users: Mapping[K, set[K]],
    devices: Mapping[K, set[K]],
) -> dict[K, Counts]:
    """The counts of each of ``roots``, from each group's direct subgroups, users and devices."""
    empty: set[K] = set()
    found: dict[K, Counts] = {}
    for root in roots:
        seen = {root}
        pending = [root]
        reached_users: set[K] = set()
        reached_devices: set[K] = set()
        while pending:
            group = pending.pop()
            reached_users |= users.get(group, empty)
            reached_devices |= devices.get(group, empty)
            for child in subgroups.get(group, ()):
                if child not in seen:
                    seen.add(child)
                    pending.append(child)
        found[root] = Counts(
            direct_users=len(users.get(root, empty)),
            direct_devices=len(devices.get(root, empty)),
            transitive_users=len(reached_users),
            transitive_devices=len(reached_devices),
        )
    return found
