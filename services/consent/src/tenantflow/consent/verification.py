"""Verify, from Microsoft Graph, that an enterprise app is consented in a tenant with the
permissions tenantflow needs, and that the requesting user may link the tenant. Stops at the
first failure, in the order: token, organization, permissions, user. Every list is read to its
last page: a service principal with many grants or assignees is judged on all of them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from tenantflow.contracts.events import LinkAuthorization, VerificationFailure
from tenantflow.graph.client import GraphClient, unverified_claims
from tenantflow.graph.credentials import AppCredentials
from tenantflow.graph.errors import GraphCallFailed, TokenRefused

log = logging.getLogger(__name__)

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"
CHECK_MEMBER_GROUPS_MAX = 20

REVOKING = (
    VerificationFailure.ADMIN_CONSENT_MISSING,
    VerificationFailure.PERMISSION_MISSING,
    VerificationFailure.APP_DISABLED,
    VerificationFailure.ACCESS_BLOCKED,
)
"""What a re-check finds that the tenant decided: the link (or Intune writing) is revoked. A
refusal of tenantflow's own credential is not one: it would revoke every tenant at once."""


@dataclass(frozen=True)
class Verified:
    display_name: str
    default_domain: str | None
    granted_permissions: list[str]
    authorized_by: LinkAuthorization | None = None


@dataclass(frozen=True)
class Rejected:
    reason: VerificationFailure
    detail: str
    missing_permissions: list[str] = field(default_factory=list)
    admin_consent_url: str | None = None


def token_roles(token: str) -> set[str]:
    """The roles claim of an app-only token (read, not verified: Entra just issued it to us)."""
    return set(unverified_claims(token).get("roles", []))


def refusal(exc: TokenRefused, consent_url: str, whose: str = "The enterprise app") -> Rejected:
    """A rejection that says what the token refusal means and who can do something about it."""
    code = f" (AADSTS{exc.code})" if exc.code else ""
    if exc.reason is VerificationFailure.ADMIN_CONSENT_MISSING:
        return Rejected(
            exc.reason, f"{whose} is not consented in this tenant.", admin_consent_url=consent_url
        )
    if exc.reason is VerificationFailure.TENANT_NOT_FOUND:
        return Rejected(exc.reason, f"Entra ID does not know this tenant{code}.")
    if exc.reason is VerificationFailure.APP_DISABLED:
        return Rejected(
            exc.reason,
            f"{whose} is disabled in this tenant{code}. A Global Administrator can enable "
            "it again (Enterprise applications, Properties, 'Enabled for users to sign in'), "
            "then ask again.",
        )
    if exc.reason is VerificationFailure.ACCESS_BLOCKED:
        return Rejected(
            exc.reason,
            f"A policy of this tenant blocks the sign-in of {whose.lower()}{code}, for "
            "example Conditional Access for workload identities. A Global Administrator has to "
            "exempt it, then ask again.",
        )
    if exc.reason is VerificationFailure.APP_CREDENTIALS_INVALID:
        log.error("Entra ID refused tenantflow's own credential: %s", exc)
        return Rejected(
            exc.reason,
            f"Entra ID refused tenantflow's own credential for {whose.lower()}{code}. This "
            "is for tenantflow's operators to fix, not for the tenant: ask again later.",
        )
    return Rejected(exc.reason, f"Entra ID refused {whose.lower()} a token: {exc}"[:1000])


def admin_consent_url(login_base_url: str, tenant_id: UUID, client_id: UUID) -> str:
    return (
        f"{login_base_url}/{tenant_id}/v2.0/adminconsent?client_id={client_id}"
        "&scope=https://graph.microsoft.com/.default"
    )


