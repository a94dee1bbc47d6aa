"""Intune app management through Graph: mobileApps, their assignments, the /assign action, and
assignment filters (shared/reference/graph-wire-formats.md §1)."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenantflow.emulator.graph import Caller, Graph, GraphError, odata_entity, odata_list
from tenantflow.emulator.state import (
    READ_ONLY_APP_FIELDS,
    assignment_json,
    new_mobile_app,
    now_iso,
)

READ_APPS = ("DeviceManagementApps.Read.All", "DeviceManagementApps.ReadWrite.All")
WRITE_APPS = ("DeviceManagementApps.ReadWrite.All",)
# GD beta intune-policyset-deviceandappmanagementassignmentfilter-list: application permissions
# DeviceManagementConfiguration.ReadWrite.All or .Read.All, not the DeviceManagementApps ones
READ_FILTERS = (
    "DeviceManagementConfiguration.Read.All",
    "DeviceManagementConfiguration.ReadWrite.All",
)
CREATABLE = {
    "microsoft.graph.winGetApp",
    "microsoft.graph.webApp",
    "microsoft.graph.win32LobApp",
    "microsoft.graph.windowsMobileMSI",
    "microsoft.graph.iosStoreApp",
    "microsoft.graph.androidManagedStoreApp",
    "microsoft.graph.officeSuiteApp",
}


def _intune_message(message: str, request: Request) -> str:
    """Intune's own error, as JSON (with CRLF line ends), that Graph puts in error.message."""
    activity = request.scope.get("state", {}).get("request_id", "")
    return json.dumps(
        {
            "_version": 3,
            "Message": f"{message} - Operation ID (for customer support): "
            f"00000000-0000-0000-0000-000000000000 - Activity ID: {activity} - "
            f"Url: https://fef.msub02.manage.microsoft.com/AppLifecycle_2511/"
            f"StatelessAppMetadataFEService/deviceAppManagement{request.url.path}",
            "CustomApiErrorPhrase": "",
            "RetryAfter": None,
            "ErrorSourceService": "",
            "HttpHeaders": "{}",
        },
        indent=2,
    ).replace("\n", "\r\n")


def intune_error(status: int, error_code: str, message: str, request: Request) -> GraphError:
    """An error Intune raised on its side ("An error has occurred", a missing resource): Graph's
    code is UnknownError and its message wraps {"ErrorCode", "Message": Intune's JSON}, the
    JSON-in-a-string form (graph-wire-formats.md §5, from public reports)."""
    wrapped = json.dumps({"ErrorCode": error_code, "Message": _intune_message(message, request)})
    return GraphError(status, "UnknownError", wrapped)


def permission_error(message: str, request: Request) -> GraphError:
    """A missing application permission: Graph's code is Forbidden and its message is Intune's
    JSON itself, with no ErrorCode wrapper (EUCPilots/vcredist#137, Intune-PowerShell-SDK#15)."""
    return GraphError(403, "Forbidden", _intune_message(message, request))


def _require(caller: Caller, allowed: tuple[str, ...], request: Request) -> None:
    if not (caller.roles | caller.scopes) & set(allowed):
        raise permission_error(
            "Application is not authorized to perform this operation. Application must have "
            f"one of the following scopes: {', '.join(allowed)}",
            request,
        )


def _app_or_404(caller: Caller, request: Request) -> tuple[UUID, dict[str, Any]]:
    try:
        app_id = UUID(request.path_params["id"])
        return app_id, caller.tenant.mobile_apps[app_id]
    except (ValueError, KeyError) as exc:
        raise intune_error(
            404,
            "NotFound",
            f"Resource not found for the segment 'mobileApps'. Id: {request.path_params['id']}",
            request,
        ) from exc


