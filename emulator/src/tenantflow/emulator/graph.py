"""Microsoft Graph (v1.0 and beta): authentication, permissions, OData queries and errors, and
the directory endpoints tenantflow reads. Shapes: shared/reference/graph-wire-formats.md §2-5."""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal
from uuid import UUID, uuid5

import jwt
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenantflow.emulator.crypto import KeySet
from tenantflow.emulator.entra import issuer_v1
from tenantflow.emulator.graph_permissions import (
    APP_ROLES,
    DEFAULT_ACCESS_ROLE,
    DIRECTORY_ROLE_TEMPLATES,
    GRAPH_APP_ID,
    GRAPH_RESOURCE,
)
from tenantflow.emulator.state import Directory, Tenant
from tenantflow.emulator.throttling import Throttling, directory_cost

DEFAULT_PAGE = 100
MAX_TOP = 999
READ_DIRECTORY = ("Directory.Read.All",)
USERS = ("User.Read.All", *READ_DIRECTORY)
GROUPS = ("Group.Read.All", "GroupMember.Read.All", *READ_DIRECTORY)
DEVICES = ("Device.Read.All", *READ_DIRECTORY)
ORGANIZATION = ("Organization.Read.All", *READ_DIRECTORY)
APPLICATIONS = ("Application.Read.All", *READ_DIRECTORY)
ROLES = ("RoleManagement.Read.Directory", *READ_DIRECTORY)
ELIGIBILITY = (
    "RoleEligibilitySchedule.Read.Directory",
    "RoleEligibilitySchedule.ReadWrite.Directory",
    "RoleManagement.Read.Directory",
    "RoleManagement.Read.All",
    "RoleManagement.ReadWrite.Directory",
)
"""rbacapplication-list-roleeligibilityschedule(instance)s: Directory.Read.All is not enough."""


class GraphError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        headers: dict[str, str] | None = None,
        inner: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.inner = inner or {}


def error_body(
    code: str,
    message: str,
    request_id: str,
    client_request_id: str,
    inner: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Graph's OData error: code, message, and innerError with the date and request ids."""
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id,
                **(inner or {}),
            },
        }
    }


def error_response(request: Request, error: GraphError) -> JSONResponse:
    request_id = request.scope.get("state", {}).get("request_id", "")
    client_request_id = request.headers.get("client-request-id", request_id)
    body = error_body(error.code, error.message, request_id, client_request_id, error.inner)
    return JSONResponse(body, status_code=error.status, headers=error.headers)


@dataclass(frozen=True)
class Caller:
    tenant: Tenant
    app_id: str
    roles: frozenset[str]
    scopes: frozenset[str]

    def require(self, allowed: Iterable[str]) -> None:
        if not (self.roles | self.scopes) & set(allowed):
            raise GraphError(
                403,
                "Authorization_RequestDenied",
                "Insufficient privileges to complete the operation.",
            )


# --- OData -----------------------------------------------------------------------------------

_EQ = re.compile(r"^\s*(\w+)\s+eq\s+(?:'([^']*)'|([0-9a-fA-F-]{36}))\s*$")


_ISOF = re.compile(r"^\s*isof\('([\w.]+)'\)\s*$")


def parse_filter(expression: str, fields: set[str]) -> list[tuple[str, str]]:
    """``field eq 'value'`` and ``isof('microsoft.graph.type')`` clauses joined by ``or``: the
    forms tenantflow sends. Values compare case-insensitively, as Graph's ids and names do."""
    clauses: list[tuple[str, str]] = []
    for part in re.split(r"\s+or\s+", expression.strip()):
        isof = _ISOF.match(part)
        if isof and "@odata.type" in fields:
            clauses.append(("@odata.type", "#" + isof.group(1).lower()))
            continue
        match = _EQ.match(part)
        if not match or match.group(1) not in fields:
            raise GraphError(400, "Request_UnsupportedQuery", "Unsupported Query.")
        clauses.append((match.group(1), (match.group(2) or match.group(3)).lower()))
    return clauses


