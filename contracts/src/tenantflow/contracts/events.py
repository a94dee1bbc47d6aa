"""Every event of the tenantflow flow, version 1.

Events are facts in the past tense. Each carries its tenant, its actor, the change it belongs to
(correlation id) and the event that caused it (causation id), from ``EventPayload``.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import ClassVar, Literal
from uuid import UUID

from pydantic import Field, model_validator

from tenantflow.contracts.common import Contract, EventPayload
from tenantflow.contracts.topics import Topic

# --- shared vocabulary -------------------------------------------------------------------------


class EnterpriseApp(StrEnum):
    DIRECTORY_CONNECTOR = "directory_connector"
    INTUNE_WRITER = "intune_writer"


class VerificationFailure(StrEnum):
    ADMIN_CONSENT_MISSING = "admin_consent_missing"
    PERMISSION_MISSING = "permission_missing"
    USER_NOT_AUTHORIZED = "user_not_authorized"
    TENANT_NOT_FOUND = "tenant_not_found"
    TENANT_MISMATCH = "tenant_mismatch"
    APP_DISABLED = "app_disabled"
    """The enterprise app is disabled in the tenant (accountEnabled false, AADSTS7000112)."""
    ACCESS_BLOCKED = "access_blocked"
    """A tenant policy (Conditional Access for workload identities) blocks our token."""
    APP_CREDENTIALS_INVALID = "app_credentials_invalid"
    """Entra ID refused tenantflow's own credential for the app: an operator has to fix it."""
    TOKEN_REFUSED = "token_refused"  # noqa: S105 - a reason, not a secret
    """Entra ID refused a token for another documented permanent reason (its AADSTS code is in
    the detail)."""


class LinkAuthorization(StrEnum):
    GLOBAL_ADMINISTRATOR = "global_administrator"
    APP_ASSIGNMENT = "app_assignment"
    APP_ASSIGNMENT_THROUGH_GROUP = "app_assignment_through_group"


class _Rejection(Contract):
    reason: VerificationFailure = Field(
        description="Why verification failed; stable, machine-readable.",
        examples=["permission_missing"],
    )
    detail: str = Field(
        description="A human-readable explanation for the portal.",
        examples=["The directory connector lacks Directory.Read.All."],
    )
    missing_permissions: list[str] = Field(
        default_factory=list,
        description="Microsoft Graph application permissions not granted, by name.",
        examples=[["Directory.Read.All"]],
    )
    admin_consent_url: str | None = Field(
        default=None,
        description="Where a Global Administrator grants admin consent, when consent is missing.",
        examples=[
            "https://login.microsoftonline.com/6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10/v2.0/"
            "adminconsent?client_id=5e3ce6c0-2b1f-4285-8d4b-75ee78787346"
            "&scope=https://graph.microsoft.com/.default"
        ],
    )


# --- tenant link -------------------------------------------------------------------------------


class TenantLinkRequested(EventPayload):
    """A portal user asked to link a tenant; consent has not been verified yet."""

    event_type: ClassVar[str] = "dev.tenantflow.tenant.link.requested"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.TENANTS


class TenantLinkVerified(EventPayload):
    """Microsoft Graph confirmed the directory connector's consent and the user's right to link."""

    event_type: ClassVar[str] = "dev.tenantflow.tenant.link.verified"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.TENANTS

    display_name: str = Field(
        description="The tenant's display name from GET /organization.", examples=["Contoso"]
    )
    default_domain: str | None = Field(
        description="The tenant's default verified domain.", examples=["contoso.onmicrosoft.com"]
    )
    granted_permissions: list[str] = Field(
        description="Application permissions granted to the directory connector, by name.",
        examples=[["Directory.Read.All"]],
    )
    authorized_by: LinkAuthorization = Field(
        description="Why the requesting user may link this tenant.",
        examples=["global_administrator"],
    )


class TenantLinkRejected(_Rejection, EventPayload):
    """Linking was refused; the reason says what a Global Administrator has to do."""

    event_type: ClassVar[str] = "dev.tenantflow.tenant.link.rejected"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.TENANTS


# --- Intune writing activation -----------------------------------------------------------------


