"""Version 1 of the deployment change events (classes named …V1): superseded by version 2,
never produced.

Version 1 was drafted before any service produced or consumed deployment changes. It named the
app by an Intune mobileApp id, which a change cannot know before tenantflow creates the app from
the catalog, and lacked the intent availableWithoutEnrollment, assignment settings and the
revision a change replaces. Its schemas are published, so its classes stay: an event of that
version still decodes. Nothing emits it; consumers accept version 2 only.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field, model_validator

from tenantflow.contracts.common import Contract, EventPayload
from tenantflow.contracts.topics import Topic


class AssignmentIntentV1(StrEnum):
    REQUIRED = "required"
    AVAILABLE = "available"
    UNINSTALL = "uninstall"


class AssignmentTargetV1(Contract):
    kind: Literal["group", "exclusion_group", "all_users", "all_devices"] = Field(
        description="A group (included or excluded), or one of Intune's virtual groups.",
        examples=["group"],
    )
    group_id: UUID | None = Field(
        default=None,
        description="The group's object id; required for group and exclusion_group.",
        examples=["9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"],
    )

    @model_validator(mode="after")
    def _group_id_matches_kind(self) -> AssignmentTargetV1:
        needs_group = self.kind in ("group", "exclusion_group")
        if needs_group != (self.group_id is not None):
            raise ValueError("group_id is required for group targets and forbidden otherwise")
        return self


class AssignmentFilterRefV1(Contract):
    filter_id: UUID = Field(
        description="The Intune assignment filter's id.",
        examples=["1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"],
    )
    mode: Literal["include", "exclude"] = Field(
        description="Include or exclude the devices the filter matches.", examples=["include"]
    )


class DesiredAssignmentV1(Contract):
    target: AssignmentTargetV1 = Field(description="Who gets the app.")
    intent: AssignmentIntentV1 = Field(description="What Intune does.", examples=["required"])
    filter: AssignmentFilterRefV1 | None = Field(
        default=None, description="An optional assignment filter."
    )


class _DeploymentRevisionV1(Contract):
    app_id: UUID = Field(
        description="The Intune mobileApp id (deviceAppManagement/mobileApps/{id}).",
        examples=["4b8e2f6a-1c3d-4e5f-9a0b-1c2d3e4f5a6b"],
    )
    revision: int = Field(
        ge=1,
        description="The app's desired-state revision in this tenant; increases by one per change.",
        examples=[3],
    )


class DeploymentChangeRequestedV1(_DeploymentRevisionV1, EventPayload):
    """A user changed an app's desired assignments; this is the complete desired set."""

    event_type: ClassVar[str] = "dev.tenantflow.deployment.change.requested"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DEPLOYMENTS

    desired_assignments: list[DesiredAssignmentV1] = Field(
        description="The whole desired assignment set after this change (never a partial one).",
    )


class DeploymentChangeVerifiedV1(_DeploymentRevisionV1, EventPayload):
    """The change's tenant is linked with Intune writing enabled, and its references resolve."""

    event_type: ClassVar[str] = "dev.tenantflow.deployment.change.verified"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DEPLOYMENTS


class DeploymentRejectionReasonV1(StrEnum):
    TENANT_NOT_LINKED = "tenant_not_linked"
    INTUNE_WRITING_NOT_ENABLED = "intune_writing_not_enabled"
    CONSENT_REVOKED = "consent_revoked"
    APP_NOT_FOUND = "app_not_found"
    GROUP_NOT_FOUND = "group_not_found"
    FILTER_NOT_FOUND = "filter_not_found"


class DeploymentChangeRejectedV1(_DeploymentRevisionV1, EventPayload):
    """The change will not be written; nothing in Graph was touched."""

    event_type: ClassVar[str] = "dev.tenantflow.deployment.change.rejected"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DEPLOYMENTS

    reason: DeploymentRejectionReasonV1 = Field(
        description="Why the change was refused.", examples=["group_not_found"]
    )
    detail: str = Field(
        description="A human-readable explanation.",
        examples=["Group 9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d does not exist in the tenant."],
    )
    unresolved_references: list[str] = Field(
        default_factory=list,
        description="Object ids that could not be resolved (groups, filters, the app).",
        examples=[["9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"]],
    )


class DeploymentChangeAppliedV1(_DeploymentRevisionV1, EventPayload):
    """Microsoft Graph now holds exactly the desired assignment set."""

    event_type: ClassVar[str] = "dev.tenantflow.deployment.change.applied"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DEPLOYMENTS

    written_assignments: list[DesiredAssignmentV1] = Field(
        description="The assignment set written with POST mobileApps/{id}/assign.",
    )
    unchanged: bool = Field(
        description="Graph already matched the desired set, so nothing was written.",
        examples=[False],
    )
    graph_request_id: str | None = Field(
        default=None,
        description="Graph's request-id of the write, for support cases with Microsoft.",
        examples=["7f3a2b1c-0d9e-4f8a-b7c6-d5e4f3a2b1c0"],
    )
    applied_at: datetime = Field(
        description="When Graph acknowledged the write.", examples=["2026-11-22T10:15:30Z"]
    )


class DeploymentChangeFailedV1(_DeploymentRevisionV1, EventPayload):
    """Writing the change to Microsoft Graph failed; Graph holds the previous set."""

    event_type: ClassVar[str] = "dev.tenantflow.deployment.change.failed"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DEPLOYMENTS

    reason: Literal["consent_revoked", "graph_error", "throttled", "superseded"] = Field(
        description="The failure's class.", examples=["graph_error"]
    )
    detail: str = Field(
        description="A human-readable explanation.",
        examples=["Graph answered 400 BadRequest: the mobile app is not assignable."],
    )
    retryable: bool = Field(
        description="Whether resubmitting the same change may succeed.", examples=[False]
    )
    graph_status: int | None = Field(
        default=None, description="HTTP status from Graph, if any.", examples=[400]
    )
    graph_error_code: str | None = Field(
        default=None, description="error.code from Graph's body, if any.", examples=["BadRequest"]
    )
    graph_request_id: str | None = Field(
        default=None,
        description="Graph's request-id of the failed call.",
        examples=["7f3a2b1c-0d9e-4f8a-b7c6-d5e4f3a2b1c0"],
    )
