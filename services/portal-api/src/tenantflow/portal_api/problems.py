"""RFC 9457 problem details everywhere, with a stable type URI per error and the request id."""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tenantflow.bus.errors import is_transient

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://tenantflow.dev/problems/"
REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
ECHO_MAX = 200
"""At most this many characters of anything a client sent are echoed back in an error."""
ERRORS_MAX = 20
"""At most this many validation errors are listed."""


def clip(text: str, limit: int = ECHO_MAX) -> str:
    """``text``, cut to ``limit`` characters (marked with an ellipsis) when longer."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthenticated", "Authentication required"),
    403: ("forbidden", "Not allowed"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    409: ("conflict", "Conflict"),
    412: ("precondition-failed", "Precondition failed"),
    413: ("content-too-large", "Content too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("validation-failed", "Validation failed"),
    428: ("precondition-required", "Precondition required"),
    429: ("rate-limited", "Too many requests"),
    500: ("internal-error", "Internal error"),
    503: ("unavailable", "Service unavailable"),
}
RETRY_AFTER_S = 1
"""What a 503 asks a client to wait: the database or broker restarting is a matter of seconds."""


class ProblemDetails(BaseModel):
    """An RFC 9457 problem document, as every error of this API is (application/problem+json).
    Some problems add members: ``current_etag`` (412), ``max_bytes`` (413)."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A stable URI per kind of error.")
    title: str = Field(description="A short summary of the kind of error.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request, for a human.")
    instance: str = Field(description="The path of the request.")
    request_id: str = Field(description="The request's id, also in X-Request-ID.")


class FieldError(BaseModel):
    location: list[str] = Field(description="Where in the request: body, query, path, header.")
    message: str
    type: str = Field(description="A machine-readable kind, e.g. missing, extra_forbidden.")


class ValidationProblem(ProblemDetails):
    """422: the request does not match the schema; ``errors`` lists the first ones."""

    errors: list[FieldError]


class Problem(Exception):
    """Raise to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        slug: str | None = None,
        headers: dict[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(detail)
        default_slug, self.title = TITLES.get(status, ("error", "Error"))
        self.status, self.detail, self.slug = status, detail, slug or default_slug
        self.headers = headers or {}
        self.extensions = extensions


def etag_listed(etag: str, header: str) -> bool:
    """Whether an If-Match or If-None-Match header names ``etag`` itself."""
    return etag in {tag.strip() for tag in header.split(",")}


def require_match(etag: str, if_match: str, what: str) -> None:
    """412 with the current ETag unless ``if_match`` names it or is ``*``: the ``what`` changed
    since it was read."""
    if not (etag_listed(etag, if_match) or etag_listed("*", if_match)):
        raise Problem(
            412,
            f"The {what} changed since you read it; read it again and retry.",
            current_etag=etag,
        )


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def problem_response(request: Request, problem: Problem) -> JSONResponse:
    body = {
        "type": TYPE_BASE + problem.slug,
        "title": problem.title,
        "status": problem.status,
        "detail": clip(problem.detail, 4 * ECHO_MAX),
        "instance": clip(request.url.path),
        "request_id": request_id(request),
        **problem.extensions,
    }
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


class RequestIds:
    """X-Request-ID accepted from the gateway (when well-formed) or generated; on every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope["headers"]).get(b"x-request-id", b"").decode(errors="replace")
        value = given if _VALID_REQUEST_ID.match(given) else str(uuid.uuid4())
        scope.setdefault("state", {})["request_id"] = value

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", value.encode()),
                ]
            await send(message)

        await self.app(scope, receive, send_with_id)


