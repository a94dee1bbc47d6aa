"""users/delta, groups/delta and devices/delta over the tenant's change journal
(shared/reference/graph-wire-formats.md §2)."""

from __future__ import annotations

import base64
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, cast
from uuid import UUID

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenantflow.emulator.graph import (
    DEVICES,
    GROUPS,
    USERS,
    Caller,
    Graph,
    GraphError,
    directory_object_json,
    link_base,
)
from tenantflow.emulator.state import Change, Tenant

Resource = Literal["users", "groups", "devices"]
PAGE_SIZE = 100
MEMBERS_PER_ENTRY = 20
"""A large group's members are split across several entries (and pages), as Graph does."""
TOKEN_LIFETIME_S = 7 * 24 * 3600


def _encode(state: dict[str, Any]) -> str:
    return (
        base64.urlsafe_b64encode(json.dumps(state, separators=(",", ":")).encode())
        .decode()
        .rstrip("=")
    )


def _decode(token: str) -> dict[str, Any]:
    try:
        state: dict[str, Any] = json.loads(
            base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        )
        return state
    except ValueError as exc:
        raise GraphError(400, "Request_BadRequest", "The delta token is malformed.") from exc


def _current(tenant: Tenant, resource: Resource) -> dict[UUID, Any]:
    return cast(dict[UUID, Any], getattr(tenant, resource))


def entries(tenant: Tenant, resource: Resource, since: int, until: int) -> Iterator[dict[str, Any]]:
    """What changed in (since, until], one entry per object (a group's members split over
    several); a full sync (since 0) lists what exists, without removals. Produced as pages ask
    for them: the objects are fixed when the round starts, each is read when its page is
    served (so every page costs about the same, as Graph's do)."""
    latest: dict[UUID, Any] = {}
    member_changes: dict[UUID, dict[UUID, Change]] = {}
    for change in tenant.journal[since:until]:
        if change.resource != resource:
            continue
        latest[change.object_id] = change
        if change.member is not None:
            member_changes.setdefault(change.object_id, {})[change.member] = change
    current = _current(tenant, resource)
    for object_id, change in latest.items():
        if object_id not in current:
            if since != 0:
                yield {"id": str(object_id), "@removed": {"reason": change.removed or "deleted"}}
            continue
        body = directory_object_json(tenant, object_id)
        if resource != "groups":
            yield body
            continue
        members: list[tuple[UUID, Change | None]] = (
            # a soft-deleted member is not listed (inferred: it is not a live object), though
            # its membership is kept for when it is restored
            [(m, None) for m in tenant.groups[object_id].members if tenant.exists(m)]
            if since == 0
            else list(member_changes.get(object_id, {}).items())
        )
        chunks = [
            members[i : i + MEMBERS_PER_ENTRY] for i in range(0, len(members), MEMBERS_PER_ENTRY)
        ]
        for chunk in chunks or [[]]:
            entry = dict(body)
            entry["members@delta"] = [_member(tenant, member, change) for member, change in chunk]
            yield entry


@dataclass
class RoundEntries:
    """A delta round's entries, produced up to the page asked for and kept for the pages after
    it (and for a page read again)."""

    source: Iterator[dict[str, Any]]
    produced: list[dict[str, Any]] = field(default_factory=list)

    def page(self, offset: int, size: int) -> tuple[list[dict[str, Any]], bool]:
        """The entries from ``offset``, at most ``size``, and whether more follow."""
        missing = offset + size + 1 - len(self.produced)
        if missing > 0:
            self.produced.extend(itertools.islice(self.source, missing))
        return self.produced[offset : offset + size], len(self.produced) > offset + size


def _member(tenant: Tenant, member: UUID, change: Change | None) -> dict[str, Any]:
    """A members@delta entry typed as the member itself (delta-query-groups.md @007852a), a
    removed one too, with the type it had: it may be gone since."""
    kind = change.member_type if change and change.member_type else tenant.type_of(member)
    if change is not None and change.member_removed:
        return {"@odata.type": kind, "id": str(member), "@removed": {"reason": "deleted"}}
    return {"@odata.type": kind, "id": str(member)}


def _round(tenant: Tenant, since: int, issued: float) -> dict[str, Any]:
    """The state of a delta round: journal entries from ``since`` up to now, from the start."""
    return {
        "since": since,
        "until": len(tenant.journal),
        "offset": 0,
        "epoch": tenant.delta_epoch,
        "issued": issued,
    }


