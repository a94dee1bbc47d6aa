"""Every rule a desired assignment set must pass, and what the blast-radius guard counts."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest

from tenantflow.contracts.events import DesiredAssignment
from tenantflow.portal_api.validation import (
    FilterFacts,
    GroupFacts,
    References,
    check,
    impact,
)

pytestmark = pytest.mark.unit

SALES, FINANCE, MAIL_ONLY = uuid4(), uuid4(), uuid4()
WINDOWS_FILTER, IOS_FILTER, APPS_FILTER = uuid4(), uuid4(), uuid4()
SYNCED = References(
    groups={
        SALES: GroupFacts("Sales", True),
        FINANCE: GroupFacts("Finance", True),
        MAIL_ONLY: GroupFacts("Newsletter", False),
    },
    directory_synced_at="2026-11-24T10:00:00+00:00",
    filters={
        WINDOWS_FILTER: FilterFacts("Windows 11", "windows10AndLater", "devices"),
        IOS_FILTER: FilterFacts("iPhones", "iOS", "devices"),
        APPS_FILTER: FilterFacts("Managed Edge", "windows10AndLater", "apps"),
    },
    filters_synced=True,
)


def assignment(kind: str = "group", group: UUID | None = SALES, **fields: Any) -> DesiredAssignment:
    target: dict[str, Any] = {"kind": kind}
    if kind in ("group", "exclusion_group"):
        target["group_id"] = str(group)
    return DesiredAssignment.model_validate({"intent": "required", "target": target, **fields})


def issues_of(*assignments: DesiredAssignment, references: References = SYNCED) -> list[str]:
    return [issue.type for issue in check("winGetApp", assignments, references)]


def test_a_valid_set_passes() -> None:
    assert (
        issues_of(
            assignment(
                filter={"filter_id": str(WINDOWS_FILTER), "mode": "include"},
                settings={
                    "notifications": "showReboot",
                    "deadline": "2026-12-01T18:00:00Z",
                    "restart": {"grace_period_minutes": 60, "countdown_minutes": 15},
                },
            ),
            assignment("exclusion_group", FINANCE),
            assignment("all_users", None, intent="available"),
        )
        == []
    )


def test_a_group_missing_from_the_directory_is_named_never_skipped() -> None:
    ghost = uuid4()
    [issue] = check("winGetApp", [assignment(group=SALES), assignment(group=ghost)], SYNCED)
    assert issue.type == "group_not_found"
    assert str(ghost) in issue.message
    assert issue.as_error()["location"] == ["body", "assignments", "1", "target", "group_id"]


def test_before_the_first_sync_a_group_cannot_be_checked_and_says_so() -> None:
    unsynced = References({}, None, {}, filters_synced=True)
    [issue] = check("winGetApp", [assignment()], unsynced)
    assert issue.type == "directory_not_synced"
    assert "first sync" in issue.message


def test_a_group_that_is_not_a_security_group_is_refused() -> None:
    assert issues_of(assignment(group=MAIL_ONLY)) == ["group_not_assignable"]


def test_a_filter_must_exist_fit_the_platform_and_filter_devices() -> None:
    def with_filter(filter_id: UUID) -> DesiredAssignment:
        return assignment(filter={"filter_id": str(filter_id), "mode": "exclude"})

    assert issues_of(with_filter(uuid4())) == ["filter_not_found"]
    assert issues_of(with_filter(IOS_FILTER)) == ["filter_platform"]
    assert issues_of(with_filter(APPS_FILTER)) == ["filter_platform"]
    unread = References(SYNCED.groups, SYNCED.directory_synced_at, {}, filters_synced=False)
    assert issues_of(with_filter(WINDOWS_FILTER), references=unread) == ["filters_not_synced"]


def test_no_target_twice_and_no_group_both_included_and_excluded() -> None:
    assert issues_of(assignment(), assignment(intent="available")) == ["duplicate_target"]
    assert issues_of(assignment("all_users", None), assignment("all_users", None)) == [
        "duplicate_target"
    ]
    assert issues_of(assignment(), assignment("exclusion_group", SALES)) == [
        "included_and_excluded"
    ]


def test_intents_the_app_type_does_not_take_are_refused() -> None:
    assert issues_of(assignment(intent="availableWithoutEnrollment")) == ["intent_not_supported"]
    assert issues_of(assignment("all_devices", None, intent="available")) == [
        "intent_not_supported"
    ]
    assert issues_of(assignment("all_devices", None, intent="uninstall")) == []


def test_settings_the_intent_or_target_does_not_take_are_refused() -> None:
    deadline = {"deadline": "2026-12-01T18:00:00Z"}
    assert issues_of(assignment(intent="available", settings=deadline)) == ["setting_not_supported"]
    assert issues_of(assignment(settings={"delivery_priority": "foreground"})) == [
        "setting_not_supported"
    ]
    assert issues_of(
        assignment(settings={"restart": {"grace_period_minutes": 5, "countdown_minutes": 10}})
    ) == ["setting_not_supported"]
    assert issues_of(
        assignment(
            "exclusion_group",
            FINANCE,
            settings={"notifications": "hideAll"},
            filter={"filter_id": str(WINDOWS_FILTER), "mode": "include"},
        )
    ) == ["filter_on_exclusion", "settings_on_exclusion"]


def test_the_guard_counts_removals_and_broad_targets_added_or_changed() -> None:
    groups = [assignment(group=uuid4()) for _ in range(21)]
    everyone = assignment("all_users", None, intent="available")
    removing_all = impact(groups, [])
    assert len(removing_all.removed) == 21
    assert removing_all.needs_confirmation(max_removals=20)
    assert not impact(groups, groups[1:]).needs_confirmation(max_removals=20)
    adding_everyone = impact(groups, [*groups, everyone])
    assert adding_everyone.broad == [everyone]
    assert "all users" in adding_everyone.explain(20)
    # keeping an all-users assignment as it was is not a new blast
    assert not impact([everyone], [everyone, groups[0]]).needs_confirmation(20)
    changed = everyone.model_copy(update={"intent": "required"})
    assert impact([everyone], [changed]).broad == [changed]
