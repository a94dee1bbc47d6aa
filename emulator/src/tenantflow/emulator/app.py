"""The emulator's ASGI application: Entra ID routes and the /_emulator control plane."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tenantflow.emulator.batch import batch_routes
from tenantflow.emulator.crypto import AppCertificate, CertificateAuthority, KeySet
from tenantflow.emulator.delta import delta_routes
from tenantflow.emulator.entra import Entra, routes
from tenantflow.emulator.graph import Graph, GraphError, error_response
from tenantflow.emulator.graph_permissions import APP_ROLES
from tenantflow.emulator.intune import intune_routes
from tenantflow.emulator.mutations import MUTATIONS, apply
from tenantflow.emulator.observe import FaultRule, Faults, Observe, RequestLog
from tenantflow.emulator.routing import indexed
from tenantflow.emulator.settings import EmulatorSettings
from tenantflow.emulator.state import Directory, SeedTenant, Tenant
from tenantflow.emulator.throttling import Limits, Throttling


class ConsentGrant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    permissions: list[str] = Field(default_factory=list)
    display_name: str | None = None
    account_enabled: bool | None = Field(
        default=None, description="false disables the enterprise app; unset keeps it as it is."
    )


class ThrottlingSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool
    fractional_retry_after: bool = False
    limits: Limits = Field(default_factory=Limits, description="Graph's published numbers.")


class UserTokenRequest(BaseModel):
    """Simulates an interactive sign-in: a portal user token for a seeded user."""

    model_config = ConfigDict(extra="forbid")
    tenant_id: UUID
    user_id: UUID
    roles: list[str] = Field(default_factory=list, description="Portal app roles.")
    scopes: list[str] = Field(default_factory=lambda: ["access_as_user"])
    lifetime_seconds: int = Field(default=3600, description="Negative for an expired token.")
    not_before_in_seconds: int = Field(default=0, description="Positive: not yet valid.")
    audience: str | None = Field(default=None, description="Default: the portal API client id.")
    issuer: str | None = Field(default=None, description="Default: the tenant's v2 issuer.")


def unknown_graph_routes() -> list[Route]:
    """What the emulator does not serve answers as Graph answers a segment it does not know:
    400 BadRequest "Resource not found for the segment '…'" in Graph's JSON error shape (the
    message as Graph's answers quote it in public threads; the emulator cannot know whether
    the segment exists in real Graph, so this is inferred)."""

    async def unknown(request: Request) -> Response:
        segment = request.path_params["rest"].split("/", 1)[0].split("(", 1)[0]
        error = GraphError(400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        return error_response(request, error)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return [Route(f"/{v}/{{rest:path}}", unknown, methods=methods) for v in ("v1.0", "beta")]


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"status": status, "detail": detail}, status_code=status)


@dataclass
class Emulator:
    settings: EmulatorSettings
    base_url: str

    def __post_init__(self) -> None:
        self.authority = CertificateAuthority(self.settings.state_dir / "tls")
        self.apps = self.settings.apps()
        self.certificates = {
            app.client_id: AppCertificate.load_or_create(self.settings.state_dir / "apps", app.name)
            for app in self.apps.values()
        }
        self.directory = Directory()
        self.keys = KeySet()
        self.keys.add()
        self.entra = Entra(self.base_url, self.directory, self.keys, self.apps, self.certificates)
        self.throttling = Throttling(
            enabled=self.settings.throttling,
            fractional_retry_after=self.settings.fractional_retry_after,
            limits=self.settings.throttle_limits,
        )
        self.faults = Faults()
        self.log = RequestLog()

    def add_tenant(self, seed: SeedTenant) -> Tenant:
        tenant = Tenant.from_seed(seed)
        self.directory.tenants[tenant.id] = tenant
        return tenant

    def reset(self) -> None:
        self.directory.tenants.clear()
        self.faults.rules.clear()
        self.log.entries.clear()
        self.throttling.reset()

    def tenant_document(self, tenant: Tenant) -> dict[str, Any]:
        return {
            "id": str(tenant.id),
            "display_name": tenant.display_name,
            "verified_domains": tenant.verified_domains,
            "users": [user.model_dump(mode="json") for user in tenant.users.values()],
            "groups": [group.model_dump(mode="json") for group in tenant.groups.values()],
            "devices": [device.model_dump(mode="json") for device in tenant.devices.values()],
            "intune_apps": [
                {**app, "assignments": tenant.app_assignments.get(UUID(app["id"]), [])}
                for app in tenant.mobile_apps.values()
            ],
            "assignment_filters": list(tenant.assignment_filters.values()),
            "enterprise_apps": [
                {
                    "app_id": str(sp.app_id),
                    "service_principal_id": str(sp.id),
                    "display_name": sp.display_name,
                    "permissions": sp.permissions,
                    "assigned_principals": [str(p) for p in sp.assigned_principals],
                    "account_enabled": sp.account_enabled,
                }
                for sp in tenant.service_principals.values()
            ],
        }

    def asgi(self) -> ASGIApp:
        async def health(request: Request) -> Response:
            return JSONResponse({"status": "ok", "tenants": len(self.directory.tenants)})

        async def ca_pem(request: Request) -> Response:
            return PlainTextResponse(
                self.authority.ca_path.read_text(), media_type="application/x-pem-file"
            )

        async def apps(request: Request) -> Response:
            return JSONResponse(
                [
                    {
                        "name": app.name,
                        "client_id": str(app.client_id),
                        "client_secret": app.client_secret.get_secret_value(),
                        "certificate_path": str(
                            self.settings.state_dir / "apps" / f"{app.name}.pem"
                        ),
                        "private_key_path": str(
                            self.settings.state_dir / "apps" / f"{app.name}-key.pem"
                        ),
                        "certificate_thumbprint": self.certificates[app.client_id].sha1_hex,
                    }
                    for app in self.apps.values()
                ]
            )

        async def create_tenant(request: Request) -> Response:
            try:
                seed = SeedTenant.model_validate_json(await request.body())
            except ValidationError as exc:
                return _problem(422, str(exc))
            try:
                tenant = self.add_tenant(seed)
            except ValueError as exc:
                return _problem(422, str(exc))
            return JSONResponse(self.tenant_document(tenant), status_code=201)

        def tenant_or_404(request: Request) -> Tenant | None:
            return self.directory.find(request.path_params["tenant_id"])

        async def get_tenant(request: Request) -> Response:
            tenant = tenant_or_404(request)
            if tenant is None:
                return _problem(404, "no such tenant")
            return JSONResponse(self.tenant_document(tenant))

        async def put_consent(request: Request) -> Response:
            tenant = tenant_or_404(request)
            if tenant is None:
                return _problem(404, "no such tenant")
            try:
                app_id = UUID(request.path_params["app_id"])
                grant = ConsentGrant.model_validate_json(await request.body() or b"{}")
            except (ValueError, ValidationError) as exc:
                return _problem(422, str(exc))
            unknown = sorted(set(grant.permissions) - set(APP_ROLES))
            if unknown:
                return _problem(422, f"unknown Graph application permissions {unknown}")
            known = self.apps.get(app_id)
            name = grant.display_name or (known.display_name if known else str(app_id))
            principal = tenant.consent(
                app_id, name, grant.permissions, account_enabled=grant.account_enabled
            )
            return JSONResponse(
                {
                    "service_principal_id": str(principal.id),
                    "permissions": principal.permissions,
                    "account_enabled": principal.account_enabled,
                }
            )

        async def delete_consent(request: Request) -> Response:
            tenant = tenant_or_404(request)
            if tenant is None:
                return _problem(404, "no such tenant")
            try:
                app_id = UUID(request.path_params["app_id"])
            except ValueError as exc:
                return _problem(422, str(exc))
            if not tenant.revoke(app_id):
                return _problem(404, "the app has no consent in this tenant")
            return Response(status_code=204)

        async def mint_user_token(request: Request) -> Response:
            try:
                wanted = UserTokenRequest.model_validate_json(await request.body())
            except ValidationError as exc:
                return _problem(422, str(exc))
            tenant = self.directory.tenants.get(wanted.tenant_id)
            if tenant is None:
                return _problem(404, "no such tenant")
            user = tenant.users.get(wanted.user_id)
            if user is None:
                return _problem(404, "no such user in the tenant")
            token = self.entra.user_token(
                tenant,
                user,
                audience=wanted.audience or str(self.settings.portal_api_client_id),
                roles=wanted.roles,
                scopes=wanted.scopes,
                lifetime_s=wanted.lifetime_seconds,
                not_before_in_s=wanted.not_before_in_seconds,
                issuer=wanted.issuer,
            )
            return JSONResponse({"access_token": token, "token_type": "Bearer"})

        async def add_key(request: Request) -> Response:
            key = self.keys.add()
            return JSONResponse({"kid": key.kid, "active": True}, status_code=201)

        async def retire_key(request: Request) -> Response:
            try:
                self.keys.retire(request.path_params["kid"])
            except KeyError:
                return _problem(404, "no such key")
            except ValueError as exc:
                return _problem(409, str(exc))
            return Response(status_code=204)

        async def list_keys(request: Request) -> Response:
            active = self.keys.active.kid
            return JSONResponse([{"kid": k.kid, "active": k.kid == active} for k in self.keys.keys])

        async def add_fault(request: Request) -> Response:
            try:
                rule = FaultRule.model_validate_json(await request.body())
            except ValidationError as exc:
                return _problem(422, str(exc))
            self.faults.rules.append(rule)
            return JSONResponse(rule.model_dump(), status_code=201)

        async def list_faults(request: Request) -> Response:
            return JSONResponse([rule.model_dump() for rule in self.faults.rules])

        async def clear_faults(request: Request) -> Response:
            self.faults.rules.clear()
            return Response(status_code=204)

        async def requests_log(request: Request) -> Response:
            return JSONResponse(self.log.query(dict(request.query_params)))

        async def set_throttling(request: Request) -> Response:
            try:
                wanted = ThrottlingSwitch.model_validate_json(await request.body())
            except ValidationError as exc:
                return _problem(422, str(exc))
            self.throttling.enabled = wanted.enabled
            self.throttling.fractional_retry_after = wanted.fractional_retry_after
            self.throttling.limits = wanted.limits
            self.throttling.reset()
            return JSONResponse(wanted.model_dump(mode="json"))

        async def mutate_directory(request: Request) -> Response:
            tenant = tenant_or_404(request)
            if tenant is None:
                return _problem(404, "no such tenant")
            try:
                mutations = MUTATIONS.validate_json(await request.body())
                apply(tenant, mutations)
            except (ValidationError, ValueError) as exc:
                return _problem(422, str(exc))
            return JSONResponse({"applied": len(mutations), "journal": len(tenant.journal)})

        async def invalidate_delta(request: Request) -> Response:
            tenant = tenant_or_404(request)
            if tenant is None:
                return _problem(404, "no such tenant")
            tenant.delta_epoch += 1
            return Response(status_code=204)

        async def reset(request: Request) -> Response:
            self.reset()
            return Response(status_code=204)

        control = [
            Route("/_emulator/health", health),
            Route("/_emulator/ca.pem", ca_pem),
            Route("/_emulator/apps", apps),
            Route("/_emulator/reset", reset, methods=["POST"]),
            Route("/_emulator/tokens", mint_user_token, methods=["POST"]),
            Route("/_emulator/faults", add_fault, methods=["POST"]),
            Route("/_emulator/faults", list_faults),
            Route("/_emulator/faults", clear_faults, methods=["DELETE"]),
            Route("/_emulator/requests", requests_log),
            Route("/_emulator/throttling", set_throttling, methods=["PUT"]),
            Route("/_emulator/keys", list_keys),
            Route("/_emulator/keys", add_key, methods=["POST"]),
            Route("/_emulator/keys/{kid}", retire_key, methods=["DELETE"]),
            Route("/_emulator/tenants", create_tenant, methods=["POST"]),
            Route("/_emulator/tenants/{tenant_id}", get_tenant),
            Route("/_emulator/tenants/{tenant_id}/directory", mutate_directory, methods=["POST"]),
            Route(
                "/_emulator/tenants/{tenant_id}/delta/invalidate",
                invalidate_delta,
                methods=["POST"],
            ),
            Route("/_emulator/tenants/{tenant_id}/consents/{app_id}", put_consent, methods=["PUT"]),
            Route(
                "/_emulator/tenants/{tenant_id}/consents/{app_id}",
                delete_consent,
                methods=["DELETE"],
            ),
        ]
        graph = Graph(self.directory, self.keys, self.throttling)
        graph_routes = [*delta_routes(graph), *graph.routes(), *intune_routes(graph)]
        graph_app = indexed(Starlette(routes=[*graph_routes, *unknown_graph_routes()]))
        app = indexed(
            Starlette(
                routes=[
                    *control,
                    *graph_routes,
                    # each request of a batch has its own request id and its own log entry, as
                    # Graph runs each on its own; faults are picked for the batch's items apart
                    *batch_routes(
                        Observe(graph_app, self.log, Faults(), in_batch=True), self.faults
                    ),
                    *routes(self.entra),
                    *unknown_graph_routes(),
                ]
            )
        )
        return Observe(app, self.log, self.faults)