class IntuneWritingActivationRequested(EventPayload):
    """A portal admin asked to let tenantflow write Intune app assignments in this tenant."""

    event_type: ClassVar[str] = "dev.tenantflow.tenant.intune_writing.activation_requested"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.TENANTS

    assignments_source_of_truth: bool = Field(
        default=False,
        description="tenantflow is the source of truth for the assignments of the apps it "
        "deploys: assignments made outside it are replaced (and reported) instead of kept.",
        examples=[False],
    )


class IntuneWritingEnabled(EventPayload):
    """The Intune writer app is consented with every write permission; writes may flow."""

    event_type: ClassVar[str] = "dev.tenantflow.tenant.intune_writing.enabled"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.TENANTS

    granted_permissions: list[str] = Field(
        description="Application permissions granted to the Intune writer app, by name.",
        examples=[
            [
                "DeviceManagementApps.ReadWrite.All",
                "DeviceManagementManagedDevices.Read.All",
                "Organization.Read.All",
            ]
        ],
    )
    assignments_source_of_truth: bool = Field(
        default=False,
        description="tenantflow is the source of truth for the assignments of the apps it "
        "deploys: assignments made outside it are replaced (and reported) instead of kept.",
        examples=[False],
    )


class IntuneWritingRejected(_Rejection, EventPayload):
    """Intune writing stays off; the reason says what is missing."""

    event_type: ClassVar[str] = "dev.tenantflow.tenant.intune_writing.rejected"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.TENANTS


class ConsentRevoked(EventPayload):
    """A linked tenant lost consent or a permission: writers and sync stop for it."""

    event_type: ClassVar[str] = "dev.tenantflow.tenant.consent.revoked"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.TENANTS

    app: EnterpriseApp = Field(
        description="Which enterprise app lost consent or a permission.",
        examples=["directory_connector"],
    )
    reason: VerificationFailure = Field(
        description="admin_consent_missing, permission_missing, app_disabled (a tenant admin "
        "disabled the enterprise app) or access_blocked (a tenant policy blocks it).",
        examples=["admin_consent_missing"],
    )
    detail: str = Field(
        description="A human-readable explanation for the portal.",
        examples=["AADSTS700016: the application has no service principal in the tenant."],
    )
    missing_permissions: list[str] = Field(
        default_factory=list,
        description="Application permissions no longer granted, by name.",
        examples=[["DeviceManagementApps.ReadWrite.All"]],
    )
    admin_consent_url: str | None = Field(
        default=None,
        description="Where a Global Administrator grants admin consent again.",
        examples=[
            "https://login.microsoftonline.com/6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10/v2.0/"
            "adminconsent?client_id=5e3ce6c0-2b1f-4285-8d4b-75ee78787346"
            "&scope=https://graph.microsoft.com/.default"
        ],
    )
    detected_by: Literal["scheduled_check", "reported_failure"] = Field(
        description="A periodic re-check, or a 401/403/AADSTS700016 another service reported.",
        examples=["scheduled_check"],
    )


class TenantUnlinked(EventPayload):
    """The tenant was unlinked: every service stops its work and purges cached directory data."""

    event_type: ClassVar[str] = "dev.tenantflow.tenant.unlinked"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.TENANTS


class TenantVerificationDeferred(EventPayload):
    """Verification met a transient Entra ID or Graph failure (429, 5xx, timeout) and is retried.

    No verdict yet: the portal shows the request as pending and retrying, never as rejected.
    """

    event_type: ClassVar[str] = "dev.tenantflow.tenant.verification.deferred"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.TENANTS

    app: EnterpriseApp = Field(
        description="Whose verification is retried: the link's or Intune activation's app.",
        examples=["directory_connector"],
    )
    detail: str = Field(
        description="The transient failure, for a human.",
        examples=["Microsoft Graph answered 503 three times; retrying."],
    )


