"""What the audit trail says, computed from events in time order: each deployment's desired
and applied assignments at a moment (``Trail``), and the changes that never reached an end
(``unfinished``).

Pure code, unit-tested without Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

from tenantflow.contracts.audit import TYPE_PREFIX
from tenantflow.contracts.events import DesiredAssignment

if TYPE_CHECKING:
    from tenantflow.audit.replay import Entry

TERMINAL = {
    "deployment.change.applied": "applied",
    "deployment.change.failed": "failed",
    "deployment.change.rejected": "rejected",
    "deployment.change.superseded": "superseded",
}
"""A requested change ends in exactly one of these."""


Json = dict[str, Any]
EMPTY = msgspec.Raw(b"[]")

REQUESTED = TYPE_PREFIX + "deployment.change.requested"
VERIFIED = TYPE_PREFIX + "deployment.change.verified"
APPLIED = TYPE_PREFIX + "deployment.change.applied"
UNLINKED = TYPE_PREFIX + "tenant.unlinked"
STATE_EVENTS = frozenset({REQUESTED, VERIFIED, APPLIED, UNLINKED})
"""The events a deployment's state follows; the others need not even be parsed."""


class _Requested(msgspec.Struct):
    """What the state reads of a DeploymentChangeRequested (other fields are skipped)."""

    correlation_id: str
    desired_assignments: msgspec.Raw = EMPTY
    remove_app: bool = False


class _Verified(msgspec.Struct):
    correlation_id: str
    app: str
    revision: int


class _Applied(msgspec.Struct):
    correlation_id: str
    app: str
    revision: int
    written_assignments: msgspec.Raw
    applied_at: str
    intune_app_id: str | None = None
    kept_foreign_assignments: msgspec.Raw = EMPTY
    graph_request_ids: list[str] = msgspec.field(default_factory=list)


_DECODERS: dict[str, msgspec.json.Decoder[_Requested | _Verified | _Applied]] = {
    REQUESTED: msgspec.json.Decoder(_Requested),
    VERIFIED: msgspec.json.Decoder(_Verified),
    APPLIED: msgspec.json.Decoder(_Applied),
}


@dataclass
class DeploymentState:
    """One app of a tenant at a moment: what was verified as desired, and what tenantflow had
    written to Intune (the assignments it manages; others' it kept are listed apart).
    Assignment sets are kept as the events carried them (raw JSON): ``documents`` and
    ``assignments`` read them."""

    app: str
    desired: msgspec.Raw | None = None
    """The newest verified desired set (None: nothing verified yet); [] removes the app."""
    desired_revision: int | None = None
    desired_change: str | None = None
    applied: msgspec.Raw | None = None
    """tenantflow's assignments as last applied (None: nothing applied yet)."""
    applied_revision: int | None = None
    applied_change: str | None = None
    applied_at: str | None = None
    app_removed: bool = False
    kept_foreign: msgspec.Raw = field(default_factory=lambda: EMPTY)
    graph_request_ids: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return self.desired_revision is not None and self.desired_revision == self.applied_revision


def documents(raw: msgspec.Raw | None) -> list[Json] | None:
    """An assignment set as JSON objects (None stays None)."""
    return None if raw is None else list(msgspec.json.decode(raw))


def assignments(raw: msgspec.Raw) -> list[DesiredAssignment]:
    """An assignment set as models: validated only when shown."""
    return [DesiredAssignment.model_validate(document) for document in documents(raw) or []]


@dataclass
class TenantState:
    tenant_id: str
    at: datetime | None
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    unlinked_at: datetime | None = None
    waiting: dict[str, msgspec.Raw] = field(default_factory=dict, repr=False)
    """Requested changes not verified yet: the desired set each asks for."""


@dataclass
class Trail:
    """Every tenant's deployments as the log says they were at ``at`` (None: at its end), fed
    the log's events in time order. Lean by design, as a replay of millions of events needs:
    of each payload it decodes only the fields the state reads (msgspec), and keeps assignment
    sets as raw JSON until they are shown. An unlink drops what tenantflow knew of the
    tenant."""

    at: datetime | None = None
    tenants: dict[str, TenantState] = field(default_factory=dict)
    fed: int = 0
    malformed: int = 0
    """Events whose payload lacked what their type promises: left out, counted."""

    def feed(self, event_type: str, tenant_id: str, time: datetime, payload: bytes) -> None:
        """One event of ``STATE_EVENTS`` (others are ignored), its payload as published;
        events after ``at`` change nothing."""
        if event_type not in STATE_EVENTS or (self.at is not None and time > self.at):
            return
        self.fed += 1
        state = self.tenants.get(tenant_id)
        if state is None:
            state = self.tenants[tenant_id] = TenantState(tenant_id, self.at)
        if event_type == UNLINKED:
            state.deployments.clear()
            state.waiting.clear()
            state.unlinked_at = time
            return
        try:
            data = _DECODERS[event_type].decode(payload)
        except msgspec.DecodeError:
            self.malformed += 1
            return
        if isinstance(data, _Requested):
            state.waiting[data.correlation_id] = (
                EMPTY if data.remove_app else data.desired_assignments
            )
            state.unlinked_at = None
            return
        deployment = state.deployments.get(data.app)
        if deployment is None:
            deployment = state.deployments[data.app] = DeploymentState(data.app)
        if isinstance(data, _Verified):
            asked = state.waiting.pop(data.correlation_id, None)
            if asked is not None:
                deployment.desired = asked
                deployment.desired_revision = data.revision
                deployment.desired_change = data.correlation_id
            return
        deployment.applied = data.written_assignments
        deployment.applied_revision = data.revision
        deployment.applied_change = data.correlation_id
        deployment.applied_at = data.applied_at
        deployment.app_removed = data.intune_app_id is None
        deployment.kept_foreign = data.kept_foreign_assignments
        deployment.graph_request_ids = data.graph_request_ids

    def state(self, tenant_id: UUID) -> TenantState:
        return self.tenants.get(str(tenant_id)) or TenantState(str(tenant_id), self.at)


@dataclass(frozen=True)
class Unfinished:
    """A requested change with no end in the log."""

    tenant_id: UUID | None
    change_id: UUID
    app: str | None
    revision: int | None
    requested_at: datetime
    status: str
    """How far it got: requested or verified."""


def unfinished(entries: Iterable[Entry]) -> list[Unfinished]:
    """Every requested change that reached none of applied, failed, rejected or superseded,
    in the order they were requested."""
    requested: dict[UUID, Entry] = {}
    status: dict[UUID, str] = {}
    for entry in entries:
        if entry.change_id is None:
            continue
        if entry.event_type == "deployment.change.requested":
            requested.setdefault(entry.change_id, entry)
            status.setdefault(entry.change_id, "requested")
        elif entry.event_type == "deployment.change.verified":
            if status.get(entry.change_id) not in TERMINAL.values():
                status[entry.change_id] = "verified"
        elif entry.event_type in TERMINAL:
            status[entry.change_id] = TERMINAL[entry.event_type]
    return [
        Unfinished(
            tenant_id=entry.tenant_id,
            change_id=change_id,
            app=entry.app,
            revision=entry.revision,
            requested_at=entry.time,
            status=status[change_id],
        )
        for change_id, entry in requested.items()
        if status[change_id] not in TERMINAL.values()
    ]
