"""The writer's Graph adapter: the Intune calls it makes for one tenant, each within the tenant's
budget (``throttle.Budget``), with Graph's request ids kept for the change's outcome.

Calls (Graph beta: winGetApp and assignment filters on targets exist only there; GD beta
api/intune-apps-wingetapp-create.md, intune-apps-mobileappassignment-list.md,
intune-apps-mobileapp-assign.md, intune-apps-mobileapp-delete.md):
- GET    /beta/deviceAppManagement/mobileApps?$select=id,notes   find apps by marker (read)
- POST   /beta/deviceAppManagement/mobileApps                    create the winGetApp (write)
- GET    /beta/deviceAppManagement/mobileApps/{id}/assignments   what Intune holds (read), for
         a round of many changes in JSON batches of up to 20
- POST   /beta/deviceAppManagement/mobileApps/{id}/assign        the whole set (write), sent
         in JSON batches of up to 20 (POST /beta/$batch; GD concepts/json-batching.md)
- DELETE /beta/deviceAppManagement/mobileApps/{id}               remove_app (write)

The stable marker: an app tenantflow creates carries ``tenantflow:{tenant id}/{catalog id}`` in
its ``notes`` (a plain mobileApp string property Intune shows admins and leaves alone). The app's
identity is the Graph id recorded once created; the marker finds it when that record was lost
(the writer died between Graph's answer and its own commit), never its display name.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from tenantflow.bus.errors import TransientError
from tenantflow.contracts.events import CatalogApp, GraphError
from tenantflow.graph.client import GraphAnswer, GraphClient
from tenantflow.graph.errors import GraphCallFailed, Throttled, graph_error, retry_after_seconds
from tenantflow.intune_writer.throttle import Budget

APPS = "/beta/deviceAppManagement/mobileApps"
APPS_RELATIVE = APPS.removeprefix("/beta")
"""As a JSON batch's items name it (the batch's own URL carries the version)."""
PAGE = 999
"""Apps per page of a listing: Graph's usual maximum $top."""
MARKER = re.compile(r"tenantflow:([0-9a-fA-F-]{36})/([a-z0-9][a-z0-9.-]{0,63})")


def marker(tenant_id: UUID, app: str) -> str:
    return f"tenantflow:{tenant_id}/{app}"


def app_body(tenant_id: UUID, app: CatalogApp) -> dict[str, Any]:
    """A winGetApp as Graph creates it (packageIdentifier and installExperience are required
    and fixed for good), with tenantflow's marker in its notes."""
    return {
        "@odata.type": "#microsoft.graph.winGetApp",
        "displayName": app.display_name,
        "description": app.description or app.display_name,
        "publisher": app.publisher,
        "packageIdentifier": app.package_identifier,
        "installExperience": {
            "@odata.type": "#microsoft.graph.winGetAppInstallExperience",
            "runAsAccount": app.run_as_account,
        },
        "notes": f"Deployed by tenantflow; keep this line: {marker(tenant_id, app.catalog_id)}",
    }


Queued = tuple[UUID, list[dict[str, Any]], "asyncio.Future[str | None]"]
BATCH = 20
"""Requests per JSON batch: Graph's maximum."""


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name), None)


@dataclass(frozen=True)
class BatchItem:
    """One request's answer inside a JSON batch, already counted in the budget."""

    status: int
    body: Any
    throttled: tuple[float, str | None] | None
    """A 429's Retry-After (seconds) and x-ms-throttle-scope."""


class NoBudget(Exception):
    """The tenant's budget has no room for the call now: the work waits, nothing was sent."""


@dataclass
class Calls:
    """The Graph request ids of one change's calls (its writes, for the outcome)."""

    writes: list[str] = field(default_factory=list)
    all: list[str] = field(default_factory=list)