class GraphAccessDenied(EventPayload):
    """A service's call to Entra ID or Microsoft Graph for this tenant was refused.

    Reported on a 401, a 403 or AADSTS700016; consent re-checks the tenant's consent at once.
    """

    event_type: ClassVar[str] = "dev.tenantflow.tenant.graph_access.denied"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.TENANTS

    app: EnterpriseApp = Field(
        description="The enterprise app whose token or call was refused.",
        examples=["intune_writer"],
    )
    status: int | None = Field(
        default=None,
        description="The HTTP status Graph or Entra ID answered, if any.",
        examples=[403],
    )
    error_code: str | None = Field(
        default=None,
        description="Graph's error.code, or the AADSTS code from Entra ID.",
        examples=["Authorization_RequestDenied", "AADSTS700016"],
    )
    detail: str = Field(
        description="The refusal as received, for a human.",
        examples=["Insufficient privileges to complete the operation."],
    )


# --- directory cache ---------------------------------------------------------------------------

DirectoryResource = Literal["users", "groups", "devices"]
ALL_DIRECTORY_RESOURCES: tuple[DirectoryResource, ...] = ("users", "groups", "devices")


class DirectorySyncRequested(EventPayload):
    """Refresh the cache of the tenant's users, groups and devices."""

    event_type: ClassVar[str] = "dev.tenantflow.directory.sync.requested"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DIRECTORY

    mode: Literal["full", "delta"] = Field(
        description="full re-reads everything; delta continues from the stored delta links.",
        examples=["delta"],
    )
    resources: list[DirectoryResource] = Field(
        default_factory=lambda: list(ALL_DIRECTORY_RESOURCES),
        description="Which directory resources to sync.",
        examples=[["users", "groups", "devices"]],
        min_length=1,
    )


class DirectorySynced(EventPayload):
    """A directory sync finished; the counts are what the cache holds now."""

    event_type: ClassVar[str] = "dev.tenantflow.directory.synced"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DIRECTORY

    mode: Literal["full", "delta"] = Field(
        description="How the sync ran; a delta that Graph expired restarts as full.",
        examples=["delta"],
    )
    users: int = Field(ge=0, description="Users in the cache after the sync.", examples=[1250])
    groups: int = Field(ge=0, description="Groups in the cache after the sync.", examples=[84])
    devices: int = Field(ge=0, description="Devices in the cache after the sync.", examples=[1410])
    changes: int = Field(
        ge=0, description="Objects added, changed or removed by this sync.", examples=[12]
    )
    duration_s: float | None = Field(
        default=None,
        ge=0,
        description="How long the sync took, from its first Graph request to its last write "
        "(pauses for throttling included).",
        examples=[4.2],
    )
    delta_link_age_s: float | None = Field(
        default=None,
        ge=0,
        description="Age of the oldest stored deltaLink the sync started from; null for a full "
        "sync. Graph keeps delta state for a limited time: an old link may need a full resync.",
        examples=[300.5],
    )
    next_sync_at: datetime | None = Field(
        default=None,
        description="When the next scheduled sync is due (UTC).",
        examples=["2026-11-24T10:05:00Z"],
    )


class DirectorySyncFailed(EventPayload):
    """A directory sync could not finish: the cache keeps what it held, and the sync is retried
    at ``next_attempt_at``. Throttling is not a failure (the sync is paused and resumes)."""

    event_type: ClassVar[str] = "dev.tenantflow.directory.sync.failed"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DIRECTORY

    detail: str = Field(
        description="What failed, for a human (Graph's error code and message when it answered).",
        examples=["Graph answered 403 Authorization_RequestDenied: Insufficient privileges."],
    )
    status: int | None = Field(
        default=None, description="Graph's HTTP status, when it answered.", examples=[403]
    )
    next_attempt_at: datetime | None = Field(
        default=None,
        description="When the sync is tried again (UTC); null while the tenant's access is "
        "being re-verified.",
        examples=["2026-11-24T10:05:00Z"],
    )


class DirectoryPurged(EventPayload):
    """The tenant's directory cache was deleted (unlinked, or the directory connector's consent
    revoked): readers drop their copies. A later re-verification starts a full sync."""

    event_type: ClassVar[str] = "dev.tenantflow.directory.purged"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DIRECTORY

    reason: Literal["tenant_unlinked", "consent_revoked"] = Field(
        description="Why the cache was purged.", examples=["tenant_unlinked"]
    )


