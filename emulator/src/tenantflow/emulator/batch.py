"""JSON batching: POST /$batch with up to 20 requests, each routed, authorised and throttled on
its own, dependsOn honoured (424 when a dependency failed); graph-wire-formats.md §5."""

from __future__ import annotations

import json
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tenantflow.emulator.graph import GraphError, error_response
from tenantflow.emulator.observe import Faults

MAX_REQUESTS = 20
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


def _malformed(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def _validate(body: Any) -> list[dict[str, Any]]:
    if not isinstance(body, dict) or not isinstance(body.get("requests"), list):
        raise _malformed("The batch body must be an object with a 'requests' array.")
    items: list[dict[str, Any]] = body["requests"]
    if not items:
        raise _malformed("A batch must contain at least one request.")
    if len(items) > MAX_REQUESTS:
        raise _malformed(f"Number of batch requests exceeds the maximum of {MAX_REQUESTS}.")
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or not item.get("id") or not item.get("method"):
            raise _malformed("Each request needs an id, a method and a url.")
        if str(item["id"]) in seen:
            raise _malformed(f"Duplicate request id '{item['id']}'.")
        url = str(item.get("url", ""))
        if not url or url.startswith(("http://", "https://")):
            raise _malformed("Request urls must be relative, e.g. /users?$top=5.")
        headers = {k.lower(): v for k, v in (item.get("headers") or {}).items()}
        if "body" in item and "content-type" not in headers:
            raise _malformed(f"Request '{item['id']}' has a body but no Content-Type header.")
        for dependency in item.get("dependsOn") or []:
            if str(dependency) not in seen:
                raise _malformed(f"Request '{item['id']}' depends on an unknown or later request.")
        seen.add(str(item["id"]))
    return items


def batch_routes(inner: ASGIApp, faults: Faults) -> list[Route]:
    async def batch(request: Request) -> Response:
        version = request.url.path.split("/")[1]
        try:
            items = _validate(await request.json())
        except ValueError:
            return error_response(request, _malformed("The batch body is not valid JSON."))
        except GraphError as error:
            return error_response(request, error)
        authorization = request.headers.get("authorization", "")
        statuses: dict[str, int] = {}
        responses: list[dict[str, Any]] = []
        transport = httpx.ASGITransport(app=inner)
        async with httpx.AsyncClient(transport=transport, base_url="https://graph") as client:
            for item in items:
                item_id = str(item["id"])
                failed = [d for d in item.get("dependsOn") or [] if statuses.get(str(d), 0) >= 400]
                if failed:
                    statuses[item_id] = 424
                    responses.append(
                        {
                            "id": item_id,
                            "status": 424,
                            "headers": {},
                            "body": {
                                "error": {
                                    "code": "FailedDependency",
                                    "message": "Failed dependency.",
                                }
                            },
                        }
                    )
                    continue
                method = str(item["method"]).upper()
                url = "/" + version + "/" + str(item["url"]).lstrip("/")
                headers = {"authorization": authorization, **(item.get("headers") or {})}
                content = json.dumps(item["body"]).encode() if "body" in item else None
                answer = await client.request(method, url, headers=headers, content=content)
                status = answer.status_code
                item_headers = {
                    k: v
                    for k, v in answer.headers.items()
                    if k.lower()
                    in (
                        "content-type",
                        "retry-after",
                        "location",
                        "x-ms-throttle-scope",
                        "x-ms-throttle-information",
                    )
                }
                body: Any = answer.json() if answer.content else None
                rule = (
                    faults.pick(method, url, batch=True)
                    if method in WRITE_METHODS and status < 400
                    else None
                )
                if rule is not None:  # the write was applied; the item says otherwise
                    status = 429
                    item_headers["Retry-After"] = rule.retry_after or "1"
                    body = {
                        "error": {"code": "TooManyRequests", "message": "Please retry again later."}
                    }
                statuses[item_id] = status
                responses.append(
                    {
                        "id": item_id,
                        "status": status,
                        "headers": item_headers,
                        **({"body": body} if body is not None else {}),
                    }
                )
        return JSONResponse({"responses": responses})

    return [Route(f"/{v}/$batch", batch, methods=["POST"]) for v in ("v1.0", "beta")]