RESOURCE_PERMISSIONS: tuple[tuple[Resource, tuple[str, ...]], ...] = (
    ("users", USERS),
    ("groups", GROUPS),
    ("devices", DEVICES),
)


def delta_routes(graph: Graph) -> list[Route]:
    def handler(resource: Resource, allowed: tuple[str, ...]) -> Any:
        async def delta(request: Request, caller: Caller) -> Response:
            caller.require(allowed)
            tenant = caller.tenant
            params = request.query_params
            base = link_base(request)
            state: dict[str, Any]
            if "$deltatoken" in params or "$skiptoken" in params:
                raw = params.get("$deltatoken") or params.get("$skiptoken") or ""
                # an empty token is the Location of a 410: start over with a full sync
                state = _decode(raw) if raw else _round(tenant, since=0, issued=time.time())
                if state.get("epoch") != tenant.delta_epoch:
                    raise GraphError(
                        410,
                        "resyncRequired",
                        "The delta token is no longer valid; restart with a full synchronization.",
                        headers={"Location": f"{base}?$deltatoken="},
                    )
                if time.time() - float(state.get("issued", 0)) > TOKEN_LIFETIME_S:
                    raise GraphError(
                        400, "syncStateNotFound", "The sync state for this delta token has expired."
                    )
                if "$deltatoken" in params and raw:
                    kept = state.get("select")
                    state = _round(tenant, since=state["since"], issued=state["issued"])
                    if kept:
                        state["select"] = kept
            else:
                state = _round(tenant, since=0, issued=time.time())
            if "$select" in params and not ("$deltatoken" in params or "$skiptoken" in params):
                state["select"] = sorted(n.strip() for n in params["$select"].split(",") if n)
            offset = state["offset"]
            items, more = round_entries(tenant, resource, state).page(offset, PAGE_SIZE)
            body: dict[str, Any] = {
                "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{resource}",
                "value": items,
            }
            if more:
                body["@odata.nextLink"] = (
                    f"{base}?$skiptoken={_encode({**state, 'offset': offset + PAGE_SIZE})}"
                )
            else:
                after = {
                    "since": state["until"],
                    "until": state["until"],
                    "offset": 0,
                    "epoch": tenant.delta_epoch,
                    "issued": time.time(),
                    **({"select": state["select"]} if state.get("select") else {}),
                }
                body["@odata.deltaLink"] = f"{base}?$deltatoken={_encode(after)}"
            return JSONResponse(body)

        return delta

    # Microsoft documents /users/delta; SDKs send the function call forms, which Graph takes too
    forms = ("delta", "delta()", "microsoft.graph.delta", "microsoft.graph.delta()")
    return [
        route
        for resource, allowed in RESOURCE_PERMISSIONS
        for form in forms
        for route in graph.route(f"/{resource}/{form}", handler(resource, allowed))
    ]


ROUNDS_KEPT = 16


def round_entries(tenant: Tenant, resource: Resource, state: dict[str, Any]) -> RoundEntries:
    """The entries of the round ``state`` belongs to, started at its first page: each page of
    a large round then continues where the one before stopped, instead of scanning the whole
    directory again."""
    select = state.get("select")
    key = (resource, state["since"], state["until"], state["epoch"], tuple(select or ()))
    round_ = tenant.delta_rounds.get(key)
    if round_ is None:
        source = entries(tenant, resource, state["since"], state["until"])
        round_ = RoundEntries(selected(entry, select) for entry in source)
        while len(tenant.delta_rounds) >= ROUNDS_KEPT:
            del tenant.delta_rounds[next(iter(tenant.delta_rounds))]
        tenant.delta_rounds[key] = round_
    return round_


ALWAYS = frozenset({"id", "@odata.type", "@removed"})


def selected(entry: dict[str, Any], select: list[str] | None) -> dict[str, Any]:
    """``entry`` with only the properties ``$select`` named (and what every entry carries);
    ``members@delta`` only when members were selected, as Graph does."""
    if not select:
        return entry
    wanted = ALWAYS | set(select) | ({"members@delta"} if "members" in select else set())
    # (Microsoft's page also names $expand=members for that; $select=members is what we send)
    return {key: value for key, value in entry.items() if key in wanted}
