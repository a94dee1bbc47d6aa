"""Which payload class each (ce_type, schema version) pair decodes to."""

from __future__ import annotations

from tenantflow.contracts import events, events_v1
from tenantflow.contracts.common import EventPayload

EVENT_CLASSES: tuple[type[EventPayload], ...] = (
    events.TenantLinkRequested,
    events.TenantLinkVerified,
    events.TenantLinkRejected,
    events.IntuneWritingActivationRequested,
    events.IntuneWritingEnabled,
    events.IntuneWritingRejected,
    events.ConsentRevoked,
    events.TenantUnlinked,
    events.TenantVerificationDeferred,
    events.GraphAccessDenied,
    events.DirectorySyncRequested,
    events.DirectorySynced,
    events.DirectorySyncFailed,
    events.DirectoryPurged,
    events.GroupUpserted,
    events.GroupRemoved,
    events.AssignmentFiltersSynced,
    events.DeploymentChangeRequested,
    events.DeploymentChangeVerified,
    events.DeploymentChangeRejected,
    events.DeploymentChangeApplied,
    events.DeploymentChangeFailed,
    events.DeploymentChangeSuperseded,
    events_v1.DeploymentChangeRequestedV1,
    events_v1.DeploymentChangeVerifiedV1,
    events_v1.DeploymentChangeRejectedV1,
    events_v1.DeploymentChangeAppliedV1,
    events_v1.DeploymentChangeFailedV1,
    events.DeadLettered,
)

REGISTRY: dict[tuple[str, int], type[EventPayload]] = {
    (cls.event_type, cls.schema_version): cls for cls in EVENT_CLASSES
}
if len(REGISTRY) != len(EVENT_CLASSES):
    raise RuntimeError("two event classes claim the same (event_type, schema_version)")


def schema_file_name(cls: type[EventPayload]) -> str:
    return f"{cls.event_type}/v{cls.schema_version}.json"
