"""JSON batching: POST /$batch with up to 20 requests, each routed, authorised and throttled on
its own, dependsOn honoured (424 when a dependency failed); graph-wire-formats.md §5."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

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


@dataclass
class InnerAnswer:
    status_code: int
    headers: dict[str, str]
    content: bytes


async def call_asgi(
    app: ASGIApp, method: str, url: str, headers: dict[str, str], content: bytes
) -> InnerAnswer:
    """One request straight to the ASGI ``app`` (no HTTP client, no connection): a batch's
    twenty items cost what twenty calls of the app cost, not twenty HTTP round trips."""
    path, _, query = url.partition("?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "https",
        "path": unquote(path),
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
        + [(b"content-length", str(len(content)).encode()), (b"host", b"graph")],
        "client": ("127.0.0.1", 0),
        "server": ("graph", 443),
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": content, "more_body": False}

    answer = InnerAnswer(500, {}, b"")
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            answer.status_code = message["status"]
            answer.headers = {
                k.decode("latin-1"): v.decode("latin-1") for k, v in message.get("headers", [])
            }
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    answer.content = b"".join(chunks)
    return answer


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
        # each item is handed to the Graph app directly, as a request of its own
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
            content = json.dumps(item["body"]).encode() if "body" in item else b""
            answer = await call_asgi(inner, method, url, headers, content)
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
            body: Any = json.loads(answer.content) if answer.content else None
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
