"""/v1/tenants/{tenant_id}/deployments and /v1/changes: desired assignments and their changes.

A deployment is the desired assignment set of one catalog app in one tenant: the single source
of truth the writer applies. Every write names the version it changes (If-Match, or
If-None-Match: * to create), is validated against the tenant's read models before it is
accepted, and is stored with its DeploymentChangeRequested event in one transaction, the tenant
link locked, so one tenant's changes are published in the order they were decided. PATCH adds
or removes single assignments; the result is resolved here into the whole desired set, so the
writer never sends Intune a partial one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tenantflow.bus.db import snapshot, transaction
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.events import (
    AssignmentTarget,
    DeploymentChangeRequested,
    DesiredAssignment,
)
from tenantflow.portal_api import catalog, cursors, lifecycle, validation
from tenantflow.portal_api.deps import OperatorUser, PortalDep, PortalUser, json_body, limit_tenant
from tenantflow.portal_api.models import (
    CATALOG_ID,
    Account,
    AssignmentFilterRow,
    ChangeStatus,
    Deployment,
    DeploymentChange,
    DirectoryGroup,
    DirectoryState,
    FilterSyncState,
    IntuneWritingStatus,
    LinkStatus,
    RequesterPublic,
    TenantLink,
)
from tenantflow.portal_api.problems import Problem, etag_listed, require_match
from tenantflow.portal_api.tenants import (
    PROBLEMS,
    LinkedTenant,
    actor,
    problem,
    reachable,
    tenant_id_of,
)

router = APIRouter(prefix="/v1", tags=["deployments"])

AppId = Annotated[str, Path(pattern=CATALOG_ID, description="The catalog app's id.")]
WRITE_PROBLEMS: dict[int | str, dict[str, Any]] = {
    409: problem("Not linked, Intune writing off, or the change needs ?confirm=true"),
    412: problem("If-Match or If-None-Match does not hold"),
    415: problem("The body is not sent as application/json"),
    422: problem("The request or an assignment in it cannot be applied"),
    428: problem("If-Match (or If-None-Match: * to create) is required"),
    **PROBLEMS,
}


# --- API models --------------------------------------------------------------------------------


class DeploymentPut(BaseModel):
    """The whole desired assignment set; whatever is not in it is removed."""

    model_config = ConfigDict(extra="forbid")

    assignments: list[DesiredAssignment]


class PatchOperation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: Literal["add", "remove"]
    assignment: DesiredAssignment | None = Field(default=None, description="What to add.")
    target: AssignmentTarget | None = Field(default=None, description="Whose assignment to remove.")

    @model_validator(mode="after")
    def _one_operand(self) -> PatchOperation:
        if (self.op == "add") != (self.assignment is not None) or (self.op == "remove") != (
            self.target is not None
        ):
            raise ValueError("add takes an assignment, remove takes a target")
        return self


class DeploymentPatch(BaseModel):
    """Single assignments added or removed, in order; the rest of the set stays as it is."""

    model_config = ConfigDict(extra="forbid")

    operations: list[PatchOperation] = Field(min_length=1)


class ChangeStep(BaseModel):
    status: ChangeStatus
    at: datetime
    detail: str | None = None
    graph_request_ids: list[str] = Field(default_factory=list)


class ChangePublic(BaseModel):
    id: UUID = Field(description="The change id: the correlation id of its events.")
    tenant_id: UUID
    app: str
    revision: int = Field(description="The deployment revision this change produces.")
    replaces_revision: int = Field(description="The revision it replaces; 0 for a new one.")
    operation: Literal["replace", "patch", "remove"]
    status: ChangeStatus
    requested_by: RequesterPublic
    requested_at: datetime
    confirmed: bool = Field(description="Confirmed over the blast-radius guard.")
    desired_assignments: list[DesiredAssignment]
    previous_assignments: list[DesiredAssignment]
    reason: str | None = Field(description="Why it was rejected or failed.")
    detail: str | None
    graph_request_ids: list[str] = Field(description="Graph's request-id of every write.")
    graph_error: dict[str, Any] | None = Field(description="Graph's error, parsed, if it failed.")
    superseded_by: UUID | None = Field(description="The change applied in its place.")
    timeline: list[ChangeStep] = Field(description="Every step so far, oldest first.")
    updated_at: datetime | None = Field(description="When the portal last recorded a step.")

    @classmethod
    def of(cls, change: DeploymentChange) -> ChangePublic:
        return cls(
            id=change.change_id,
            tenant_id=change.tenant_id,
            app=change.app,
            revision=change.revision,
            replaces_revision=change.replaces_revision,
            operation=change.operation,
            status=ChangeStatus(change.status),
            requested_by=RequesterPublic(
                tenant_id=change.requested_by_tenant_id,
                object_id=change.requested_by_object_id,
                name=change.requested_by_name,
            ),
            requested_at=change.requested_at,
            confirmed=change.confirmed,
            desired_assignments=change.desired,
            previous_assignments=change.previous,
            reason=change.reason,
            detail=change.detail,
            graph_request_ids=change.graph_request_ids,
            graph_error=change.graph_error,
            superseded_by=change.superseded_by,
            timeline=change.timeline,
            updated_at=change.updated_at,
        )


class ChangeSummary(BaseModel):
    id: UUID
    status: ChangeStatus
    revision: int


class DeploymentPublic(BaseModel):
    app: str = Field(description="The catalog app deployed.")
    revision: int = Field(description="The desired state's version; the ETag.")
    status: ChangeStatus = Field(description="Where the latest change stands.")
    removed: bool = Field(description="Every assignment was removed (DELETE).")
    desired_assignments: list[DesiredAssignment]
    applied_assignments: list[DesiredAssignment] | None = Field(
        description="What Intune held after the last applied change; null before the first."
    )
    applied_revision: int | None
    in_sync: bool = Field(description="The desired revision is the one applied.")
    intune_app_id: UUID | None = Field(description="The app's id in Intune, once created.")
    latest_change: ChangeSummary
    updated_at: datetime | None

    @classmethod
    def of(cls, deployment: Deployment, latest: DeploymentChange) -> DeploymentPublic:
        return cls(
            app=deployment.app,
            revision=deployment.revision,
            status=ChangeStatus(latest.status),
            removed=deployment.removed,
            desired_assignments=deployment.desired,
            applied_assignments=deployment.applied,
            applied_revision=deployment.applied_revision,
            in_sync=deployment.applied_revision == deployment.revision,
            intune_app_id=deployment.intune_app_id,
            latest_change=ChangeSummary(
                id=latest.change_id, status=ChangeStatus(latest.status), revision=latest.revision
            ),
            updated_at=deployment.updated_at,
        )


class ChangePlan(BaseModel):
    """What a change would do (?dry_run=true): validated like the real one, nothing stored,
    nothing sent to Intune."""

    desired_assignments: list[DesiredAssignment] = Field(description="The set it would hold.")
    would_add: list[DesiredAssignment]
    would_remove: list[DesiredAssignment]
    would_change: list[DesiredAssignment]
    needs_confirmation: bool = Field(description="The blast-radius guard would hold it back.")
    explanation: str | None = Field(description="Why confirmation would be needed.")


class DeploymentPage(BaseModel):
    items: list[DeploymentPublic]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


# --- reading -----------------------------------------------------------------------------------


def _etag(deployment: Deployment) -> str:
    return f'"{deployment.revision}"'


def _documents(assignments: Sequence[DesiredAssignment]) -> list[dict[str, Any]]:
    return [assignment.model_dump(mode="json", exclude_none=True) for assignment in assignments]


def _assignments(documents: Sequence[dict[str, Any]]) -> list[DesiredAssignment]:
    return [DesiredAssignment.model_validate(document) for document in documents]


async def _with_latest(
    session: AsyncSession, deployments: Sequence[Deployment]
) -> list[DeploymentPublic]:
    ids = [deployment.latest_change_id for deployment in deployments]
    changes = {
        change.change_id: change
        for change in (
            await session.exec(
                select(DeploymentChange).where(col(DeploymentChange.change_id).in_(ids))
            )
        ).all()
    }
    return [DeploymentPublic.of(d, changes[d.latest_change_id]) for d in deployments]


@router.get(
    "/tenants/{tenant_id}/deployments",
    response_model=DeploymentPage,
    tags=["deployments"],
    responses={400: problem("The cursor is not valid"), **PROBLEMS},
)
async def list_deployments(
    tenant_id: str,
    user: PortalUser,
    portal: PortalDep,
    request: Request,
    response: Response,
    include_removed: Annotated[
        bool, Query(description="Also list deployments whose assignments were all removed.")
    ] = False,
    limit: Annotated[int, Query(ge=1, description="Page size (at most the maximum).")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> DeploymentPage:
    """The tenant's deployments by app, a page at a time: desired and applied assignments, the
    latest change's status, the version."""
    wanted = tenant_id_of(tenant_id)
    limit = min(limit, portal.settings.page_size_max)
    statement = (
        select(Deployment)
        .where(Deployment.tenant_id == wanted)
        .order_by(col(Deployment.app))
        .limit(limit + 1)
    )
    if not include_removed:
        statement = statement.where(col(Deployment.removed).is_(False))
    if cursor is not None:
        statement = statement.where(col(Deployment.app) > cursors.decode(cursor, CATALOG_ID))
    async with snapshot(portal.runtime.sessions) as session:
        await reachable(session, user, wanted)
        limit_tenant(portal, wanted)
        rows = list((await session.exec(statement)).all())
        more = len(rows) > limit
        items = await _with_latest(session, rows[:limit])
    next_cursor = cursors.encode(items[-1].app) if more else None
    if next_cursor:
        next_url = request.url.include_query_params(cursor=next_cursor, limit=limit)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return DeploymentPage(items=items, next_cursor=next_cursor)


