"""/v1/tenants/{tenant_id}/audit: the tenant's audit trail, for the Auditor and Admin roles.

Served from the portal's read model of the audit topics (``handlers.audit_recorder``): the same
events ``tenantflow-audit`` replays from Kafka, described the same way
(``contracts.audit.describe``). Same isolation as the tenant itself: a tenant the user's account
cannot reach is 404, and the tenant's rate limit is charged only once the caller reaches it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field
from sqlalchemy import or_, tuple_
from sqlalchemy import select as core_select
from sqlmodel import col, select

from tenantflow.bus.db import snapshot
from tenantflow.portal_api import cursors
from tenantflow.portal_api.auth import PortalRole, Principal
from tenantflow.portal_api.deps import PortalDep, holding, limit_tenant
from tenantflow.portal_api.models import AuditEventRow
from tenantflow.portal_api.problems import Problem
from tenantflow.portal_api.tenants import PROBLEMS, problem, reachable, tenant_id_of

router = APIRouter(prefix="/v1/tenants", tags=["audit"])

AuditUser = Annotated[Principal, Depends(holding(PortalRole.ADMIN, PortalRole.AUDITOR))]
"""May read a tenant's audit trail."""


class AuditEvent(BaseModel):
    time: datetime = Field(description="When the event happened (its CloudEvents time).")
    event_type: str = Field(examples=["deployment.change.applied"])
    actor: str = Field(
        description="Who acted: 'user <object id>' or 'service <name>'.",
        examples=["service intune-writer"],
    )
    actor_object_id: UUID | None = Field(description="A user's object id in their tenant.")
    actor_name: str | None = Field(description="A user's display name when they acted.")
    change_id: UUID = Field(description="The change (correlation id) the event belongs to.")
    causation_id: str | None = Field(description="The id of the event that caused this one.")
    app: str | None = Field(description="The catalog app of a deployment event.")
    revision: int | None = Field(description="The deployment revision of a deployment event.")
    summary: str = Field(
        description="What happened, in one line.",
        examples=["applied: wrote required: group 1b2c3d4e; Graph request ids …"],
    )
    event_id: str
    topic: str = Field(description="Where the event is in the log: topic, partition, offset.")
    partition: int
    offset: int


class AuditPage(BaseModel):
    items: list[AuditEvent]
    next_cursor: str | None = Field(
        description="Pass as ?cursor= for the next page; null on the last page."
    )


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise Problem(400, f"{name} needs a UTC offset (e.g. 2026-11-17T14:00:00Z).")
    return value


@router.get(
    "/{tenant_id}/audit",
    response_model=AuditPage,
    responses={400: problem("A filter or the cursor is not valid"), **PROBLEMS},
)
async def list_audit_events(
    tenant_id: str,
    user: AuditUser,
    portal: PortalDep,
    request: Request,
    response: Response,
    app: Annotated[str | None, Query(max_length=64, description="One catalog app.")] = None,
    actor: Annotated[
        UUID | None,
        Query(
            description="A user's object id: what they did, and every event of the changes "
            "they asked for."
        ),
    ] = None,
    change: Annotated[UUID | None, Query(description="One change (its correlation id).")] = None,
    since: Annotated[datetime | None, Query(description="From this time (inclusive).")] = None,
    until: Annotated[datetime | None, Query(description="Up to this time (inclusive).")] = None,
    limit: Annotated[int, Query(ge=1, description="Page size (at most the maximum).")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> AuditPage:
    """The tenant's audit events in time order, a page at a time: who did what, when, what
    tenantflow verified and wrote (Graph's request ids), filtered by app, actor, change and
    time."""
    wanted = tenant_id_of(tenant_id)
    limit = min(limit, portal.settings.page_size_max)
    rows = AuditEventRow
    statement = (
        select(rows)
        .where(rows.tenant_id == wanted)
        .order_by(col(rows.time), col(rows.event_id))
        .limit(limit + 1)
    )
    if app is not None:
        statement = statement.where(rows.app == app)
    if change is not None:
        statement = statement.where(rows.change_id == change)
    if actor is not None:
        theirs = core_select(col(rows.change_id)).where(
            col(rows.tenant_id) == wanted, col(rows.actor_object_id) == actor
        )
        statement = statement.where(
            or_(col(rows.actor_object_id) == actor, col(rows.change_id).in_(theirs))
        )
    if (moment := _aware("since", since)) is not None:
        statement = statement.where(col(rows.time) >= moment)
    if (moment := _aware("until", until)) is not None:
        statement = statement.where(col(rows.time) <= moment)
    if cursor is not None:
        statement = statement.where(
            tuple_(col(rows.time), col(rows.event_id))
            > cursors.unpack(cursor, datetime.fromisoformat, str)
        )
    async with snapshot(portal.runtime.sessions) as session:
        await reachable(session, user, wanted)
        limit_tenant(portal, wanted)
        found = list((await session.exec(statement)).all())
    more = len(found) > limit
    items = [AuditEvent.model_validate(row, from_attributes=True) for row in found[:limit]]
    next_cursor = None
    if more:
        last = found[limit - 1]
        next_cursor = cursors.pack(last.time.isoformat(), last.event_id)
    if next_cursor:
        next_url = request.url.include_query_params(cursor=next_cursor, limit=limit)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return AuditPage(items=items, next_cursor=next_cursor)