def _problem_schemas() -> dict[str, Any]:
    _, schemas = models_json_schema(
        [(ProblemDetails, "serialization"), (ValidationProblem, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    definitions: dict[str, Any] = schemas["$defs"]
    return definitions


def _is_problem(code: str, response: dict[str, Any]) -> bool:
    """An error answer whose body is a problem: every 4xx/5xx, unless the route documented a
    body of another media type (as /readyz does for its 503)."""
    if not code.isdigit() or int(code) < 400:
        return False
    content = response.get("content", {})
    return code == "422" or not content or PROBLEM_JSON in content


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Make the OpenAPI document say what error answers really are: application/problem+json
    with the ProblemDetails schema (ValidationProblem for 422, not FastAPI's
    HTTPValidationError), and the statuses any route can answer: 400 for a body that is not
    JSON, 413, 500, and 503 (the database restarting: retry)."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(_problem_schemas())
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            responses: dict[str, Any] = operation["responses"]
            if "requestBody" in operation:
                responses.setdefault("400", {"description": "The body is not valid JSON"})
            if "422" in responses:
                responses["422"]["description"] = "The request does not match the schema"
            responses.setdefault("413", {"description": "The request body is too large"})
            responses.setdefault("500", {"description": "An unexpected error"})
            responses.setdefault(
                "503", {"description": "The database is briefly unavailable: retry (Retry-After)"}
            )
            if "429" in responses:
                responses["429"]["headers"] = {
                    "Retry-After": {
                        "description": "Seconds to wait before retrying.",
                        "schema": {"type": "integer"},
                    }
                }
            for code, response in responses.items():
                if _is_problem(code, response):
                    name = "ValidationProblem" if code == "422" else "ProblemDetails"
                    response["content"] = {
                        PROBLEM_JSON: {"schema": {"$ref": f"#/components/schemas/{name}"}}
                    }
    return schema


def install(app: FastAPI) -> None:
    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(request, exc)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        headers = dict(exc.headers or {})
        return problem_response(request, Problem(exc.status_code, str(exc.detail), headers=headers))

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        found = exc.errors()
        if any(error.get("type") == "json_invalid" for error in found):
            return problem_response(request, Problem(400, "The body is not valid JSON."))
        errors = [
            {
                "location": [clip(str(part)) for part in error.get("loc", ())][:10],
                "message": clip(str(error.get("msg"))),
                "type": clip(str(error.get("type"))),
            }
            for error in found[:ERRORS_MAX]
        ]
        return problem_response(
            request,
            Problem(
                422,
                "The request does not match the schema"
                + (
                    f" ({len(found)} errors, the first {ERRORS_MAX} listed)."
                    if len(found) > ERRORS_MAX
                    else "."
                ),
                errors=errors,
            ),
        )

    async def on_crash(request: Request, exc: Exception) -> JSONResponse:
        if is_transient(exc):
            # the database restarting, say: nothing was changed, and trying again will work
            log.warning("%s %s: %r", request.method, request.url.path, exc)
            unavailable = Problem(
                503,
                "A service this API depends on is briefly unavailable; nothing was changed. "
                "Retry after the time Retry-After gives.",
                headers={"Retry-After": str(RETRY_AFTER_S)},
            )
            return problem_response(request, unavailable)
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(request, Problem(500, "An unexpected error occurred."))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_problems(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_crash)
    app.add_middleware(RequestIds)


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413 before anything parses it.

    A declared Content-Length over the limit is refused without keeping the body; otherwise the
    body is read as it streams in (chunked, or a Content-Length that understates it) and refused
    as soon as it passes the limit, so at most ``max_bytes`` of it is ever held. What is read is
    handed on to the application unchanged.

    Before answering 413, the rest of the body is read and dropped (up to ``drain_bytes``): a
    client that is still sending would otherwise see the connection reset instead of the answer.
    A client that asked ``Expect: 100-continue`` has not sent it, and is answered at once.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, drain_factor: int = 32) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.drain_bytes = max_bytes * drain_factor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length", b"").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            waiting = headers.get(b"expect", b"").lower() == b"100-continue"
            drained = not waiting and int(declared) <= self.drain_bytes
            await self._refuse(scope, receive, send, drained and await self._drain(receive, 0))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                more = message.get("more_body", False)
                await self._refuse(
                    scope, receive, send, not more or await self._drain(receive, size)
                )
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        delivered = False

        async def replay() -> Message:
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _drain(self, receive: Receive, size: int) -> bool:
        """Read and drop the rest of the body; whether it all came (within ``drain_bytes``)."""
        while size <= self.drain_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return False
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                return True
        return False

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, drained: bool) -> None:
        problem = Problem(
            413,
            f"The request body is larger than {self.max_bytes} bytes.",
            # a body not read to its end leaves the connection unusable
            headers={} if drained else {"Connection": "close"},
            max_bytes=self.max_bytes,
        )
        await problem_response(Request(scope), problem)(scope, receive, send)