def _no_deployment(app: str) -> Problem:
    return Problem(404, f"This tenant has no deployment of {app!r}.")


@router.get(
    "/tenants/{tenant_id}/deployments/{app}",
    response_model=DeploymentPublic,
    responses={304: {"description": "Not modified (If-None-Match)"}, **PROBLEMS},
)
async def get_deployment(
    tenant_id: str,
    app: AppId,
    user: PortalUser,
    portal: PortalDep,
    response: Response,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Any:
    """One deployment: desired and last applied assignments, the latest change's status, and
    the version (ETag) to send as If-Match when changing it."""
    wanted = tenant_id_of(tenant_id)
    async with snapshot(portal.runtime.sessions) as session:
        await reachable(session, user, wanted)
        limit_tenant(portal, wanted)
        deployment = await session.get(Deployment, (wanted, app))
        if deployment is None:
            raise _no_deployment(app)
        [public] = await _with_latest(session, [deployment])
    etag = _etag(deployment)
    if if_none_match is not None and etag_listed(etag, if_none_match):
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return public


@router.get(
    "/changes/{change_id}",
    response_model=ChangePublic,
    tags=["deployments"],
    responses={404: problem("No such change for your account"), **PROBLEMS},
)
async def get_change(change_id: str, user: PortalUser, portal: PortalDep) -> ChangePublic:
    """A deployment change's timeline: requested, then verified or rejected, then applied or
    failed (or superseded by a newer change), each with its time; who asked; Graph's request
    ids and, when it failed, Graph's error."""
    missing = Problem(404, f"No change {change_id} is visible to your account.")
    try:
        wanted = UUID(change_id)
    except ValueError:
        raise missing from None
    statement = (
        select(DeploymentChange)
        .join(TenantLink, col(TenantLink.tenant_id) == col(DeploymentChange.tenant_id))
        .join(Account, col(Account.id) == col(TenantLink.account_id))
        .where(DeploymentChange.change_id == wanted, Account.home_tenant_id == user.tenant_id)
    )
    async with snapshot(portal.runtime.sessions) as session:
        change = (await session.exec(statement)).first()
    if change is None:
        raise missing
    limit_tenant(portal, change.tenant_id)
    return ChangePublic.of(change)


# --- changing ----------------------------------------------------------------------------------

Resolve = Callable[[list[DesiredAssignment]], list[DesiredAssignment]]


def _writable(tenant: LinkedTenant) -> None:
    if tenant.status is not LinkStatus.LINKED:
        raise Problem(409, f"The tenant is {tenant.status}; link it before deploying to it.")
    if tenant.intune_status is not IntuneWritingStatus.ENABLED:
        raise Problem(
            409,
            f"Intune writing is {tenant.intune_status} for this tenant; an Admin activates it "
            "(POST /v1/tenants/{tenant_id}/intune) before deployments change.",
        )


def _preconditions(
    deployment: Deployment | None, if_match: str | None, if_none_match: str | None
) -> None:
    exists = deployment is not None and not deployment.removed
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise Problem(412, "To create a deployment, send If-None-Match: * only.")
        if exists:
            assert deployment is not None
            raise Problem(
                412,
                "The deployment exists already; change it with If-Match and its ETag.",
                current_etag=_etag(deployment),
            )
        return
    if if_match is None:
        raise Problem(
            428,
            "Send If-Match with the deployment's ETag to change it, or If-None-Match: * to "
            "create it.",
        )
    if deployment is None or not exists:
        raise Problem(412, "There is no deployment to match; create it with If-None-Match: *.")
    require_match(_etag(deployment), if_match, "deployment")


async def _references(
    session: AsyncSession, tenant_id: UUID, assignments: Sequence[DesiredAssignment]
) -> validation.References:
    group_ids = {a.target.group_id for a in assignments if a.target.group_id}
    filter_ids = {a.filter.filter_id for a in assignments if a.filter}
    groups = (
        (
            await session.exec(
                select(DirectoryGroup).where(
                    DirectoryGroup.tenant_id == tenant_id,
                    col(DirectoryGroup.group_id).in_(group_ids),
                )
            )
        ).all()
        if group_ids
        else []
    )
    filters = (
        (
            await session.exec(
                select(AssignmentFilterRow).where(
                    AssignmentFilterRow.tenant_id == tenant_id,
                    col(AssignmentFilterRow.filter_id).in_(filter_ids),
                )
            )
        ).all()
        if filter_ids
        else []
    )
    directory = await session.get(DirectoryState, tenant_id)
    synced_at = directory.last_sync_at if directory else None
    return validation.References(
        groups={
            g.group_id: validation.GroupFacts(g.display_name, g.security_enabled) for g in groups
        },
        directory_synced_at=synced_at.isoformat() if synced_at else None,
        filters={
            f.filter_id: validation.FilterFacts(f.display_name, f.platform, f.management_type)
            for f in filters
        },
        filters_synced=await session.get(FilterSyncState, tenant_id) is not None,
    )


def _refuse(issues: Sequence[validation.Issue]) -> Problem:
    first = issues[0].message
    more = f" ({len(issues) - 1} more listed in errors)" if len(issues) > 1 else ""
    return Problem(
        422,
        f"The assignments cannot be applied exactly: {first}{more}",
        slug="invalid-assignments",
        errors=[issue.as_error() for issue in issues[:50]],
    )


DryRunQuery = Annotated[
    bool,
    Query(
        description="Validate and answer what the change would do (a ChangePlan, 200); "
        "store nothing and write nothing to Intune."
    ),
]
ConfirmQuery = Annotated[
    bool,
    Query(
        description="Apply a change the blast-radius guard holds back (large removals, all "
        "users or all devices)."
    ),
]


@dataclass
class Writing:
    """What a deployment write takes besides its body: where, who, and its conditions."""

    tenant_id: str
    app: AppId
    user: OperatorUser
    portal: PortalDep
    request: Request
    response: Response
    confirm: ConfirmQuery = False
    dry_run: DryRunQuery = False
    if_match: Annotated[str | None, Header()] = None
    if_none_match: Annotated[str | None, Header()] = None


async def _change(
    writing: Writing,
    operation: Literal["replace", "patch", "remove"],
    resolve: Resolve,
    remove_app: bool = False,
) -> DeploymentPublic | ChangePlan:
    portal, user, app, response = writing.portal, writing.user, writing.app, writing.response
    tenant_id, request, confirm = writing.tenant_id, writing.request, writing.confirm
    if_match, if_none_match, dry_run = writing.if_match, writing.if_none_match, writing.dry_run
    wanted = tenant_id_of(tenant_id)
    settings = portal.settings
    async with transaction(portal.runtime.sessions) as session:
        tenant = await reachable(session, user, wanted, lock=True)
        limit_tenant(portal, wanted)
        _writable(tenant)
        app_row = await catalog.find(session, app)
        deployment = await session.get(Deployment, (wanted, app), with_for_update=True)
        _preconditions(deployment, if_match, if_none_match)
        live = deployment is not None and not deployment.removed
        previous = _assignments(deployment.desired) if deployment and live else []
        desired = resolve(previous)
        if len(desired) > settings.assignments_max:
            raise Problem(
                422,
                f"A deployment holds at most {settings.assignments_max} assignments; this one "
                f"would hold {len(desired)}.",
            )
        issues = validation.check(
            app_row.kind, desired, await _references(session, wanted, desired)
        )
        if issues:
            raise _refuse(issues)
        impact = validation.impact(previous, desired)
        held = impact.needs_confirmation(settings.blast_radius_max_removals)
        if dry_run:
            response.status_code = 200
            return ChangePlan(
                desired_assignments=desired,
                would_add=impact.added,
                would_remove=impact.removed,
                would_change=impact.changed,
                needs_confirmation=held and not confirm,
                explanation=impact.explain(settings.blast_radius_max_removals) if held else None,
            )
        if held and not confirm:
            raise Problem(
                409,
                impact.explain(settings.blast_radius_max_removals),
                slug="confirmation-required",
                would_remove=_documents(impact.removed),
                would_add=_documents(impact.added),
                would_change=_documents(impact.changed),
            )
        if deployment is not None and live and desired == previous and not remove_app:
            # nothing to change: the same set again is not a new revision
            response.headers["ETag"] = _etag(deployment)
            response.status_code = 200
            [public] = await _with_latest(session, [deployment])
            return public
        replaces = deployment.revision if deployment else 0
        event = DeploymentChangeRequested(
            tenant_id=wanted,
            actor=actor(user),
            correlation_id=uuid4(),
            app=app,
            revision=replaces + 1,
            catalog_app=catalog.contract_of(app_row),
            replaces_revision=replaces,
            operation=operation,
            desired_assignments=desired,
            previous_assignments=previous,
            remove_app=remove_app,
            confirmed=confirm and held,
            actor_name=user.name,
        )
        now = datetime.now(UTC)
        deployment, change = record_change_requested(session, deployment, event, now)
        await portal.runtime.outbox.add(session, event, at=now)
        await session.flush()
        public = DeploymentPublic.of(deployment, change)
        change_id = change.change_id
    response.status_code = 202
    response.headers["ETag"] = f'"{public.revision}"'
    response.headers["Location"] = str(request.url_for("get_change", change_id=change_id))
    response.headers["Retry-After"] = "1"
    return public


WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "?dry_run=true: what the change would do; otherwise nothing to change "
        "(the deployment already holds this set)",
        "model": ChangePlan,
    },
    202: {
        "description": "Accepted: follow Location (the change) until it is applied",
        "model": DeploymentPublic,
    },
    **WRITE_PROBLEMS,
}