def _token(offset: int, query: dict[str, str]) -> str:
    raw = json.dumps({"o": offset, "q": query}, separators=(",", ":")).encode()
    return "X%27" + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _untoken(token: str) -> tuple[int, dict[str, str]]:
    try:
        raw = token.removeprefix("X%27").removeprefix("X'")
        state = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        return int(state["o"]), dict(state["q"])
    except (ValueError, KeyError, TypeError) as exc:
        raise GraphError(
            400,
            "Directory_ExpiredPageToken",
            "The specified page token value has expired and can no longer be included in "
            "your request.",
        ) from exc


def odata_entity(
    entity_set: str,
    item: dict[str, Any],
    request: Request | None = None,
    always: frozenset[str] = frozenset({"id"}),
) -> JSONResponse:
    """One object, as Graph answers GET {entity_set}/{id}; trimmed to the request's $select
    (plus ``always``) when a request is given."""
    if request is not None and "$select" in request.query_params:
        wanted = {n.strip() for n in request.query_params["$select"].split(",")} | always
        item = {key: value for key, value in item.items() if key in wanted}
    return JSONResponse(
        {"@odata.context": f"{GRAPH_RESOURCE}/v1.0/$metadata#{entity_set}/$entity", **item}
    )


def odata_list(
    request: Request,
    context: str,
    items: list[dict[str, Any]],
    filterable: set[str],
    directory_object: bool = True,
    expanded: frozenset[str] = frozenset(),
) -> JSONResponse:
    """A page of ``items`` as Graph lists them; ``expanded`` navigation properties are kept
    whatever $select says (OData returns what $expand asked for)."""
    query = {k: v for k, v in request.query_params.items() if k != "$skiptoken"}
    offset = 0
    if "$skiptoken" in request.query_params:
        offset, query = _untoken(request.query_params["$skiptoken"])
    if "$filter" in query:
        clauses = parse_filter(query["$filter"], filterable)
        items = [
            item
            for item in items
            if any(str(item.get(field, "")).lower() == value for field, value in clauses)
        ]
    count = query.get("$count", "").lower() == "true"
    if count and directory_object and request.headers.get("consistencylevel") != "eventual":
        raise GraphError(
            400,
            "Request_BadRequest",
            "$count is not currently supported without the ConsistencyLevel header set to "
            "eventual.",
        )
    try:
        top = int(query.get("$top", DEFAULT_PAGE))
    except ValueError as exc:
        raise GraphError(400, "Request_BadRequest", "Invalid value for $top.") from exc
    if not 1 <= top <= MAX_TOP:
        raise GraphError(
            400,
            "Request_BadRequest",
            f"Invalid page size specified: '{top}'. Must be between 1 and {MAX_TOP} inclusive.",
        )
    page = items[offset : offset + top]
    if "$select" in query:
        wanted = {name.strip() for name in query["$select"].split(",")} | {"id", "@odata.type"}
        wanted |= expanded
        page = [{k: v for k, v in item.items() if k in wanted} for item in page]
    body: dict[str, Any] = {
        "@odata.context": f"https://graph.microsoft.com/v1.0/$metadata#{context}"
    }
    if count and offset == 0:
        body["@odata.count"] = len(items)
    if offset + top < len(items):
        token = _token(offset + top, query)  # base64url: safe in a URL as it is
        body["@odata.nextLink"] = f"{link_base(request)}?$skiptoken={token}"
    body["value"] = page
    return JSONResponse(body)


def link_base(request: Request) -> str:
    """Where the nextLinks, deltaLinks and 410 Locations of ``request`` point: the host that
    served it (Graph's own links name Graph's host; clients follow them as given)."""
    return f"{str(request.base_url).rstrip('/')}{request.url.path}"


# --- representations --------------------------------------------------------------------------