async def verify(
    graph: GraphClient,
    app: AppCredentials,
    tenant_id: UUID,
    required_permissions: list[str],
    user_object_id: UUID | None,
    directory_reader: AppCredentials | None = None,
) -> Verified | Rejected:
    """``user_object_id`` None skips the user check (a scheduled re-check of consent only).

    The app's own token proves consent and reads the organization; service principals, their
    grants and the user's roles are read with ``directory_reader``'s token when the app itself
    may not read the directory (the Intune writer has no directory permission: least privilege).
    """
    consent_url = admin_consent_url(graph.login_base_url, tenant_id, app.client_id)
    try:
        token = await graph.token(app, str(tenant_id))
    except TokenRefused as exc:
        return refusal(exc, consent_url)

    try:
        organization = (await graph.request(token, "GET", "/v1.0/organization"))["value"]
    except GraphCallFailed as exc:
        if exc.status != 403:
            raise
        # without a directory permission nothing else can be read: the token's roles say
        # what was granted
        missing = sorted(set(required_permissions) - token_roles(token)) or required_permissions
        return Rejected(
            VerificationFailure.PERMISSION_MISSING,
            f"Admin consent lacks {', '.join(missing)}.",
            missing_permissions=missing,
            admin_consent_url=consent_url,
        )
    if not organization or organization[0]["id"] != str(tenant_id):
        return Rejected(
            VerificationFailure.TENANT_MISMATCH,
            "Graph answered for another tenant than the one requested.",
        )
    org = organization[0]
    domains = org.get("verifiedDomains", [])
    default_domain = next((d["name"] for d in domains if d.get("isDefault")), None)
    if directory_reader is not None:
        try:
            token = await graph.token(directory_reader, str(tenant_id))
        except TokenRefused as exc:
            return refusal(
                exc,
                admin_consent_url(graph.login_base_url, tenant_id, directory_reader.client_id),
                "The directory connector (which reads the directory for tenantflow)",
            )

    ours = await graph.read_all(
        token,
        "/v1.0/servicePrincipals",
        params={"$filter": f"appId eq '{app.client_id}'", "$select": "id,appId,accountEnabled"},
    )
    if not ours:
        return Rejected(
            VerificationFailure.ADMIN_CONSENT_MISSING,
            "The enterprise app has no service principal in this tenant.",
            admin_consent_url=consent_url,
        )
    if ours[0].get("accountEnabled") is False:
        # Entra ID refuses a disabled app its token (AADSTS7000112); a token issued just before
        # it was disabled still works for up to an hour, so the flag is checked too
        return refusal(
            TokenRefused(VerificationFailure.APP_DISABLED, None, "accountEnabled is false"), ""
        )
    our_sp = ours[0]["id"]
    graph_sp = await graph.request(
        token,
        "GET",
        f"/v1.0/servicePrincipals(appId='{GRAPH_APP_ID}')",
        params={"$select": "id,appRoles"},
    )
    role_names = {role["id"]: role["value"] for role in graph_sp.get("appRoles", [])}
    assignments = await graph.read_all(
        token, f"/v1.0/servicePrincipals/{our_sp}/appRoleAssignments"
    )
    granted = sorted(
        role_names[a["appRoleId"]]
        for a in assignments
        if a.get("resourceId") == graph_sp["id"] and a.get("appRoleId") in role_names
    )
    missing = sorted(set(required_permissions) - set(granted))
    if missing:
        return Rejected(
            VerificationFailure.PERMISSION_MISSING,
            f"Admin consent lacks {', '.join(missing)}.",
            missing_permissions=missing,
            admin_consent_url=consent_url,
        )
    verified = Verified(org.get("displayName", ""), default_domain, granted)
    if user_object_id is None:
        return verified
    authorized = await _authorization(graph, token, our_sp, user_object_id)
    if authorized is None:
        return Rejected(
            VerificationFailure.USER_NOT_AUTHORIZED,
            await _not_authorized_detail(graph, token, user_object_id),
        )
    return Verified(verified.display_name, default_domain, granted, authorized)


async def _roles_of(
    graph: GraphClient, token: str, collection: str, user: UUID
) -> list[dict[str, Any]]:
    """The user's entries in roleManagement/directory/``collection``: the roles they hold
    (roleAssignments: active ones only) or may activate (roleEligibilityScheduleInstances)."""
    return await graph.read_all(
        token,
        f"/v1.0/roleManagement/directory/{collection}",
        params={"$filter": f"principalId eq '{user}'"},
    )


def _tenant_wide_global_administrator(roles: list[dict[str, Any]]) -> bool:
    """Whether role assignments (or eligibilities) hold Global Administrator for the tenant."""
    return any(
        r.get("roleDefinitionId") == GLOBAL_ADMINISTRATOR and r.get("directoryScopeId") == "/"
        for r in roles
    )


async def _authorization(
    graph: GraphClient, token: str, our_sp: str, user: UUID
) -> LinkAuthorization | None:
    if _tenant_wide_global_administrator(await _roles_of(graph, token, "roleAssignments", user)):
        return LinkAuthorization.GLOBAL_ADMINISTRATOR
    assigned = await graph.read_all(token, f"/v1.0/servicePrincipals/{our_sp}/appRoleAssignedTo")
    if any(a["principalType"] == "User" and a["principalId"] == str(user) for a in assigned):
        return LinkAuthorization.APP_ASSIGNMENT
    groups = [a["principalId"] for a in assigned if a["principalType"] == "Group"]
    for start in range(0, len(groups), CHECK_MEMBER_GROUPS_MAX):
        try:
            member_of = (
                await graph.request(
                    token,
                    "POST",
                    f"/v1.0/users/{user}/checkMemberGroups",
                    json={"groupIds": groups[start : start + CHECK_MEMBER_GROUPS_MAX]},
                )
            )["value"]
        except GraphCallFailed as exc:
            if exc.status == 404:  # the user is not in this tenant
                return None
            raise
        if member_of:
            return LinkAuthorization.APP_ASSIGNMENT_THROUGH_GROUP
    return None


ELIGIBLE_GLOBAL_ADMINISTRATOR = (
    "The user is only eligible for the Global Administrator role (Privileged Identity "
    "Management), not active in it, and is not assigned to the enterprise app. Activate the "
    "Global Administrator role first, then ask again while it is active."
)
NOT_AUTHORIZED = (
    "The user is neither an active Global Administrator of the tenant nor assigned to the "
    "enterprise app. A Global Administrator role that is only eligible (Privileged Identity "
    "Management) has to be activated first."
)


async def _not_authorized_detail(graph: GraphClient, token: str, user: UUID) -> str:
    """Why the user may not link: say so plainly when the Global Administrator role is only
    eligible. Reading eligibility needs RoleEligibilitySchedule.Read.Directory (or
    RoleManagement.Read.Directory), which Directory.Read.All does not include; without it the
    message still says that an eligible role must be activated."""
    try:
        eligible = await _roles_of(graph, token, "roleEligibilityScheduleInstances", user)
    except GraphCallFailed as exc:
        if exc.status in (401, 403):
            return NOT_AUTHORIZED
        raise
    if _tenant_wide_global_administrator(eligible):
        return ELIGIBLE_GLOBAL_ADMINISTRATOR
    return NOT_AUTHORIZED
