"""What the trail says, from entries built as the replay builds them (no Kafka): state at a
moment, with coalesced and removed apps; the changes that never ended; undecodable records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from uuid import UUID, uuid4

import msgspec
import pytest

from tenantflow.audit.replay import Entry, Filters, entry_of
from tenantflow.audit.trail import EMPTY, TenantState, Trail, assignments, documents, unfinished
from tenantflow.contracts.common import EventPayload, ServiceActor, UserActor
from tenantflow.contracts.envelope import Envelope
from tenantflow.contracts.events import (
    CatalogApp,
    DeploymentChangeApplied,
    DeploymentChangeRequested,
    DeploymentChangeSuperseded,
    DeploymentChangeVerified,
    DesiredAssignment,
    TenantUnlinked,
)

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 17, 14, 0, tzinfo=UTC)
TENANT = uuid4()
USER = UserActor(tenant_id=TENANT, object_id=uuid4(), display_name="Alice")
CONSENT, WRITER = ServiceActor(service="consent"), ServiceActor(service="intune-writer")


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    timestamp: int
    headers: list[tuple[str, bytes]]
    value: bytes


class Log:
    """Entries at one-minute steps from T0, as the replay reads them."""

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.envelopes: list[Envelope[EventPayload]] = []

    def add(self, *events: EventPayload) -> datetime:
        for event in events:
            at = T0 + timedelta(minutes=len(self.entries))
            envelope = Envelope(data=event, source="/test", time=at)
            record = Record(
                envelope.topic, 0, len(self.entries), 0, list(envelope.headers()), envelope.value()
            )
            self.entries.append(entry_of(cast(Any, record), ""))
            self.envelopes.append(envelope)
        return self.entries[-1].time

    def state_at(self, tenant: UUID, at: datetime) -> TenantState:
        """The state the trail keeps, fed every event as the replay feeds them."""
        trail = Trail(at)
        for envelope in self.envelopes:
            trail.feed(envelope.type, envelope.subject, envelope.time, envelope.value())
        return trail.state(tenant)


def groups_of(raw: msgspec.Raw | None) -> list[UUID]:
    return [a.target.group_id for a in assignments(raw or EMPTY) if a.target.group_id]


def group(group_id: UUID) -> DesiredAssignment:
    return DesiredAssignment.model_validate(
        {"target": {"kind": "group", "group_id": str(group_id)}, "intent": "required"}
    )


def requested(
    change: UUID, revision: int, desired: list[DesiredAssignment], remove: bool = False
) -> DeploymentChangeRequested:
    return DeploymentChangeRequested(
        tenant_id=TENANT,
        actor=USER,
        correlation_id=change,
        app="7zip",
        revision=revision,
        catalog_app=CatalogApp.model_validate(
            {
                "catalog_id": "7zip",
                "display_name": "7-Zip",
                "publisher": "Igor Pavlov",
                "package_identifier": "7zip.7zip",
                "run_as_account": "system",
            }
        ),
        replaces_revision=revision - 1,
        operation="remove" if remove else "replace",
        desired_assignments=desired,
        remove_app=remove,
    )


def verified(change: UUID, revision: int) -> DeploymentChangeVerified:
    return DeploymentChangeVerified(
        tenant_id=TENANT, actor=CONSENT, correlation_id=change, app="7zip", revision=revision
    )


def applied(
    change: UUID, revision: int, written: list[DesiredAssignment], removed: bool = False
) -> DeploymentChangeApplied:
    return DeploymentChangeApplied(
        tenant_id=TENANT,
        actor=WRITER,
        correlation_id=change,
        app="7zip",
        revision=revision,
        intune_app_id=None if removed else uuid4(),
        assignments_before=[],
        written_assignments=written,
        unchanged=False,
        graph_request_ids=["req-1"],
        applied_at=T0,
    )


def test_state_follows_verified_and_applied_changes_coalesced_and_removed() -> None:
    log, a, b, c = Log(), uuid4(), uuid4(), uuid4()
    g1, g2 = uuid4(), uuid4()
    first = log.add(requested(a, 1, [group(g1)]), verified(a, 1), applied(a, 1, [group(g1)]))
    waiting = log.add(requested(b, 2, [group(g2)]), verified(b, 2))
    coalesced = log.add(
        requested(c, 3, [], remove=True),
        verified(c, 3),
        DeploymentChangeSuperseded(
            tenant_id=TENANT,
            actor=WRITER,
            correlation_id=b,
            app="7zip",
            revision=2,
            superseded_by_revision=3,
            superseded_by_change=c,
        ),
        applied(c, 3, [], removed=True),
    )

    at_first = log.state_at(TENANT, first).deployments["7zip"]
    assert (at_first.desired_revision, at_first.applied_revision, at_first.in_sync) == (1, 1, True)
    assert groups_of(at_first.applied) == [g1]

    at_waiting = log.state_at(TENANT, waiting).deployments["7zip"]
    assert at_waiting.desired_revision == 2
    assert groups_of(at_waiting.desired) == [g2]
    assert at_waiting.applied_revision == 1  # Intune still held the first
    assert not at_waiting.in_sync

    at_end = log.state_at(TENANT, coalesced).deployments["7zip"]
    assert (documents(at_end.desired), documents(at_end.applied)) == ([], [])
    assert at_end.app_removed
    assert at_end.in_sync
    assert log.state_at(TENANT, T0 - timedelta(seconds=1)).deployments == {}
    assert log.state_at(uuid4(), coalesced).deployments == {}  # another tenant


def test_an_unlink_drops_what_was_known_of_the_tenant() -> None:
    log, a = Log(), uuid4()
    log.add(requested(a, 1, [group(uuid4())]), verified(a, 1), applied(a, 1, []))
    gone = log.add(TenantUnlinked(tenant_id=TENANT, actor=USER, correlation_id=uuid4()))
    state = log.state_at(TENANT, gone)
    assert (state.deployments, state.unlinked_at) == ({}, gone)


def test_changes_without_an_end_are_listed_with_how_far_they_got() -> None:
    log, done, stuck, lost = Log(), uuid4(), uuid4(), uuid4()
    log.add(requested(done, 1, []), verified(done, 1), applied(done, 1, []))
    log.add(requested(stuck, 2, []), verified(stuck, 2))
    log.add(requested(lost, 3, []))
    left = unfinished(log.entries)
    assert [(u.change_id, u.status) for u in left] == [(stuck, "verified"), (lost, "requested")]


def test_an_undecodable_record_is_an_entry_that_says_why_and_filters_keep_by_actor() -> None:
    broken = Record("tenantflow.deployments", 2, 7, 1_763_388_000_000, [], b"{}")
    entry = entry_of(cast(Any, broken), "")
    assert (entry.event_type, entry.partition, entry.offset) == ("undecodable", 2, 7)
    assert "cannot be decoded" in entry.summary

    log = Log()
    log.add(requested(uuid4(), 1, []))
    [mine] = log.entries
    assert Filters(actor="alice").keep(mine)
    assert Filters(actor=str(USER.object_id)).keep(mine)
    assert not Filters(actor="bob").keep(mine)
    assert not Filters(app="vlc").keep(mine)


def test_a_malformed_payload_is_counted_and_left_out() -> None:
    trail = Trail()
    trail.feed("dev.tenantflow.deployment.change.applied", str(TENANT), T0, b'{"app": "7zip"}')
    trail.feed("dev.tenantflow.tenant.link.requested", str(TENANT), T0, b"{}")  # not followed
    assert (trail.fed, trail.malformed) == (1, 1)