def user_json(user: Any) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.user",
        "id": str(user.id),
        "displayName": user.display_name,
        "userPrincipalName": user.user_principal_name,
        "mail": user.user_principal_name,
        "accountEnabled": True,
        "businessPhones": [],
        "givenName": None,
        "surname": None,
        "jobTitle": None,
        "officeLocation": None,
        "preferredLanguage": None,
        "mobilePhone": None,
    }


def group_json(group: Any) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.group",
        "id": str(group.id),
        "displayName": group.display_name,
        "description": group.description,
        "securityEnabled": group.security_enabled,
        "mailEnabled": group.mail_enabled,
        "groupTypes": list(group.group_types),
        "mailNickname": re.sub(r"[^A-Za-z0-9]", "", group.display_name) or "group",
    }


def device_json(device: Any) -> dict[str, Any]:
    return {
        "@odata.type": "#microsoft.graph.device",
        "id": str(device.id),
        "deviceId": str(device.device_id),
        "displayName": device.display_name,
        "operatingSystem": device.operating_system,
        "operatingSystemVersion": device.operating_system_version,
        "accountEnabled": True,
        "isManaged": device.is_managed,
        "trustType": "AzureAd",
    }


def directory_object_json(tenant: Tenant, object_id: UUID) -> dict[str, Any]:
    if object_id in tenant.users:
        return user_json(tenant.users[object_id])
    if object_id in tenant.groups:
        return group_json(tenant.groups[object_id])
    return device_json(tenant.devices[object_id])


def graph_service_principal(tenant: Tenant) -> dict[str, Any]:
    return {
        "id": str(tenant.graph_service_principal_id),
        "appId": str(GRAPH_APP_ID),
        "displayName": "Microsoft Graph",
        "accountEnabled": True,
        "appRoleAssignmentRequired": False,
        "servicePrincipalType": "Application",
        "appRoles": [
            {
                "allowedMemberTypes": ["Application"],
                "description": f"Allows the app to {name} without a signed-in user.",
                "displayName": name,
                "id": str(role_id),
                "isEnabled": True,
                "origin": "Application",
                "value": name,
            }
            for name, role_id in sorted(APP_ROLES.items())
        ],
    }


def service_principals(tenant: Tenant) -> list[dict[str, Any]]:
    ours = [
        {
            "id": str(sp.id),
            "appId": str(sp.app_id),
            "displayName": sp.display_name,
            "accountEnabled": sp.account_enabled,
            "appRoleAssignmentRequired": False,
            "servicePrincipalType": "Application",
            "appRoles": [],
        }
        for sp in tenant.service_principals.values()
    ]
    return [graph_service_principal(tenant), *ours]


def _assignment_id(principal: UUID, resource: UUID, role: UUID) -> str:
    return (
        base64.urlsafe_b64encode(principal.bytes + resource.bytes[:8] + role.bytes[:4])
        .decode()
        .rstrip("=")
    )


CREATED = "2026-01-15T09:30:00Z"


def app_role_assignments(tenant: Tenant, sp_id: UUID) -> list[dict[str, Any]]:
    [sp] = [sp for sp in tenant.service_principals.values() if sp.id == sp_id]
    resource = tenant.graph_service_principal_id
    return [
        {
            "id": _assignment_id(sp.id, resource, APP_ROLES[permission]),
            "deletedDateTime": None,
            "appRoleId": str(APP_ROLES[permission]),
            "createdDateTime": CREATED,
            "principalDisplayName": sp.display_name,
            "principalId": str(sp.id),
            "principalType": "ServicePrincipal",
            "resourceDisplayName": "Microsoft Graph",
            "resourceId": str(resource),
        }
        for permission in sp.permissions
    ]