def record_change_requested(
    session: AsyncSession,
    deployment: Deployment | None,
    event: DeploymentChangeRequested,
    at: datetime,
) -> tuple[Deployment, DeploymentChange]:
    """The change ``event`` requested at ``at``, recorded on its deployment (``deployment``,
    None for a new one): by the routes as they accept it, and by a rebuild of the read models
    from the event log (``rebuild``), so both record the same rows."""
    if deployment is None:
        deployment = Deployment(
            tenant_id=event.tenant_id,
            app=event.app,
            revision=event.revision,
            latest_change_id=event.correlation_id,
        )
    deployment.revision = event.revision
    deployment.desired = _documents(event.desired_assignments)
    deployment.removed = event.operation == "remove"
    deployment.latest_change_id = event.correlation_id
    deployment.updated_at = at
    requester = event.actor
    assert isinstance(requester, UserActor), "a deployment change is a user's"
    change = lifecycle.requested(
        DeploymentChange(
            change_id=event.correlation_id,
            tenant_id=event.tenant_id,
            app=event.app,
            revision=event.revision,
            replaces_revision=event.replaces_revision,
            operation=event.operation,
            status=ChangeStatus.REQUESTED,
            desired=deployment.desired,
            previous=_documents(event.previous_assignments),
            confirmed=event.confirmed,
            requested_by_tenant_id=requester.tenant_id,
            requested_by_object_id=requester.object_id,
            requested_by_name=requester.display_name,
            requested_at=at,
            updated_at=at,
        )
    )
    session.add_all([deployment, change])
    return deployment, change


