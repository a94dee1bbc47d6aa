"""Bearer tokens issued by Entra ID to the portal API's multi-tenant app registration.

Checks, in order: RS256 only (no ``none``, no HMAC with the public key); a key from the
issuer's JWKS, refreshed on an unknown kid at most every ``jwks_min_refresh_seconds`` (one fetch
at a time, so a burst of forged kids cannot cause a refetch storm); ``aud`` our client id or App
ID URI; ``tid`` a GUID; ``iss`` exactly the v2 issuer of that tid; ``exp``/``nbf`` with a small
skew; ``oid`` a GUID. Users are identified by (tid, oid) only, never by email or UPN.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from uuid import UUID

import httpx
import jwt

ALGORITHM = "RS256"


class PortalRole(StrEnum):
    ADMIN = "Tenantflow.Admin"
    """Link tenants, activate Intune writing, change deployments."""
    OPERATOR = "Tenantflow.Operator"
    """Change deployments."""
    AUDITOR = "Tenantflow.Auditor"
    READER = "Tenantflow.Reader"


class AuthenticationError(Exception):
    """The bearer token is missing or not acceptable; the reason is for logs, not clients."""


@dataclass(frozen=True)
class Principal:
    tenant_id: UUID
    object_id: UUID
    roles: frozenset[PortalRole]
    name: str | None = None

    def has_any(self, *roles: PortalRole) -> bool:
        return bool(self.roles & set(roles))


class JwksCache:
    """Signing keys by kid, fetched from ``url`` and refreshed only when a kid is unknown."""

    def __init__(
        self, url: str, client: httpx.AsyncClient, min_refresh_seconds: float = 60.0
    ) -> None:
        self.url = url
        self._client = client
        self._min_refresh = min_refresh_seconds
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()
        self.fetches = 0

    async def get(self, kid: str) -> dict[str, Any] | None:
        if kid in self._keys:
            return self._keys[kid]
        async with self._lock:  # one refresh at a time; the others see its result
            if kid not in self._keys and time.monotonic() - self._fetched_at >= self._min_refresh:
                await self._refresh()
        return self._keys.get(kid)

    async def _refresh(self) -> None:
        self._fetched_at = time.monotonic()
        self.fetches += 1
        response = await self._client.get(self.url)
        response.raise_for_status()
        self._keys = {key["kid"]: key for key in response.json().get("keys", []) if "kid" in key}


class TokenValidator:
    def __init__(
        self,
        jwks: JwksCache,
        audiences: list[str],
        issuer_template: str,
        clock_skew_seconds: int = 120,
    ) -> None:
        self._jwks = jwks
        self._audiences = audiences
        self._issuer_template = issuer_template
        self._skew = clock_skew_seconds

    async def validate(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"malformed token: {exc}") from exc
        if header.get("alg") != ALGORITHM:
            raise AuthenticationError(f"algorithm {header.get('alg')!r} is not {ALGORITHM}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise AuthenticationError("no kid")
        jwk = await self._jwks.get(kid)
        if jwk is None:
            raise AuthenticationError(f"unknown signing key {kid!r}")
        try:
            key = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audiences,
                leeway=self._skew,
                options={"require": ["exp", "nbf", "iat", "iss", "aud", "tid", "oid"]},
            )
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"rejected: {exc}") from exc
        try:
            tenant_id, object_id = UUID(str(claims["tid"])), UUID(str(claims["oid"]))
        except ValueError as exc:
            raise AuthenticationError("tid or oid is not a GUID") from exc
        expected_issuer = self._issuer_template.replace("{tenantid}", str(tenant_id))
        if claims["iss"] != expected_issuer:
            raise AuthenticationError(f"issuer {claims['iss']!r} is not {expected_issuer!r}")
        key_issuer = jwk.get("issuer")
        if key_issuer not in (None, self._issuer_template, expected_issuer):
            raise AuthenticationError("the signing key belongs to another issuer")
        roles = frozenset(
            PortalRole(role)
            for role in claims.get("roles", [])
            if role in PortalRole._value2member_map_
        )
        return Principal(tenant_id, object_id, roles, claims.get("name"))
