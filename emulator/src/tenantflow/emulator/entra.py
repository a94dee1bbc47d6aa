"""Entra ID v2.0: OpenID configuration, JWKS, and the token endpoint (client credentials with a
secret or a certificate assertion). Shapes follow shared/reference/graph-wire-formats.md §6."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
import uuid
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tenantflow.emulator.crypto import AppCertificate, KeySet, b64url
from tenantflow.emulator.graph_permissions import GRAPH_RESOURCE
from tenantflow.emulator.settings import AppRegistration
from tenantflow.emulator.state import Directory, SeedUser, Tenant

LOGIN_HOST = "https://login.microsoftonline.com"
TOKEN_LIFETIME_S = 3599
CLOCK_SKEW_S = 300
RESERVED_SCOPES = {"openid", "profile", "offline_access"}
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def issuer_v2(tenant_id: UUID | str) -> str:
    return f"{LOGIN_HOST}/{tenant_id}/v2.0"


def issuer_v1(tenant_id: UUID | str) -> str:
    return f"https://sts.windows.net/{tenant_id}/"


class EntraError(Exception):
    def __init__(self, status: int, error: str, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.error, self.code, self.message = status, error, code, message

    def response(self) -> JSONResponse:
        trace_id, correlation_id = str(uuid.uuid4()), str(uuid.uuid4())
        now = dt.datetime.now(dt.UTC)
        timestamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
        description = (
            f"AADSTS{self.code}: {self.message}\r\nTrace ID: {trace_id}\r\n"
            f"Correlation ID: {correlation_id}\r\nTimestamp: {timestamp}"
        )
        return JSONResponse(
            {
                "error": self.error,
                "error_description": description,
                "error_codes": [self.code],
                "timestamp": timestamp,
                "trace_id": trace_id,
                "correlation_id": correlation_id,
                "error_uri": f"{LOGIN_HOST}/error?code={self.code}",
            },
            status_code=self.status,
        )


@dataclass
class Entra:
    base_url: str
    directory: Directory
    keys: KeySet
    apps: dict[UUID, AppRegistration]
    certificates: dict[UUID, AppCertificate]

    # --- discovery -----------------------------------------------------------------------

    def openid_configuration(self, tenant: str) -> dict[str, Any]:
        authority = f"{self.base_url}/{tenant}"
        issuer_tenant = "{tenantid}" if tenant in ("common", "organizations") else tenant
        resolved = self.directory.find(tenant)
        if resolved is not None:
            issuer_tenant = str(resolved.id)
        return {
            "token_endpoint": f"{authority}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{authority}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": issuer_v2(issuer_tenant),
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
            "authorization_endpoint": f"{authority}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{authority}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{authority}/oauth2/v2.0/logout",
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "acr",
                "nonce",
                "preferred_username",
                "name",
                "tid",
                "ver",
                "at_hash",
                "c_hash",
                "email",
            ],
            "kerberos_endpoint": f"{authority}/kerberos",
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    # --- tokens --------------------------------------------------------------------------

    def token(self, tenant_ref: str, form: dict[str, str], endpoint: str) -> dict[str, Any]:
        tenant = self.directory.find(tenant_ref)
        if tenant is None:
            raise EntraError(
                400,
                "invalid_request",
                90002,
                f"Tenant '{tenant_ref}' not found. Check to make sure you have the correct "
                "tenant ID and are signing into the correct cloud.",
            )
        grant = form.get("grant_type")
        if grant == JWT_BEARER and form.get("requested_token_use") == "on_behalf_of":
            return self._on_behalf_of(tenant, form, endpoint)
        if grant != "client_credentials":
            raise EntraError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        app = self._authenticate(tenant, form, endpoint)
        resource = self._default_scope_resource(form.get("scope", ""))
        if resource != GRAPH_RESOURCE:
            raise EntraError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named "
                f"{tenant.display_name}.",
            )
        principal = tenant.service_principals.get(app.client_id)
        if principal is None:
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{app.client_id}' was not found in the directory "
                f"'{tenant.display_name}'. This can happen if the application has not been "
                "installed by the administrator of the tenant or consented to by any user in "
                "the tenant. You may have sent your authentication request to the wrong tenant.",
            )
        if not principal.account_enabled:
            # reference-error-codes.md: AADSTS7000112 UnauthorizedClientApplicationDisabled
            raise EntraError(
                400,
                "unauthorized_client",
                7000112,
                f"Application '{app.client_id}'({app.display_name}) is disabled.",
            )
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": GRAPH_RESOURCE,
            "iss": issuer_v1(tenant.id),
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_S + 1,
            "app_displayname": app.display_name,
            "appid": str(app.client_id),
            "appidacr": "2" if "client_assertion" in form else "1",
            "idp": issuer_v1(tenant.id),
            "idtyp": "app",
            "oid": str(principal.id),
            "sub": str(principal.id),
            "tid": str(tenant.id),
            "uti": uuid.uuid4().hex[:22],
            "ver": "1.0",
        }
        if principal.permissions:
            claims["roles"] = sorted(principal.permissions)
        return {
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME_S,
            "ext_expires_in": TOKEN_LIFETIME_S,
            "access_token": self.sign(claims),
        }

    def user_token(
        self,
        tenant: Tenant,
        user: SeedUser,
        audience: str,
        roles: list[str],
        scopes: list[str],
        lifetime_s: int,
        not_before_in_s: int = 0,
        issuer: str | None = None,
    ) -> str:
        """A v2 access token for a signed-in user of ``tenant`` to the API ``audience``
        (what the portal's front end would get from an interactive sign-in)."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": issuer or issuer_v2(tenant.id),
            "iat": now,
            "nbf": now + not_before_in_s,
            "exp": now + lifetime_s,
            "azp": audience,
            "azpacr": "0",
            "name": user.display_name,
            "oid": str(user.id),
            "preferred_username": user.user_principal_name,
            "rh": "0.emulator",
            "scp": " ".join(scopes),
            "sub": b64url(hashlib.sha256(f"{user.id}:{audience}".encode()).digest())[:43],
            "tid": str(tenant.id),
            "uti": uuid.uuid4().hex[:22],
            "ver": "2.0",
            "wids": sorted(str(template) for template in user.role_templates()),
        }
        if roles:
            claims["roles"] = roles
        return self.sign(claims)

    def _on_behalf_of(self, tenant: Tenant, form: dict[str, str], endpoint: str) -> dict[str, Any]:
        app = self._authenticate(tenant, form, endpoint)
        assertion = form.get("assertion", "")
        try:
            incoming = jwt.decode(
                assertion,
                self._verification_key(assertion),
                algorithms=["RS256"],
                audience=[str(app.client_id), f"api://{app.client_id}"],
                issuer=issuer_v2(tenant.id),
                leeway=CLOCK_SKEW_S,
            )
        except jwt.ExpiredSignatureError as exc:
            raise EntraError(
                400,
                "invalid_grant",
                500133,
                "Assertion is not within its valid time range.",
            ) from exc
        except jwt.PyJWTError as exc:
            raise EntraError(
                400, "invalid_grant", 50013, f"Assertion failed signature validation: {exc}"
            ) from exc
        scopes = [s for s in form.get("scope", "").split() if s not in RESERVED_SCOPES]
        resources = {scope.rsplit("/", 1)[0] for scope in scopes}
        if not scopes or resources != {GRAPH_RESOURCE}:
            raise EntraError(
                400,
                "invalid_scope",
                70011,
                f"The provided value for the input parameter 'scope' is not valid: "
                f"{form.get('scope', '')}",
            )
        delegated = sorted(scope.rsplit("/", 1)[1] for scope in scopes)
        now = int(time.time())
        claims = {
            "aud": GRAPH_RESOURCE,
            "iss": issuer_v1(tenant.id),
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_S,
            "app_displayname": app.display_name,
            "appid": str(app.client_id),
            "appidacr": "2" if "client_assertion" in form else "1",
            "idtyp": "user",
            "name": incoming.get("name"),
            "oid": incoming["oid"],
            "scp": " ".join(delegated),
            "sub": incoming["sub"],
            "tid": str(tenant.id),
            "unique_name": incoming.get("preferred_username"),
            "upn": incoming.get("preferred_username"),
            "uti": uuid.uuid4().hex[:22],
            "ver": "1.0",
            "wids": incoming.get("wids", []),
        }
        return {
            "token_type": "Bearer",
            "scope": " ".join(f"{GRAPH_RESOURCE}/{scope}" for scope in delegated),
            "expires_in": TOKEN_LIFETIME_S,
            "ext_expires_in": 0,
            "access_token": self.sign(claims),
            "refresh_token": b64url(uuid.uuid4().bytes + uuid.uuid4().bytes),
        }

    def _verification_key(self, token: str) -> Any:
        """The published key the token names; a retired key is gone, as after a rollover."""
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError as exc:
            raise EntraError(400, "invalid_grant", 50013, f"Assertion is malformed: {exc}") from exc
        key = self.keys.find(kid)
        if key is not None:
            return key.private_key.public_key()
        raise EntraError(
            400,
            "invalid_grant",
            50013,
            f"Assertion failed signature validation. [Reason - The key was not found., "
            f"Thumbprint of key used by client: '{kid}']",
        )

    def sign(self, claims: dict[str, Any]) -> str:
        key = self.keys.active
        return jwt.encode(
            claims,
            key.private_key,  # the key object: PyJWT would parse a PEM on every token
            algorithm="RS256",
            headers={"typ": "JWT", "kid": key.kid, "x5t": key.kid},
        )

    def _authenticate(self, tenant: Tenant, form: dict[str, str], endpoint: str) -> AppRegistration:
        client_id = form.get("client_id", "")
        try:
            app = self.apps.get(UUID(client_id))
        except ValueError:
            app = None
        if app is None:
            raise EntraError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{tenant.display_name}'.",
            )
        if "client_assertion" in form:
            self._verify_assertion(app, tenant, form, endpoint)
            return app
        secret = form.get("client_secret")
        if secret is None:
            raise EntraError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or "
                "'client_secret'.",
            )
        if secret != app.client_secret.get_secret_value():
            raise EntraError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                f"the client secret value, not the client secret ID, for a secret added to app "
                f"'{app.client_id}'.",
            )
        return app

    def _verify_assertion(
        self, app: AppRegistration, tenant: Tenant, form: dict[str, str], endpoint: str
    ) -> None:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise EntraError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_assertion_type'.",
            )
        assertion = form["client_assertion"]
        certificate = self.certificates.get(app.client_id)
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise EntraError(
                400, "invalid_client", 700025, f"Client assertion is malformed: {exc}"
            ) from exc
        # MSAL sends x5t base64url-encoded with its padding; the JWK form has none
        thumbprint = str(header.get("x5t#S256") or header.get("x5t") or "").rstrip("=")
        expected = {certificate.x5t, certificate.x5t_s256} if certificate is not None else set()
        if thumbprint not in expected or certificate is None:
            raise EntraError(
                401,
                "invalid_client",
                700027,
                f"The certificate with identifier used to sign the client assertion is not "
                f"registered on application. [Reason - The key was not found., Thumbprint of "
                f"key used by client: '{thumbprint}']",
            )
        public_key = certificate.certificate.public_key()
        assert isinstance(public_key, RSAPublicKey)
        audiences = {
            endpoint,
            f"{self.base_url}/{tenant.id}/oauth2/v2.0/token",
            f"{LOGIN_HOST}/{tenant.id}/oauth2/v2.0/token",
            *(f"{LOGIN_HOST}/{domain}/oauth2/v2.0/token" for domain in tenant.verified_domains),
        }
        try:
            claims = jwt.decode(
                assertion,
                public_key,
                algorithms=["RS256", "PS256"],
                audience=list(audiences),
                leeway=CLOCK_SKEW_S,
                options={"require": ["exp", "aud", "iss", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise EntraError(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            ) from exc
        except jwt.PyJWTError as exc:
            raise EntraError(
                401,
                "invalid_client",
                700027,
                f"Client assertion failed signature validation: {exc}",
            ) from exc
        if claims.get("iss") != str(app.client_id) or claims.get("sub") != str(app.client_id):
            raise EntraError(
                401,
                "invalid_client",
                700023,
                "Client assertion audience claim does not match Realm issuer; iss and sub must "
                "both be the client id.",
            )

    @staticmethod
    def _default_scope_resource(scope: str) -> str:
        scopes = [s for s in scope.split() if s not in RESERVED_SCOPES]
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise EntraError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        return scopes[0].removesuffix("/.default")


def routes(entra: Entra) -> list[Route]:
    async def openid_configuration(request: Request) -> Response:
        return JSONResponse(entra.openid_configuration(request.path_params["tenant"]))

    async def keys(request: Request) -> Response:
        tenant = request.path_params["tenant"]
        resolved = entra.directory.find(tenant)
        issuer_tenant = str(resolved.id) if resolved else "{tenantid}"
        return JSONResponse(entra.keys.jwks(issuer_v2(issuer_tenant)))

    async def token(request: Request) -> Response:
        form = {key: str(value) for key, value in (await request.form()).items()}
        endpoint = f"{entra.base_url}{request.url.path}"
        try:
            return JSONResponse(entra.token(request.path_params["tenant"], form, endpoint))
        except EntraError as exc:
            return exc.response()

    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", openid_configuration),
        Route("/{tenant}/discovery/v2.0/keys", keys),
        Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"]),
    ]
