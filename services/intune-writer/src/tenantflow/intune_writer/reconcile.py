"""What to send to POST /mobileApps/{id}/assign so Intune holds exactly the desired set.

Graph replaces an app's whole assignment set on /assign (shared/reference/graph-wire-formats.md
§1: undocumented, and every client treats it so), so the body is always complete: the desired
set, from stored desired state, plus the assignments made outside tenantflow, which are kept as
Graph returned them unless the tenant made tenantflow the source of truth (then they are left
out and reported). Which assignments are tenantflow's: those on targets it may have written
(``managed_keys``, widened to the desired targets before every write, so a crash between the
write and its record never turns tenantflow's own assignment into a "foreign" one).

Comparison is on a normal form, so Graph's representation never looks like drift: nested
``@odata.type`` with or without '#', ids, nulls, settings ``{}`` or default notifications, GUID
case and deadline formats are all the same value.

Wire shapes (Graph beta, the only version with winGetApp and with filters on targets):
mobileAppAssignment {intent, target, settings}; targets groupAssignmentTarget {groupId},
exclusionGroupAssignmentTarget {groupId}, allLicensedUsersAssignmentTarget,
allDevicesAssignmentTarget, each with deviceAndAppManagementAssignmentFilterId/Type
(GD beta resources/intune-shared-deviceandappmanagementassignmenttarget.md); settings
winGetAppAssignmentSettings {notifications, restartSettings {gracePeriodInMinutes,
countdownDisplayBeforeRestartInMinutes, restartNotificationSnoozeDurationInMinutes},
installTimeSettings {useLocalTime, deadlineDateTime}} (GD beta resources/
intune-apps-wingetappassignmentsettings.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from pydantic import ValidationError

from tenantflow.contracts.events import (
    AssignmentFilterRef,
    AssignmentSettings,
    AssignmentTarget,
    DesiredAssignment,
    RestartSettings,
)

TARGET_TYPES = {
    "group": "microsoft.graph.groupAssignmentTarget",
    "exclusion_group": "microsoft.graph.exclusionGroupAssignmentTarget",
    "all_users": "microsoft.graph.allLicensedUsersAssignmentTarget",
    "all_devices": "microsoft.graph.allDevicesAssignmentTarget",
}
TARGET_KINDS = {graph: kind for kind, graph in TARGET_TYPES.items()}
DEFAULT_NOTIFICATIONS = "showAll"


def _odata(name: str) -> str:
    return "#" + name


def target_json(target: AssignmentTarget, filter_ref: AssignmentFilterRef | None) -> dict[str, Any]:
    wire: dict[str, Any] = {"@odata.type": _odata(TARGET_TYPES[target.kind])}
    if target.group_id is not None:
        wire["groupId"] = str(target.group_id)
    wire["deviceAndAppManagementAssignmentFilterId"] = (
        str(filter_ref.filter_id) if filter_ref else None
    )
    wire["deviceAndAppManagementAssignmentFilterType"] = filter_ref.mode if filter_ref else "none"
    return wire


def settings_json(settings: AssignmentSettings | None) -> dict[str, Any] | None:
    if settings is None:
        return None
    wire: dict[str, Any] = {"@odata.type": "#microsoft.graph.winGetAppAssignmentSettings"}
    if settings.notifications:
        wire["notifications"] = settings.notifications
    if settings.restart:
        wire["restartSettings"] = {
            "gracePeriodInMinutes": settings.restart.grace_period_minutes,
            "countdownDisplayBeforeRestartInMinutes": settings.restart.countdown_minutes,
            "restartNotificationSnoozeDurationInMinutes": settings.restart.snooze_minutes,
        }
    if settings.deadline:
        wire["installTimeSettings"] = {
            "useLocalTime": settings.deadline_in_local_time,
            "deadlineDateTime": _iso(settings.deadline),
        }
    return wire


def assignment_json(assignment: DesiredAssignment) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.mobileAppAssignment",
        "intent": assignment.intent.value,
        "target": target_json(assignment.target, assignment.filter),
        "settings": settings_json(assignment.settings),
    }


def target_key(wire: dict[str, Any]) -> str:
    """The target of a Graph assignment as ``AssignmentTarget.key`` names it: the group id, or
    the virtual group's kind (an unknown target type by its type name)."""
    target = wire.get("target") or {}
    group = target.get("groupId")
    if group:
        try:
            return str(UUID(str(group)))
        except ValueError:
            return str(group).lower()
    kind = str(target.get("@odata.type", "")).lstrip("#")
    return TARGET_KINDS.get(kind, kind)