async def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError as exc:
        raise GraphError(400, "BadRequest", "The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise GraphError(400, "BadRequest", "The request body must be a JSON object.")
    return body


RUN_AS_ACCOUNTS = ("system", "user")
WINGET_FIXED = ("packageIdentifier", "installExperience")
"""winGetApp properties Graph documents as "required at creation time, cannot be modified on
existing objects" (GD beta resources/intune-apps-wingetapp.md, intune-apps-wingetappinstall
experience.md); installExperience's only property, runAsAccount, is one of them."""


def _winget_fields(body: dict[str, Any]) -> dict[str, Any]:
    """A winGetApp's packageIdentifier and installExperience, checked as Graph documents them
    (both required at creation; runAsAccount system or user). The exact error Graph answers is
    not documented: 400 BadRequest with a message naming the property is inferred."""
    identifier = body.get("packageIdentifier")
    if not isinstance(identifier, str) or not identifier.strip():
        raise GraphError(400, "BadRequest", "packageIdentifier is required for a winGetApp.")
    experience = body.get("installExperience")
    run_as = experience.get("runAsAccount") if isinstance(experience, dict) else None
    if run_as not in RUN_AS_ACCOUNTS:
        raise GraphError(
            400,
            "BadRequest",
            "installExperience.runAsAccount is required for a winGetApp: system or user.",
        )
    return {
        "packageIdentifier": identifier,
        "installExperience": {
            "@odata.type": "#microsoft.graph.winGetAppInstallExperience",
            "runAsAccount": run_as,
        },
        "manifestHash": body.get("manifestHash"),
    }


FILTER_FIELDS = (
    "deviceAndAppManagementAssignmentFilterId",
    "deviceAndAppManagementAssignmentFilterType",
)
"""Assignment filters on targets exist only on beta: v1.0's deviceAndAppManagementAssignment
Target has no properties and groupAssignmentTarget only groupId (GD v1.0 resources/
intune-shared-deviceandappmanagementassignmenttarget.md, intune-shared-groupassignmenttarget.md;
beta: intune-shared-deviceandappmanagementassignmenttarget.md). v1.0 has no winGetApp either
(GD api-reference/v1.0 has no intune-apps-wingetapp.md). How v1.0 refuses them is not
documented: 400 BadRequest with OData's message for a property or type the version's model does
not have is inferred; reading, v1.0 leaves the filter properties out."""


def _version(request: Request) -> str:
    return str(request.scope["path"]).split("/")[1]


def _for_version(assignment: dict[str, Any], version: str) -> dict[str, Any]:
    if version == "beta":
        return assignment
    target = {k: v for k, v in assignment["target"].items() if k not in FILTER_FIELDS}
    return {**assignment, "target": target}


def _v1_refuses_filters(wanted: list[Any], request: Request) -> None:
    if _version(request) == "beta":
        return
    for assignment in wanted:
        target = assignment.get("target") if isinstance(assignment, dict) else None
        for name in FILTER_FIELDS:
            if isinstance(target, dict) and name in target:
                kind = str(target.get("@odata.type", "")).lstrip("#")
                raise GraphError(
                    400,
                    "BadRequest",
                    f"The property '{name}' does not exist on type '{kind}'. Make sure to only "
                    "use property names that are defined by the type.",
                )


def _expanded(request: Request) -> frozenset[str]:
    """$expand of a mobileApp: its assignments (a navigation property of mobileApp, GD beta
    resources/intune-apps-mobileapp.md "Relationships"); anything else is refused as OData
    refuses an unknown property (the message is OData's, inferred for Intune)."""
    wanted = {
        name.strip() for name in request.query_params.get("$expand", "").split(",") if name.strip()
    }
    unknown = wanted - {"assignments"}
    if unknown:
        raise GraphError(
            400,
            "BadRequest",
            f"Could not find a property named '{sorted(unknown)[0]}' on type "
            "'microsoft.graph.mobileApp'.",
        )
    return frozenset(wanted)


def _refresh_is_assigned(caller: Caller, app_id: UUID) -> None:
    app = caller.tenant.mobile_apps[app_id]
    app["isAssigned"] = bool(caller.tenant.app_assignments.get(app_id))
    app["lastModifiedDateTime"] = now_iso()


def _comparable(value: Any) -> Any:
    """A value as compared for a change: nested @odata.type, with or without '#', ignored."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items() if k != "@odata.type"}
    return value


def intune_routes(graph: Graph) -> list[Route]:
    def with_assignments(caller: Caller, app: dict[str, Any], request: Request) -> dict[str, Any]:
        assignments = caller.tenant.app_assignments.get(UUID(app["id"]), [])
        version = _version(request)
        return {**app, "assignments": [_for_version(a, version) for a in assignments]}

    async def list_apps(request: Request, caller: Caller) -> Response:
        _require(caller, READ_APPS, request)
        expanded = _expanded(request)
        apps = list(caller.tenant.mobile_apps.values())
        if expanded:
            apps = [with_assignments(caller, app, request) for app in apps]
        return odata_list(
            request,
            "deviceAppManagement/mobileApps",
            apps,
            {"id", "displayName", "isAssigned", "@odata.type"},
            directory_object=False,
            expanded=expanded,
        )

    async def get_app(request: Request, caller: Caller) -> Response:
        _require(caller, READ_APPS, request)
        expanded = _expanded(request)
        _, app = _app_or_404(caller, request)
        if expanded:
            app = with_assignments(caller, app, request)
        return odata_entity(
            "deviceAppManagement/mobileApps",
            app,
            request,
            frozenset({"@odata.type", "id"}) | expanded,
        )

    async def create_app(request: Request, caller: Caller) -> Response:
        _require(caller, WRITE_APPS, request)
        body = await _json_body(request)
        kind = str(body.get("@odata.type", "")).lstrip("#")
        if kind not in CREATABLE or (
            kind == "microsoft.graph.winGetApp" and _version(request) != "beta"
        ):
            raise GraphError(400, "BadRequest", f"Cannot create a mobileApp of type '{kind}'.")
        if not body.get("displayName"):
            raise GraphError(400, "BadRequest", "displayName is required.")
        if kind == "microsoft.graph.winGetApp":
            body = {**body, **_winget_fields(body)}
        app_id = uuid4()
        app = new_mobile_app(app_id, kind, body)
        caller.tenant.mobile_apps[app_id] = app
        caller.tenant.app_assignments[app_id] = []
        return JSONResponse(app, status_code=201)

    async def patch_app(request: Request, caller: Caller) -> Response:
        _require(caller, WRITE_APPS, request)
        app_id, app = _app_or_404(caller, request)
        body = await _json_body(request)
        if (
            "@odata.type" in body
            and "#" + str(body["@odata.type"]).lstrip("#") != app["@odata.type"]
        ):
            raise GraphError(400, "BadRequest", "The @odata.type of an app cannot change.")
        if app["@odata.type"] == "#microsoft.graph.winGetApp":
            for name in WINGET_FIXED:
                if name in body and _comparable(body[name]) != _comparable(app.get(name)):
                    raise GraphError(
                        400, "BadRequest", f"{name} cannot be modified on an existing winGetApp."
                    )
        app.update({k: v for k, v in body.items() if k not in READ_ONLY_APP_FIELDS})
        _refresh_is_assigned(caller, app_id)
        return Response(status_code=204)

    async def delete_app(request: Request, caller: Caller) -> Response:
        _require(caller, WRITE_APPS, request)
        app_id, _ = _app_or_404(caller, request)
        del caller.tenant.mobile_apps[app_id]
        caller.tenant.app_assignments.pop(app_id, None)
        return Response(status_code=204)

    async def list_assignments(request: Request, caller: Caller) -> Response:
        _require(caller, READ_APPS, request)
        app_id, _ = _app_or_404(caller, request)
        version = _version(request)
        return odata_list(
            request,
            f"deviceAppManagement/mobileApps('{app_id}')/assignments",
            [_for_version(a, version) for a in caller.tenant.app_assignments.get(app_id, [])],
            {"id"},
            directory_object=False,
        )

    async def create_assignment(request: Request, caller: Caller) -> Response:
        _require(caller, WRITE_APPS, request)
        app_id, _ = _app_or_404(caller, request)
        body = await _json_body(request)
        _v1_refuses_filters([body], request)
        try:
            assignment = assignment_json(app_id, body)
        except ValueError as exc:
            raise GraphError(400, "BadRequest", str(exc)) from exc
        current = caller.tenant.app_assignments.setdefault(app_id, [])
        if any(a["id"] == assignment["id"] for a in current):
            raise GraphError(409, "Conflict", "An assignment for this target already exists.")
        current.append(assignment)
        _refresh_is_assigned(caller, app_id)
        return JSONResponse(_for_version(assignment, _version(request)), status_code=201)

    async def delete_assignment(request: Request, caller: Caller) -> Response:
        _require(caller, WRITE_APPS, request)
        app_id, _ = _app_or_404(caller, request)
        current = caller.tenant.app_assignments.get(app_id, [])
        remaining = [a for a in current if a["id"] != request.path_params["assignment_id"]]
        if len(remaining) == len(current):
            raise intune_error(404, "NotFound", "Assignment not found.", request)
        caller.tenant.app_assignments[app_id] = remaining
        _refresh_is_assigned(caller, app_id)
        return Response(status_code=204)

    async def assign(request: Request, caller: Caller) -> Response:
        """Replaces the whole assignment set; an empty list clears it."""
        _require(caller, WRITE_APPS, request)
        app_id, _ = _app_or_404(caller, request)
        body = await _json_body(request)
        wanted = body.get("mobileAppAssignments")
        if not isinstance(wanted, list):
            raise GraphError(400, "BadRequest", "mobileAppAssignments is required.")
        _v1_refuses_filters(wanted, request)
        try:
            replacement = [assignment_json(app_id, dict(a)) for a in wanted]
        except (ValueError, TypeError) as exc:
            raise GraphError(400, "BadRequest", str(exc)) from exc
        caller.tenant.app_assignments[app_id] = replacement
        _refresh_is_assigned(caller, app_id)
        return Response(status_code=204)

    async def list_filters(request: Request, caller: Caller) -> Response:
        _require(caller, READ_FILTERS, request)
        return odata_list(
            request,
            "deviceManagement/assignmentFilters",
            list(caller.tenant.assignment_filters.values()),
            {"id", "displayName"},
            directory_object=False,
        )

    async def get_filter(request: Request, caller: Caller) -> Response:
        _require(caller, READ_FILTERS, request)
        try:
            found = caller.tenant.assignment_filters[UUID(request.path_params["id"])]
        except (ValueError, KeyError) as exc:
            raise intune_error(404, "NotFound", "Assignment filter not found.", request) from exc
        return JSONResponse(found)

    apps = "/deviceAppManagement/mobileApps"
    return [
        *graph.route(apps, list_apps, kind="intune"),
        *graph.route(apps, create_app, ["POST"], kind="intune"),
        *graph.route(f"{apps}/{{id}}", get_app, kind="intune"),
        *graph.route(f"{apps}/{{id}}", patch_app, ["PATCH"], kind="intune"),
        *graph.route(f"{apps}/{{id}}", delete_app, ["DELETE"], kind="intune"),
        *graph.route(f"{apps}/{{id}}/assignments", list_assignments, kind="intune"),
        *graph.route(f"{apps}/{{id}}/assignments", create_assignment, ["POST"], kind="intune"),
        *graph.route(
            f"{apps}/{{id}}/assignments/{{assignment_id}}",
            delete_assignment,
            ["DELETE"],
            kind="intune",
        ),
        *graph.route(f"{apps}/{{id}}/assign", assign, ["POST"], kind="intune"),
        *graph.route("/deviceManagement/assignmentFilters", list_filters, kind="intune"),
        *graph.route("/deviceManagement/assignmentFilters/{id}", get_filter, kind="intune"),
    ]
