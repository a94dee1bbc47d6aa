"""What the audit trail says, computed from entries in time order: each deployment's desired
and applied assignments at a moment, and the changes that never reached an end.

Pure code over ``replay.Entry`` values: unit-tested without Kafka.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from uuid import UUID

from tenantflow.audit.replay import Entry
from tenantflow.contracts.events import (
    DeploymentChangeApplied,
    DeploymentChangeRequested,
    DeploymentChangeVerified,
    DesiredAssignment,
    TenantUnlinked,
)

TERMINAL = {
    "deployment.change.applied": "applied",
    "deployment.change.failed": "failed",
    "deployment.change.rejected": "rejected",
    "deployment.change.superseded": "superseded",
}
"""A requested change ends in exactly one of these."""


@dataclass
class DeploymentState:
    """One app of a tenant at a moment: what was verified as desired, and what tenantflow had
    written to Intune (the assignments it manages; others' it kept are listed apart)."""

    app: str
    desired: list[DesiredAssignment] | None = None
    """The newest verified desired set (None: nothing verified yet); [] removes the app."""
    desired_revision: int | None = None
    desired_change: UUID | None = None
    applied: list[DesiredAssignment] | None = None
    """tenantflow's assignments as last applied (None: nothing applied yet)."""
    applied_revision: int | None = None
    applied_change: UUID | None = None
    applied_at: datetime | None = None
    app_removed: bool = False
    kept_foreign: list[DesiredAssignment] = field(default_factory=list)
    graph_request_ids: list[str] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return self.desired_revision is not None and self.desired_revision == self.applied_revision


@dataclass
class TenantState:
    tenant_id: UUID
    at: datetime
    deployments: dict[str, DeploymentState] = field(default_factory=dict)
    unlinked_at: datetime | None = None


def state_at(entries: Iterable[Entry], tenant_id: UUID, at: datetime) -> TenantState:
    """Every deployment of ``tenant_id`` as the log says it was at ``at`` (entries in time
    order; later ones are ignored). An unlink drops what tenantflow knew of the tenant."""
    state = TenantState(tenant_id, at)
    requested: dict[UUID, DeploymentChangeRequested] = {}
    for entry in entries:
        if entry.time > at:
            break
        data = entry.data
        if entry.tenant_id != tenant_id or data is None:
            continue
        if isinstance(data, TenantUnlinked):
            state.deployments.clear()
            state.unlinked_at = entry.time
            continue
        if isinstance(data, DeploymentChangeRequested):
            requested[data.correlation_id] = data
            state.unlinked_at = None
            continue
        if not isinstance(data, DeploymentChangeVerified | DeploymentChangeApplied):
            continue
        deployment = state.deployments.setdefault(data.app, DeploymentState(data.app))
        if isinstance(data, DeploymentChangeVerified):
            asked = requested.get(data.correlation_id)
            if asked is not None:
                deployment.desired = [] if asked.remove_app else list(asked.desired_assignments)
                deployment.desired_revision = data.revision
                deployment.desired_change = data.correlation_id
        else:
            deployment.applied = list(data.written_assignments)
            deployment.applied_revision = data.revision
            deployment.applied_change = data.correlation_id
            deployment.applied_at = data.applied_at
            deployment.app_removed = data.intune_app_id is None
            deployment.kept_foreign = list(data.kept_foreign_assignments)
            deployment.graph_request_ids = list(data.graph_request_ids)
    return state


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