@dataclass
class IntuneSession:
    """One tenant's Intune, as one writer process holds its budget."""

    graph: GraphClient
    token: str
    tenant_id: UUID
    budget: Budget
    clock: Callable[[], float] = time.monotonic
    markers: dict[str, UUID] | None = None
    """Each catalog app found by its marker, by catalog id (None: not listed yet)."""
    found: dict[str, UUID] = field(default_factory=dict)
    """Apps the listing found whose ids the scheduler has not recorded yet (``take_found``)."""
    held: dict[UUID, list[dict[str, Any]]] | None = None
    """What Intune holds for the round's apps, as ``prefetch`` read them (None, or an app
    missing: read per app)."""
    pace_s: float = 0.0
    """A write is queued when the budget frees room for it within this long, and sent once
    it does (``throttle.PACE_S``); 0: only when there is room now."""
    pacing: bool = False
    """A write waits for the window to free its room (the session has time to spare)."""
    _listing: asyncio.Lock = field(default_factory=asyncio.Lock)
    _queued: list[Queued] = field(default_factory=list)
    _flusher: asyncio.Handle | None = None
    _sender: asyncio.Task[None] | None = None

    async def call(
        self, calls: Calls, write: bool, method: str, path: str, **kwargs: Any
    ) -> GraphAnswer:
        """One call if the budget allows it now, or a write once the window frees its room
        within ``pace_s`` (``NoBudget`` otherwise); a 429 hands its Retry-After to the budget
        and is raised as ``Throttled``."""
        if not self.budget.take(self.clock(), write, within=self.pace_s if write else 0.0):
            raise NoBudget(path)
        try:
            if not await self._room(write):
                raise NoBudget(path)
        except BaseException:
            self.budget.unused(write)
            raise
        try:
            answer = await self.graph.call(self.token, method, path, **kwargs)
        except Throttled as throttled:
            self.budget.throttled(self.clock(), throttled.retry_after_s, write, throttled.scope)
            raise
        except BaseException as exc:
            self.budget.answered(self.clock(), write)
            request_id = getattr(exc, "request_id", None)
            if request_id:
                calls.all.append(request_id)
            raise
        self.budget.answered(self.clock(), write)
        if answer.request_id:
            calls.all.append(answer.request_id)
            if write:
                calls.writes.append(answer.request_id)
        return answer

    async def find_marked(self, calls: Calls, app: str) -> UUID | None:
        """The app carrying tenantflow's marker for ``app``, if any; the tenant's apps are
        listed once per session."""
        async with self._listing:
            return await self._find_marked(calls, app)

    async def _find_marked(self, calls: Calls, app: str) -> UUID | None:
        if self.markers is None:
            await self._list(calls)
        assert self.markers is not None
        return self.markers.get(app)

    def marked(self, app: str) -> UUID | None:
        """The app found by its marker, when the tenant's apps were listed already."""
        return self.markers.get(app) if self.markers is not None else None

    def take_found(self) -> dict[str, UUID]:
        """The apps found by their markers since last asked: recorded, no listing finds them
        again."""
        found, self.found = self.found, {}
        return found

    async def _list(self, calls: Calls) -> None:
        found: dict[str, UUID] = {}
        path: str | None = APPS
        params: dict[str, str] | None = {"$select": "id,notes", "$top": str(PAGE)}
        while path:
            page = (await self.call(calls, False, "GET", path, params=params)).body
            for item in page.get("value", []):
                match = MARKER.search(str(item.get("notes") or ""))
                if match and UUID(match.group(1)) == self.tenant_id:
                    found.setdefault(match.group(2), UUID(item["id"]))
            link = page.get("@odata.nextLink")
            path, params = (self.graph.check_link(link), None) if link else (None, None)
        self.markers = found
        self.found = dict(found)

    async def prefetch(self, calls: Calls, apps: Sequence[tuple[str, UUID | None]]) -> None:
        """For a round of many changes: the round's apps found (one listing per session, if
        any has no recorded id) and what Intune holds for each, read in JSON batches of GETs
        (twenty reads a call, each counted on its own). Only the round's apps are read, where
        a listing with $expand=assignments would make Intune serialise every app of the
        tenant each round. An app whose read fails here is read on its own when applied."""
        ids = []
        for app, app_id in apps:
            found = app_id or await self.find_marked(calls, app)
            if found is not None:
                ids.append(found)
        self.held = {}
        chunks = [ids[n : n + BATCH] for n in range(0, len(ids), BATCH)]
        for outcome in await asyncio.gather(
            *(self._read_batch(calls, chunk) for chunk in chunks), return_exceptions=True
        ):
            if isinstance(outcome, BaseException):
                raise outcome

    async def _read_batch(self, calls: Calls, app_ids: list[UUID]) -> None:
        taken = [app_id for app_id in app_ids if self.budget.take(self.clock(), write=False)]
        if not taken:
            return  # no reads left in the window: each app's own read finds that out
        requests = [
            {"id": str(n), "method": "GET", "url": f"{APPS_RELATIVE}/{app_id}/assignments"}
            for n, app_id in enumerate(taken)
        ]
        batch, items = await self._batch(False, requests)
        if batch.request_id:
            calls.all.append(batch.request_id)
        held = self.held if self.held is not None else {}
        for app_id, item in zip(taken, items, strict=True):
            body = item.body if item.status == 200 else None
            if isinstance(body, dict) and "@odata.nextLink" not in body:
                held[app_id] = list(body.get("value") or [])

    async def _batch(
        self, write: bool, requests: list[dict[str, Any]]
    ) -> tuple[GraphAnswer, list[BatchItem]]:
        """``requests`` (reserved in the budget already) as one JSON batch, each counted on
        its own as Intune counts it: answered, or throttled with its item's Retry-After. When
        the batch call itself fails, whether Intune saw them is unknown: all are counted, and
        the failure raised."""
        try:
            batch = await self.graph.call(
                self.token, "POST", "/beta/$batch", json={"requests": requests}
            )
        except BaseException as exc:
            for _ in requests:
                if isinstance(exc, Throttled):
                    self.budget.throttled(self.clock(), exc.retry_after_s, write, exc.scope)
                else:
                    self.budget.answered(self.clock(), write)
            raise
        answered = {str(item.get("id")): item for item in batch.body.get("responses", [])}
        items = []
        for request in requests:
            item = answered.get(request["id"], {"status": 500, "body": None, "headers": {}})
            status, headers = int(item["status"]), dict(item.get("headers") or {})
            self.graph.count_batch_item(request["method"], status, headers)
            throttled = None
            if status == 429:
                wait = retry_after_seconds(_header(headers, "retry-after"), 1.0)
                throttled = (wait, _header(headers, "x-ms-throttle-scope"))
                self.budget.throttled(self.clock(), wait, write, throttled[1])
            else:
                self.budget.answered(self.clock(), write)
            items.append(BatchItem(status, item.get("body"), throttled))
        return batch, items

    async def create(self, calls: Calls, app: CatalogApp) -> UUID:
        created = await self.call(calls, True, "POST", APPS, json=app_body(self.tenant_id, app))
        app_id = UUID(str(created.body["id"]))
        if self.markers is not None:
            self.markers[app.catalog_id] = app_id
        if self.held is not None:
            self.held[app_id] = []
        return app_id

    async def assignments(self, calls: Calls, app_id: UUID) -> list[dict[str, Any]]:
        """What Intune holds for the app: as this round's ``prefetch`` read it, or read now."""
        if self.held is not None and app_id in self.held:
            return self.held[app_id]
        items: list[dict[str, Any]] = []
        path: str | None = f"{APPS}/{app_id}/assignments"
        while path:
            page = (await self.call(calls, False, "GET", path)).body
            items.extend(page.get("value", []))
            link = page.get("@odata.nextLink")
            path = self.graph.check_link(link) if link else None
        return items

    async def assign(self, calls: Calls, app_id: UUID, body: list[dict[str, Any]]) -> None:
        """POST …/assign with the whole set, sent in a JSON batch with the round's other
        writes (up to 20 a call): Intune counts and throttles each on its own, and one HTTP
        call carries twenty. The change's request id is the batch's (Graph gives items none)."""
        request_id = await self._queue(app_id, body)
        if request_id:
            calls.all.append(request_id)
            calls.writes.append(request_id)

    def queue_writes(
        self, writes: Sequence[tuple[UUID, list[dict[str, Any]]]]
    ) -> list[asyncio.Future[str | None]]:
        """``assign`` for each of ``writes``, queued at once with no task each: for each, a
        future of its batch's request id (``NoBudget`` when the budget had no room for it)."""
        return [self._queue(app_id, body) for app_id, body in writes]

    def _queue(self, app_id: UUID, body: list[dict[str, Any]]) -> asyncio.Future[str | None]:
        """A write queued for the next batch (within the budget, else ``NoBudget`` at once):
        its batch's request id when answered."""
        answer: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        if not self.budget.take(self.clock(), write=True, within=self.pace_s):
            answer.set_exception(NoBudget(f"{APPS}/{app_id}/assign"))
            return answer
        self._queued.append((app_id, body, answer))
        if self._flusher is None and (self._sender is None or self._sender.done()):
            # the round's other writes reach here in the same turn of the loop: send what has
            # gathered once that turn is over, waiting for nothing
            self._flusher = asyncio.get_running_loop().call_soon(self._flush)
        return answer

    def _flush(self) -> None:
        self._flusher = None
        if self._queued and (self._sender is None or self._sender.done()):
            self._sender = asyncio.create_task(self._send_queued())

    async def _room(self, write: bool) -> bool:
        """Whether the calls reserved and not queued may go: at once, or once the window frees
        their room within ``pace_s`` (waited for here, ``pacing`` meanwhile); False during a
        Retry-After, which is never waited out here, or past the pace."""
        wait = self.budget.send_wait(self.clock(), unsent=len(self._queued), write=write)
        while 0 < wait <= self.pace_s:
            self.pacing = True
            try:
                await asyncio.sleep(wait)  # the window frees their room then
            finally:
                self.pacing = False
            wait = self.budget.send_wait(self.clock(), unsent=len(self._queued), write=write)
        return wait == 0

    async def _send_queued(self) -> None:
        """Every queued write, one batch at a time per tenant (when Intune's real limit is
        lower than assumed, one batch meets it, and what waits behind it is held back by the
        Retry-After), each batch sized when it goes (``Budget.batch_size``) and sent as soon
        as the window has room for it (within ``pace_s``; beyond that, or after a 429, what
        is left waits for the tenant's next round)."""
        while self._queued:
            size = self.budget.batch_size(self.clock(), BATCH, unsent=len(self._queued))
            queued, self._queued = self._queued[:size], self._queued[size:]
            room = await self._room(write=True)
            live = [q for q in queued if not q[2].done()]
            for _ in range(len(queued) - len(live)):  # their round was cut short meanwhile
                self.budget.unused(write=True)
            queued = live
            if not queued:
                continue
            if not room:  # a 429's Retry-After, or a limit learned meanwhile
                for app_id, _, answer in queued:
                    self.budget.unused(write=True)
                    answer.set_exception(NoBudget(f"{APPS}/{app_id}/assign"))
                continue
            await self._send_batch_now(queued)

    async def _send_batch_now(self, queued: list[Queued]) -> None:
        requests = [
            {
                "id": str(n),
                "method": "POST",
                "url": f"{APPS_RELATIVE}/{app_id}/assign",
                "headers": {"Content-Type": "application/json"},
                "body": {"mobileAppAssignments": body},
            }
            for n, (app_id, body, _) in enumerate(queued)
        ]
        try:
            batch, items = await self._batch(True, requests)
        except BaseException as exc:
            for _, _, answer in queued:
                if not answer.done():
                    answer.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (app_id, _, answer), item in zip(queued, items, strict=True):
            what = f"POST {APPS}/{app_id}/assign"
            outcome: BaseException | str | None
            if item.throttled is not None:
                outcome = Throttled(*item.throttled, what, batch.request_id)
            elif item.status < 400:
                outcome = batch.request_id
            elif item.status >= 500:
                outcome = TransientError(f"{what}: Graph answered {item.status}")
            else:
                code, message = graph_error(item.body)
                outcome = GraphCallFailed(item.status, code, message, batch.request_id)
            if answer.done():
                continue  # its round was cut short while the batch was out: counted, no more
            if isinstance(outcome, BaseException):
                answer.set_exception(outcome)
            else:
                answer.set_result(outcome)

    async def delete(self, calls: Calls, app_id: UUID) -> None:
        await self.call(calls, True, "DELETE", f"{APPS}/{app_id}")

    def forget(self, app: str) -> None:
        if self.markers is not None:
            self.markers.pop(app, None)


def _intune_inner(message: str) -> tuple[str | None, str]:
    """Intune's error inside Graph's message: {"ErrorCode", "Message": "<JSON>"} or the JSON
    itself ({"_version": 3, "Message": ...}); (None, message) when it is plain text."""
    code: str | None = None
    for _ in range(3):  # at most two levels of JSON-in-a-string, as Intune nests them
        try:
            inner = json.loads(message)
        except ValueError:
            break
        if not isinstance(inner, dict):
            break
        code = str(inner["ErrorCode"]) if inner.get("ErrorCode") else code
        if not isinstance(inner.get("Message"), str):
            break
        message = inner["Message"]
    return code, message


def graph_error_of(failure: GraphCallFailed) -> GraphError:
    """Graph's error, parsed for people: Intune's inner code and message when it nested one."""
    inner_code, message = _intune_inner(failure.message)
    return GraphError(
        status=failure.status,
        code=inner_code or failure.code or None,
        message=message[:2000] or str(failure),
        request_id=failure.request_id,
    )
