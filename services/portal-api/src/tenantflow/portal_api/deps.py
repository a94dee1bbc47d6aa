"""FastAPI dependencies: the composition root, the signed-in user, role checks, media types."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tenantflow.portal_api.auth import AuthenticationError, PortalRole, Principal
from tenantflow.portal_api.bootstrap import Portal
from tenantflow.portal_api.problems import Problem

log = logging.getLogger(__name__)

_bearer = HTTPBearer(auto_error=False, description="An Entra ID access token for the portal API.")


def get_portal(request: Request) -> Portal:
    portal: Portal = request.app.state.portal
    return portal


PortalDep = Annotated[Portal, Depends(get_portal)]


def _rate_limited(retry_after: int, what: str) -> Problem:
    return Problem(
        429,
        f"Too many requests for this {what}; retry after {retry_after} s.",
        headers={"Retry-After": str(retry_after)},
    )


async def current_user(
    portal: PortalDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The signed-in user, from a valid bearer token; 401 otherwise, 429 over the user's rate."""
    if credentials is None:
        raise Problem(401, "A bearer token is required.", headers={"WWW-Authenticate": "Bearer"})
    try:
        principal = await portal.tokens.validate(credentials.credentials)
    except AuthenticationError as exc:
        log.info("bearer token refused: %s", exc)
        raise Problem(
            401,
            "The bearer token is not valid.",
            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
        ) from exc
    retry_after = portal.user_limits.acquire(f"{principal.tenant_id}/{principal.object_id}")
    if retry_after is not None:
        raise _rate_limited(retry_after, "user")
    return principal


CurrentUser = Annotated[Principal, Depends(current_user)]


def holding(*roles: PortalRole) -> Callable[[Principal], Awaitable[Principal]]:
    async def check(user: CurrentUser) -> Principal:
        if not user.has_any(*roles):
            raise Problem(403, f"This needs one of the portal roles {', '.join(roles)}.")
        return user

    return check


AdminUser = Annotated[Principal, Depends(holding(PortalRole.ADMIN))]
"""May link tenants and activate Intune writing."""
OperatorUser = Annotated[Principal, Depends(holding(PortalRole.ADMIN, PortalRole.OPERATOR))]
"""May change deployments and refresh a tenant's directory."""
TENANT_ROLES = (PortalRole.ADMIN, PortalRole.OPERATOR, PortalRole.AUDITOR, PortalRole.READER)
PortalUser = Annotated[Principal, Depends(holding(*TENANT_ROLES))]
"""Holds a role on the account's tenants: may read them."""
CatalogReader = Annotated[Principal, Depends(holding(*PortalRole))]
"""Holds any portal role: may read the app catalog."""


async def _catalog_admin(user: CurrentUser, portal: PortalDep) -> Principal:
    if not user.has_any(PortalRole.CATALOG_ADMIN):
        raise Problem(403, f"Changing the catalog needs the role {PortalRole.CATALOG_ADMIN}.")
    if portal.settings.provider_tenant_id is None:
        raise Problem(403, "No provider tenant is configured: the catalog stays as shipped.")
    if user.tenant_id != portal.settings.provider_tenant_id:
        raise Problem(
            403,
            f"{PortalRole.CATALOG_ADMIN} is honoured for the provider's own users only, not "
            "for a role granted in a customer tenant.",
        )
    return user


CatalogAdmin = Annotated[Principal, Depends(_catalog_admin)]
"""The provider's catalog administrator: may change the app catalog."""


def limit_tenant(portal: Portal, tenant_id: UUID) -> None:
    """Charge ``tenant_id``'s budget: call it only once the caller is known to reach it."""
    retry_after = portal.tenant_limits.acquire(str(tenant_id))
    if retry_after is not None:
        raise _rate_limited(retry_after, "tenant")


async def json_body(request: Request) -> None:
    """A body must be JSON; anything else is 415 before it is parsed."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise Problem(415, "Send the body as application/json.")
