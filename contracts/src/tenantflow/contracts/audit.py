"""Audit events as people read them: which events are audit-relevant, and one line on what
each says. Shared by the portal's audit read model and the tenantflow-audit tool, so both
describe an event the same way."""

from __future__ import annotations

from typing import Any

from tenantflow.contracts.common import EventPayload, UserActor
from tenantflow.contracts.envelope import Envelope
from tenantflow.contracts.events import (
    ConsentRevoked,
    DeadLettered,
    DeploymentChangeApplied,
    DeploymentChangeFailed,
    DeploymentChangeRejected,
    DeploymentChangeRequested,
    DeploymentChangeSuperseded,
    DeploymentChangeVerified,
    DesiredAssignment,
    IntuneWritingEnabled,
    IntuneWritingRejected,
    TenantLinkRejected,
    TenantLinkVerified,
)
from tenantflow.contracts.topics import TOPIC_CONFIGS

TYPE_PREFIX = "dev.tenantflow."
AUDIT_TOPICS = tuple(topic for topic, config in TOPIC_CONFIGS.items() if config.audit)
"""Kept forever and hash-chained: tenants, deployments, dead letters."""


def short_type(event_type: str) -> str:
    """``deployment.change.applied`` for ``dev.tenantflow.deployment.change.applied``."""
    return event_type.removeprefix(TYPE_PREFIX)


def targets(assignments: list[DesiredAssignment]) -> str:
    """``required: group 1b2…, available: all_users`` — short enough for a table cell."""
    if not assignments:
        return "none"
    return ", ".join(
        f"{a.intent.value}: {a.target.kind}"
        + (f" {str(a.target.group_id)[:8]}" if a.target.group_id else "")
        for a in assignments
    )


def describe(data: EventPayload) -> str:
    """What happened, in one line."""
    match data:
        case DeploymentChangeRequested():
            what = "remove the app" if data.remove_app else targets(data.desired_assignments)
            return f"{data.operation} requested: {what}"
        case DeploymentChangeVerified():
            return "verified"
        case DeploymentChangeRejected():
            return f"rejected: {data.reason.value}: {data.detail}"
        case DeploymentChangeApplied():
            if data.unchanged:
                written = "nothing written (Intune held it)"
            else:
                written = f"wrote {targets(data.written_assignments)}"
            ids = ", ".join(data.graph_request_ids) or "none"
            return f"applied: {written}; Graph request ids {ids}"
        case DeploymentChangeFailed():
            return f"failed: {data.reason}: {data.detail}"
        case DeploymentChangeSuperseded():
            return f"superseded by revision {data.superseded_by_revision}"
        case TenantLinkVerified():
            return f"link verified ({data.authorized_by.value}): {data.display_name}"
        case TenantLinkRejected() | IntuneWritingRejected():
            return f"rejected: {data.reason.value}: {data.detail}"
        case IntuneWritingEnabled():
            mode = "source of truth" if data.assignments_source_of_truth else "keeps others'"
            return f"Intune writing enabled ({mode})"
        case DeadLettered():
            return (
                f"dead-lettered by {data.consumer} ({data.error_type}): "
                f"{data.original_topic}/{data.original_partition}@{data.original_offset}"
            )
        case ConsentRevoked():
            return f"consent revoked for {data.app.value}: {data.reason.value}"
    return type(data).__name__


def audit_fields(envelope: Envelope[EventPayload]) -> dict[str, Any]:
    """An event as an audit trail records it: when, what, who (``user <object id>`` with the
    display name then, or ``service <name>``), which change, what caused it, the deployment
    it is about, and what happened in one line."""
    data, actor = envelope.data, envelope.data.actor
    if isinstance(actor, UserActor):
        who, object_id, name = f"user {actor.object_id}", actor.object_id, actor.display_name
    else:
        who, object_id, name = f"service {actor.service}", None, None
    return {
        "event_id": envelope.id,
        "time": envelope.time,
        "event_type": short_type(envelope.type),
        "tenant_id": data.tenant_id,
        "actor": who,
        "actor_object_id": object_id,
        "actor_name": name,
        "change_id": data.correlation_id,
        "causation_id": data.causation_id,
        "app": getattr(data, "app", None),
        "revision": getattr(data, "revision", None),
        "summary": describe(data),
    }