def desired_of(wire: dict[str, Any]) -> DesiredAssignment | None:
    """A Graph assignment as a desired assignment; None when it has a shape tenantflow does not
    manage (another target type, another app kind's settings)."""
    target = wire.get("target") or {}
    kind = TARGET_KINDS.get(str(target.get("@odata.type", "")).lstrip("#"))
    if kind is None:
        return None
    try:
        filter_id = target.get("deviceAndAppManagementAssignmentFilterId")
        mode = target.get("deviceAndAppManagementAssignmentFilterType") or "none"
        return DesiredAssignment(
            target=AssignmentTarget(kind=kind, group_id=target.get("groupId")),
            intent=wire.get("intent"),
            filter=AssignmentFilterRef(filter_id=filter_id, mode=mode)
            if filter_id and mode != "none"
            else None,
            settings=_settings_of(wire.get("settings")),
        )
    except (ValidationError, ValueError, TypeError):
        return None


def _settings_of(wire: Any) -> AssignmentSettings | None:
    if not isinstance(wire, dict):
        return None
    restart = wire.get("restartSettings") or None
    install = wire.get("installTimeSettings") or None
    notifications = wire.get("notifications")
    settings = AssignmentSettings(
        notifications=None if notifications == DEFAULT_NOTIFICATIONS else notifications,
        restart=RestartSettings(
            grace_period_minutes=restart["gracePeriodInMinutes"],
            countdown_minutes=restart["countdownDisplayBeforeRestartInMinutes"],
            snooze_minutes=restart.get("restartNotificationSnoozeDurationInMinutes"),
        )
        if restart
        else None,
        deadline=install.get("deadlineDateTime") if install else None,
        deadline_in_local_time=bool(install.get("useLocalTime")) if install else False,
    )
    return None if settings == AssignmentSettings() else settings


def _iso(moment: datetime | str) -> str:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


UUID_HEX = 32
"""``UUID()`` parses 32 hex digits (hyphens, braces and a ``urn:uuid:`` prefix around them)."""


def normal(value: Any, key: str = "") -> Any:
    """``value`` in the normal form comparisons use (see the module's docstring)."""
    if isinstance(value, dict):
        result = {}
        for name, item in value.items():
            if name in ("@odata.type", "id") and key != "target":
                continue
            if name == "@odata.type":  # a target's type is its meaning
                item = str(item).lstrip("#")
            if name == "notifications" and item == DEFAULT_NOTIFICATIONS:
                continue
            item = normal(item, name)
            if item is None or item == {}:
                continue
            result[name] = item
        if key == "target" and result.get("deviceAndAppManagementAssignmentFilterType") == "none":
            result.pop("deviceAndAppManagementAssignmentFilterType")
        return result or None
    if isinstance(value, list):
        return [normal(item) for item in value]
    if isinstance(value, str):
        if key == "deadlineDateTime":
            try:
                return _iso(value)
            except ValueError:
                return value
        if len(value) < UUID_HEX or "." in value:
            return value  # surely no UUID (most strings here are not): no exception raised
        try:
            return str(UUID(value))
        except ValueError:
            return value
    return value


def _fingerprint(wire: dict[str, Any]) -> str:
    return json.dumps(normal(wire), sort_keys=True)


def same_set(left: Iterable[dict[str, Any]], right: Iterable[dict[str, Any]]) -> bool:
    return sorted(map(_fingerprint, left)) == sorted(map(_fingerprint, right))


@dataclass
class Plan:
    """What to send, and what it means."""

    body: list[dict[str, Any]]
    """The whole set for /assign."""
    unchanged: bool
    """Intune already holds ``body``: write nothing."""
    before: list[DesiredAssignment]
    """tenantflow's assignments as Intune held them."""
    written: list[DesiredAssignment]
    """What Intune holds once ``body`` is written (kept foreign assignments included)."""
    foreign_kept: list[dict[str, Any]] = field(default_factory=list)
    foreign_removed: list[dict[str, Any]] = field(default_factory=list)


def plan(
    desired: Sequence[DesiredAssignment],
    current: Sequence[dict[str, Any]],
    managed_keys: Iterable[str],
    source_of_truth: bool,
) -> Plan:
    """The /assign body that makes Intune hold ``desired`` (see the module's docstring)."""
    managed = set(managed_keys)
    desired_keys = {assignment.target.key for assignment in desired}
    ours = [wire for wire in current if target_key(wire) in managed]
    foreign = [wire for wire in current if target_key(wire) not in managed]
    kept = (
        []
        if source_of_truth
        else [wire for wire in foreign if target_key(wire) not in desired_keys]
    )
    removed = [wire for wire in foreign if wire not in kept]
    body = [assignment_json(assignment) for assignment in desired] + [
        {k: v for k, v in wire.items() if k != "id"} for wire in kept
    ]
    written = list(desired) + [a for a in map(desired_of, kept) if a is not None]
    return Plan(
        body=body,
        unchanged=same_set(body, current),
        before=[a for a in map(desired_of, ours) if a is not None],
        written=written,
        foreign_kept=kept,
        foreign_removed=removed,
    )
