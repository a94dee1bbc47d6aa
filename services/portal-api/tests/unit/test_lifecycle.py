"""The lifecycles' moves, as plain code: which step leaves which state, and what it records."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from tenantflow.contracts.common import UserActor
from tenantflow.portal_api import lifecycle
from tenantflow.portal_api.lifecycle import CHANGE, INTUNE_WRITING, LINK, Step, Verdict
from tenantflow.portal_api.models import (
    ChangeStatus,
    IntuneWritingStatus,
    LinkStatus,
    TenantTrack,
    Track,
)

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
ADA = UserActor(tenant_id=uuid4(), object_id=uuid4(), display_name="Ada")
REFUSED = Verdict("permission_missing", "lacks it", ("Directory.Read.All",), "https://consent")


def requested(track: Track = Track.LINK) -> TenantTrack:
    fresh = lifecycle.new_track(uuid4(), uuid4(), track)
    assert lifecycle.request(fresh, uuid4(), ADA, NOW)
    return fresh


def test_a_first_request_is_pending_with_a_change_id_and_its_requester() -> None:
    track = requested()
    assert track.status == LinkStatus.PENDING
    assert track.change_id is not None
    assert (track.requested_by_object_id, track.requested_by_name) == (ADA.object_id, "Ada")
    assert track.requested_at == NOW


def test_asking_again_while_pending_or_granted_is_not_a_new_request() -> None:
    track = requested()
    first = track.change_id
    assert not lifecycle.request(track, uuid4(), ADA, NOW)
    assert lifecycle.answer(track, first, Step.VERIFY)
    assert not lifecycle.request(track, uuid4(), ADA, NOW)
    assert (track.status, track.change_id) == (LinkStatus.LINKED, first)


def test_a_verdict_answers_only_the_request_still_pending() -> None:
    track = requested()
    stale = uuid4()
    assert not lifecycle.answer(track, stale, Step.VERIFY)
    assert track.status == LinkStatus.PENDING
    assert lifecycle.answer(track, track.change_id, Step.REJECT, REFUSED)
    assert track.status == LinkStatus.REJECTED
    assert track.missing_permissions == ["Directory.Read.All"]
    # a copy of the verdict, or a late verify, changes nothing now
    assert not lifecycle.answer(track, track.change_id, Step.VERIFY)


def test_a_new_request_clears_the_last_verdict() -> None:
    track = requested()
    lifecycle.answer(track, track.change_id, Step.REJECT, REFUSED)
    rejected_change = track.change_id
    assert lifecycle.request(track, uuid4(), ADA, NOW)
    assert track.change_id != rejected_change
    assert (track.status, track.reason, track.missing_permissions) == (
        LinkStatus.PENDING,
        None,
        [],
    )
    assert not lifecycle.answer(track, rejected_change, Step.VERIFY)


def test_a_transient_failure_keeps_the_request_waiting_and_says_why() -> None:
    track = requested(Track.INTUNE_WRITING)
    assert lifecycle.defer(track, track.change_id, "Graph answered 503")
    assert (track.status, track.retry_detail) == (IntuneWritingStatus.PENDING, "Graph answered 503")
    assert lifecycle.answer(track, track.change_id, Step.VERIFY)
    assert (track.status, track.retry_detail) == (IntuneWritingStatus.ENABLED, None)


def test_only_a_granted_track_is_revoked() -> None:
    pending = requested()
    assert not lifecycle.revoke(pending, REFUSED)
    granted = requested(Track.INTUNE_WRITING)
    lifecycle.answer(granted, granted.change_id, Step.VERIFY)
    assert lifecycle.revoke(granted, REFUSED)
    assert (granted.status, granted.reason) == (IntuneWritingStatus.REVOKED, "permission_missing")


def test_unlinking_ends_both_tracks_whatever_their_state() -> None:
    for status in LinkStatus:
        track = lifecycle.new_track(uuid4(), uuid4(), Track.LINK)
        track.status = status
        assert lifecycle.unlink(track) is (status != LinkStatus.UNLINKED)
        assert track.status == LinkStatus.UNLINKED
    for status in IntuneWritingStatus:
        track = lifecycle.new_track(uuid4(), uuid4(), Track.INTUNE_WRITING)
        track.status = status
        lifecycle.unlink(track)
        assert track.status == IntuneWritingStatus.OFF


def test_a_change_moves_forward_only_and_ends_in_a_final_state() -> None:
    assert CHANGE.after(ChangeStatus.REQUESTED, Step.VERIFY) == ChangeStatus.VERIFIED
    assert CHANGE.after(ChangeStatus.REQUESTED, Step.APPLY) is None  # never applied unverified
    assert CHANGE.after(ChangeStatus.VERIFIED, Step.APPLY) == ChangeStatus.APPLIED
    assert CHANGE.after(ChangeStatus.VERIFIED, Step.SUPERSEDE) == ChangeStatus.SUPERSEDED
    assert CHANGE.after(ChangeStatus.APPLIED, Step.SUPERSEDE) is None
    finals = {status for status in ChangeStatus if CHANGE.is_final(status)}
    assert finals == {
        ChangeStatus.REJECTED,
        ChangeStatus.APPLIED,
        ChangeStatus.FAILED,
        ChangeStatus.SUPERSEDED,
    }


def test_every_state_of_every_lifecycle_is_reached_by_some_step() -> None:
    for cycle, start in ((LINK, LinkStatus.UNLINKED), (INTUNE_WRITING, IntuneWritingStatus.OFF)):
        reached = {start} | {to for moves in cycle.moves.values() for to in moves.values()}
        assert reached == set(cycle.states), cycle.name