@router.put(
    "/tenants/{tenant_id}/deployments/{app}",
    response_model=DeploymentPublic | ChangePlan,
    status_code=202,
    dependencies=[Depends(json_body)],
    responses=WRITE_RESPONSES,
)
async def put_deployment(
    body: DeploymentPut, writing: Annotated[Writing, Depends()]
) -> DeploymentPublic | ChangePlan:
    """Set the app's whole desired assignment set in the tenant. Create with If-None-Match: *,
    change with If-Match: the ETag you read. The change is verified, then written to Intune;
    follow Location for its progress."""
    return await _change(writing, "replace", lambda previous: list(body.assignments))


def _patched(operations: Sequence[PatchOperation]) -> Resolve:
    def resolve(previous: list[DesiredAssignment]) -> list[DesiredAssignment]:
        current = list(previous)
        issues = []
        for index, operation in enumerate(operations):
            if operation.assignment is not None:
                key = operation.assignment.target.key
                if any(a.target.key == key for a in current):
                    issues.append(
                        validation.Issue(
                            ("operations", index, "assignment", "target"),
                            "duplicate_target",
                            f"{validation.describe(operation.assignment)}: the target has an "
                            "assignment already; remove it first, in the same PATCH.",
                        )
                    )
                    continue
                current.append(operation.assignment)
            elif operation.target is not None:
                key = operation.target.key
                kept = [a for a in current if a.target.key != key]
                if len(kept) == len(current):
                    issues.append(
                        validation.Issue(
                            ("operations", index, "target"),
                            "not_assigned",
                            f"{key} has no assignment to remove.",
                        )
                    )
                current = kept
        if issues:
            raise _refuse(issues)
        return current

    return resolve


