"""X-Forwarded-For, -Proto and -Host, believed only when the peer is a trusted proxy.

From anyone else the headers are ignored, so a client cannot pass itself off as another address
or make us build links to a host of its choosing.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from ipaddress import IPv4Network, IPv6Network, ip_address

from starlette.types import ASGIApp, Receive, Scope, Send

Network = IPv4Network | IPv6Network
_HOST = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?$")


class TrustedProxies:
    def __init__(self, app: ASGIApp, trusted: Sequence[Network]) -> None:
        self.app = app
        self.trusted = list(trusted)

    def _is_trusted(self, host: str) -> bool:
        try:
            address = ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] not in ("http", "websocket") or not client:
            await self.app(scope, receive, send)
            return
        if not self.trusted or not self._is_trusted(client[0]):
            await self.app(scope, receive, send)
            return
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in scope["headers"]
        }
        scope = dict(scope)
        forwarded_for = [hop.strip() for hop in headers.get("x-forwarded-for", "").split(",")]
        # the client is the nearest hop that is not itself one of our proxies
        for hop in reversed([hop for hop in forwarded_for if hop]):
            scope["client"] = (hop, 0)
            if not self._is_trusted(hop):
                break
        proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            scope["scheme"] = proto
        host = headers.get("x-forwarded-host", "").split(",")[0].strip()
        if _HOST.match(host):
            scope["headers"] = [
                (name, value) for name, value in scope["headers"] if name.lower() != b"host"
            ] + [(b"host", host.encode("latin-1"))]
        await self.app(scope, receive, send)
