"""The /assign body: always the whole set, from desired state; foreign assignments kept or
replaced; Graph's representation never mistaken for drift."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest

from tenantflow.contracts.events import (
    AssignmentFilterRef,
    AssignmentSettings,
    AssignmentTarget,
    DesiredAssignment,
    RestartSettings,
)
from tenantflow.intune_writer.reconcile import assignment_json, desired_of, plan, target_key

pytestmark = pytest.mark.unit

A, B, FOREIGN, FILTER = uuid4(), uuid4(), uuid4(), uuid4()


def group(group_id: object, intent: str = "required", **more: Any) -> DesiredAssignment:
    return DesiredAssignment(
        target=AssignmentTarget(kind="group", group_id=group_id),  # type: ignore[arg-type]
        intent=intent,  # type: ignore[arg-type]
        **more,
    )


def as_graph_returns(assignment: DesiredAssignment, **changes: Any) -> dict[str, Any]:
    """How Graph lists an assignment tenantflow wrote: an id, '#'-less nested types, GUIDs in
    upper case, the default notification spelled out."""
    wire = assignment_json(assignment)
    wire["id"] = f"{uuid4()}_1_x"
    wire["target"]["@odata.type"] = wire["target"]["@odata.type"].lstrip("#")
    if "groupId" in wire["target"]:
        wire["target"]["groupId"] = wire["target"]["groupId"].upper()
    if wire["settings"] is None:
        wire["settings"] = {
            "@odata.type": "#microsoft.graph.winGetAppAssignmentSettings",
            "notifications": "showAll",
            "restartSettings": None,
            "installTimeSettings": None,
        }
    wire.update(changes)
    return wire


def foreign(group_id: object = FOREIGN) -> dict[str, Any]:
    return {
        "id": "foreign_1",
        "intent": "available",
        "target": {
            "@odata.type": "#microsoft.graph.groupAssignmentTarget",
            "groupId": str(group_id),
        },
        "settings": None,
    }


def test_the_body_is_the_whole_desired_set_in_graphs_shape() -> None:
    settings = AssignmentSettings(
        notifications="hideAll",
        restart=RestartSettings(grace_period_minutes=60, countdown_minutes=5),
        deadline="2026-12-01T18:00:00Z",  # type: ignore[arg-type]
    )
    desired = [
        group(A, settings=settings, filter=AssignmentFilterRef(filter_id=FILTER, mode="exclude")),
        DesiredAssignment(target=AssignmentTarget(kind="all_devices"), intent="available"),  # type: ignore[arg-type]
    ]
    result = plan(desired, [], [], source_of_truth=False)
    first, second = result.body
    assert first["target"] == {
        "@odata.type": "#microsoft.graph.groupAssignmentTarget",
        "groupId": str(A),
        "deviceAndAppManagementAssignmentFilterId": str(FILTER),
        "deviceAndAppManagementAssignmentFilterType": "exclude",
    }
    assert first["settings"] == {
        "@odata.type": "#microsoft.graph.winGetAppAssignmentSettings",
        "notifications": "hideAll",
        "restartSettings": {
            "gracePeriodInMinutes": 60,
            "countdownDisplayBeforeRestartInMinutes": 5,
            "restartNotificationSnoozeDurationInMinutes": None,
        },
        "installTimeSettings": {"useLocalTime": False, "deadlineDateTime": "2026-12-01T18:00:00Z"},
    }
    assert second["target"]["@odata.type"] == "#microsoft.graph.allDevicesAssignmentTarget"
    assert not result.unchanged
    assert [desired_of(wire) for wire in result.body] == desired  # the round trip is exact


def test_what_graph_holds_already_is_unchanged_however_graph_spells_it() -> None:
    desired = [group(A), group(B, "available")]
    current = [as_graph_returns(a) for a in reversed(desired)]
    result = plan(desired, current, [str(A), str(B)], source_of_truth=False)
    assert result.unchanged
    assert result.before == desired[::-1]


def test_a_different_intent_or_a_missing_assignment_is_a_change() -> None:
    desired = [group(A), group(B)]
    assert not plan(desired, [as_graph_returns(group(A))], [str(A)], False).unchanged
    assert not plan(
        [group(A)], [as_graph_returns(group(A, "available"))], [str(A)], False
    ).unchanged


def test_removing_one_assignment_sends_the_rest_never_a_partial_set() -> None:
    current = [as_graph_returns(group(A)), as_graph_returns(group(B))]
    result = plan([group(A)], current, [str(A), str(B)], source_of_truth=False)
    assert [target_key(wire) for wire in result.body] == [str(A)]
    assert not result.unchanged


def test_foreign_assignments_are_kept_and_sent_back_as_they_were() -> None:
    current = [as_graph_returns(group(A)), foreign()]
    result = plan([group(A), group(B)], current, [str(A)], source_of_truth=False)
    assert [target_key(wire) for wire in result.body] == [str(A), str(B), str(FOREIGN)]
    assert result.body[2] == {k: v for k, v in foreign().items() if k != "id"}
    assert result.foreign_kept == [foreign()]
    assert result.foreign_removed == []
    assert [a.target.group_id for a in result.written] == [A, B, FOREIGN]


def test_as_source_of_truth_foreign_assignments_are_removed_and_reported() -> None:
    current = [as_graph_returns(group(A)), foreign()]
    result = plan([group(A)], current, [str(A)], source_of_truth=True)
    assert [target_key(wire) for wire in result.body] == [str(A)]
    assert result.foreign_removed == [foreign()]
    assert not result.unchanged


def test_a_foreign_assignment_on_a_desired_target_is_replaced_and_reported() -> None:
    result = plan([group(FOREIGN)], [foreign()], [], source_of_truth=False)
    assert result.body == [assignment_json(group(FOREIGN))]
    assert result.foreign_removed == [foreign()]


def test_a_target_tenantflow_may_have_written_before_a_crash_is_not_foreign() -> None:
    # the write of {A, B} reached Graph, the record did not; the next change wants {A}
    current = [as_graph_returns(group(A)), as_graph_returns(group(B))]
    result = plan([group(A)], current, [str(A), str(B)], source_of_truth=False)
    assert [target_key(wire) for wire in result.body] == [str(A)]
    assert result.foreign_removed == []


def test_an_unknown_target_type_is_kept_whole_though_it_cannot_be_reported() -> None:
    unknown = {
        "intent": "required",
        "target": {"@odata.type": "#microsoft.graph.someFutureTarget", "collectionId": "x"},
    }
    result = plan([group(A)], [unknown], [], source_of_truth=False)
    assert unknown in result.body
    assert result.written == [group(A)]
