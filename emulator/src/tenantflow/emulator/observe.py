"""Cross-cutting behaviour: request ids, the request log, and injected faults."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import math
import re
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantflow.emulator.graph import error_body

CONTROL_PREFIX = "/_emulator/"


class FaultRule(BaseModel):
    """A share of matching requests gets a fault instead of (or before) the real answer."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(default_factory=lambda: uuid.uuid4().hex[:12])
    method: str = Field(default="*", description="HTTP method, or * for any.")
    path: str = Field(description="A regular expression searched in the request path.")
    share: float = Field(default=1.0, ge=0.0, le=1.0)
    status: Literal[429, 500, 502, 503, 504] | None = None
    retry_after: str | None = Field(default=None, description="Retry-After to send, e.g. 2 or 1.5")
    latency_ms: int = Field(default=0, ge=0, description="Delay added before answering.")
    drop_connection: bool = False
    batch_write_429: bool = Field(
        default=False,
        description="Inside $batch: the write is applied, but its item answers 429.",
    )
    tenant: str | None = Field(
        default=None,
        description="Only requests whose bearer token is for this tenant (its tid): one slow "
        "or failing tenant among healthy ones.",
    )
    matched: int = 0
    fired: int = 0

    @field_validator("path")
    @classmethod
    def _compiles(cls, pattern: str) -> str:
        re.compile(pattern)
        return pattern

    def matches(self, method: str, path: str, tenant: str | None = None) -> bool:
        return (
            self.method in ("*", method)
            and (self.tenant is None or self.tenant == tenant)
            and re.search(self.path, path) is not None
        )

    def should_fire(self) -> bool:
        """Exactly ``share`` of the matching requests, spread evenly (deterministic)."""
        self.matched += 1
        fire = math.floor(self.matched * self.share) > math.floor((self.matched - 1) * self.share)
        if fire:
            self.fired += 1
        return fire


@dataclass
class Faults:
    rules: list[FaultRule] = field(default_factory=list)

    def pick(
        self,
        method: str,
        path: str,
        batch: bool = False,
        tenant: Callable[[], str | None] = lambda: None,
    ) -> FaultRule | None:
        """The first rule that matches and fires; ``tenant`` tells the request's tenant, asked
        only when a rule names one."""
        for rule in self.rules:
            if rule.batch_write_429 != batch:
                continue
            if rule.matches(method, path, tenant() if rule.tenant else None) and rule.should_fire():
                return rule
        return None


def token_claims(scope: Scope) -> dict[str, str]:
    """The tid and appid of the request's bearer token, read without verifying it (to pick
    faults and name the caller in the log only; Graph's routes verify the token)."""
    for name, value in scope["headers"]:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            try:
                payload = value[7:].split(b".")[1]
                claims = json.loads(base64.urlsafe_b64decode(payload + b"=" * (-len(payload) % 4)))
            except (IndexError, ValueError):
                return {}
            if isinstance(claims, dict):
                return {k: str(claims[k]) for k in ("tid", "appid") if k in claims}
    return {}


def token_tenant(scope: Scope) -> str | None:
    return token_claims(scope).get("tid")


@dataclass
class RequestLog:
    entries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=200_000))

    def query(self, filters: dict[str, str]) -> list[dict[str, Any]]:
        def keep(entry: dict[str, Any]) -> bool:
            for name, wanted in filters.items():
                if name == "path_prefix":
                    if not str(entry["path"]).startswith(wanted):
                        return False
                elif name == "since":
                    if entry["time"] < wanted:
                        return False
                elif str(entry.get(name)) != wanted:
                    return False
            return True

        return [entry for entry in self.entries if keep(entry)]


FAULT_CODES = {
    429: ("TooManyRequests", "Please retry again later."),
    500: ("InternalServerError", "An internal server error occurred."),
    502: ("BadGateway", "The server received an invalid response from an upstream server."),
    503: ("ServiceUnavailable", "The service is temporarily unavailable."),
    504: ("GatewayTimeout", "The upstream server did not respond in time."),
}


class Observe:
    """Request ids on every response, one log entry per request, and faults by rule."""

    def __init__(
        self, app: ASGIApp, log: RequestLog, faults: Faults, in_batch: bool = False
    ) -> None:
        self.app, self.log, self.faults, self.in_batch = app, log, faults, in_batch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = str(uuid.uuid4())
        client_request_id = request_id
        for name, value in scope["headers"]:
            if name == b"client-request-id":
                client_request_id = value.decode()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        ids = [
            (b"request-id", request_id.encode()),
            (b"client-request-id", client_request_id.encode()),
        ]
        path, method = scope["path"], scope["method"]
        entry: dict[str, Any] = {
            "time": dt.datetime.now(dt.UTC).isoformat(),
            "method": method,
            "path": path,
            "query": scope.get("query_string", b"").decode(),
            "status": None,
            "client_app": None,
            "tenant": None,
            "request_id": request_id,
            "fault": None,
            "retry_after": None,
            "throttle_scope": None,
            "in_batch": self.in_batch,
        }

        async def send_observed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *ids]
                entry["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"retry-after":
                        entry["retry_after"] = value.decode()
                    elif name.lower() == b"x-ms-throttle-scope":
                        entry["throttle_scope"] = value.decode()
            await send(message)

        try:
            rule = (
                None
                if path.startswith(CONTROL_PREFIX)
                else self.faults.pick(method, path, tenant=lambda: token_tenant(scope))
            )
            if rule is not None:
                entry["fault"] = rule.id
                if rule.latency_ms:
                    await asyncio.sleep(rule.latency_ms / 1000)
                if rule.drop_connection:
                    entry["status"] = "dropped"
                    await send({"type": "http.response.start", "status": 200, "headers": ids})
                    raise ConnectionAbortedError("fault: dropped connection")
                if rule.status is not None:
                    code, text = FAULT_CODES[rule.status]
                    inner = {"code": str(rule.status), "status": str(rule.status)}
                    body = json.dumps(
                        error_body(code, text, request_id, client_request_id, inner)
                    ).encode()
                    headers = [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                    ]
                    if rule.retry_after is not None:
                        headers.append((b"retry-after", rule.retry_after.encode()))
                    await send_observed(
                        {"type": "http.response.start", "status": rule.status, "headers": headers}
                    )
                    await send({"type": "http.response.body", "body": body})
                    return
            await self.app(scope, receive, send_observed)
        finally:
            entry["client_app"] = state.get("client_app")
            entry["tenant"] = state.get("tenant")
            if entry["fault"] and entry["tenant"] is None:
                # answered before Graph's routes read the token: the log names the caller from
                # the token as sent (unverified, for the log only)
                claims = token_claims(scope)
                entry["tenant"] = claims.get("tid")
                entry["client_app"] = claims.get("appid")
            self.log.entries.append(entry)