class GroupUpserted(EventPayload):
    """A group appeared or changed in the tenant's directory."""

    event_type: ClassVar[str] = "dev.tenantflow.directory.group.upserted"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DIRECTORY

    group_id: UUID = Field(
        description="The group's Entra ID object id.",
        examples=["9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"],
    )
    display_name: str = Field(description="The group's display name.", examples=["Sales devices"])
    security_enabled: bool = Field(
        description="Security groups can be assignment targets.", examples=[True]
    )
    dynamic: bool = Field(
        default=False,
        description="Membership is computed by a rule (groupTypes contains DynamicMembership).",
        examples=[False],
    )
    direct_users: int = Field(
        default=0, ge=0, description="Users that are direct members.", examples=[12]
    )
    direct_devices: int = Field(
        default=0, ge=0, description="Devices that are direct members.", examples=[3]
    )
    transitive_users: int = Field(
        default=0,
        ge=0,
        description="Distinct users reached through nested groups too (what a deployment to "
        "this group targets).",
        examples=[140],
    )
    transitive_devices: int = Field(
        default=0,
        ge=0,
        description="Distinct devices reached through nested groups too.",
        examples=[52],
    )


class GroupRemoved(EventPayload):
    """A group was deleted from the tenant's directory."""

    event_type: ClassVar[str] = "dev.tenantflow.directory.group.removed"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DIRECTORY

    group_id: UUID = Field(
        description="The removed group's Entra ID object id.",
        examples=["9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"],
    )


class AssignmentFilter(Contract):
    filter_id: UUID = Field(
        description="The filter's id (deviceManagement/assignmentFilters).",
        examples=["1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"],
    )
    display_name: str = Field(description="The filter's name.", examples=["Windows 11 devices"])
    platform: str = Field(
        description="Graph's devicePlatformType: the platform it filters.",
        examples=["windows10AndLater"],
    )
    management_type: Literal["devices", "apps"] = Field(
        default="devices",
        description="Whether it filters managed devices or managed apps "
        "(assignmentFilterManagementType).",
        examples=["devices"],
    )


class AssignmentFiltersSynced(EventPayload):
    """The tenant's Intune assignment filters, all of them, as Graph listed them just now:
    readers replace what they held. Read with the Intune writer's credential while Intune
    writing is enabled."""

    event_type: ClassVar[str] = "dev.tenantflow.directory.assignment_filters.synced"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DIRECTORY

    filters: list[AssignmentFilter] = Field(description="Every filter of the tenant.")


# --- deployments -------------------------------------------------------------------------------


class AssignmentIntent(StrEnum):
    """What Intune does with the app for the target, named as Graph names it."""

    REQUIRED = "required"
    AVAILABLE = "available"
    UNINSTALL = "uninstall"
    AVAILABLE_WITHOUT_ENROLLMENT = "availableWithoutEnrollment"


class AssignmentTarget(Contract):
    kind: Literal["group", "exclusion_group", "all_users", "all_devices"] = Field(
        description="A group (included or excluded), or one of Intune's virtual groups: all "
        "licensed users, all devices.",
        examples=["group"],
    )
    group_id: UUID | None = Field(
        default=None,
        description="The group's object id; required for group and exclusion_group.",
        examples=["9a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"],
    )

    @model_validator(mode="after")
    def _group_id_matches_kind(self) -> AssignmentTarget:
        needs_group = self.kind in ("group", "exclusion_group")
        if needs_group != (self.group_id is not None):
            raise ValueError("group_id is required for group targets and forbidden otherwise")
        return self

    @property
    def key(self) -> str:
        """What makes two targets the same target: the group, or the virtual group."""
        return str(self.group_id) if self.group_id else self.kind


class AssignmentFilterRef(Contract):
    filter_id: UUID = Field(
        description="The Intune assignment filter's id (deviceManagement/assignmentFilters).",
        examples=["1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"],
    )
    mode: Literal["include", "exclude"] = Field(
        description="Include or exclude the devices the filter matches.", examples=["include"]
    )


