"""Whether a desired assignment set can be applied exactly, and what a change would do.

Plain code over facts the routes read (the tenant's groups and assignment filters from the read
models, the catalog app's kind), so every rule is unit-tested without I/O. A reference that
cannot be resolved is an error, never skipped: the writer would otherwise drop it silently.

What Microsoft documents (Graph's mobileAppAssignment, deviceAndAppManagementAssignmentTarget and
winGetAppAssignmentSettings resources; shared/reference/graph-wire-formats.md §1): the four
intents, the four target types, a filter as id plus include/exclude, and winGetApp settings
(notifications, restartSettings, installTimeSettings with deadlineDateTime) without a delivery
optimization priority (that is win32LobApp's). What we infer from the Intune admin center, which
offers no such combination, and refuse rather than let Graph or the device decide:
availableWithoutEnrollment on a Windows app (it is the intent of iOS/Android app protection
without enrollment); available to all devices (available needs a user to pick the app in the
Company Portal); a filter or settings on an exclusion; a deadline or restart settings on
anything but a required install; a filter of another platform than the app's, or one made for
managed apps instead of managed devices; a group that is not security-enabled.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from uuid import UUID

from tenantflow.contracts.events import AssignmentIntent, DesiredAssignment

BROAD_TARGETS = {"all_users": "all users", "all_devices": "all devices"}
PLATFORM_OF_KIND = {"winGetApp": "windows10AndLater"}
INTENTS_OF_KIND: Mapping[str, frozenset[AssignmentIntent]] = {
    "winGetApp": frozenset(
        {AssignmentIntent.REQUIRED, AssignmentIntent.AVAILABLE, AssignmentIntent.UNINSTALL}
    ),
}
KINDS_WITH_DELIVERY_PRIORITY = frozenset({"win32LobApp"})


@dataclass(frozen=True)
class GroupFacts:
    display_name: str
    security_enabled: bool


@dataclass(frozen=True)
class FilterFacts:
    display_name: str
    platform: str
    management_type: str


@dataclass(frozen=True)
class Issue:
    """One reason the set cannot be accepted, at ``location`` in the request body."""

    location: tuple[str | int, ...]
    type: str
    message: str

    def as_error(self) -> dict[str, object]:
        return {
            "location": ["body", *map(str, self.location)],
            "type": self.type,
            "message": self.message,
        }


@dataclass(frozen=True)
class References:
    """What the tenant's read models hold for the references of a set."""

    groups: Mapping[UUID, GroupFacts]
    directory_synced_at: str | None
    """When the tenant's directory was last synced (ISO 8601); None if never."""
    filters: Mapping[UUID, FilterFacts]
    filters_synced: bool


def describe(assignment: DesiredAssignment) -> str:
    target = assignment.target
    if target.kind in BROAD_TARGETS:
        return f"{BROAD_TARGETS[target.kind]} ({assignment.intent})"
    verb = "exclude" if target.kind == "exclusion_group" else "group"
    return f"{verb} {target.group_id} ({assignment.intent})"


def check(
    kind: str,
    assignments: Sequence[DesiredAssignment],
    references: References,
    field: str = "assignments",
) -> list[Issue]:
    """Every issue of ``assignments`` for an app of ``kind``; empty when it can be applied."""
    issues: list[Issue] = []
    seen: dict[str, int] = {}
    included: dict[UUID, int] = {}
    excluded: dict[UUID, int] = {}
    for index, assignment in enumerate(assignments):
        at = (field, index)
        issues += _shape(kind, assignment, at)
        target = assignment.target
        first = seen.get(target.key)
        if first is not None and assignments[first].target.kind == target.kind:
            issues.append(
                Issue(
                    (*at, "target"),
                    "duplicate_target",
                    f"{describe(assignment)} targets what item {first} targets "
                    "already: at most one assignment per target.",
                )
            )
        elif first is None:
            seen[target.key] = index
        if target.group_id is not None:
            (excluded if target.kind == "exclusion_group" else included)[target.group_id] = index
            issues += _group(target.group_id, at, references)
        if assignment.filter is not None:
            issues += _filter(kind, assignment.filter.filter_id, at, references)
    for group_id, index in excluded.items():
        if group_id in included:
            issues.append(
                Issue(
                    (field, index, "target"),
                    "included_and_excluded",
                    f"Group {group_id} is included (item {included[group_id]}) and excluded "
                    f"(item {index}); choose one.",
                )
            )
    return issues


