"""What a page of a delta round changes, read from Graph's wire format (pure, no I/O).

Microsoft documents (delta-query-overview.md, delta-query-groups.md @b7c6490): an entry is an
object with the selected properties, or ``{"id", "@removed": {"reason": "changed" | "deleted"}}``
(soft or permanent deletion); a group's ``members@delta`` lists members added, and removed ones
with ``@removed``, each typed as the member itself; a large group's members are split over
several entries, on any page, in any order. Users, devices and groups deleted softly are not
live objects: they leave the cache (a restored one comes back as a new entry); a soft-deleted
user's memberships are kept by Entra ID, so the cache keeps them too, and counts only users
that are in the cache.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

MEMBER_TYPES = {
    "#microsoft.graph.user": "user",
    "#microsoft.graph.device": "device",
    "#microsoft.graph.group": "group",
}
"""Members tenantflow counts; others (service principals, contacts) are not kept."""


@dataclass
class PageChanges:
    """The net effect of one page: the last word on each object wins, in page order."""

    upserts: dict[UUID, dict[str, Any]] = field(default_factory=dict)
    removed: set[UUID] = field(default_factory=set)
    members_added: dict[tuple[UUID, UUID], str] = field(default_factory=dict)
    """(group, member) → member type."""
    members_removed: dict[tuple[UUID, UUID], str] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return (
            len(self.upserts)
            + len(self.removed)
            + len(self.members_added)
            + len(self.members_removed)
        )


def _user(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "display_name": entry.get("displayName"),
        "user_principal_name": entry.get("userPrincipalName"),
    }


def _device(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "display_name": entry.get("displayName"),
        "operating_system": entry.get("operatingSystem"),
        "is_managed": entry.get("isManaged"),
    }


def _group(entry: dict[str, Any]) -> dict[str, Any]:
    return {
        "display_name": entry.get("displayName"),
        "security_enabled": bool(entry.get("securityEnabled")),
        "mail_enabled": bool(entry.get("mailEnabled")),
        "dynamic": "DynamicMembership" in (entry.get("groupTypes") or []),
    }


ATTRIBUTES = {"users": _user, "devices": _device, "groups": _group}


def read_page(resource: str, entries: Iterable[dict[str, Any]]) -> PageChanges:
    """The changes ``entries`` (a page's ``value``) make to ``resource``."""
    attributes = ATTRIBUTES[resource]
    changes = PageChanges()
    for entry in entries:
        object_id = UUID(str(entry["id"]))
        if "@removed" in entry:
            changes.upserts.pop(object_id, None)
            changes.removed.add(object_id)
            continue
        changes.removed.discard(object_id)
        changes.upserts[object_id] = attributes(entry)
        for member in entry.get("members@delta") or []:
            kind = MEMBER_TYPES.get(str(member.get("@odata.type", "")))
            if kind is None:
                continue
            pair = (object_id, UUID(str(member["id"])))
            if "@removed" in member:
                changes.members_added.pop(pair, None)
                changes.members_removed[pair] = kind
            else:
                changes.members_removed.pop(pair, None)
                changes.members_added[pair] = kind
    return changes
