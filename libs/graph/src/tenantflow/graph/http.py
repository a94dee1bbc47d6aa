"""The HTTP exchange under ``GraphClient``: aiohttp on the network, httpx with a transport given.

Graph calls go through aiohttp: at 24 concurrent requests over TLS it costs about 0.7 ms of CPU
per request here, where httpx costs about 5.5 ms (its connection pool checks every connection
on each request and each response). A writer serving many tenants at Intune's limits spends
most of its CPU there otherwise. httpx stays for tests that hand the client a transport
(``httpx.MockTransport``, an ASGI app): they exercise the same client code above the exchange.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import msgspec
from yarl import URL

if TYPE_CHECKING:
    import httpx


@dataclass(frozen=True)
class RawAnswer:
    status: int
    headers: Mapping[str, str]
    """Case-insensitive, as HTTP has them."""
    content: bytes

    def json(self) -> Any:
        """The body as JSON (msgspec: a JSON batch's answer parses several times faster than
        with the standard library); ``ValueError`` when it is not JSON."""
        try:
            return msgspec.json.decode(self.content)
        except msgspec.DecodeError as exc:
            raise ValueError(f"the answer is not JSON: {exc}") from exc


class Unreachable(Exception):
    """No answer: a timeout, a refused or dropped connection."""


class Exchange(Protocol):
    async def __call__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        body: Any,
    ) -> RawAnswer:
        """``url`` is absolute; ``body`` is sent as JSON when not None."""
        ...

    async def close(self) -> None: ...


class AiohttpExchange:
    """One aiohttp session, made in the loop that first uses it (aiohttp binds a session to
    its loop) and made again if another loop calls."""

    def __init__(self, verify: ssl.SSLContext | bool, timeout_s: float, connections: int = 100):
        self._ssl, self._timeout, self._connections = verify, timeout_s, connections
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _current(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            self._loop = loop
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                # Graph's JSON is parsed by the client; no cookies, no redirects followed
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def __call__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        body: Any,
    ) -> RawAnswer:
        session = self._current()
        # a link Graph gave (nextLink, deltaLink) is sent exactly as given, never re-quoted
        target = URL(url, encoded=True) if params is None else URL(url).with_query(params)
        try:
            async with session.request(
                method, target, headers=dict(headers), json=body, allow_redirects=False
            ) as response:
                content = await response.read()
                return RawAnswer(response.status, response.headers, content)
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError) as exc:
            raise Unreachable(repr(exc)) from exc

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()


class HttpxExchange:
    """Requests handed to an httpx transport (tests: a mock or an ASGI app)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, timeout_s: float) -> None:
        import httpx  # tests only: services never load it for Graph

        self._client = httpx.AsyncClient(transport=transport, timeout=timeout_s)
        self._transport_error = httpx.TransportError

    async def __call__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        params: Mapping[str, str] | None,
        body: Any,
    ) -> RawAnswer:
        try:
            response = await self._client.request(
                method, url, headers=dict(headers), params=params, json=body
            )
        except self._transport_error as exc:
            raise Unreachable(repr(exc)) from exc
        return RawAnswer(response.status_code, response.headers, response.content)

    async def close(self) -> None:
        await self._client.aclose()