def _shape(kind: str, assignment: DesiredAssignment, at: tuple[str | int, ...]) -> list[Issue]:
    issues = []
    intent, target, settings = assignment.intent, assignment.target, assignment.settings
    if intent not in INTENTS_OF_KIND.get(kind, frozenset(AssignmentIntent)):
        allowed = ", ".join(sorted(INTENTS_OF_KIND[kind]))
        issues.append(
            Issue(
                (*at, "intent"),
                "intent_not_supported",
                f"A {kind} cannot be assigned as {intent}; use {allowed}.",
            )
        )
    if intent is AssignmentIntent.AVAILABLE and target.kind == "all_devices":
        issues.append(
            Issue(
                (*at, "target"),
                "intent_not_supported",
                "available cannot target all devices: a user makes an available app "
                "install, so target users (all users or a group).",
            )
        )
    if target.kind == "exclusion_group":
        if assignment.filter is not None:
            issues.append(
                Issue(
                    (*at, "filter"),
                    "filter_on_exclusion",
                    "An exclusion takes no assignment filter.",
                )
            )
        if settings is not None:
            issues.append(
                Issue(
                    (*at, "settings"),
                    "settings_on_exclusion",
                    "An exclusion takes no install settings.",
                )
            )
        return issues
    if settings is None:
        return issues
    if intent is not AssignmentIntent.REQUIRED:
        for name, value in (("deadline", settings.deadline), ("restart", settings.restart)):
            if value is not None:
                issues.append(
                    Issue(
                        (*at, "settings", name),
                        "setting_not_supported",
                        f"{name} applies to required installs only, not to {intent}.",
                    )
                )
    if settings.delivery_priority is not None and kind not in KINDS_WITH_DELIVERY_PRIORITY:
        issues.append(
            Issue(
                (*at, "settings", "delivery_priority"),
                "setting_not_supported",
                f"A {kind} assignment has no delivery priority (Win32 apps have one).",
            )
        )
    restart = settings.restart
    if restart is not None and restart.countdown_minutes > restart.grace_period_minutes:
        issues.append(
            Issue(
                (*at, "settings", "restart"),
                "setting_not_supported",
                "The countdown cannot start before the grace period does: countdown_minutes "
                "must not exceed grace_period_minutes.",
            )
        )
    return issues


def _group(group_id: UUID, at: tuple[str | int, ...], references: References) -> list[Issue]:
    where = (*at, "target", "group_id")
    if references.directory_synced_at is None:
        return [
            Issue(
                where,
                "directory_not_synced",
                f"Group {group_id} cannot be checked yet: this tenant's directory has not "
                "finished its first sync. Retry once GET …/directory says synced.",
            )
        ]
    facts = references.groups.get(group_id)
    if facts is None:
        return [
            Issue(
                where,
                "group_not_found",
                f"Group {group_id} is not in this tenant's directory as of its last sync "
                f"({references.directory_synced_at}). If it was created since, sync the "
                "directory (POST …/directory/sync) and retry.",
            )
        ]
    if not facts.security_enabled:
        return [
            Issue(
                where,
                "group_not_assignable",
                f"Group {group_id} ({facts.display_name}) is not a security group; Intune "
                "assigns apps to security groups.",
            )
        ]
    return []


def _filter(
    kind: str, filter_id: UUID, at: tuple[str | int, ...], references: References
) -> list[Issue]:
    where = (*at, "filter", "filter_id")
    if not references.filters_synced:
        return [
            Issue(
                where,
                "filters_not_synced",
                f"Filter {filter_id} cannot be checked yet: this tenant's assignment filters "
                "have not been read since Intune writing was enabled. Retry in a minute.",
            )
        ]
    facts = references.filters.get(filter_id)
    if facts is None:
        return [
            Issue(
                where,
                "filter_not_found",
                f"Assignment filter {filter_id} does not exist in this tenant.",
            )
        ]
    platform = PLATFORM_OF_KIND.get(kind)
    if platform is not None and facts.platform != platform:
        return [
            Issue(
                where,
                "filter_platform",
                f"Filter {filter_id} ({facts.display_name}) is for {facts.platform}; a "
                f"{kind} needs a {platform} filter.",
            )
        ]
    if facts.management_type != "devices":
        return [
            Issue(
                where,
                "filter_platform",
                f"Filter {filter_id} ({facts.display_name}) filters managed apps; an app "
                "assignment needs a managed-devices filter.",
            )
        ]
    return []


# --- what a change would do --------------------------------------------------------------------


@dataclass(frozen=True)
class Impact:
    removed: list[DesiredAssignment]
    added: list[DesiredAssignment]
    changed: list[DesiredAssignment]
    broad: list[DesiredAssignment]
    """Assignments to all users or all devices that this change adds or changes."""

    def needs_confirmation(self, max_removals: int) -> bool:
        return len(self.removed) > max_removals or bool(self.broad)

    def explain(self, max_removals: int) -> str:
        parts = []
        if len(self.removed) > max_removals:
            parts.append(
                f"remove {len(self.removed)} assignments (more than {max_removals}): "
                + ", ".join(describe(a) for a in self.removed[:max_removals])
                + " …"
            )
        if self.broad:
            parts.append(
                "assign "
                + " and ".join(describe(a) for a in self.broad)
                + ", which reaches every member of the tenant"
            )
        return (
            "This change would "
            + "; and ".join(parts)
            + ". Send it again with ?confirm=true to apply it."
        )


def impact(previous: Sequence[DesiredAssignment], desired: Sequence[DesiredAssignment]) -> Impact:
    before = {a.target.key: a for a in previous}
    after = {a.target.key: a for a in desired}
    removed = [a for key, a in before.items() if key not in after]
    added = [a for key, a in after.items() if key not in before]
    changed = [a for key, a in after.items() if key in before and before[key] != a]
    broad = [a for a in (*added, *changed) if a.target.kind in BROAD_TARGETS]
    return Impact(removed, added, changed, broad)