class RestartSettings(Contract):
    """Restart coordination after an install (Graph's winGetAppRestartSettings)."""

    grace_period_minutes: int = Field(
        ge=1, description="Minutes before the device restarts.", examples=[1440]
    )
    countdown_minutes: int = Field(
        ge=1, description="Minutes before the restart that a countdown shows.", examples=[15]
    )
    snooze_minutes: int | None = Field(
        default=None, ge=1, description="How long a user may snooze the restart.", examples=[240]
    )


class AssignmentSettings(Contract):
    """How Intune installs for this assignment; each field absent means Intune's default."""

    notifications: Literal["showAll", "showReboot", "hideAll"] | None = Field(
        default=None, description="Which end-user notifications show.", examples=["showAll"]
    )
    restart: RestartSettings | None = Field(
        default=None, description="Restart coordination (required installs only)."
    )
    deadline: datetime | None = Field(
        default=None,
        description="Install by this time (required installs only).",
        examples=["2026-12-01T18:00:00Z"],
    )
    deadline_in_local_time: bool = Field(
        default=False,
        description="The deadline is read in the device's local time zone instead of UTC.",
        examples=[False],
    )
    delivery_priority: Literal["notConfigured", "foreground"] | None = Field(
        default=None,
        description="Delivery Optimization priority; only app kinds that have it (Win32 apps).",
        examples=["foreground"],
    )


class DesiredAssignment(Contract):
    target: AssignmentTarget = Field(description="Who gets the app.")
    intent: AssignmentIntent = Field(description="What Intune does.", examples=["required"])
    filter: AssignmentFilterRef | None = Field(
        default=None, description="An optional assignment filter."
    )
    settings: AssignmentSettings | None = Field(
        default=None, description="Optional install settings; none for an exclusion."
    )


class CatalogApp(Contract):
    """A catalog app as tenantflow creates it in a tenant: a Windows Package Manager app
    (Graph's winGetApp), identified in the catalog by ``catalog_id``."""

    catalog_id: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{0,63}$",
        description="The app's id in tenantflow's catalog; also the deployment's name.",
        examples=["7zip"],
    )
    kind: Literal["winGetApp"] = Field(
        default="winGetApp", description="The Intune app type tenantflow creates."
    )
    package_identifier: str = Field(
        description="The WinGet package identifier (winGetApp.packageIdentifier).",
        examples=["7zip.7zip"],
    )
    display_name: str = Field(description="The app's name in Intune.", examples=["7-Zip"])
    publisher: str = Field(description="The app's publisher.", examples=["Igor Pavlov"])
    description: str = Field(
        default="", description="The app's description.", examples=["File archiver."]
    )
    run_as_account: Literal["system", "user"] = Field(
        description="The install experience: run as the system or as the signed-in user "
        "(winGetApp.installExperience.runAsAccount; immutable once created).",
        examples=["system"],
    )


class _Deployment(Contract):
    app: str = Field(
        pattern=r"^[a-z0-9][a-z0-9.-]{0,63}$",
        description="The catalog app this deployment deploys (CatalogApp.catalog_id).",
        examples=["7zip"],
    )
    revision: int = Field(
        ge=1,
        description="The deployment's desired-state revision this change produces (its "
        "version, the ETag); increases by one per change.",
        examples=[3],
    )


class DeploymentChangeRequested(_Deployment, EventPayload):
    """A user changed a deployment's desired assignments; this is the complete desired set."""

    event_type: ClassVar[str] = "dev.tenantflow.deployment.change.requested"
    schema_version: ClassVar[int] = 2
    topic: ClassVar[Topic] = Topic.DEPLOYMENTS

    catalog_app: CatalogApp = Field(
        description="The app to create in the tenant when it is missing, as the catalog had it."
    )
    replaces_revision: int = Field(
        ge=0,
        description="The revision this change replaces; 0 when the deployment is new.",
        examples=[2],
    )
    operation: Literal["replace", "patch", "remove"] = Field(
        description="How the user changed it: a whole set (PUT), single assignments added or "
        "removed (PATCH), or every assignment removed (DELETE).",
        examples=["replace"],
    )
    desired_assignments: list[DesiredAssignment] = Field(
        description="The whole desired assignment set after this change (never a partial one).",
    )
    previous_assignments: list[DesiredAssignment] = Field(
        default_factory=list,
        description="The desired set of the revision replaced, for auditors and the writer.",
    )
    remove_app: bool = Field(
        default=False,
        description="Delete the Intune app too once its assignments are gone (remove only).",
        examples=[False],
    )
    confirmed: bool = Field(
        default=False,
        description="The user confirmed a change over the blast-radius guard (?confirm=true).",
        examples=[False],
    )
    actor_name: str | None = Field(
        default=None,
        description="The actor's display name at the time, for people to read.",
        examples=["Ada Lovelace"],
    )


