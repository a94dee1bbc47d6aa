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

REQUESTED = TYPE_PREFIX + "deployment.change.requested"
VERIFIED = TYPE_PREFIX + "deployment.change.verified"
APPLIED = TYPE_PREFIX + "deployment.change.applied"
UNLINKED = TYPE_PREFIX + "tenant.unlinked"
STATE_EVENTS = frozenset({REQUESTED, VERIFIED, APPLIED, UNLINKED})
"""The events a deployment's state follows; the others need not even be parsed."""


@dataclass
class DeploymentState:
    """One app of a tenant at a moment: what was verified as desired, and what tenantflow had
    written to Intune (the assignments it manages; others' it kept are listed apart).
    Assignments are as the events carry them (JSON objects): ``assignments`` reads them."""

    app: str
    desired: list[Json] | None = None
    """The newest verified desired set (None: nothing verified yet); [] removes the app."""
    desired_revision: int | None = None
    desired_change: str | None = None
    applied: list[Json] | None = None
    """tenantflow's assignments as last applied (None: nothing applied yet)."""
    applied_revision: int | None = None
    applied_change: str | None = None
    applied_at: str | None = None
    app_removed: bool = False
    kept_foreign: list[Json] = field(default_factory=list)
    graph_request_ids: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return self.desired_revision is not None and self.desired_revision == self.applied_revision


def assignments(documents: list[Json]) -> list[DesiredAssignment]:
    """Assignments of a state, as models (validated only when shown)."""
    return [DesiredAssignment.model_validate(document) for document in documents]


@dataclass
class TenantState:
    tenant_id: str
    at: datetime | None
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    unlinked_at: datetime | None = None
    waiting: dict[str, tuple[list[Json], bool]] = field(default_factory=dict, repr=False)
    """Requested changes not verified yet: their desired set and whether they remove the app."""


@dataclass
class Trail:
    """Every tenant's deployments as the log says they were at ``at`` (None: at its end), fed
    the log's events in time order. Lean by design, as a replay of millions of events needs:
    it takes each payload as parsed JSON and keeps assignments as such, so no event is turned
    into models. An unlink drops what tenantflow knew of the tenant."""

    at: datetime | None = None
    tenants: dict[str, TenantState] = field(default_factory=dict)
    fed: int = 0
    malformed: int = 0
    """Events whose payload lacked what their type promises: left out, counted."""

    def feed(self, event_type: str, tenant_id: str, time: datetime, data: Json) -> None:
        """One event of ``STATE_EVENTS`` (others are ignored); events after ``at`` change
        nothing."""
        if event_type not in STATE_EVENTS or (self.at is not None and time > self.at):
            return
        self.fed += 1
        state = self.tenants.get(tenant_id)
        if state is None:
            state = self.tenants[tenant_id] = TenantState(tenant_id, self.at)
        try:
            self._apply(state, event_type, time, data)
        except (KeyError, TypeError, ValueError):
            self.malformed += 1

    @staticmethod
    def _apply(state: TenantState, event_type: str, time: datetime, data: Json) -> None:
        if event_type == REQUESTED:
            state.waiting[data["correlation_id"]] = (
                [] if data.get("remove_app") else list(data["desired_assignments"]),
                bool(data.get("remove_app")),
            )
            state.unlinked_at = None
            return
        if event_type == UNLINKED:
            state.deployments.clear()
            state.waiting.clear()
            state.unlinked_at = time
            return
        app = data["app"]
        deployment = state.deployments.get(app)
        if deployment is None:
            deployment = state.deployments[app] = DeploymentState(app)
        if event_type == VERIFIED:
            asked = state.waiting.pop(data["correlation_id"], None)
            if asked is not None:
                deployment.desired = asked[0]
                deployment.desired_revision = int(data["revision"])
                deployment.desired_change = data["correlation_id"]
            return
        deployment.applied = list(data["written_assignments"])
        deployment.applied_revision = int(data["revision"])
        deployment.applied_change = data["correlation_id"]
        deployment.applied_at = data["applied_at"]
        deployment.app_removed = data.get("intune_app_id") is None
        deployment.kept_foreign = list(data.get("kept_foreign_assignments") or [])
        deployment.graph_request_ids = list(data.get("graph_request_ids") or [])

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
