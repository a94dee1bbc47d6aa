"""/v1/tenants/{tenant_id}/groups and /directory: the tenant's groups and its directory cache's
status, served from the portal's read model (directory-sync's events), never from Graph.

Same isolation as the tenant itself: a tenant the user's account cannot reach is 404, and the
tenant's rate limit is charged only once the caller is known to reach it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import tuple_
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select

from tenantflow.bus.db import transaction
from tenantflow.contracts.events import DirectorySyncRequested
from tenantflow.portal_api import cursors
from tenantflow.portal_api.deps import OperatorUser, PortalDep, PortalUser, limit_tenant
from tenantflow.portal_api.models import (
    AssignmentFilterRow,
    DirectoryGroup,
    DirectoryPublic,
    DirectoryState,
    FilterSyncState,
    GroupPage,
    GroupPublic,
    LinkStatus,
)
from tenantflow.portal_api.problems import Problem
from tenantflow.portal_api.tenants import PROBLEMS, actor, problem, reachable, tenant_id_of

router = APIRouter(prefix="/v1/tenants", tags=["directory"])

SEARCH_MAX = 256


def _like_prefix(search: str) -> str:
    """``search`` as a LIKE prefix pattern, its own wildcards taken literally."""
    escaped = search.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


@router.get(
    "/{tenant_id}/groups",
    response_model=GroupPage,
    responses={400: problem("The cursor is not valid"), **PROBLEMS},
)
async def list_groups(
    tenant_id: str,
    user: PortalUser,
    portal: PortalDep,
    request: Request,
    response: Response,
    search: Annotated[
        str | None,
        Query(max_length=SEARCH_MAX, description="Display name prefix, any case."),
    ] = None,
    limit: Annotated[int, Query(ge=1, description="Page size (at most the maximum).")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> GroupPage:
    """The tenant's groups by name, a page at a time, with how many users and devices each
    reaches (through nested groups too)."""
    tenant = tenant_id_of(tenant_id)
    limit = min(limit, portal.settings.page_size_max)
    statement = (
        select(DirectoryGroup)
        .where(DirectoryGroup.tenant_id == tenant)
        .order_by(col(DirectoryGroup.name_key), col(DirectoryGroup.group_id))
        .limit(limit + 1)
    )
    if search:
        statement = statement.where(
            col(DirectoryGroup.name_key).like(_like_prefix(search), escape="\\")
        )
    if cursor is not None:
        after = cursors.unpack(cursor, str, UUID)
        statement = statement.where(
            tuple_(col(DirectoryGroup.name_key), col(DirectoryGroup.group_id)) > after
        )
    async with portal.runtime.sessions() as session:
        await reachable(session, user, tenant)
        limit_tenant(portal, tenant)
        groups = list((await session.exec(statement)).all())
    more = len(groups) > limit
    groups = groups[:limit]
    next_cursor = cursors.pack(groups[-1].name_key, str(groups[-1].group_id)) if more else None
    if next_cursor:
        next_url = request.url.include_query_params(cursor=next_cursor, limit=limit)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return GroupPage(
        items=[GroupPublic.model_validate(group) for group in groups], next_cursor=next_cursor
    )


@router.get("/{tenant_id}/groups/{group_id}", response_model=GroupPublic, responses=PROBLEMS)
async def get_group(tenant_id: str, group_id: str, user: PortalUser, portal: PortalDep) -> Any:
    """One group: name, type, and direct and transitive user and device counts."""
    tenant = tenant_id_of(tenant_id)
    async with portal.runtime.sessions() as session:
        await reachable(session, user, tenant)
        limit_tenant(portal, tenant)
        try:
            wanted = UUID(group_id)
        except ValueError:
            wanted = None
        group = await session.get(DirectoryGroup, (tenant, wanted)) if wanted else None
    if group is None:
        raise Problem(
            404,
            f"No group {group_id} in this tenant's directory (a group created moments ago "
            "appears after the next sync).",
        )
    return GroupPublic.model_validate(group)


@router.get("/{tenant_id}/directory", response_model=DirectoryPublic, responses=PROBLEMS)
async def get_directory(tenant_id: str, user: PortalUser, portal: PortalDep) -> DirectoryPublic:
    """The directory cache's status: last sync, full or incremental, counts, last error and
    the next scheduled sync."""
    tenant = tenant_id_of(tenant_id)
    async with portal.runtime.sessions() as session:
        await reachable(session, user, tenant)
        limit_tenant(portal, tenant)
        state = await session.get(DirectoryState, tenant)
    return DirectoryPublic.of(state)


class AssignmentFilterPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID = Field(validation_alias="filter_id")
    display_name: str
    platform: str = Field(description="Graph's devicePlatformType, e.g. windows10AndLater.")
    management_type: str = Field(description="devices (managed devices) or apps.")


class AssignmentFilterList(BaseModel):
    items: list[AssignmentFilterPublic]
    synced_at: datetime | None = Field(
        description="When the filters were last read from Intune; null before the first read "
        "(it follows Intune writing's activation)."
    )


@router.get(
    "/{tenant_id}/assignment-filters", response_model=AssignmentFilterList, responses=PROBLEMS
)
async def list_assignment_filters(
    tenant_id: str, user: PortalUser, portal: PortalDep
) -> AssignmentFilterList:
    """The tenant's Intune assignment filters, to use in deployments, by name."""
    tenant = tenant_id_of(tenant_id)
    async with portal.runtime.sessions() as session:
        await reachable(session, user, tenant)
        limit_tenant(portal, tenant)
        rows = (
            await session.exec(
                select(AssignmentFilterRow)
                .where(AssignmentFilterRow.tenant_id == tenant)
                .order_by(col(AssignmentFilterRow.display_name))
            )
        ).all()
        synced = await session.get(FilterSyncState, tenant)
    return AssignmentFilterList(
        items=[AssignmentFilterPublic.model_validate(row) for row in rows],
        synced_at=synced.synced_at if synced else None,
    )


@router.post(
    "/{tenant_id}/directory/sync",
    status_code=202,
    response_model=DirectoryPublic,
    responses={409: problem("The tenant is not linked"), **PROBLEMS},
)
async def request_directory_sync(
    tenant_id: str,
    user: OperatorUser,
    portal: PortalDep,
    request: Request,
    response: Response,
    full: Annotated[
        bool, Query(description="Re-read everything instead of the changes since last time.")
    ] = False,
) -> DirectoryPublic:
    """Sync the tenant's directory now instead of at the next scheduled time; follow the
    Location until the status is no longer sync_requested."""
    tenant = tenant_id_of(tenant_id)
    async with transaction(portal.runtime.sessions) as session:
        link = await reachable(session, user, tenant, lock=True)
        limit_tenant(portal, tenant)
        if link.status != LinkStatus.LINKED:
            raise Problem(409, f"The tenant is {link.status}; link it before syncing.")
        now = datetime.now(UTC)
        await session.exec(
            insert(DirectoryState)
            .values(tenant_id=tenant, requested_at=now)
            .on_conflict_do_update(index_elements=["tenant_id"], set_={"requested_at": now})
        )
        await portal.runtime.outbox.add(
            session,
            DirectorySyncRequested(
                tenant_id=tenant,
                actor=actor(user),
                correlation_id=uuid4(),
                mode="full" if full else "delta",
            ),
        )
        state = await session.get(DirectoryState, tenant, populate_existing=True)
    response.headers["Location"] = str(request.url_for("get_directory", tenant_id=tenant))
    response.headers["Retry-After"] = "1"
    return DirectoryPublic.of(state)