def app_role_assigned_to(tenant: Tenant, sp_id: UUID) -> list[dict[str, Any]]:
    [sp] = [sp for sp in tenant.service_principals.values() if sp.id == sp_id]
    assigned = []
    for principal in sp.assigned_principals:
        is_group = principal in tenant.groups
        name = (
            tenant.groups[principal].display_name
            if is_group
            else tenant.users[principal].display_name
        )
        assigned.append(
            {
                "id": _assignment_id(principal, sp.id, DEFAULT_ACCESS_ROLE),
                "deletedDateTime": None,
                "appRoleId": str(DEFAULT_ACCESS_ROLE),
                "createdDateTime": CREATED,
                "principalDisplayName": name,
                "principalId": str(principal),
                "principalType": "Group" if is_group else "User",
                "resourceDisplayName": sp.display_name,
                "resourceId": str(sp.id),
            }
        )
    return assigned


def role_assignments(tenant: Tenant) -> list[dict[str, Any]]:
    return [
        {
            "id": base64.urlsafe_b64encode(template.bytes).decode().rstrip("=") + f"-{user.id}",
            "principalId": str(user.id),
            "directoryScopeId": "/",
            "resourceScope": "/",
            "roleDefinitionId": str(template),
        }
        for user in tenant.users.values()
        for template in sorted(user.role_templates(), key=str)
    ]


def role_eligibilities(tenant: Tenant, instances: bool) -> list[dict[str, Any]]:
    """PIM eligibilities, as Graph lists them beside (never inside) role assignments: schedules
    (unifiedRoleEligibilitySchedule) or their current instances. Shapes from Microsoft's
    rbacapplication-list-roleeligibilityschedules / -scheduleinstances examples; the ids and the
    dates are ours (inferred: stable per user and role, permanent eligibility)."""
    found = []
    for user in tenant.users.values():
        for template in sorted(user.eligible_role_templates(), key=str):
            schedule_id = str(uuid5(template, f"eligibility:{user.id}"))
            common: dict[str, Any] = {
                "principalId": str(user.id),
                "roleDefinitionId": str(template),
                "directoryScopeId": "/",
                "appScopeId": None,
                "memberType": "Direct",
            }
            if instances:
                found.append(
                    {
                        "id": base64.urlsafe_b64encode(template.bytes).decode().rstrip("=")
                        + f"-{user.id}-e",
                        **common,
                        "startDateTime": CREATED,
                        "endDateTime": None,
                        "roleEligibilityScheduleId": schedule_id,
                    }
                )
            else:
                found.append(
                    {
                        "id": schedule_id,
                        **common,
                        "createdUsing": schedule_id,
                        "createdDateTime": CREATED,
                        "modifiedDateTime": None,
                        "status": "Provisioned",
                        "scheduleInfo": {
                            "startDateTime": CREATED,
                            "recurrence": None,
                            "expiration": {
                                "type": "noExpiration",
                                "endDateTime": None,
                                "duration": None,
                            },
                        },
                    }
                )
    return found


# --- routes ----------------------------------------------------------------------------------

Handler = Callable[[Request, Caller], Awaitable[Response]]


ThrottleKind = Literal["directory", "intune"]