class DeploymentChangeVerified(_Deployment, EventPayload):
    """The change's tenant is linked with Intune writing enabled and consented, and its actor
    is still allowed: the writer may apply it."""

    event_type: ClassVar[str] = "dev.tenantflow.deployment.change.verified"
    schema_version: ClassVar[int] = 2
    topic: ClassVar[Topic] = Topic.DEPLOYMENTS


class DeploymentRejectionReason(StrEnum):
    TENANT_NOT_LINKED = "tenant_not_linked"
    INTUNE_WRITING_NOT_ENABLED = "intune_writing_not_enabled"
    CONSENT_REVOKED = "consent_revoked"
    ACTOR_NOT_ALLOWED = "actor_not_allowed"
    VERIFICATION_FAILED = "verification_failed"
    """The check itself failed and was set aside for an operator."""


class DeploymentChangeRejected(_Deployment, EventPayload):
    """The change will not be written; nothing in Graph was touched."""

    event_type: ClassVar[str] = "dev.tenantflow.deployment.change.rejected"
    schema_version: ClassVar[int] = 2
    topic: ClassVar[Topic] = Topic.DEPLOYMENTS

    reason: DeploymentRejectionReason = Field(
        description="Why the change was refused.", examples=["intune_writing_not_enabled"]
    )
    detail: str = Field(
        description="A human-readable explanation.",
        examples=["Intune writing is not enabled for this tenant."],
    )


class GraphError(Contract):
    """An error as Microsoft Graph answered it, parsed (Intune's JSON-inside-message too)."""

    status: int = Field(description="The HTTP status.", examples=[400])
    code: str | None = Field(
        default=None,
        description="error.code (or Intune's inner ErrorCode).",
        examples=["BadRequest"],
    )
    message: str = Field(
        description="error.message (or Intune's inner Message).",
        examples=["The mobile app is not assignable."],
    )
    request_id: str | None = Field(
        default=None,
        description="Graph's request-id of the call.",
        examples=["7f3a2b1c-0d9e-4f8a-b7c6-d5e4f3a2b1c0"],
    )


class DeploymentChangeApplied(_Deployment, EventPayload):
    """Microsoft Graph now holds exactly the desired assignment set."""

    event_type: ClassVar[str] = "dev.tenantflow.deployment.change.applied"
    schema_version: ClassVar[int] = 2
    topic: ClassVar[Topic] = Topic.DEPLOYMENTS

    intune_app_id: UUID | None = Field(
        description="The Intune mobileApp id; null when the app was removed with the change.",
        examples=["4b8e2f6a-1c3d-4e5f-9a0b-1c2d3e4f5a6b"],
    )
    assignments_before: list[DesiredAssignment] = Field(
        description="The assignments tenantflow manages that Intune held before the write."
    )
    written_assignments: list[DesiredAssignment] = Field(
        description="The assignment set Intune holds now (sent whole with POST …/assign).",
    )
    unchanged: bool = Field(
        description="Intune already held the desired set, so nothing was written.",
        examples=[False],
    )
    graph_request_ids: list[str] = Field(
        default_factory=list,
        description="Graph's request-id of every write, for support cases with Microsoft.",
        examples=[["7f3a2b1c-0d9e-4f8a-b7c6-d5e4f3a2b1c0"]],
    )
    applied_at: datetime = Field(
        description="When Graph acknowledged the last write.", examples=["2026-11-22T10:15:30Z"]
    )
    replaced_foreign_assignments: list[DesiredAssignment] = Field(
        default_factory=list,
        description="Assignments made outside tenantflow that this write replaced: those the "
        "tenant's source-of-truth mode removed, and any on a target of the desired set.",
    )
    kept_foreign_assignments: list[DesiredAssignment] = Field(
        default_factory=list,
        description="Assignments made outside tenantflow that were kept as they were (part of "
        "written_assignments).",
    )


