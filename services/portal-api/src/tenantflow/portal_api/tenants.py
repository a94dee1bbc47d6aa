"""/v1/tenants: link a tenant, read its status, activate Intune writing, unlink.

Each write changes the tenant link and stores its event in the outbox in one transaction, with the
link's row locked, so one tenant's events are published in the order they were decided. A tenant
the user's account cannot reach is 404 whether or not it exists, so tenant ids cannot be probed.
A tenant's rate limit is charged only once the caller is known to reach it: a stranger's requests
count against the stranger's own limit alone, and cannot lock a tenant's admins out.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID, uuid4, uuid5

from fastapi import APIRouter, Body, Depends, Header, Query, Request, Response
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tenantflow.bus.db import snapshot, transaction
from tenantflow.contracts.common import UserActor
from tenantflow.contracts.events import (
    IntuneWritingActivationRequested,
    TenantLinkRequested,
    TenantUnlinked,
)
from tenantflow.portal_api import lifecycle
from tenantflow.portal_api.auth import Principal
from tenantflow.portal_api.deps import AdminUser, PortalDep, PortalUser, json_body, limit_tenant
from tenantflow.portal_api.models import (
    Account,
    IntuneActivation,
    IntuneWritingStatus,
    LinkStatus,
    TenantLink,
    TenantLinkCreate,
    TenantPage,
    TenantPublic,
    TenantTrack,
    Track,
)
from tenantflow.portal_api.problems import Problem, etag_listed, require_match

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])


def problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/problem+json": {}}}


PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: problem("No valid bearer token"),
    403: problem("The portal role is missing"),
    404: problem("No such tenant for your account"),
    429: problem("Rate limited; see Retry-After"),
}


def _etag(link: TenantLink) -> str:
    return f'"{link.version}"'


def _not_found(tenant_id: object) -> Problem:
    return Problem(404, f"No tenant {tenant_id} is linked to your account.")


def tenant_id_of(value: str) -> UUID:
    try:
        return UUID(value)
    except ValueError:
        raise _not_found(value) from None


def actor(user: Principal) -> UserActor:
    name = user.name[:256] if user.name else None
    return UserActor(tenant_id=user.tenant_id, object_id=user.object_id, display_name=name)


@dataclass
class LinkedTenant:
    """A tenant link with its tracks (the link's own request, Intune writing)."""

    link: TenantLink
    tracks: dict[Track, TenantTrack]

    @property
    def status(self) -> LinkStatus:
        return LinkStatus(self.tracks[Track.LINK].status)

    @property
    def intune_status(self) -> IntuneWritingStatus:
        return IntuneWritingStatus(self.tracks[Track.INTUNE_WRITING].status)

    @property
    def tenant_id(self) -> UUID:
        return self.link.tenant_id

    def public(self) -> TenantPublic:
        return TenantPublic.of(self.link, self.tracks)

    def changed(self, session: AsyncSession, at: datetime, *tracks: TenantTrack) -> None:
        """The link or ``tracks`` changed at ``at``: its version (the ETag) moves on."""
        self.link.version += 1
        self.link.updated_at = at
        session.add(self.link)
        session.add_all(tracks)


def _answer(
    request: Request, response: Response, tenant: LinkedTenant, status_code: int
) -> TenantPublic:
    response.status_code = status_code
    response.headers["ETag"] = _etag(tenant.link)
    response.headers["Location"] = str(request.url_for("get_tenant", tenant_id=tenant.tenant_id))
    if status_code == 202:
        # the long-running-operation convention of Microsoft's REST guidelines: poll Location
        response.headers["Retry-After"] = "1"
    return tenant.public()


def _check_if_match(link: TenantLink, if_match: str | None, required: bool) -> None:
    if if_match is None:
        if required:
            raise Problem(428, "Send If-Match with the tenant's ETag to confirm this change.")
        return
    require_match(_etag(link), if_match, "tenant")


async def _tracks_of(
    session: AsyncSession, links: list[TenantLink], lock: bool
) -> list[LinkedTenant]:
    if not links:
        return []
    statement = select(TenantTrack).where(
        col(TenantTrack.account_id).in_({link.account_id for link in links}),
        col(TenantTrack.tenant_id).in_({link.tenant_id for link in links}),
    )
    if lock:
        statement = statement.with_for_update()
    tracks: dict[tuple[UUID, UUID], dict[Track, TenantTrack]] = {}
    for track in (await session.exec(statement)).all():
        tracks.setdefault((track.account_id, track.tenant_id), {})[Track(track.track)] = track
    return [LinkedTenant(link, tracks[(link.account_id, link.tenant_id)]) for link in links]


async def linked(
    session: AsyncSession, home_tenant_id: UUID, tenant_id: UUID, lock: bool = False
) -> LinkedTenant | None:
    """The tenant link ``tenant_id`` of the account of ``home_tenant_id``'s users, with its
    tracks (locked with it when ``lock``); None when that account does not reach it."""
    statement = (
        select(TenantLink)
        .join(Account, col(Account.id) == col(TenantLink.account_id))
        .where(Account.home_tenant_id == home_tenant_id, TenantLink.tenant_id == tenant_id)
    )
    if lock:
        statement = statement.with_for_update(of=TenantLink)
    link = (await session.exec(statement)).first()
    if link is None:
        return None
    return (await _tracks_of(session, [link], lock))[0]


async def reachable(
    session: AsyncSession, user: Principal, tenant_id: UUID, lock: bool = False
) -> LinkedTenant:
    """The tenant link ``tenant_id`` of the user's account, with its tracks (locked with it
    when ``lock``); 404 when the account does not reach it."""
    tenant = await linked(session, user.tenant_id, tenant_id, lock)
    if tenant is None:
        raise _not_found(tenant_id)
    return tenant


ACCOUNTS = UUID("0f6c2a4e-7b1d-5e3a-9c8f-2d4b6a8e1c3f")
"""Namespace of account ids (UUID v5): an account's id follows from its home tenant, so a
rebuild from the event log gives it the id the live database has."""


def account_id_of(home_tenant_id: UUID) -> UUID:
    return uuid5(ACCOUNTS, str(home_tenant_id))


async def open_link(
    session: AsyncSession, home_tenant_id: UUID, tenant_id: UUID, at: datetime
) -> LinkedTenant:
    """The link of ``tenant_id`` for the account of ``home_tenant_id``'s users, locked with
    its tracks; the account (today: one per home tenant), the link and its tracks are created
    at ``at`` when missing."""
    await session.exec(
        insert(Account)
        .values(id=account_id_of(home_tenant_id), home_tenant_id=home_tenant_id, created_at=at)
        .on_conflict_do_nothing(index_elements=["home_tenant_id"])
    )
    account_id = (
        await session.exec(select(Account.id).where(Account.home_tenant_id == home_tenant_id))
    ).one()
    created = await session.exec(
        insert(TenantLink)
        .values(account_id=account_id, tenant_id=tenant_id, version=1, updated_at=at)
        .on_conflict_do_nothing()
        .returning(col(TenantLink.tenant_id))
    )
    if created.first() is not None:
        session.add_all(lifecycle.new_track(account_id, tenant_id, track) for track in Track)
        await session.flush()
    tenant = await linked(session, home_tenant_id, tenant_id, lock=True)
    assert tenant is not None, "created or found above"
    return tenant


# --- a user's requests, recorded: by the routes as they accept one, and by a rebuild of the
# read models from the event log (``rebuild``), so both record the same rows -----------------


def record_link_requested(
    session: AsyncSession, tenant: LinkedTenant, event: TenantLinkRequested, at: datetime
) -> bool:
    """The link request ``event`` made at ``at``; False when the link takes no request now
    (pending or linked already: asking again is not a new request)."""
    linking = tenant.tracks[Track.LINK]
    first = linking.change_id is None
    if not isinstance(event.actor, UserActor) or not lifecycle.request(
        linking, event.correlation_id, event.actor, at
    ):
        return False
    tenant.link.authorized_by = None
    if first:
        session.add(linking)  # version 1 is this first request
    else:
        tenant.changed(session, at, linking)
    return True


def record_intune_requested(
    session: AsyncSession,
    tenant: LinkedTenant,
    event: IntuneWritingActivationRequested,
    at: datetime,
) -> bool:
    """The activation request ``event`` made at ``at``; False when it is not a new request:
    the tenant is not linked, the request is pending, or writing is enabled on these terms."""
    intune = tenant.tracks[Track.INTUNE_WRITING]
    enabled = tenant.intune_status is IntuneWritingStatus.ENABLED
    same_terms = intune.assignments_source_of_truth == event.assignments_source_of_truth
    if (
        tenant.status is not LinkStatus.LINKED
        or (enabled and same_terms)
        or not isinstance(event.actor, UserActor)
        or not lifecycle.request(intune, event.correlation_id, event.actor, at)
    ):
        return False
    intune.assignments_source_of_truth = event.assignments_source_of_truth
    tenant.changed(session, at, intune)
    return True


def record_unlinked(session: AsyncSession, tenant: LinkedTenant, at: datetime) -> bool:
    """The tenant unlinked at ``at``; False when it was unlinked already."""
    tracks = list(tenant.tracks.values())
    if not lifecycle.unlink(tenant.tracks[Track.LINK]):
        return False
    lifecycle.unlink(tenant.tracks[Track.INTUNE_WRITING])
    tenant.link.display_name = tenant.link.default_domain = None
    tenant.changed(session, at, *tracks)
    return True


@router.post(
    "",
    status_code=202,
    response_model=TenantPublic,
    dependencies=[Depends(json_body)],
    responses={
        200: {"description": "Already linked; nothing to do", "model": TenantPublic},
        415: problem("The body is not sent as application/json"),
        **PROBLEMS,
    },
)
async def link_tenant(
    body: TenantLinkCreate,
    user: AdminUser,
    portal: PortalDep,
    request: Request,
    response: Response,
) -> TenantPublic:
    """Ask to link a tenant. Consent verifies, from Microsoft Graph, that the directory connector
    is admin-consented there with its permissions and that you may link it; follow the Location
    until the status is no longer pending. Asking again while pending returns the same request."""
    if body.tenant_id != user.tenant_id:
        raise _not_found(body.tenant_id)
    limit_tenant(portal, body.tenant_id)
    now = datetime.now(UTC)
    async with transaction(portal.runtime.sessions) as session:
        tenant = await open_link(session, user.tenant_id, body.tenant_id, now)
        event = TenantLinkRequested(
            tenant_id=tenant.tenant_id, actor=actor(user), correlation_id=uuid4()
        )
        if not record_link_requested(session, tenant, event, now):
            is_linked = tenant.status is LinkStatus.LINKED
            return _answer(request, response, tenant, 200 if is_linked else 202)
        await portal.runtime.outbox.add(session, event, at=now)
        await session.flush()
        return _answer(request, response, tenant, 202)


def _encode_cursor(tenant_id: UUID) -> str:
    return base64.urlsafe_b64encode(tenant_id.bytes).decode().rstrip("=")


def _decode_cursor(cursor: str) -> UUID:
    try:
        return UUID(bytes=base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (ValueError, binascii.Error):
        raise Problem(400, "The cursor is not one this API returned.") from None


@router.get(
    "",
    response_model=TenantPage,
    responses={
        400: problem("The cursor is not valid"),
        **{code: answer for code, answer in PROBLEMS.items() if code != 404},
    },
)
async def list_tenants(
    user: PortalUser,
    portal: PortalDep,
    request: Request,
    response: Response,
    limit: Annotated[
        int, Query(ge=1, description="Page size (at most the server's maximum).")
    ] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> TenantPage:
    """The tenants your account reaches, in a stable order, a page at a time."""
    limit = min(limit, portal.settings.page_size_max)
    statement = (
        select(TenantLink)
        .join(Account, col(Account.id) == col(TenantLink.account_id))
        .where(Account.home_tenant_id == user.tenant_id)
        .order_by(col(TenantLink.tenant_id))
        .limit(limit + 1)
    )
    if cursor is not None:
        statement = statement.where(col(TenantLink.tenant_id) > _decode_cursor(cursor))
    async with snapshot(portal.runtime.sessions) as session:
        links = list((await session.exec(statement)).all())
        more = len(links) > limit
        tenants = await _tracks_of(session, links[:limit], lock=False)
    next_cursor = _encode_cursor(tenants[-1].tenant_id) if more else None
    if next_cursor:
        next_url = request.url.include_query_params(cursor=next_cursor, limit=limit)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return TenantPage(items=[tenant.public() for tenant in tenants], next_cursor=next_cursor)


@router.get(
    "/{tenant_id}",
    response_model=TenantPublic,
    responses={304: {"description": "Not modified (If-None-Match)"}, **PROBLEMS},
)
async def get_tenant(
    tenant_id: str,
    user: PortalUser,
    portal: PortalDep,
    request: Request,
    response: Response,
    if_none_match: Annotated[str | None, Header()] = None,
) -> Any:
    """The link's status (pending, linked, rejected, revoked, unlinked) with the reason and what
    to do about it, who asked and when, and the Intune writing status. ETag for If-Match."""
    tenant = tenant_id_of(tenant_id)
    async with snapshot(portal.runtime.sessions) as session:
        found = await reachable(session, user, tenant)
    limit_tenant(portal, tenant)
    etag = _etag(found.link)
    if if_none_match is not None and etag_listed(etag, if_none_match):
        return Response(status_code=304, headers={"ETag": etag})
    response.headers["ETag"] = etag
    return found.public()


@router.post(
    "/{tenant_id}/intune",
    status_code=202,
    response_model=TenantPublic,
    responses={
        200: {"description": "Already enabled; nothing to do", "model": TenantPublic},
        409: problem("The tenant is not linked"),
        412: problem("If-Match does not match"),
        **PROBLEMS,
    },
)
async def activate_intune_writing(
    tenant_id: str,
    user: AdminUser,
    portal: PortalDep,
    request: Request,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
    activation: Annotated[IntuneActivation | None, Body()] = None,
) -> TenantPublic:
    """Let tenantflow write Intune app assignments in this linked tenant. Consent verifies the
    Intune writer enterprise app's admin consent and write permissions (asked for only now:
    least privilege) and that you may activate it. Asking again while pending returns the same
    request; asking again while enabled with another ``assignments_source_of_truth`` has it
    verified anew (writing goes on meanwhile, in the mode enabled before)."""
    terms = activation or IntuneActivation()
    wanted = tenant_id_of(tenant_id)
    async with transaction(portal.runtime.sessions) as session:
        tenant = await reachable(session, user, wanted, lock=True)
        limit_tenant(portal, wanted)
        _check_if_match(tenant.link, if_match, required=False)
        if tenant.status is not LinkStatus.LINKED:
            raise Problem(
                409, f"The tenant is {tenant.status}; link it before activating Intune writing."
            )
        event = IntuneWritingActivationRequested(
            tenant_id=wanted,
            actor=actor(user),
            correlation_id=uuid4(),
            assignments_source_of_truth=terms.assignments_source_of_truth,
        )
        now = datetime.now(UTC)
        if not record_intune_requested(session, tenant, event, now):
            enabled = tenant.intune_status is IntuneWritingStatus.ENABLED
            return _answer(request, response, tenant, 200 if enabled else 202)
        await portal.runtime.outbox.add(session, event, at=now)
        await session.flush()
        return _answer(request, response, tenant, 202)


@router.delete(
    "/{tenant_id}",
    status_code=202,
    response_model=TenantPublic,
    responses={
        200: {"description": "Already unlinked; nothing to do", "model": TenantPublic},
        412: problem("If-Match does not match"),
        428: problem("If-Match is required"),
        **PROBLEMS,
    },
)
async def unlink_tenant(
    tenant_id: str,
    user: AdminUser,
    portal: PortalDep,
    request: Request,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> TenantPublic:
    """Unlink the tenant: every service stops its work for it and purges what it cached of its
    directory. Needs If-Match with the tenant's current ETag. Unlinking again changes nothing."""
    wanted = tenant_id_of(tenant_id)
    async with transaction(portal.runtime.sessions) as session:
        tenant = await reachable(session, user, wanted, lock=True)
        limit_tenant(portal, wanted)
        _check_if_match(tenant.link, if_match, required=True)
        now = datetime.now(UTC)
        if not record_unlinked(session, tenant, now):
            return _answer(request, response, tenant, 200)
        event = TenantUnlinked(tenant_id=wanted, actor=actor(user), correlation_id=uuid4())
        await portal.runtime.outbox.add(session, event, at=now)
        await session.flush()
        return _answer(request, response, tenant, 202)
