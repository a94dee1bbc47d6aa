"""Entra ID tokens and Microsoft Graph requests for the services that call Graph.

Tokens: MSAL, one app instance per (enterprise app, tenant), its token cache in memory only,
forgotten on demand. Requests: a timeout on each; transient failures (5xx, timeouts, dropped
connections) retried with jittered exponential backoff; a 429 raised as ``Throttled`` with its
Retry-After and scope by ``send``, for callers that schedule their work; ``request`` is the
convenience policy that waits a 429 out, for callers that do not.
"""

from __future__ import annotations

import asyncio
import random
import re
import ssl
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID

import jwt
import msal
import requests

from tenantflow.bus.errors import TransientError
from tenantflow.contracts.events import VerificationFailure as Failure
from tenantflow.graph.credentials import AppCredentials
from tenantflow.graph.errors import (
    RESYNC_CODES,
    ForeignLink,
    GraphCallFailed,
    ResyncNeeded,
    Throttled,
    TokenRefused,
    classify_token_error,
    graph_error,
    retry_after_seconds,
)
from tenantflow.graph.http import AiohttpExchange, Exchange, HttpxExchange, Unreachable

if TYPE_CHECKING:
    import httpx

DeniedHook = Callable[[UUID, UUID, "int | None", str, str], Awaitable[None]]
"""(tenant id, app client id, HTTP status or None, error code, detail) of a refusal."""

GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
MICROSOFT_LOGIN = "https://login.microsoftonline.com"
SERVER_ERRORS = frozenset({500, 502, 503, 504})


@dataclass(frozen=True)
class GraphAnswer:
    status: int
    body: dict[str, Any]
    request_id: str | None


class _VerifyingSession(requests.Session):
    """requests lets REQUESTS_CA_BUNDLE override a session's own ``verify``; passing it on each
    request keeps the CA we were given."""

    def __init__(self, verify: str | bool) -> None:
        super().__init__()
        self._verify = verify

    def request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("verify", self._verify)
        return super().request(*args, **kwargs)