class DeploymentChangeFailed(_Deployment, EventPayload):
    """Writing the change to Microsoft Graph failed; Intune holds the set it held before."""

    event_type: ClassVar[str] = "dev.tenantflow.deployment.change.failed"
    schema_version: ClassVar[int] = 2
    topic: ClassVar[Topic] = Topic.DEPLOYMENTS

    reason: Literal["graph_error", "access_denied", "consent_revoked", "unlinked"] = Field(
        description="The failure's class: Graph refused the write, refused tenantflow access "
        "(401/403), or the tenant's consent or link went away before it was written.",
        examples=["graph_error"],
    )
    detail: str = Field(
        description="A human-readable explanation.",
        examples=["Graph answered 400 BadRequest: the mobile app is not assignable."],
    )
    retryable: bool = Field(
        description="Whether resubmitting the same change may succeed.", examples=[False]
    )
    graph_error: GraphError | None = Field(
        default=None, description="Graph's error, parsed, when Graph answered one."
    )
    graph_request_ids: list[str] = Field(
        default_factory=list,
        description="Graph's request-id of every call of the attempt.",
        examples=[["7f3a2b1c-0d9e-4f8a-b7c6-d5e4f3a2b1c0"]],
    )


class DeploymentChangeSuperseded(_Deployment, EventPayload):
    """A newer change of the same deployment was applied in its place; this one will never be
    written on its own."""

    event_type: ClassVar[str] = "dev.tenantflow.deployment.change.superseded"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DEPLOYMENTS

    superseded_by_revision: int = Field(
        ge=2, description="The revision applied instead.", examples=[4]
    )
    superseded_by_change: UUID = Field(
        description="The change id (correlation id) of that revision.",
        examples=["5e6f7a8b-9c0d-4e1f-8a2b-3c4d5e6f7a8b"],
    )


# --- dead letters ------------------------------------------------------------------------------


class OriginalHeader(Contract):
    name: str = Field(description="Header name as received.", examples=["ce_type"])
    value: str = Field(
        description="Header value, decoded as UTF-8 (invalid bytes replaced).",
        examples=["dev.tenantflow.tenant.link.requested"],
    )


class DeadLettered(EventPayload):
    """A consumer gave up on a message: it could not be decoded or failed permanently.

    The original message is kept whole, so it can be inspected and replayed. Its tenant is the
    original key, else its ce_subject; a message with neither as a tenant id is filed under the
    nil UUID (00000000-0000-0000-0000-000000000000).
    """

    event_type: ClassVar[str] = "dev.tenantflow.deadlettered"
    schema_version: ClassVar[int] = 1
    topic: ClassVar[Topic] = Topic.DEAD_LETTER

    consumer: str = Field(
        description="The consumer (service and handler group) that gave up.",
        examples=["consent.tenant-links"],
    )
    error_type: str = Field(
        description="The error's class.", examples=["undecodable", "PermanentHandlerError"]
    )
    error: str = Field(
        description="What went wrong, for a human.",
        examples=["body is not valid JSON: Expecting value at line 1 column 1"],
    )
    attempts: int = Field(ge=1, description="How many times it was tried.", examples=[1])
    original_topic: str = Field(
        description="Where the message was read.", examples=["tenantflow.tenants"]
    )
    original_partition: int = Field(ge=0, description="Its partition.", examples=[2])
    original_offset: int = Field(ge=0, description="Its offset.", examples=[1041])
    original_key: str | None = Field(
        description="Its key (the tenant id), decoded as UTF-8.",
        examples=["6f1c9e52-8a1d-4c1e-9a57-2d8c3b1e7f10"],
    )
    original_headers: list[OriginalHeader] = Field(description="Its headers, in order.")
    original_value_base64: str = Field(
        description="Its value, byte for byte, base64-encoded.", examples=["bm90IGpzb24="]
    )
