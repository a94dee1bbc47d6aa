"""The portal's three lifecycles, and every move between their states, in one place.

A tenant link, its Intune writing activation and a deployment change each move through states
on steps: a user's request from a route, a verdict or a result from an event handler. Both
call the functions here, so a rule (which state a step leaves, what it records, which request a
verdict answers) exists once, typed, and is unit-tested without I/O.

A verdict answers one request: it moves its track only while that request (its change id) is
still the one pending. A verdict for a request since superseded, re-requested or unlinked
changes nothing, whenever it arrives.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Generic, TypeVar
from uuid import UUID

from tenantflow.contracts.common import UserActor
from tenantflow.portal_api.models import (
    ChangeStatus,
    DeploymentChange,
    IntuneWritingStatus,
    LinkStatus,
    TenantTrack,
    Track,
)

S = TypeVar("S", bound=StrEnum)


class Step(StrEnum):
    REQUEST = "request"
    VERIFY = "verify"
    REJECT = "reject"
    DEFER = "defer"
    """A transient failure: still no verdict, the request keeps waiting."""
    REVOKE = "revoke"
    UNLINK = "unlink"
    APPLY = "apply"
    FAIL = "fail"
    SUPERSEDE = "supersede"


@dataclass(frozen=True)
class Lifecycle(Generic[S]):
    """The states of one kind of thing and the steps that move it; a step not listed for a
    state is not allowed there."""

    name: str
    states: type[S]
    moves: Mapping[Step, Mapping[S, S]]

    def after(self, state: str, step: Step) -> S | None:
        """Where ``step`` leads from ``state``; None when it does not apply there."""
        return self.moves.get(step, {}).get(self.states(state))

    def is_final(self, state: str) -> bool:
        current = self.states(state)
        return not any(current in moves for moves in self.moves.values())


def _every(states: type[S], to: S, *, but: tuple[S, ...] = ()) -> dict[S, S]:
    return {state: to for state in states if state not in but}


LINK: Lifecycle[LinkStatus] = Lifecycle(
    "tenant link",
    LinkStatus,
    {
        # pending and linked are answered as they are: asking again is not a new request
        Step.REQUEST: {
            LinkStatus.REJECTED: LinkStatus.PENDING,
            LinkStatus.REVOKED: LinkStatus.PENDING,
            LinkStatus.UNLINKED: LinkStatus.PENDING,
        },
        Step.VERIFY: {LinkStatus.PENDING: LinkStatus.LINKED},
        Step.REJECT: {LinkStatus.PENDING: LinkStatus.REJECTED},
        Step.DEFER: {LinkStatus.PENDING: LinkStatus.PENDING},
        Step.REVOKE: {LinkStatus.LINKED: LinkStatus.REVOKED},
        Step.UNLINK: _every(LinkStatus, LinkStatus.UNLINKED, but=(LinkStatus.UNLINKED,)),
    },
)

INTUNE_WRITING: Lifecycle[IntuneWritingStatus] = Lifecycle(
    "Intune writing",
    IntuneWritingStatus,
    {
        Step.REQUEST: {
            IntuneWritingStatus.OFF: IntuneWritingStatus.PENDING,
            IntuneWritingStatus.REJECTED: IntuneWritingStatus.PENDING,
            IntuneWritingStatus.REVOKED: IntuneWritingStatus.PENDING,
            # enabled, asked again with other terms (the source-of-truth mode): verified anew
            IntuneWritingStatus.ENABLED: IntuneWritingStatus.PENDING,
        },
        Step.VERIFY: {IntuneWritingStatus.PENDING: IntuneWritingStatus.ENABLED},
        Step.REJECT: {IntuneWritingStatus.PENDING: IntuneWritingStatus.REJECTED},
        Step.DEFER: {IntuneWritingStatus.PENDING: IntuneWritingStatus.PENDING},
        Step.REVOKE: {IntuneWritingStatus.ENABLED: IntuneWritingStatus.REVOKED},
        Step.UNLINK: _every(IntuneWritingStatus, IntuneWritingStatus.OFF),
    },
)

CHANGE: Lifecycle[ChangeStatus] = Lifecycle(
    "deployment change",
    ChangeStatus,
    {
        Step.VERIFY: {ChangeStatus.REQUESTED: ChangeStatus.VERIFIED},
        Step.REJECT: {ChangeStatus.REQUESTED: ChangeStatus.REJECTED},
        Step.APPLY: {ChangeStatus.VERIFIED: ChangeStatus.APPLIED},
        Step.FAIL: {ChangeStatus.VERIFIED: ChangeStatus.FAILED},
        Step.SUPERSEDE: {
            ChangeStatus.REQUESTED: ChangeStatus.SUPERSEDED,
            ChangeStatus.VERIFIED: ChangeStatus.SUPERSEDED,
        },
    },
)

TRACKS: Mapping[Track, Lifecycle[LinkStatus] | Lifecycle[IntuneWritingStatus]] = {
    Track.LINK: LINK,
    Track.INTUNE_WRITING: INTUNE_WRITING,
}


@dataclass(frozen=True)
class Verdict:
    """Why a request was refused or a grant revoked, and what to do about it."""

    reason: str | None = None
    message: str | None = None
    missing_permissions: tuple[str, ...] = ()
    admin_consent_url: str | None = None


CLEAR = Verdict()


def _record(track: TenantTrack, verdict: Verdict) -> None:
    track.reason = verdict.reason
    track.message = verdict.message
    track.missing_permissions = list(verdict.missing_permissions)
    track.admin_consent_url = verdict.admin_consent_url
    track.retry_detail = None


def request(track: TenantTrack, change_id: UUID, requester: UserActor, at: datetime) -> bool:
    """A user asks (again): a new pending request, the change ``change_id``, with its
    requester and no verdict. False when the track's state takes no request (already pending
    or granted)."""
    pending = TRACKS[track.track].after(track.status, Step.REQUEST)
    if pending is None:
        return False
    track.status = pending
    track.change_id = change_id
    track.requested_by_tenant_id = requester.tenant_id
    track.requested_by_object_id = requester.object_id
    track.requested_by_name = requester.display_name
    track.requested_at = at
    _record(track, CLEAR)
    return True


def answer(track: TenantTrack, change_id: UUID, step: Step, verdict: Verdict = CLEAR) -> bool:
    """A verdict (verify or reject) for the request ``change_id``; False when that request is
    no longer the pending one."""
    if track.change_id != change_id:
        return False
    after = TRACKS[track.track].after(track.status, step)
    if after is None:
        return False
    track.status = after
    _record(track, verdict)
    return True


def defer(track: TenantTrack, change_id: UUID, detail: str) -> bool:
    """The pending request ``change_id`` met a transient failure and is retried."""
    if not answer(track, change_id, Step.DEFER):
        return False
    track.retry_detail = detail
    return True


def revoke(track: TenantTrack, verdict: Verdict) -> bool:
    """A granted track lost its consent or a permission, whichever request granted it."""
    after = TRACKS[track.track].after(track.status, Step.REVOKE)
    if after is None:
        return False
    track.status = after
    _record(track, verdict)
    return True


def unlink(track: TenantTrack) -> bool:
    after = TRACKS[track.track].after(track.status, Step.UNLINK)
    if after is None:
        return False
    track.status = after
    _record(track, CLEAR)
    return True


def new_track(account_id: UUID, tenant_id: UUID, track: Track) -> TenantTrack:
    """A track before its first request: a link starts unlinked (its first request makes it
    pending), Intune writing off."""
    initial = LinkStatus.UNLINKED if track is Track.LINK else IntuneWritingStatus.OFF
    return TenantTrack(account_id=account_id, tenant_id=tenant_id, track=track, status=initial)


# --- deployment changes ------------------------------------------------------------------------


def _step(status: ChangeStatus, at: datetime, detail: str | None = None) -> dict[str, object]:
    return {"status": status.value, "at": at.isoformat(), "detail": detail}


def requested(change: DeploymentChange) -> DeploymentChange:
    """A new change starts requested, its timeline with it."""
    change.status = ChangeStatus.REQUESTED
    change.timeline = [_step(ChangeStatus.REQUESTED, change.requested_at)]
    return change


def advance(
    change: DeploymentChange,
    step: Step,
    at: datetime,
    detail: str | None = None,
    graph_request_ids: list[str] | None = None,
) -> bool:
    """Move ``change`` on ``step`` at ``at``, recording it on its timeline; False (and nothing
    recorded) when the step does not apply to its state: a result repeated, or arriving after
    the change ended otherwise."""
    after = CHANGE.after(change.status, step)
    if after is None:
        return False
    change.status = after
    entry = _step(after, at, detail)
    if graph_request_ids:
        entry["graph_request_ids"] = list(graph_request_ids)
        change.graph_request_ids = [*change.graph_request_ids, *graph_request_ids]
    change.timeline = [*change.timeline, entry]
    return True