@router.patch(
    "/tenants/{tenant_id}/deployments/{app}",
    response_model=DeploymentPublic | ChangePlan,
    status_code=202,
    dependencies=[Depends(json_body)],
    responses=WRITE_RESPONSES,
)
async def patch_deployment(
    body: DeploymentPatch, writing: Annotated[Writing, Depends()]
) -> DeploymentPublic | ChangePlan:
    """Add or remove single assignments (to append one, add it): tenantflow resolves them into
    the whole desired set under the same version check as PUT, so Intune is never sent a
    partial set."""
    return await _change(writing, "patch", _patched(body.operations))


@router.delete(
    "/tenants/{tenant_id}/deployments/{app}",
    response_model=DeploymentPublic | ChangePlan,
    status_code=202,
    responses=WRITE_RESPONSES,
)
async def delete_deployment(
    tenant_id: str,
    app: AppId,
    user: OperatorUser,
    portal: PortalDep,
    request: Request,
    response: Response,
    confirm: ConfirmQuery = False,
    dry_run: DryRunQuery = False,
    remove_app: Annotated[
        bool, Query(description="Delete the app from Intune too, once its assignments are gone.")
    ] = False,
    if_match: Annotated[str | None, Header()] = None,
) -> DeploymentPublic | ChangePlan:
    """Remove every assignment tenantflow manages for the app; the Intune app itself stays
    unless ?remove_app=true. Needs If-Match with the deployment's ETag."""
    if if_match is None:
        raise Problem(428, "Send If-Match with the deployment's ETag to remove it.")
    writing = Writing(
        tenant_id, app, user, portal, request, response, confirm, dry_run, if_match, None
    )
    return await _change(writing, "remove", lambda previous: [], remove_app)