@dataclass
class Graph:
    directory: Directory
    keys: KeySet
    throttling: Throttling

    def throttle(self, request: Request, caller: Caller, kind: ThrottleKind) -> None:
        tenant = str(caller.tenant.id)
        if kind == "intune":
            throttled = self.throttling.intune(caller.app_id, tenant, request.method)
        else:
            cost = directory_cost(
                request.url.path,
                "$select" in request.query_params,
                "$expand" in request.query_params,
            )
            throttled = self.throttling.directory(
                caller.app_id, tenant, len(caller.tenant.users), cost
            )
        if throttled is not None:
            raise GraphError(
                429,
                "TooManyRequests",
                "Please retry again later.",
                headers={
                    "Retry-After": self.throttling.retry_after(throttled),
                    "x-ms-throttle-scope": throttled.scope,
                    "x-ms-throttle-information": throttled.information,
                },
                inner={"code": "429", "message": "Please retry after", "status": "429"},
            )

    def __post_init__(self) -> None:
        self._verified: dict[str, tuple[str, dict[str, Any]]] = {}

    def authenticate(self, request: Request) -> Caller:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            raise GraphError(401, "InvalidAuthenticationToken", "Access token is empty.")
        token = header[7:].strip()
        claims = self._cached_claims(token)
        if claims is None:
            claims = self._verify(token)
        tenant = self.directory.find(claims["tid"])
        if tenant is None or claims["iss"] != issuer_v1(tenant.id):
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid issuer.",
            )
        return Caller(
            tenant=tenant,
            app_id=str(claims.get("appid", "")),
            roles=frozenset(claims.get("roles", [])),
            scopes=frozenset(str(claims.get("scp", "")).split()),
        )

    def _cached_claims(self, token: str) -> dict[str, Any] | None:
        """A token verified before, still unexpired and signed by a key still published:
        clients reuse one token for an hour, and RS256 parsing dominated the cost per call."""
        cached = self._verified.get(token)
        if cached is None:
            return None
        kid, claims = cached
        if claims["exp"] + 60 < time.time() or self.keys.find(kid) is None:
            del self._verified[token]
            return None
        return claims

    def _verify(self, token: str) -> dict[str, Any]:
        try:
            kid = jwt.get_unverified_header(token).get("kid")
            key = self.keys.find(kid)
            if key is None:
                raise jwt.InvalidSignatureError("unknown key")
            claims = jwt.decode(
                token,
                key.private_key.public_key(),
                algorithms=["RS256"],
                audience=[GRAPH_RESOURCE, f"{GRAPH_RESOURCE}/", str(GRAPH_APP_ID)],
                options={"require": ["exp", "iss", "tid"]},
                leeway=60,
            )
        except jwt.ExpiredSignatureError as exc:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Lifetime validation failed, the token is expired.",
            ) from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise GraphError(
                401,
                "InvalidAuthenticationToken",
                "Access token validation failure. Invalid audience or signature.",
            ) from exc
        if len(self._verified) >= 50_000:
            self._verified.clear()
        self._verified[token] = (key.kid, claims)
        return claims

    def route(
        self,
        path: str,
        handler: Handler,
        methods: list[str] | None = None,
        kind: ThrottleKind = "directory",
    ) -> list[Route]:
        async def endpoint(request: Request) -> Response:
            try:
                caller = self.authenticate(request)
                state = request.scope.setdefault("state", {})
                state["client_app"] = caller.app_id
                state["tenant"] = str(caller.tenant.id)
                self.throttle(request, caller, kind)
                return await handler(request, caller)
            except GraphError as error:
                return error_response(request, error)

        return [
            Route(f"/{version}{path}", endpoint, methods=methods or ["GET"])
            for version in ("v1.0", "beta")
        ]

    def routes(self) -> list[Route]:
        def uuid_param(request: Request, name: str) -> UUID:
            try:
                return UUID(request.path_params[name])
            except ValueError as exc:
                raise GraphError(
                    400,
                    "Request_BadRequest",
                    f"Invalid object identifier '{request.path_params[name]}'.",
                ) from exc

        def not_found(object_id: object) -> GraphError:
            return GraphError(
                404,
                "Request_ResourceNotFound",
                f"Resource '{object_id}' does not exist or one of its queried "
                "reference-property objects are not present.",
            )

        async def organization(request: Request, caller: Caller) -> Response:
            caller.require(ORGANIZATION)
            tenant = caller.tenant
            org = {
                "id": str(tenant.id),
                "displayName": tenant.display_name,
                "tenantType": "AAD",
                "verifiedDomains": [
                    {
                        "capabilities": "Email, OfficeCommunicationsOnline",
                        "isDefault": i == 0,
                        "isInitial": domain.endswith(".onmicrosoft.com"),
                        "name": domain,
                        "type": "Managed",
                    }
                    for i, domain in enumerate(tenant.verified_domains)
                ],
            }
            return odata_list(request, "organization", [org], {"id"}, directory_object=False)

        async def users(request: Request, caller: Caller) -> Response:
            caller.require(USERS)
            items = [user_json(u) for u in caller.tenant.users.values()]
            return odata_list(request, "users", items, {"id", "userPrincipalName", "displayName"})

        async def user(request: Request, caller: Caller) -> Response:
            caller.require(USERS)
            reference = request.path_params["id"]
            found = caller.tenant.user_by_principal_name(reference)  # documented alternate key
            if found is None:
                found = caller.tenant.users.get(uuid_param(request, "id"))
            if found is None:
                raise not_found(reference)
            return odata_entity("users", user_json(found))

        async def groups(request: Request, caller: Caller) -> Response:
            caller.require(GROUPS)
            items = [group_json(g) for g in caller.tenant.groups.values()]
            return odata_list(request, "groups", items, {"id", "displayName"})

        async def group(request: Request, caller: Caller) -> Response:
            caller.require(GROUPS)
            group_id = uuid_param(request, "id")
            found = caller.tenant.groups.get(group_id)
            if found is None:
                raise not_found(group_id)
            return odata_entity("groups", group_json(found))

        async def members(request: Request, caller: Caller) -> Response:
            caller.require(GROUPS)
            group_id = uuid_param(request, "id")
            if group_id not in caller.tenant.groups:
                raise not_found(group_id)
            transitive = request.url.path.endswith("transitiveMembers")
            ids = (
                caller.tenant.transitive_members(group_id)
                if transitive
                else caller.tenant.groups[group_id].members
            )
            # a soft-deleted user keeps its memberships but is not listed until restored
            live = [m for m in ids if caller.tenant.exists(m)]
            items = [directory_object_json(caller.tenant, m) for m in live]
            return odata_list(request, "directoryObjects", items, {"id"})

        async def devices(request: Request, caller: Caller) -> Response:
            caller.require(DEVICES)
            items = [device_json(d) for d in caller.tenant.devices.values()]
            return odata_list(request, "devices", items, {"id", "deviceId", "displayName"})

        async def member_of(request: Request, caller: Caller) -> Response:
            caller.require((*USERS, *GROUPS))
            user_id = uuid_param(request, "id")
            if user_id not in caller.tenant.users:
                raise not_found(user_id)
            direct = [g for g in caller.tenant.groups.values() if user_id in g.members]
            return odata_list(request, "directoryObjects", [group_json(g) for g in direct], {"id"})

        async def check_member_groups(request: Request, caller: Caller) -> Response:
            caller.require((*USERS, *GROUPS))
            user_id = uuid_param(request, "id")
            if user_id not in caller.tenant.users:
                raise not_found(user_id)
            # checkMemberGroups takes groupIds; checkMemberObjects takes ids (groups here)
            field_name = "groupIds" if request.url.path.endswith("checkMemberGroups") else "ids"
            try:
                body = await request.json()
                asked = [UUID(g) for g in body.get(field_name, [])]
            except (ValueError, AttributeError) as exc:
                raise GraphError(400, "Request_BadRequest", "Invalid request body.") from exc
            if len(asked) > 20:
                raise GraphError(
                    400, "Request_BadRequest", f"The number of {field_name} must not exceed 20."
                )
            member = caller.tenant.member_groups(user_id)
            return JSONResponse(
                {
                    "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)",
                    "value": [str(g) for g in asked if g in member],
                }
            )

        async def sp_list(request: Request, caller: Caller) -> Response:
            caller.require(APPLICATIONS)
            return odata_list(
                request,
                "servicePrincipals",
                service_principals(caller.tenant),
                {"id", "appId", "displayName"},
            )

        def find_sp(caller: Caller, request: Request) -> dict[str, Any]:
            ref = request.path_params["ref"]
            match = re.fullmatch(r"\(appId='([0-9a-fA-F-]{36})'\)", ref)
            key, value = (
                ("appId", match.group(1).lower()) if match else ("id", ref.lstrip("/").lower())
            )
            for sp in service_principals(caller.tenant):
                if sp[key] == value:
                    return sp
            raise not_found(value)

        async def sp_get(request: Request, caller: Caller) -> Response:
            caller.require(APPLICATIONS)
            return odata_entity("servicePrincipals", find_sp(caller, request), request)

        async def sp_assignments(request: Request, caller: Caller) -> Response:
            caller.require(APPLICATIONS)
            sp = find_sp(caller, request)
            sp_id = UUID(sp["id"])
            if sp["appId"] == str(GRAPH_APP_ID):
                items: list[dict[str, Any]] = []
            elif request.url.path.endswith("appRoleAssignedTo"):
                items = app_role_assigned_to(caller.tenant, sp_id)
            else:
                items = app_role_assignments(caller.tenant, sp_id)
            return odata_list(
                request,
                "appRoleAssignments",
                items,
                {"resourceId", "principalId", "appRoleId"},
                directory_object=False,
            )

        async def role_assignment_list(request: Request, caller: Caller) -> Response:
            caller.require(ROLES)
            if "$filter" not in request.query_params and "$skiptoken" not in request.query_params:
                raise GraphError(
                    400, "BadRequest", "A filter on principalId or roleDefinitionId is required."
                )
            return odata_list(
                request,
                "roleManagement/directory/roleAssignments",
                role_assignments(caller.tenant),
                {"principalId", "roleDefinitionId"},
                directory_object=False,
            )

        async def role_eligibility_list(request: Request, caller: Caller) -> Response:
            caller.require(ELIGIBILITY)
            kind = request.url.path.rsplit("/", 1)[-1]
            return odata_list(
                request,
                f"roleManagement/directory/{kind}",
                role_eligibilities(caller.tenant, instances=kind.endswith("Instances")),
                {"principalId", "roleDefinitionId"},
                directory_object=False,
            )

        async def directory_role_members(request: Request, caller: Caller) -> Response:
            caller.require(ROLES)
            template = UUID(request.path_params["template"])
            if template not in DIRECTORY_ROLE_TEMPLATES.values():
                raise not_found(template)
            holders = [
                user_json(u) for u in caller.tenant.users.values() if template in u.role_templates()
            ]
            return odata_list(request, "directoryObjects", holders, {"id"})

        return [
            *self.route("/organization", organization),
            *self.route("/users", users),
            *self.route("/users/{id}", user),
            *self.route("/users/{id}/memberOf", member_of),
            *self.route("/users/{id}/checkMemberGroups", check_member_groups, ["POST"]),
            *self.route("/users/{id}/checkMemberObjects", check_member_groups, ["POST"]),
            *self.route("/groups", groups),
            *self.route("/groups/{id}", group),
            *self.route("/groups/{id}/members", members),
            *self.route("/groups/{id}/transitiveMembers", members),
            *self.route("/devices", devices),
            *self.route("/servicePrincipals", sp_list),
            *self.route("/servicePrincipals{ref:path}/appRoleAssignments", sp_assignments),
            *self.route("/servicePrincipals{ref:path}/appRoleAssignedTo", sp_assignments),
            *self.route("/servicePrincipals{ref:path}", sp_get),
            *self.route("/roleManagement/directory/roleAssignments", role_assignment_list),
            *self.route(
                "/roleManagement/directory/roleEligibilitySchedules", role_eligibility_list
            ),
            *self.route(
                "/roleManagement/directory/roleEligibilityScheduleInstances",
                role_eligibility_list,
            ),
            *self.route(
                "/directoryRoles(roleTemplateId='{template}')/members", directory_role_members
            ),
        ]
