"""/v1/catalog/apps: the provider's catalog of apps tenantflow can create in a tenant.

Seeded at start-up from the file shipped with tenantflow (``Settings.catalog_seed``): a seeded
app is added when missing and never overwrites what a catalog administrator changed. Catalog
administrators are the provider's own users with the Tenantflow.CatalogAdmin role; a tenant's
Admin is not one. An app's package identifier and install experience are fixed once it exists,
as Graph fixes them on the winGetApp it creates: to change them, add another catalog app.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from tenantflow.bus.db import transaction
from tenantflow.contracts.events import CatalogApp
from tenantflow.portal_api import cursors
from tenantflow.portal_api.deps import CatalogAdmin, CatalogReader, PortalDep, json_body
from tenantflow.portal_api.models import (
    CATALOG_ID,
    CatalogAppPublic,
    CatalogAppPut,
    CatalogAppRow,
    CatalogPage,
    Deployment,
)
from tenantflow.portal_api.problems import Problem, require_match
from tenantflow.portal_api.tenants import problem

router = APIRouter(prefix="/v1/catalog/apps", tags=["catalog"])

PROBLEMS: dict[int | str, dict[str, Any]] = {
    401: problem("No valid bearer token"),
    403: problem("The role is missing"),
    429: problem("Rate limited; see Retry-After"),
}


def contract_of(row: CatalogAppRow) -> CatalogApp:
    """The catalog app as deployment change events carry it."""
    return CatalogApp(
        catalog_id=row.catalog_id,
        package_identifier=row.package_identifier,
        display_name=row.display_name,
        publisher=row.publisher,
        description=row.description,
        run_as_account=row.run_as_account,
    )


async def find(session: AsyncSession, catalog_id: str, lock: bool = False) -> CatalogAppRow:
    statement = select(CatalogAppRow).where(CatalogAppRow.catalog_id == catalog_id)
    if lock:
        statement = statement.with_for_update()
    row = (await session.exec(statement)).first()
    if row is None:
        raise Problem(404, f"No app {catalog_id!r} in the catalog (GET /v1/catalog/apps).")
    return row


def _etag(row: CatalogAppRow) -> str:
    return f'"{row.version}"'


@router.get("", response_model=CatalogPage, responses={400: problem("Bad cursor"), **PROBLEMS})
async def list_catalog_apps(
    user: CatalogReader,
    portal: PortalDep,
    request: Request,
    response: Response,
    limit: Annotated[int, Query(ge=1, description="Page size (at most the maximum).")] = 50,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page.")] = None,
) -> CatalogPage:
    """The apps tenantflow can deploy, by id, a page at a time."""
    limit = min(limit, portal.settings.page_size_max)
    statement = select(CatalogAppRow).order_by(col(CatalogAppRow.catalog_id)).limit(limit + 1)
    if cursor is not None:
        statement = statement.where(
            col(CatalogAppRow.catalog_id) > cursors.decode(cursor, CATALOG_ID)
        )
    async with portal.runtime.sessions() as session:
        rows = list((await session.exec(statement)).all())
    more = len(rows) > limit
    rows = rows[:limit]
    next_cursor = cursors.encode(rows[-1].catalog_id) if more else None
    if next_cursor:
        next_url = request.url.include_query_params(cursor=next_cursor, limit=limit)
        response.headers["Link"] = f'<{next_url}>; rel="next"'
    return CatalogPage(items=[CatalogAppPublic.of(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/{app}", response_model=CatalogAppPublic, responses={404: problem("No such app"), **PROBLEMS}
)
async def get_catalog_app(
    app: str, user: CatalogReader, portal: PortalDep, response: Response
) -> CatalogAppPublic:
    """One catalog app; its ETag is for If-Match when changing it."""
    async with portal.runtime.sessions() as session:
        row = await find(session, app)
    response.headers["ETag"] = _etag(row)
    return CatalogAppPublic.of(row)


@router.put(
    "/{app}",
    response_model=CatalogAppPublic,
    status_code=200,
    dependencies=[Depends(json_body)],
    responses={
        201: {"description": "Added", "model": CatalogAppPublic},
        404: problem("No such app (to change one, it must exist)"),
        409: problem("The package identifier or install experience would change"),
        415: problem("The body is not sent as application/json"),
        412: problem("If-Match or If-None-Match does not hold"),
        428: problem("If-Match or If-None-Match: * is required"),
        **PROBLEMS,
    },
)
async def put_catalog_app(
    app: Annotated[str, Path(pattern=CATALOG_ID, description="The app's catalog id.")],
    body: CatalogAppPut,
    user: CatalogAdmin,
    portal: PortalDep,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
) -> CatalogAppPublic:
    """Add an app to the catalog (If-None-Match: *) or change one (If-Match: its ETag)."""
    if (if_match is None) == (if_none_match is None):
        raise Problem(
            428, "Send If-None-Match: * to add an app, or If-Match: its ETag to change it."
        )
    values = {
        **body.model_dump(),
        "source": "admin",
        "updated_by_tenant_id": user.tenant_id,
        "updated_by_object_id": user.object_id,
    }
    async with transaction(portal.runtime.sessions) as session:
        if if_none_match is not None:
            if if_none_match.strip() != "*":
                raise Problem(412, "To add an app, send If-None-Match: * only.")
            added = await session.exec(
                insert(CatalogAppRow)
                .values(catalog_id=app, version=1, **values)
                .on_conflict_do_nothing()
                .returning(col(CatalogAppRow.catalog_id))
            )
            if added.first() is None:
                raise Problem(
                    412, f"The catalog has an app {app!r} already; change it with If-Match."
                )
            row = await find(session, app)
            response.status_code = 201
        else:
            assert if_match is not None
            row = await find(session, app, lock=True)
            require_match(_etag(row), if_match, "app")
            fixed = [
                name
                for name in ("package_identifier", "run_as_account")
                if getattr(row, name) != getattr(body, name)
            ]
            if fixed:
                raise Problem(
                    409,
                    f"{' and '.join(fixed)} cannot change on an existing app "
                    "(Graph fixes them on the app it creates); add another app instead.",
                )
            for name, value in values.items():
                setattr(row, name, value)
            row.version += 1
            row.updated_at = datetime.now(UTC)
            session.add(row)
            await session.flush()
            await session.refresh(row)
    response.headers["ETag"] = _etag(row)
    return CatalogAppPublic.of(row)


@router.delete(
    "/{app}",
    status_code=204,
    responses={
        404: problem("No such app"),
        409: problem("A deployment still uses the app"),
        412: problem("If-Match does not match"),
        428: problem("If-Match is required"),
        **PROBLEMS,
    },
)
async def delete_catalog_app(
    app: str,
    user: CatalogAdmin,
    portal: PortalDep,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    """Take an app out of the catalog, once no deployment of any tenant uses it."""
    if if_match is None:
        raise Problem(428, "Send If-Match with the app's ETag to remove it.")
    async with transaction(portal.runtime.sessions) as session:
        row = await find(session, app, lock=True)
        require_match(_etag(row), if_match, "app")
        used = await session.exec(
            select(func.count())
            .select_from(Deployment)
            .where(Deployment.app == app, col(Deployment.removed).is_(False))
        )
        if used.one():
            raise Problem(409, f"Deployments still use {app!r}; remove them first.")
        await session.delete(row)
    return Response(status_code=204)