def unverified_claims(token: str) -> dict[str, Any]:
    """The claims of a token Entra ID issued to us, read without verifying it (Graph tokens are
    not ours to validate: access-tokens.md)."""
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@dataclass
class GraphClient:
    login_base_url: str
    graph_base_url: str
    ca_bundle: str | None
    attempts: int = 4
    backoff_s: float = 0.5
    """The first retry waits up to this (full jitter), each next one up to twice as long."""
    timeout_s: float = 30.0
    random: random.Random = field(default_factory=random.Random)
    transport: httpx.AsyncBaseTransport | None = None
    """For tests: where requests go instead of the network (through httpx; aiohttp otherwise,
    see ``http``)."""
    report_denied: DeniedHook | None = None
    """Called on a 401 or 403 from Graph and on AADSTS700016 from Entra ID, before raising."""
    token_threads: int = 16
    """MSAL is synchronous: its calls run in a pool of their own, so tokens for many tenants at
    once neither queue behind each other in the loop's default pool nor hold it up."""
    _msal: dict[tuple[UUID, str], msal.ConfidentialClientApplication] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.answers: Counter[tuple[str, str, str]] = Counter()
        """Graph's answers by method, status (or "unreachable") and x-ms-throttle-scope, for
        the service's metrics."""
        self.timed: Callable[[str, float], None] = lambda method, seconds: None
        """Told how long each call took to its answer or failure (the service's metrics)."""
        self.batch_items: Counter[tuple[str, str, str]] = Counter()
        """The answers inside JSON batches, as ``answers`` counts calls: a batch answered 200
        can hold 429s and 5xx (``count_batch_item``)."""
        self._tokens = ThreadPoolExecutor(self.token_threads, thread_name_prefix="msal")
        self._verify: str | bool = self.ca_bundle or True
        # one session for every tenant's MSAL app: one connection pool and TLS context to
        # Entra ID, not one per tenant (each costs memory, and a handshake per tenant)
        self._entra = _VerifyingSession(self._verify)
        self._http: Exchange = (
            HttpxExchange(self.transport, self.timeout_s)
            if self.transport is not None
            else AiohttpExchange(
                ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else True,
                self.timeout_s,
            )
        )

    async def close(self) -> None:
        await self._http.close()
        self._tokens.shutdown(wait=False, cancel_futures=True)
        self._entra.close()

    # --- tokens --------------------------------------------------------------------------

    def _app(self, credentials: AppCredentials, tenant: str) -> msal.ConfidentialClientApplication:
        key = (credentials.client_id, tenant)
        if key not in self._msal:
            self._msal[key] = msal.ConfidentialClientApplication(
                str(credentials.client_id),
                client_credential=credentials.for_msal(),
                authority=f"{self.login_base_url}/{tenant}",
                instance_discovery=self.login_base_url == MICROSOFT_LOGIN,
                http_client=self._entra,
            )
        return self._msal[key]

    def forget_tokens(self, tenant: str) -> None:
        """Drop cached tokens for ``tenant``: a re-check must ask Entra again, since a revoked
        consent leaves earlier tokens valid until they expire."""
        for key in [key for key in self._msal if key[1] == tenant]:
            del self._msal[key]

    async def token(self, credentials: AppCredentials, tenant: str) -> str:
        try:
            loop = asyncio.get_running_loop()
            app = await loop.run_in_executor(self._tokens, self._app, credentials, tenant)
            result = await loop.run_in_executor(
                self._tokens, app.acquire_token_for_client, [GRAPH_DEFAULT_SCOPE]
            )
        except requests.RequestException as exc:
            self._msal.pop((credentials.client_id, tenant), None)
            raise TransientError(f"Entra ID unreachable: {exc}") from exc
        except msal.exceptions.MsalServiceError as exc:
            # MSAL raises (rather than returning an error) when Entra answers 5xx or 429 without
            # a token response: an outage, not a verdict
            self._msal.pop((credentials.client_id, tenant), None)
            status = re.search(r"HTTP Error: (\d+)", str(exc))
            if status and (int(status.group(1)) >= 500 or int(status.group(1)) == 429):
                raise TransientError(f"Entra ID failed: {exc}") from exc
            raise
        except ValueError as exc:  # MSAL: the tenant's discovery document was refused (90002)
            self._msal.pop((credentials.client_id, tenant), None)
            raise TokenRefused(Failure.TENANT_NOT_FOUND, 90002, str(exc)) from exc
        if "access_token" in result:
            return str(result["access_token"])
        refusal = classify_token_error(result)
        if isinstance(refusal, TokenRefused) and refusal.code == 700016 and self.report_denied:
            await self.report_denied(
                UUID(tenant), credentials.client_id, None, "AADSTS700016", refusal.description
            )
        raise refusal

    def count_batch_item(self, method: str, status: int, headers: Mapping[str, str]) -> None:
        """One request's answer inside a JSON batch, for the service's metrics."""
        scope = next((v for k, v in headers.items() if k.lower() == "x-ms-throttle-scope"), "")
        self.batch_items[(method, str(status), scope)] += 1

    # --- requests ------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Full jitter: anywhere up to ``backoff_s * 2 ** (attempt - 1)``, so retries spread out."""
        return self.random.uniform(0, self.backoff_s * 2 ** (attempt - 1))

    async def send(self, token: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """One Graph call, transient failures retried; a 429 raises ``Throttled`` at once."""
        return (await self.call(token, method, path, **kwargs)).body

    async def call(self, token: str, method: str, path: str, **kwargs: Any) -> GraphAnswer:
        """``send``, with Graph's request-id of the answer (errors carry theirs too)."""
        headers = {"Authorization": f"Bearer {token}", **(kwargs.pop("headers", None) or {})}
        params, body = kwargs.pop("params", None), kwargs.pop("json", None)
        if kwargs:
            raise TypeError(f"unexpected arguments: {sorted(kwargs)}")
        url = path if path.startswith(("https://", "http://")) else self.graph_base_url + path
        what = f"{method} {path}"
        for attempt in range(1, self.attempts + 1):
            last = attempt == self.attempts
            started = time.monotonic()
            try:
                response = await self._http(method, url, headers, params, body)
            except Unreachable as exc:  # timeouts and dropped connections included
                self.timed(method, time.monotonic() - started)
                self.answers[(method, "unreachable", "")] += 1
                if last:
                    raise TransientError(f"Graph unreachable: {what}: {exc!r}") from exc
                await asyncio.sleep(self.backoff(attempt))
                continue
            self.timed(method, time.monotonic() - started)
            request_id = response.headers.get("request-id")
            scope = response.headers.get("x-ms-throttle-scope") or ""
            self.answers[(method, str(response.status), scope)] += 1
            if response.status == 429:
                raise Throttled(
                    retry_after_seconds(response.headers.get("Retry-After"), self.backoff_s),
                    response.headers.get("x-ms-throttle-scope"),
                    what,
                    request_id,
                )
            if response.status in SERVER_ERRORS:
                if last:
                    raise TransientError(f"Graph answered {response.status} {attempt} times")
                wait = retry_after_seconds(response.headers.get("Retry-After"), -1.0)
                await asyncio.sleep(wait if wait >= 0 else self.backoff(attempt))
                continue
            answer = response.json() if response.content else {}
            if response.status == 410:
                raise ResyncNeeded(response.headers.get("Location"), *graph_error(answer))
            code, message = graph_error(answer)
            if response.status == 400 and code in RESYNC_CODES:
                raise ResyncNeeded(None, code, message)
            if response.status in (401, 403) and self.report_denied:
                await self._report(token, response.status, code, message)
            if response.status >= 400:
                raise GraphCallFailed(response.status, code, message, request_id)
            return GraphAnswer(response.status, answer, request_id)
        raise AssertionError("unreachable")

    async def _report(self, token: str, status: int, code: str, message: str) -> None:
        """Tell ``report_denied`` whose call was refused: the token names its tenant and app
        (read, not verified: Entra issued it to us)."""
        assert self.report_denied is not None
        try:
            claims = unverified_claims(token)
            tenant, app = UUID(str(claims["tid"])), UUID(str(claims["appid"]))
        except (jwt.PyJWTError, KeyError, ValueError):
            return  # not an app token we can attribute
        await self.report_denied(tenant, app, status, code, message)

    async def request(self, token: str, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """``send``, waiting out a 429's Retry-After (up to ``attempts`` times) for callers
        that do not schedule their work; then ``Throttled`` goes to the caller."""
        for attempt in range(1, self.attempts + 1):
            try:
                return await self.send(token, method, path, **kwargs)
            except Throttled as throttled:
                if attempt == self.attempts:
                    raise
                await asyncio.sleep(throttled.retry_after_s)
        raise AssertionError("unreachable")

    # --- lists ---------------------------------------------------------------------------

    def check_link(self, link: str) -> str:
        """``link`` when it points at the configured Graph endpoint; ``ForeignLink`` otherwise."""
        ours, theirs = urlsplit(self.graph_base_url), urlsplit(link)
        if (theirs.scheme, theirs.hostname, theirs.port) != (
            ours.scheme,
            ours.hostname,
            ours.port,
        ):
            raise ForeignLink(link, self.graph_base_url)
        return link

    async def pages(
        self,
        token: str,
        path: str,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        wait_throttled: bool = True,
    ) -> AsyncIterator[dict[str, Any]]:
        """Every page of a list, following @odata.nextLink to the last; ``headers`` (such as
        ConsistencyLevel) are sent with every page. ``path`` may be a link Graph gave (a stored
        deltaLink): then ``params`` are ignored, the link has them. ``wait_throttled`` False
        leaves a 429 to the caller as ``Throttled``."""
        call = self.request if wait_throttled else self.send
        if path.startswith(("https://", "http://")):
            # a link Graph gave earlier: it carries its own query, which params would replace
            self.check_link(path)
            params = None
        page = await call(token, "GET", path, params=params, headers=dict(headers or {}))
        yield page
        while isinstance(link := page.get("@odata.nextLink"), str):
            page = await call(token, "GET", self.check_link(link), headers=dict(headers or {}))
            yield page

    async def read_all(
        self, token: str, path: str, params: dict[str, str] | None = None
    ) -> list[dict[str, Any]]:
        """Every item of a list, read to its last page."""
        return [item async for page in self.pages(token, path, params) for item in page["value"]]

    def delta_round(
        self,
        token: str,
        start: str,
        params: dict[str, str] | None = None,
        wait_throttled: bool = True,
    ) -> DeltaRound:
        """One delta round from ``start`` (a delta path such as /v1.0/users/delta with its
        $select, or the deltaLink of the previous round): its pages, one at a time, then the
        deltaLink for the next round. Raises ``ResyncNeeded`` when the token is no longer
        honoured."""
        return DeltaRound(self.pages(token, start, params, wait_throttled=wait_throttled), self)


class DeltaRound:
    """Iterate the pages of a delta round; ``delta_link`` is set once the last one was read."""

    def __init__(self, pages: AsyncIterator[dict[str, Any]], graph: GraphClient) -> None:
        self._pages, self._graph = pages, graph
        self.delta_link: str | None = None

    async def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        async for page in self._pages:
            link = page.get("@odata.deltaLink")
            if isinstance(link, str):
                self.delta_link = self._graph.check_link(link)
            yield page
